//! Text details of event fds, signal fds, timer fds, pidfds, message queues and POSIX timers for
//! `stasis show`.

use stasis_image::model::{FileEntry, FileKind, PosixTimer, TaskCore};
use std::fmt::Write;

/// What `stasis show` prints after the flags of an fd of one of these kinds; empty for others.
pub(super) fn file_detail(file: &FileEntry) -> String {
    match &file.kind {
        Some(FileKind::EventFd(e)) => {
            let sem = if e.semaphore { " semaphore" } else { "" };
            format!(" count {}{sem}", e.count)
        }
        Some(FileKind::SignalFd(s)) => format!(" sigmask {:#x}", s.sigmask),
        Some(FileKind::TimerFd(t)) => format!(
            " clock {} value {}.{:09}s interval {}.{:09}s ticks {} settime flags {:#o}",
            t.clockid, t.value_sec, t.value_nsec, t.interval_sec, t.interval_nsec, t.ticks, t.settime_flags
        ),
        Some(FileKind::PidFd(p)) if p.pid < 0 => " pid -1 (exited)".into(),
        Some(FileKind::PidFd(p)) => format!(" pid {}", p.pid),
        Some(FileKind::Mqueue(m)) => {
            let unlinked = if m.unlinked { " (unlinked)" } else { "" };
            let mut out = format!(
                "{unlinked} maxmsg {} msgsize {} mode {:o} {} messages",
                m.maxmsg,
                m.msgsize,
                m.mode,
                m.messages.len()
            );
            for msg in &m.messages {
                let _ = write!(out, " [prio {}: {} bytes]", msg.priority, msg.data.len());
            }
            out
        }
        _ => String::new(),
    }
}

/// The POSIX timers of a process, one line each.
pub(super) fn posix_timers(out: &mut String, core: &TaskCore) {
    if core.posix_timers.is_empty() {
        return;
    }
    let _ = writeln!(out, "  posix timers ({}):", core.posix_timers.len());
    for t in &core.posix_timers {
        let _ = writeln!(
            out,
            "    id {:<4} clock {} {} value {}.{:09}s interval {}.{:09}s overrun {}",
            t.id,
            t.clockid,
            notify(t),
            t.value_sec,
            t.value_nsec,
            t.interval_sec,
            t.interval_nsec,
            t.overrun
        );
    }
}

fn notify(t: &PosixTimer) -> String {
    match t.notify {
        0 => format!("signal {} to pid {} value {:#x}", t.signo, t.target, t.sigval),
        1 => "no notification".into(),
        4 => format!("signal {} to thread {} value {:#x}", t.signo, t.target, t.sigval),
        n => format!("notify {n} signal {}", t.signo),
    }
}
