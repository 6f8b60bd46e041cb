//! inotify instances keep their watches, with their masks and watch descriptors, and deliver events
//! after restore. Instance 1 (non-blocking) watches a directory (create/delete), a file in it
//! (modify/close-write) and a third file (attrib), with a hole in its descriptors (a watch added and
//! removed before the third: 1, 2, 4); instance 2 (blocking) watches the directory for its own
//! deletion. After the wake each instance's fdinfo watch lines must be the same as before (same
//! inodes, masks, descriptors), nothing queued, the flags kept; then a file created after restore,
//! a write and a chmod each give their event with the right descriptor, the next new watch gets the
//! next descriptor, and removing the directory wakes instance 2.
//!
//! `queued`: an event is left unread at the checkpoint (the dump must refuse the instance without
//! reading it; prints `fd N` with its number); after the wake the event must still be there.

use stasis_tests::raw;
use stasis_tests::workload::{self, arg, say, Checker, OrFail};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// The watch lines of an instance's fdinfo.
fn watch_lines(fd: BorrowedFd<'_>) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).or_fail("inotify fdinfo");
    text.lines().filter(|l| l.starts_with("inotify")).map(str::to_string).collect()
}

/// Events read from `fd`, waiting up to 2 s for the first: (wd, mask, name).
fn events(c: &mut Checker, fd: &OwnedFd) -> Vec<(i32, u32, String)> {
    if !c.ok("poll", raw::poll_readable(fd.as_fd(), 2000)).unwrap_or(false) {
        return Vec::new();
    }
    let mut buf = [0u8; 4096];
    let mut f = File::from(fd.try_clone().or_fail("dup"));
    let n = c.ok("read events", f.read(&mut buf)).unwrap_or(0);
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= n {
        let word = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().expect("4 bytes"));
        let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
        let name = String::from_utf8_lossy(&buf[at + 16..at + 16 + len]).trim_end_matches('\0').to_string();
        out.push((wd, mask, name));
        at += 16 + len;
    }
    out
}

fn expect(c: &mut Checker, what: &str, got: &[(i32, u32, String)], wd: i32, mask: u32, name: &str) {
    c.check(got.iter().any(|(w, m, n)| *w == wd && m & mask == mask && n == name), || {
        format!("{what}: no event wd {wd} mask {mask:#x} name {name:?} in {got:?}")
    });
}

fn main() {
    let mut s = workload::start();
    let queued = arg::<String>(1, String::new()) == "queued";
    let work = workload::work_dir();
    let dir = work.join("inotify-dir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).or_fail("mkdir");
    let file = dir.join("file");
    std::fs::write(&file, b"x").or_fail("create file");
    let (gone, attr) = (work.join("inotify-gone"), work.join("inotify-attr"));
    std::fs::write(&gone, b"").or_fail("create file");
    std::fs::write(&attr, b"").or_fail("create file");
    let in1 = raw::inotify_init(libc::IN_NONBLOCK).or_fail("inotify_init1");
    let add = |fd: &OwnedFd, p: &Path, m: u32| raw::inotify_add_watch(fd.as_fd(), p, m).or_fail("inotify_add_watch");
    let wd_dir = add(&in1, &dir, libc::IN_CREATE | libc::IN_DELETE | libc::IN_ONLYDIR);
    let wd_file = add(&in1, &file, libc::IN_MODIFY | libc::IN_CLOSE_WRITE);
    let wd_gone = add(&in1, &gone, libc::IN_OPEN);
    raw::inotify_rm_watch(in1.as_fd(), wd_gone).or_fail("inotify_rm_watch");
    let ignored = events(&mut s.checker, &in1);
    expect(&mut s.checker, "removed watch", &ignored, wd_gone, libc::IN_IGNORED, "");
    let wd_attr = add(&in1, &attr, libc::IN_ATTRIB);
    s.checker.same("descriptors", &(1, 2, 4), &(wd_dir, wd_file, wd_attr));
    let in2 = raw::inotify_init(0).or_fail("inotify_init1");
    let wd2 = add(&in2, &dir, libc::IN_DELETE_SELF);
    if queued {
        std::fs::write(dir.join("unread"), b"").or_fail("create a file");
        say(&format!("fd {}", in1.as_raw_fd()));
    }
    let before = (watch_lines(in1.as_fd()), watch_lines(in2.as_fd()));
    let flags = (raw::status_flags(in1.as_fd()).or_fail("flags"), raw::status_flags(in2.as_fd()).or_fail("flags"));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("watches (fdinfo)", &before, &(watch_lines(in1.as_fd()), watch_lines(in2.as_fd())));
    let now = (raw::status_flags(in1.as_fd()).unwrap_or(-1), raw::status_flags(in2.as_fd()).unwrap_or(-1));
    c.same("status flags", &flags, &now);
    if queued {
        let got = events(c, &in1);
        expect(c, "event left unread at the checkpoint", &got, wd_dir, libc::IN_CREATE, "unread");
    }
    c.same("bytes queued", &0, &raw::bytes_ready(in1.as_fd()).unwrap_or(-1));
    std::fs::write(dir.join("after"), b"").or_fail("create a file");
    let got = events(c, &in1);
    expect(c, "file created after restore", &got, wd_dir, libc::IN_CREATE, "after");
    c.ok("write", std::fs::OpenOptions::new().append(true).open(&file).and_then(|mut f| f.write_all(b"y")));
    let got = events(c, &in1);
    expect(c, "write", &got, wd_file, libc::IN_MODIFY, "");
    expect(c, "close after write", &got, wd_file, libc::IN_CLOSE_WRITE, "");
    c.ok("chmod", std::fs::set_permissions(&attr, std::os::unix::fs::PermissionsExt::from_mode(0o600)));
    let got = events(c, &in1);
    expect(c, "chmod", &got, wd_attr, libc::IN_ATTRIB, "");
    c.same(
        "next descriptor",
        &Ok(5),
        &raw::inotify_add_watch(in1.as_fd(), &gone, libc::IN_OPEN).map_err(|e| e.to_string()),
    );
    c.ok("rm -r", std::fs::remove_dir_all(&dir));
    let got = events(c, &in2);
    expect(c, "directory removed (instance 2)", &got, wd2, libc::IN_DELETE_SELF, "");
    let _ = std::fs::remove_file(&gone);
    let _ = std::fs::remove_file(&attr);
    s.finish()
}
