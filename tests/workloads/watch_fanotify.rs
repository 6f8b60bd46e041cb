//! A fanotify group keeps its flags and marks: on a tmpfs mounted for the test (argument 1, so no
//! other process makes events there), an inode mark (modify), a mount mark (close-write), a
//! filesystem mark (open) and an inode mark with an ignored mask (open, surviving modify). After the
//! wake its fdinfo lines must be the same as before (flags, event flags, every mark), nothing
//! queued; then writing a file gives open, modify and close-write events for it, and opening the
//! file with the ignored mask gives none.
//!
//! `queued` (argument 2): an event is left unread at the checkpoint (the dump must refuse the group
//! without reading it; prints `fd N`); after the wake the event must still be there.

use stasis_tests::raw;
use stasis_tests::workload::{self, say, Checker, OrFail};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

const FAN_CLASS_NOTIF: u32 = 0;
const FAN_NONBLOCK: u32 = 0x2;
const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_FILESYSTEM: u32 = 0x100;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;
const FAN_MODIFY: u64 = 0x2;
const FAN_CLOSE_WRITE: u64 = 0x8;
const FAN_OPEN: u64 = 0x20;

fn lines(fd: BorrowedFd<'_>) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).or_fail("fanotify fdinfo");
    let mut out: Vec<String> = text.lines().filter(|l| l.starts_with("fanotify")).map(str::to_string).collect();
    out.sort();
    out
}

/// Events queued in `fan` now: (mask, path of the file).
fn events(c: &mut Checker, fan: &OwnedFd) -> Vec<(u64, String)> {
    let mut f = File::from(fan.try_clone().or_fail("dup"));
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    loop {
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
            Err(e) => {
                c.check(false, || format!("read events: {e}"));
                return out;
            }
        };
        let mut at = 0;
        while at + 24 <= n {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
            let mask = u64::from_ne_bytes(buf[at + 8..at + 16].try_into().expect("8"));
            let fd = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4"));
            let path = if fd >= 0 {
                let file = File::from(raw::own_fd(fd));
                std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                String::new()
            };
            out.push((mask, path));
            at += len.max(24);
        }
    }
}

fn expect(c: &mut Checker, what: &str, got: &[(u64, String)], mask: u64, path: &Path) {
    let p = path.to_string_lossy();
    c.check(got.iter().any(|(m, f)| m & mask == mask && *f == p), || {
        format!("{what}: no event {mask:#x} on {p} in {got:x?}")
    });
}

fn main() {
    let mut s = workload::start();
    let Some(mnt) = std::env::args().nth(1) else { workload::skip("needs a tmpfs mount point as argument 1") };
    let mnt = Path::new(&mnt);
    let (file, quiet) = (mnt.join("file"), mnt.join("quiet"));
    std::fs::write(&file, b"x").or_fail("create file");
    std::fs::write(&quiet, b"x").or_fail("create file");
    let fan = match raw::fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, libc::O_RDONLY as u32) {
        Ok(f) => f,
        Err(e) => workload::skip(&format!("fanotify_init: {e}")),
    };
    let mark = |flags: u32, mask: u64, p: &Path| raw::fanotify_mark(fan.as_fd(), FAN_MARK_ADD | flags, mask, p);
    mark(0, FAN_MODIFY, &file).or_fail("inode mark");
    mark(FAN_MARK_MOUNT, FAN_CLOSE_WRITE, mnt).or_fail("mount mark");
    mark(FAN_MARK_FILESYSTEM, FAN_OPEN, mnt).or_fail("filesystem mark");
    mark(FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN, &quiet).or_fail("ignored mask");
    let setup = events(&mut s.checker, &fan);
    s.checker.same("events during setup", &Vec::<(u64, String)>::new(), &setup);
    let queued = workload::mode(2, &["queued"]).is_some();
    if queued {
        std::fs::write(&file, b"queued").or_fail("write");
        say(&format!("fd {}", fan.as_raw_fd()));
    }
    let before = lines(fan.as_fd());
    let flags = raw::status_flags(fan.as_fd()).or_fail("flags");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("fdinfo lines (flags, marks)", &before, &lines(fan.as_fd()));
    c.same("status flags", &Ok(flags), &raw::status_flags(fan.as_fd()).map_err(|e| e.to_string()));
    if queued {
        let got = events(c, &fan);
        expect(c, "event left unread at the checkpoint", &got, FAN_MODIFY, &file);
    }
    c.same("bytes queued", &Ok(0), &raw::bytes_ready(fan.as_fd()).map_err(|e| e.to_string()));
    c.ok("write", std::fs::OpenOptions::new().write(true).open(&file).and_then(|mut f| f.write_all(b"y")));
    c.ok("open quiet", File::open(&quiet).map(drop));
    let got = events(c, &fan);
    expect(c, "filesystem mark", &got, FAN_OPEN, &file);
    expect(c, "inode mark", &got, FAN_MODIFY, &file);
    expect(c, "mount mark", &got, FAN_CLOSE_WRITE, &file);
    let q = quiet.to_string_lossy();
    c.check(!got.iter().any(|(_, p)| *p == q), || format!("event on {q}, whose open is ignored: {got:x?}"));
    s.finish()
}
