//! Pipes the tree holds one end of, and ends with several open file descriptions. Argument:
//!
//! - `flags`: one pipe whose read and write ends are each reopened through `/proc/self/fd/N` with
//!   O_NONBLOCK: four descriptions, each keeps its own status flags and stays a description of its
//!   own (kcmp), all of one pipe, with the bytes queued before the dump;
//! - `closed`: a read end whose writer was closed (a read gives the queued bytes, then EOF), and a
//!   write end whose reader was closed (a write gives EPIPE, SIGPIPE ignored);
//! - `stdout`: stdout is a pipe to a reader outside the tree (the test); the workload writes a
//!   line before the dump and one after the wake, and stdout must still be the same pipe (the test
//!   hands it back with `--inherit-fd`);
//! - `packets`: a pipe in packet mode (its write end O_DIRECT) with three packets queued: after
//!   restore each read gives one packet, and the write end is still O_DIRECT;
//! - `idle`: stdin is a pipe from a writer outside the tree that never writes: after restore it is
//!   still a read-only pipe end (a fresh pipe: the workload does not read it).

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

const QUEUED: &[u8] = b"queued before the dump\n";

fn reopen(fd: BorrowedFd<'_>, write: bool) -> File {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .or_fail("reopen a pipe end through /proc/self/fd")
}

fn status(fd: BorrowedFd<'_>) -> i32 {
    raw::get_fl(fd).or_fail("F_GETFL") & (libc::O_ACCMODE | libc::O_NONBLOCK)
}

fn flags(s: &mut workload::Session) {
    let (r, mut w) = std::io::pipe().or_fail("pipe");
    let r2 = reopen(r.as_fd(), false);
    let w2 = reopen(w.as_fd(), true);
    w.write_all(QUEUED).or_fail("queue bytes");
    let fds: [(&str, BorrowedFd); 4] = [
        ("read end", r.as_fd()),
        ("read end reopened", r2.as_fd()),
        ("write end", w.as_fd()),
        ("write end reopened", w2.as_fd()),
    ];
    let before: Vec<i32> = fds.iter().map(|(_, fd)| status(*fd)).collect();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let me = std::process::id() as i32;
    for ((what, fd), want) in fds.iter().zip(&before) {
        c.same(&format!("{what}: access mode and O_NONBLOCK"), want, &status(*fd));
    }
    for (a, b) in [(0, 1), (2, 3)] {
        let same = raw::kcmp_files(me, me, fds[a].1.as_raw_fd(), fds[b].1.as_raw_fd());
        c.check(same.as_ref().is_ok_and(|&k| k != 0), || {
            format!("{} and {}: kcmp {same:?}, want two descriptions", fds[a].0, fds[b].0)
        });
    }
    let ino = |fd: BorrowedFd| File::from(fd.try_clone_to_owned().or_fail("dup")).metadata().map(|m| m.ino()).ok();
    let inos: Vec<_> = fds.iter().map(|(_, fd)| ino(*fd)).collect();
    c.check(inos.iter().all(|i| *i == inos[0]), || format!("one pipe behind the four fds: inodes {inos:?}"));
    (&w2).write_all(b"x").or_fail("write through the reopened write end");
    let mut got = vec![0u8; QUEUED.len() + 1];
    let n = (&r2).read(&mut got).unwrap_or(0);
    c.same("bytes read through the reopened read end", [QUEUED, b"x"].concat().as_slice(), &got[..n]);
}

fn closed(s: &mut workload::Session) {
    raw::set_ignored(libc::SIGPIPE).or_fail("ignore SIGPIPE");
    let (mut r1, mut w1) = std::io::pipe().or_fail("pipe 1");
    w1.write_all(QUEUED).or_fail("queue bytes");
    drop(w1);
    let (r2, mut w2) = std::io::pipe().or_fail("pipe 2");
    drop(r2);
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let mut got = Vec::new();
    let read = r1.read_to_end(&mut got);
    c.check(read.is_ok(), || format!("read to EOF from the pipe whose writer is closed: {read:?}"));
    c.same("bytes then EOF from the pipe whose writer is closed", QUEUED, got.as_slice());
    let wrote = w2.write(b"y");
    let epipe = wrote.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EPIPE);
    c.check(epipe, || format!("write to the pipe whose reader is closed: {wrote:?}, want EPIPE"));
}

fn stdout(s: &mut workload::Session) {
    let out = std::io::stdout();
    let meta = || File::from(out.as_fd().try_clone_to_owned().or_fail("dup stdout")).metadata().or_fail("stat stdout");
    let before = meta();
    if !before.file_type().is_fifo() {
        workload::skip("stdout is not a pipe (run by the test with a pipe)");
    }
    writeln!(out.lock(), "line before the dump").or_fail("write stdout");
    s.ready();
    s.wait_for_wake();
    let wrote = writeln!(out.lock(), "line after the restore");
    let c = &mut s.checker;
    c.check(wrote.is_ok(), || format!("write to stdout after the restore: {wrote:?}"));
    c.same("stdout's pipe (handed in with --inherit-fd)", &before.ino(), &meta().ino());
}

fn idle(s: &mut workload::Session) {
    let stdin = std::io::stdin();
    let kind = |fd: BorrowedFd| {
        let m = File::from(fd.try_clone_to_owned().or_fail("dup stdin")).metadata().or_fail("stat stdin");
        (m.file_type().is_fifo(), status(fd))
    };
    let before = kind(stdin.as_fd());
    if !before.0 {
        workload::skip("stdin is not a pipe (run by the test with a pipe)");
    }
    s.ready();
    s.wait_for_wake();
    let after = kind(stdin.as_fd());
    s.checker.same("stdin: a pipe end, access mode and O_NONBLOCK", &before, &after);
}

fn packets(s: &mut workload::Session) {
    let (mut r, mut w) = std::io::pipe().or_fail("pipe");
    let direct = |fd: BorrowedFd| raw::get_fl(fd).map(|f| f & libc::O_DIRECT != 0);
    raw::set_fl(w.as_fd(), libc::O_WRONLY | libc::O_DIRECT).or_fail("O_DIRECT on the write end");
    let sent: [&[u8]; 3] = [b"one", b"packet two", b"3"];
    for p in sent {
        w.write_all(p).or_fail("queue a packet");
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("the write end is O_DIRECT", &Some(true), &direct(w.as_fd()).ok());
    for (i, want) in sent.iter().enumerate() {
        let mut buf = [0u8; 64];
        let n = r.read(&mut buf).unwrap_or(0);
        c.same(&format!("packet {i}"), *want, &buf[..n]);
    }
}

fn main() {
    let mut s = workload::start();
    match std::env::args().nth(1).as_deref() {
        Some("flags") => flags(&mut s),
        Some("closed") => closed(&mut s),
        Some("stdout") => stdout(&mut s),
        Some("idle") => idle(&mut s),
        Some("packets") => packets(&mut s),
        other => workload::skip(&format!("unknown mode {other:?}")),
    }
    s.finish()
}
