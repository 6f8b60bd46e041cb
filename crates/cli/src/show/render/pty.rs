//! Text details of pseudo-terminal ends and controlling terminals for `stasis show`.

use stasis_image::model::{FileEntry, FileKind, ProcessEntry};

/// The controlling terminal of a process (`ctty 136:3  foreground group 42`), or `None`.
pub(super) fn ctty_line(e: &ProcessEntry) -> Option<String> {
    if e.ctty == 0 {
        return None;
    }
    let (maj, min) = ((e.ctty >> 8) & 0xfff, (e.ctty & 0xff) | ((e.ctty >> 12) & !0xff));
    Some(format!("ctty {maj}:{min}  foreground group {}", e.tty_fg_pgrp))
}

/// Lines about a pty end: its state (master) and the data queued in the pair.
pub(super) fn file_details(file: &FileEntry) -> Vec<String> {
    let Some(FileKind::Pty(p)) = &file.kind else { return Vec::new() };
    let mut out = Vec::new();
    if p.exclusive {
        out.push("exclusive mode".to_owned());
    }
    let Some(s) = &p.state else { return out };
    out.push(format!(
        "termios iflag {:#o} oflag {:#o} cflag {:#o} lflag {:#o} speed {}/{}",
        s.iflag, s.oflag, s.cflag, s.lflag, s.ispeed, s.ospeed
    ));
    let flags: Vec<&str> = [(s.locked, "locked"), (s.packet, "packet mode"), (s.slave_closed, "slave closed")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    out.push(format!("window {}x{} ({}x{} px) {}", s.cols, s.rows, s.xpixel, s.ypixel, flags.join(", ")));
    let lines: usize = s.slave_lines.iter().map(Vec::len).sum();
    out.push(format!(
        "queued: {} lines ({lines} bytes) + {} bytes to the slave, {} bytes to the master",
        s.slave_lines.len(),
        s.slave_input.len(),
        s.master_input.len()
    ));
    out
}
