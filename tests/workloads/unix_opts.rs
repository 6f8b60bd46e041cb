//! Options, file flags and shutdown states of UNIX sockets, and a connection whose peer is closed.
//!
//! A stream socketpair with options set on one end (SO_RCVBUF, SO_SNDBUF, SO_PASSCRED, SO_RCVTIMEO,
//! SO_SNDTIMEO, O_NONBLOCK) and 10 bytes queued on it of which 4 were peeked with SO_PEEK_OFF (so its
//! peek offset is 4); stream pairs shut down for writing and for reading on one end, a seqpacket
//! pair shut down both ways; a stream socket whose peer wrote 6 bytes and was closed. After the
//! wake every option and flag reads the same, a peek continues at offset 4 while a read starts at
//! 0, each shutdown shows (EOF where the peer stopped writing, EPIPE where writing is shut), and the
//! orphaned socket reads its 6 bytes, then EOF.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

fn send(fd: BorrowedFd<'_>, data: &[u8]) -> std::io::Result<usize> {
    raw::send_msg(fd, data, None, &[], None)
}

fn options(fd: BorrowedFd<'_>) -> Vec<String> {
    let mut out: Vec<String> =
        [libc::SO_RCVBUF, libc::SO_SNDBUF, libc::SO_PASSCRED, raw::SO_PEEK_OFF, libc::SO_TYPE, libc::SO_ACCEPTCONN]
            .iter()
            .map(|&o| format!("{o}={:?}", raw::get_opt(fd, o).ok()))
            .collect();
    out.push(format!("rcvtimeo={:?}", raw::get_timeout(fd, libc::SO_RCVTIMEO).ok()));
    out.push(format!("sndtimeo={:?}", raw::get_timeout(fd, libc::SO_SNDTIMEO).ok()));
    out.push(format!("fl={:?}", raw::get_fl(fd).ok().map(|f| f & libc::O_NONBLOCK)));
    out
}

fn recv(fd: BorrowedFd<'_>, flags: i32) -> std::io::Result<Vec<u8>> {
    raw::recv_msg(fd, 64, flags | libc::MSG_DONTWAIT).map(|m| m.data)
}

fn errno<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

fn main() {
    let mut s = workload::start();
    let (a, b) = raw::unix_pair(libc::SOCK_STREAM).or_fail("pair");
    raw::set_opt(b.as_fd(), libc::SO_RCVBUF, 65536).or_fail("SO_RCVBUF");
    raw::set_opt(b.as_fd(), libc::SO_SNDBUF, 32768).or_fail("SO_SNDBUF");
    raw::set_opt(b.as_fd(), libc::SO_PASSCRED, 1).or_fail("SO_PASSCRED");
    raw::set_timeout(b.as_fd(), libc::SO_RCVTIMEO, 3, 250_000).or_fail("SO_RCVTIMEO");
    raw::set_timeout(b.as_fd(), libc::SO_SNDTIMEO, 7, 0).or_fail("SO_SNDTIMEO");
    let b = set_nonblock(b);
    send(a.as_fd(), b"0123456789").or_fail("send");
    raw::set_opt(b.as_fd(), raw::SO_PEEK_OFF, 0).or_fail("SO_PEEK_OFF");
    let peeked = raw::recv_msg(b.as_fd(), 4, libc::MSG_PEEK).or_fail("peek");
    assert_eq!(peeked.data, b"0123");
    let (wa, wb) = raw::unix_pair(libc::SOCK_STREAM).or_fail("pair");
    send(wa.as_fd(), b"last words").or_fail("send");
    raw::shutdown(wa.as_fd(), libc::SHUT_WR).or_fail("shutdown wr");
    let (ra, rb) = raw::unix_pair(libc::SOCK_STREAM).or_fail("pair");
    raw::shutdown(ra.as_fd(), libc::SHUT_RD).or_fail("shutdown rd");
    let (qa, qb) = raw::unix_pair(libc::SOCK_SEQPACKET).or_fail("pair");
    raw::shutdown(qa.as_fd(), libc::SHUT_RDWR).or_fail("shutdown rdwr");
    let (orphan, gone) = raw::unix_pair(libc::SOCK_STREAM).or_fail("pair");
    send(gone.as_fd(), b"bye!!!").or_fail("send");
    drop(gone);
    let before: Vec<_> = [a.as_fd(), b.as_fd(), wa.as_fd(), rb.as_fd(), qb.as_fd()].map(options).to_vec();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let after: Vec<_> = [a.as_fd(), b.as_fd(), wa.as_fd(), rb.as_fd(), qb.as_fd()].map(options).to_vec();
    c.same("options and flags", &before, &after);
    c.same("peek continues at SO_PEEK_OFF", &Some(b"456789".to_vec()), &recv(b.as_fd(), libc::MSG_PEEK).ok());
    c.same("read starts at the head", &Some(b"0123456789".to_vec()), &recv(b.as_fd(), 0).ok());
    c.same("empty non-blocking socket: EAGAIN", &Some(libc::EAGAIN), &errno(raw::recv_msg(b.as_fd(), 8, 0)));
    shutdowns(c, &wa, &wb, &ra, &rb, &qa, &qb);
    c.same("orphan: its closed peer's bytes", &Some(b"bye!!!".to_vec()), &recv(orphan.as_fd(), 0).ok());
    c.same("orphan: then EOF", &Some(Vec::new()), &recv(orphan.as_fd(), 0).ok());
    c.same("orphan: writing fails EPIPE", &Some(libc::EPIPE), &errno(send(orphan.as_fd(), b"x")));
    s.finish()
}

fn set_nonblock(fd: OwnedFd) -> OwnedFd {
    let f = std::os::unix::net::UnixStream::from(fd);
    f.set_nonblocking(true).or_fail("O_NONBLOCK");
    f.into()
}

fn shutdowns(c: &mut Checker, wa: &OwnedFd, wb: &OwnedFd, ra: &OwnedFd, rb: &OwnedFd, qa: &OwnedFd, qb: &OwnedFd) {
    c.same("SHUT_WR: the peer reads the data", &Some(b"last words".to_vec()), &recv(wb.as_fd(), 0).ok());
    c.same("SHUT_WR: then EOF", &Some(Vec::new()), &recv(wb.as_fd(), 0).ok());
    c.same("SHUT_WR: writing fails EPIPE", &Some(libc::EPIPE), &errno(send(wa.as_fd(), b"x")));
    c.same("SHUT_WR: the peer still writes", &Some(2), &send(wb.as_fd(), b"ok").ok());
    c.same("SHUT_RD: reads EOF", &Some(Vec::new()), &recv(ra.as_fd(), 0).ok());
    c.same("SHUT_RD: the peer cannot write", &Some(libc::EPIPE), &errno(send(rb.as_fd(), b"x")));
    c.same("SHUT_RDWR seqpacket: EOF", &Some(Vec::new()), &recv(qa.as_fd(), 0).ok());
    c.same("SHUT_RDWR seqpacket: EPIPE", &Some(libc::EPIPE), &errno(send(qa.as_fd(), b"x")));
    c.same("SHUT_RDWR seqpacket: the peer sees EOF", &Some(Vec::new()), &recv(qb.as_fd(), 0).ok());
}
