//! Datagram UNIX sockets keep their queued messages, boundaries and senders: a receiver bound to a
//! path holds three messages of different sizes (two from a sender bound to an abstract name, one
//! from an unnamed sender); a datagram socketpair holds messages both ways (one of them empty); a
//! socket connected to an abstract-named receiver (not connected back) holds one message there.
//! After the wake each queue gives back exactly its messages, in order, with their senders, and
//! every name and peer name is as before; the connected socket still sends to its peer. A fourth
//! message on the receiver comes from a sender bound to an abstract name and closed since: it keeps
//! its sender address. A socket connected to a receiver closed since still shows its name as the
//! peer's, and its next sends fail with ECONNREFUSED, then ENOTCONN. A socket bound to the
//! relative path `rel.sock` (in the working directory) keeps that name and its queued message, and
//! is still reached at that path.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::os::fd::{AsFd, BorrowedFd};

fn send(fd: BorrowedFd<'_>, data: &[u8], to: Option<&[u8]>) {
    let n = raw::send_msg(fd, data, to, &[], None).or_fail("send");
    assert_eq!(n, data.len(), "short send");
}

/// Every queued message (non-blocking): (data, sender).
fn drain(fd: BorrowedFd<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while let Ok(m) = raw::recv_msg(fd, 1 << 20, libc::MSG_DONTWAIT) {
        out.push((m.data, m.sender));
    }
    out
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed)).collect()
}

fn names(fd: BorrowedFd<'_>) -> (Vec<u8>, Vec<u8>) {
    (raw::sock_name(fd, false).unwrap_or_default(), raw::sock_name(fd, true).unwrap_or_default())
}

fn main() {
    let mut s = workload::start();
    let pid = std::process::id();
    let path = std::env::current_dir().or_fail("cwd").join("dgram.sock");
    let path = path.as_os_str().as_encoded_bytes().to_vec();
    let rx = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    raw::bind(rx.as_fd(), &path).or_fail("bind path");
    let named = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    let named_name = format!("\0stasis-dgram-sender-{pid}").into_bytes();
    raw::bind(named.as_fd(), &named_name).or_fail("bind abstract");
    let anon = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    let msgs = [pattern(10, 1), pattern(3000, 2), pattern(100_000, 3)];
    send(named.as_fd(), &msgs[0], Some(&path));
    send(anon.as_fd(), &msgs[1], Some(&path));
    send(named.as_fd(), &msgs[2], Some(&path));
    let gone_name = format!("\0stasis-dgram-gone-{pid}").into_bytes();
    let gone = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    raw::bind(gone.as_fd(), &gone_name).or_fail("bind gone");
    send(gone.as_fd(), b"from a closed sender", Some(&path));
    drop(gone);
    let (pa, pb) = raw::unix_pair(libc::SOCK_DGRAM).or_fail("dgram pair");
    send(pa.as_fd(), b"one", None);
    send(pa.as_fd(), b"", None);
    send(pa.as_fd(), b"two!", None);
    send(pb.as_fd(), &pattern(4096, 9), None);
    let target_name = format!("\0stasis-dgram-target-{pid}").into_bytes();
    let target = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    raw::bind(target.as_fd(), &target_name).or_fail("bind target");
    let conn = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    raw::connect(conn.as_fd(), &target_name).or_fail("connect");
    send(conn.as_fd(), b"before", None);
    let dead_name = format!("\0stasis-dgram-dead-{pid}").into_bytes();
    let dead = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    raw::bind(dead.as_fd(), &dead_name).or_fail("bind dead");
    let orphan = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    raw::connect(orphan.as_fd(), &dead_name).or_fail("connect to dead");
    drop(dead);
    let rel = raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket");
    raw::bind(rel.as_fd(), b"rel.sock").or_fail("bind relative");
    send(anon.as_fd(), b"to a relative name", Some(b"rel.sock"));
    let all = [
        rel.as_fd(),
        orphan.as_fd(),
        rx.as_fd(),
        named.as_fd(),
        anon.as_fd(),
        pa.as_fd(),
        pb.as_fd(),
        target.as_fd(),
        conn.as_fd(),
    ];
    let before: Vec<_> = all.iter().map(|&f| names(f)).collect();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("names and peer names", &before, &all.iter().map(|&f| names(f)).collect::<Vec<_>>());
    let want = vec![
        (msgs[0].clone(), named_name.clone()),
        (msgs[1].clone(), Vec::new()),
        (msgs[2].clone(), named_name),
        (b"from a closed sender".to_vec(), gone_name),
    ];
    let got = drain(rx.as_fd());
    let sizes: Vec<usize> = got.iter().map(|m| m.0.len()).collect();
    c.same("sizes of the queued datagrams", &[10, 3000, 100_000, 20][..], &sizes);
    let senders: Vec<&[u8]> = got.iter().map(|m| m.1.as_slice()).collect();
    c.same("senders of the queued datagrams", &want.iter().map(|m| m.1.as_slice()).collect::<Vec<_>>(), &senders);
    c.check(got == want, || "the path-bound receiver's datagrams or their senders differ".into());
    let pair_b: Vec<_> = drain(pb.as_fd()).into_iter().map(|m| m.0).collect();
    c.same("socketpair a->b", &vec![b"one".to_vec(), Vec::new(), b"two!".to_vec()], &pair_b);
    let pair_a: Vec<_> = drain(pa.as_fd()).into_iter().map(|m| m.0).collect();
    c.same("socketpair b->a", &vec![pattern(4096, 9)], &pair_a);
    send(conn.as_fd(), b"after", None);
    let at_target: Vec<_> = drain(target.as_fd()).into_iter().map(|m| m.0).collect();
    c.same("connected socket's datagrams", &vec![b"before".to_vec(), b"after".to_vec()], &at_target);
    send(anon.as_fd(), b"again", Some(b"rel.sock"));
    let at_rel: Vec<_> = drain(rel.as_fd()).into_iter().map(|m| m.0).collect();
    c.same("relative-named socket's datagrams", &vec![b"to a relative name".to_vec(), b"again".to_vec()], &at_rel);
    let errno = |r: std::io::Result<usize>| r.err().and_then(|e| e.raw_os_error());
    c.same(
        "first send to a closed peer",
        &Some(libc::ECONNREFUSED),
        &errno(raw::send_msg(orphan.as_fd(), b"x", None, &[], None)),
    );
    c.same(
        "second send to a closed peer",
        &Some(libc::ENOTCONN),
        &errno(raw::send_msg(orphan.as_fd(), b"x", None, &[], None)),
    );
    s.finish()
}
