//! A UNIX stream server and its clients in different processes: the root listens on a path; child 1
//! connected and was accepted, with bytes queued both ways; child 2 connected and waits to be
//! accepted. After the wake the root reads child 1's bytes, accepts child 2's connection and talks
//! over it; each child reads what the root sent it and checks its peer name.

use stasis_tests::raw;
use stasis_tests::workload::{self, fork_child, OrFail, TreeParent};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

fn send(fd: BorrowedFd<'_>, data: &[u8]) {
    let n = raw::send_msg(fd, data, None, &[], None).or_fail("send");
    assert_eq!(n, data.len(), "short send");
}

fn recv(fd: BorrowedFd<'_>) -> Option<Vec<u8>> {
    raw::set_timeout(fd, libc::SO_RCVTIMEO, 10, 0).ok()?;
    raw::recv_msg(fd, 256, 0).ok().map(|m| m.data)
}

/// A child: connect to `path`, send `hello` (child 1 only, before the dump), wait for `go`, then
/// read what the root sent and answer.
fn client(i: usize, path: &[u8], parent: TreeParent) -> i32 {
    let mut s = workload::start();
    let sock: OwnedFd = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::connect(sock.as_fd(), path).or_fail("connect");
    if i == 1 {
        send(sock.as_fd(), b"hello from child 1");
    }
    parent.send("connected\n").or_fail("tell the parent");
    let go = parent.line();
    let c = &mut s.checker;
    c.same("line from the root", &Some("go".to_string()), &go.ok());
    c.same("peer name", &Some(path.to_vec()), &raw::sock_name(sock.as_fd(), true).ok());
    c.same("from the root", &Some(format!("to child {i}").into_bytes()), &recv(sock.as_fd()));
    send(sock.as_fd(), format!("bye from child {i}").as_bytes());
    parent.report(s.into_checker())
}

fn main() {
    let mut s = workload::start();
    let path = std::env::current_dir().or_fail("cwd").join("server.sock");
    let path = path.as_os_str().as_encoded_bytes().to_vec();
    let l = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::bind(l.as_fd(), &path).or_fail("bind");
    raw::listen(l.as_fd(), 4).or_fail("listen");
    let k1 = fork_child("child 1", |p| client(1, &path, p));
    s.checker.same("child 1", &Some("connected".to_string()), &k1.line().ok());
    let c1 = raw::accept(l.as_fd()).or_fail("accept child 1");
    send(c1.as_fd(), b"to child 1");
    let k2 = fork_child("child 2", |p| client(2, &path, p));
    s.checker.same("child 2", &Some("connected".to_string()), &k2.line().ok());
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("from child 1", &Some(b"hello from child 1".to_vec()), &recv(c1.as_fd()));
    let c2 = c.ok("accept child 2", raw::accept(l.as_fd()));
    if let Some(c2) = &c2 {
        send(c2.as_fd(), b"to child 2");
    }
    let _ = k1.send("go\n");
    let _ = k2.send("go\n");
    c.same("bye from child 1", &Some(b"bye from child 1".to_vec()), &recv(c1.as_fd()));
    if let Some(c2) = &c2 {
        c.same("bye from child 2", &Some(b"bye from child 2".to_vec()), &recv(c2.as_fd()));
    }
    k1.collect(c);
    k2.collect(c);
    s.finish()
}
