//! Files and credentials in flight on UNIX sockets, and a socket shared by two processes.
//!
//! The root sends itself, over a stream socketpair, one message carrying three fds (SCM_RIGHTS):
//! the read end of a pipe holding bytes, a file opened at offset 5, and a datagram socket with a
//! message queued on it; then it closes its own copies, so those files exist only in flight. A
//! child, sharing a datagram socket with the root (inherited), sends the root one message with
//! explicit credentials (its pid, uid 1234, gid 5678) and one with the credentials the kernel adds
//! (the receiver has SO_PASSCRED). After the wake the root receives the fds and uses each, receives
//! both credential messages as they were sent, and both processes send through the shared socket.

use stasis_tests::raw;
use stasis_tests::workload::{self, fork_child, Checker, OrFail, TreeParent};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

fn send(fd: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>], creds: Option<raw::Ucred>) {
    let n = raw::send_msg(fd, data, None, fds, creds).or_fail("send");
    assert_eq!(n, data.len(), "short send");
}

fn child(tx: &OwnedFd, parent: TreeParent) -> i32 {
    let mut s = workload::start();
    let me = raw::raw_getpid();
    send(tx.as_fd(), b"explicit credentials", &[], Some((me, 1234, 5678)));
    send(tx.as_fd(), b"kernel credentials", &[], None);
    parent.send("sent\n").or_fail("tell the parent");
    let go = parent.line();
    s.checker.same("line from the parent", &Some("go".to_string()), &go.ok());
    send(tx.as_fd(), b"child after restore", &[], None);
    parent.report(s.into_checker())
}

fn main() {
    let mut s = workload::start();
    let (rx, tx) = raw::unix_pair(libc::SOCK_DGRAM).or_fail("dgram pair");
    raw::set_opt(rx.as_fd(), libc::SO_PASSCRED, 1).or_fail("SO_PASSCRED");
    let kid = fork_child("child", |p| child(&tx, p));
    let kid_pid = kid.pid;
    let sent = kid.line();
    s.checker.same("line from the child", &Some("sent".to_string()), &sent.ok());
    // Files put in flight, then closed here.
    let (pr, mut pw) = std::io::pipe().or_fail("pipe");
    pw.write_all(b"through the pipe").or_fail("write the pipe");
    let path = std::env::current_dir().or_fail("cwd").join("inflight.txt");
    std::fs::write(&path, b"0123456789").or_fail("write the file");
    let mut file = std::fs::File::open(&path).or_fail("open the file");
    file.seek(SeekFrom::Start(5)).or_fail("seek");
    let (x, y) = raw::unix_pair(libc::SOCK_DGRAM).or_fail("dgram pair");
    send(x.as_fd(), b"queued on a socket in flight", &[], None);
    let (a, b) = raw::unix_pair(libc::SOCK_STREAM).or_fail("stream pair");
    send(a.as_fd(), b"fds", &[pr.as_fd(), file.as_fd(), y.as_fd()], None);
    send(a.as_fd(), b"plain", &[], None);
    drop((pr, file, y));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    use_files(c, b.as_fd(), &mut pw, &x);
    let same = raw::kcmp_files(raw::raw_getpid(), kid_pid, tx.as_raw_fd(), tx.as_raw_fd()).ok();
    c.same("the child's socket is the root's (kcmp)", &Some(0), &same);
    let _ = kid.send("go\n");
    kid.collect(c);
    send(tx.as_fd(), b"root after restore", &[], None);
    let mut got = Vec::new();
    while let Ok(m) = raw::recv_msg(rx.as_fd(), 4096, libc::MSG_DONTWAIT) {
        got.push((String::from_utf8_lossy(&m.data).into_owned(), m.creds));
    }
    let me = raw::raw_getpid();
    let want = vec![
        ("explicit credentials".to_string(), Some((kid_pid, 1234, 5678))),
        ("kernel credentials".to_string(), Some((kid_pid, 0, 0))),
        ("child after restore".to_string(), Some((kid_pid, 0, 0))),
        ("root after restore".to_string(), Some((me, 0, 0))),
    ];
    c.same("messages and credentials on the shared socket's peer", &want, &got);
    s.finish()
}

/// Receive the fds in flight and use each.
fn use_files(c: &mut Checker, b: BorrowedFd<'_>, pw: &mut std::io::PipeWriter, x: &OwnedFd) {
    let Some(m) = c.ok("receive the fds", raw::recv_msg(b, 64, libc::MSG_DONTWAIT)) else { return };
    c.same("message with the fds", &b"fds".to_vec(), &m.data);
    c.same("fds received", &3, &m.fds.len());
    let plain = raw::recv_msg(b, 64, libc::MSG_DONTWAIT).map(|m| m.data).ok();
    c.same("message after the fds", &Some(b"plain".to_vec()), &plain);
    let mut fds = m.fds.into_iter();
    let (Some(pr), Some(file), Some(y)) = (fds.next(), fds.next(), fds.next()) else { return };
    let _ = pw.write_all(b" and more");
    let mut buf = [0u8; 25];
    let n = std::fs::File::from(pr).read(&mut buf).unwrap_or(0);
    c.same("bytes from the pipe in flight", &b"through the pipe and more"[..], &buf[..n]);
    let mut rest = String::new();
    let _ = std::fs::File::from(file).read_to_string(&mut rest);
    c.same("file in flight read from its offset", "56789", rest.as_str());
    let q = raw::recv_msg(y.as_fd(), 64, libc::MSG_DONTWAIT).map(|m| m.data).ok();
    c.same("message queued on the socket in flight", &Some(b"queued on a socket in flight".to_vec()), &q);
    send(y.as_fd(), b"back", &[], None);
    let back = raw::recv_msg(x.as_fd(), 64, libc::MSG_DONTWAIT).map(|m| m.data).ok();
    c.same("the socket in flight still talks to its peer", &Some(b"back".to_vec()), &back);
}
