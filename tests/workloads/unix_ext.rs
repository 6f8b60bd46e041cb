//! A UNIX stream socket connected to an echo server outside the tree (the test's), at the path in
//! argument 1. Before READY one round trip; after the wake another: "after" must come back. When
//! the dump is refused the original connection still works; with `--ext-unix-sk` the restored
//! socket is a new connection to the same server, with the same peer name.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::os::fd::{AsFd, BorrowedFd};

fn round_trip(fd: BorrowedFd<'_>, data: &[u8]) -> std::io::Result<Vec<u8>> {
    raw::send_msg(fd, data, None, &[], None)?;
    let mut got = Vec::new();
    while got.len() < data.len() {
        let m = raw::recv_msg(fd, 64, 0)?;
        if m.data.is_empty() {
            break;
        }
        got.extend(m.data);
    }
    Ok(got)
}

fn main() {
    let mut s = workload::start();
    let path: String = workload::arg(1, String::new());
    let sock = raw::unix_socket(libc::SOCK_STREAM).or_fail("socket");
    raw::connect(sock.as_fd(), path.as_bytes()).or_fail("connect to the server");
    let first = round_trip(sock.as_fd(), b"before").or_fail("round trip");
    assert_eq!(first, b"before");
    raw::set_timeout(sock.as_fd(), libc::SO_RCVTIMEO, 10, 0).or_fail("SO_RCVTIMEO");
    let peer = raw::sock_name(sock.as_fd(), true).ok();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("peer name", &peer, &raw::sock_name(sock.as_fd(), true).ok());
    let echoed = c.ok("round trip after the wake", round_trip(sock.as_fd(), b"after"));
    c.same("echo after the wake", &Some(b"after".to_vec()), &echoed);
    s.finish()
}
