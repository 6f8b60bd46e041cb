//! Raw IP sockets for protocols nothing else on the host sends (253 and 254, RFC 3692's
//! experiment numbers): IPv4 bound to 127.0.0.1; IPv6 with IPV6_CHECKSUM 2 connected to ::1; an
//! ICMP raw socket whose ICMP_FILTER blocks every type (so nothing queues on it) with IP_TTL 9.
//!
//! After the wake each socket has the same addresses and options; a packet of protocol 253 sent
//! to 127.0.0.1 after the restore reaches the IPv4 socket.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const WATCHED: [(i32, i32); 5] = [
    (libc::IPPROTO_IP, libc::IP_TTL),
    (libc::IPPROTO_IP, libc::IP_HDRINCL),
    (libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM),
    (libc::SOL_SOCKET, libc::SO_PROTOCOL),
    (libc::SOL_SOCKET, libc::SO_TYPE),
];

fn addresses(fd: BorrowedFd<'_>) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let s = std::net::UdpSocket::from(fd.try_clone_to_owned().or_fail("dup"));
    (s.local_addr().ok(), s.peer_addr().ok())
}

fn state(fd: BorrowedFd<'_>) -> (Option<SocketAddr>, Option<SocketAddr>, Vec<Option<i32>>) {
    let (a, b) = addresses(fd);
    (a, b, WATCHED.iter().map(|&(l, o)| raw::get_opt_at(fd, l, o).ok()).collect())
}

fn main() {
    let mut s = workload::start();
    let v4 = raw::inet_socket(libc::AF_INET, libc::SOCK_RAW, 253).or_fail("socket");
    raw::bind_inet(v4.as_fd(), "127.0.0.1:0".parse().or_fail("address")).or_fail("bind");
    let v6 = raw::inet_socket(libc::AF_INET6, libc::SOCK_RAW, 254).or_fail("socket");
    raw::set_opt_at(v6.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, 2).or_fail("IPV6_CHECKSUM");
    raw::connect_inet(v6.as_fd(), "[::1]:0".parse().or_fail("address")).or_fail("connect");
    let icmp = raw::inet_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP).or_fail("socket");
    raw::set_opt_bytes(icmp.as_fd(), 255, 1, &u32::MAX.to_ne_bytes()).or_fail("ICMP_FILTER");
    raw::set_opt_at(icmp.as_fd(), libc::IPPROTO_IP, libc::IP_TTL, 9).or_fail("IP_TTL");
    let all: [&OwnedFd; 3] = [&v4, &v6, &icmp];
    let before: Vec<_> = all.iter().map(|f| state(f.as_fd())).collect();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for (i, (f, b)) in all.iter().zip(&before).enumerate() {
        c.same(&format!("raw socket {i}: addresses and options"), b, &state(f.as_fd()));
    }
    let sender = std::net::UdpSocket::from(raw::inet_socket(libc::AF_INET, libc::SOCK_RAW, 253).or_fail("socket"));
    c.ok("a packet of protocol 253", sender.send_to(b"raw after restore", "127.0.0.1:0"));
    let got = raw::poll_readable(v4.as_fd(), 30_000).unwrap_or(false);
    c.check(got, || "the IPv4 raw socket did not receive it within 30 s".into());
    s.finish()
}
