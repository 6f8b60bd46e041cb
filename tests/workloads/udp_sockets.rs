//! UDP and UDP-Lite sockets of every kind stasis restores, on loopback, on ports the kernel picks.
//!
//! Receivers, each with datagrams queued unread: IPv4 on 127.0.0.1 (SO_BROADCAST, IP_TTL, IP_TOS,
//! SO_PRIORITY, IP_PKTINFO, SO_TIMESTAMPNS, IP_MULTICAST_TTL, a 64 KiB SO_RCVBUF), with datagrams
//! from a sender of the tree, from a socket closed since, and one of 40000 bytes; IPv6-only on ::1
//! (IPV6_UNICAST_HOPS, IPV6_RECVPKTINFO); dual-stack on :: with datagrams from IPv4 (a v4-mapped
//! source) and IPv6; one holding a single empty datagram; a connected one with a datagram that
//! came from another source before it connected; UDP-Lite over IPv4 (UDPLITE_RECV_CSCOV 20, from a
//! sender with partial coverage) and IPv6. Also: a connected socket shut down for writing, a bound
//! one shut down for reading, an unbound one with UDP_CORK set (no data), one with a classic BPF
//! filter (locked) that drops short datagrams, and sockets that joined multicast groups on `lo`
//! (IPv4, IPv4 from one source, IPv6).
//!
//! With argument `cork`: a socket that wrote bytes under UDP_CORK (the dump must refuse it); after
//! the wake it uncorks and the datagram arrives whole.
//!
//! After the wake every socket has the same addresses and options; each receiver reads exactly its
//! datagrams, in order, with their sources; the connected one still sends to and hears from its
//! peer only; the shut-down ones still refuse to send or poll readable with nothing queued; the corked one is unbound.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

const SOL: i32 = libc::SOL_SOCKET;
const IP: i32 = libc::IPPROTO_IP;
const IP6: i32 = libc::IPPROTO_IPV6;
const UDP: i32 = libc::IPPROTO_UDP;
const LITE: i32 = libc::IPPROTO_UDPLITE;
const UDPLITE_SEND_CSCOV: i32 = 10;
const UDPLITE_RECV_CSCOV: i32 = 11;
/// Options compared before and after: (level, option).
const WATCHED: [(i32, i32); 20] = [
    (SOL, libc::SO_TYPE),
    (SOL, libc::SO_PROTOCOL),
    (SOL, libc::SO_BROADCAST),
    (SOL, libc::SO_PRIORITY),
    (SOL, libc::SO_TIMESTAMPNS),
    (SOL, libc::SO_RCVBUF),
    (SOL, libc::SO_REUSEADDR),
    (SOL, libc::SO_PEEK_OFF),
    (IP, libc::IP_TTL),
    (IP, libc::IP_TOS),
    (IP, libc::IP_PKTINFO),
    (IP, libc::IP_MULTICAST_TTL),
    (IP, libc::IP_MULTICAST_LOOP),
    (IP6, libc::IPV6_V6ONLY),
    (IP6, libc::IPV6_UNICAST_HOPS),
    (IP6, libc::IPV6_RECVPKTINFO),
    (libc::SOL_UDP, libc::UDP_CORK),
    (LITE, UDPLITE_SEND_CSCOV),
    (LITE, UDPLITE_RECV_CSCOV),
    (SOL, libc::SO_ERROR),
];

/// `SO_LOCK_FILTER`.
const SO_LOCK_FILTER: i32 = 44;
/// A classic BPF filter passing datagrams of at least 3 bytes (8 of UDP header): `ld len; jge
/// #11, pass, drop; pass: ret #-1; drop: ret #0`.
const FILTER: [libc::sock_filter; 4] = [
    libc::sock_filter { code: 0x80, jt: 0, jf: 0, k: 0 },
    libc::sock_filter { code: 0x35, jt: 0, jf: 1, k: 11 },
    libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: u32::MAX },
    libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 },
];
const GROUP4: &str = "239.255.77.1";
const GROUP4_SOURCED: &str = "232.1.77.2";
const GROUP6: &str = "ff15::77";

/// A socket of `family` on any address that joined, on `lo` (interface 1): for IPv4 [`GROUP4`],
/// and [`GROUP4_SOURCED`] from 127.0.0.1 only; for IPv6 [`GROUP6`].
fn members(family: i32) -> UdpSocket {
    let any = if family == libc::AF_INET { "0.0.0.0:0" } else { "[::]:0" };
    let s = udp(family, UDP, Some(any), &[]);
    let ip4 = |a: &str| a.parse::<std::net::Ipv4Addr>().or_fail("group").octets();
    if family == libc::AF_INET {
        let mreqn = [&ip4(GROUP4)[..], &[0; 4], &1i32.to_ne_bytes()].concat();
        raw::set_opt_bytes(s.as_fd(), IP, libc::IP_ADD_MEMBERSHIP, &mreqn).or_fail("IP_ADD_MEMBERSHIP");
        let source = [&ip4(GROUP4_SOURCED)[..], &ip4("127.0.0.1"), &ip4("127.0.0.1")].concat();
        raw::set_opt_bytes(s.as_fd(), IP, libc::IP_ADD_SOURCE_MEMBERSHIP, &source).or_fail("IP_ADD_SOURCE_MEMBERSHIP");
    } else {
        let group = GROUP6.parse::<std::net::Ipv6Addr>().or_fail("group").octets();
        let mreq = [&group[..], &1u32.to_ne_bytes()].concat();
        raw::set_opt_bytes(s.as_fd(), IP6, libc::IPV6_ADD_MEMBERSHIP, &mreq).or_fail("IPV6_ADD_MEMBERSHIP");
    }
    s
}

fn options(fd: BorrowedFd<'_>) -> Vec<(i32, i32, Option<i32>)> {
    WATCHED.iter().map(|&(l, o)| (l, o, raw::get_opt_at(fd, l, o).ok())).collect()
}

/// A socket of `family` and `proto`, with `opts`, bound to `at` (unbound if `None`).
fn udp(family: i32, proto: i32, at: Option<&str>, opts: &[(i32, i32, i32)]) -> UdpSocket {
    let fd = raw::inet_socket(family, libc::SOCK_DGRAM, proto).or_fail("socket");
    for &(l, o, v) in opts {
        raw::set_opt_at(fd.as_fd(), l, o, v).or_fail("setsockopt");
    }
    if let Some(at) = at {
        raw::bind_inet(fd.as_fd(), at.parse().or_fail("address")).or_fail("bind");
    }
    UdpSocket::from(fd)
}

fn v4(proto: i32, opts: &[(i32, i32, i32)]) -> UdpSocket {
    udp(libc::AF_INET, proto, Some("127.0.0.1:0"), opts)
}

fn v6(proto: i32, opts: &[(i32, i32, i32)]) -> UdpSocket {
    udp(libc::AF_INET6, proto, Some("[::1]:0"), &[&[(IP6, libc::IPV6_V6ONLY, 1)], opts].concat())
}

fn at(s: &UdpSocket) -> SocketAddr {
    s.local_addr().or_fail("local address")
}

/// `len` bytes numbered from `seed`.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(7) + seed + i / 251) as u8).collect()
}

/// A receiver and the datagrams it should read: (data, source).
struct Expect {
    name: &'static str,
    sock: UdpSocket,
    queued: Vec<(Vec<u8>, SocketAddr)>,
}

impl Expect {
    fn new(name: &'static str, sock: UdpSocket) -> Expect {
        Expect { name, sock, queued: Vec::new() }
    }

    /// `from` sends `data` to this receiver (at `to`, or its own address).
    fn send(&mut self, from: &UdpSocket, data: &[u8], to: Option<SocketAddr>) {
        from.send_to(data, to.unwrap_or_else(|| at(&self.sock))).or_fail("send_to");
        let mut source = at(from);
        if self.sock.local_addr().is_ok_and(|a| a.is_ipv6()) && source.is_ipv4() {
            let SocketAddr::V4(a) = source else { unreachable!() };
            source = SocketAddr::new(a.ip().to_ipv6_mapped().into(), a.port());
        }
        self.queued.push((data.to_vec(), source));
    }

    /// Wait (at most 30 s) until every datagram is queued, counting without reading: a walk by
    /// peek offset (which an empty datagram would spoil: see `only_empty`).
    fn wait(&self) {
        let fd = self.sock.as_fd();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count(fd) < self.queued.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn check(&self, c: &mut Checker) {
        self.sock.set_nonblocking(true).or_fail("nonblocking");
        let mut buf = vec![0u8; 65536];
        for (i, (data, from)) in self.queued.iter().enumerate() {
            let got = self.sock.recv_from(&mut buf).map(|(n, f)| (buf[..n].to_vec(), f));
            let what = format!("{}: datagram {i}", self.name);
            if let Some((d, f)) = c.ok(&what, got) {
                c.check(d == *data, || format!("{what}: {} bytes, not the {} sent", d.len(), data.len()));
                c.same(&format!("{what} source"), from, &f);
            }
        }
        let more = self.sock.recv_from(&mut buf);
        c.check(more.is_err(), || format!("{}: an extra datagram {more:?}", self.name));
    }
}

/// The datagrams queued on `fd`, walked with `SO_PEEK_OFF` and put back to -1.
fn count(fd: BorrowedFd<'_>) -> usize {
    raw::set_opt_at(fd, SOL, libc::SO_PEEK_OFF, 0).or_fail("SO_PEEK_OFF");
    let s = UdpSocket::from(fd.try_clone_to_owned().or_fail("dup"));
    s.set_nonblocking(true).or_fail("nonblocking");
    let mut buf = vec![0u8; 65536];
    let mut n = 0;
    while s.peek_from(&mut buf).is_ok() {
        n += 1;
    }
    raw::set_opt_at(fd, SOL, libc::SO_PEEK_OFF, -1).or_fail("SO_PEEK_OFF");
    n
}

/// Wait (at most 30 s) until `fd` holds some receive memory (`SO_MEMINFO`), without peeking.
fn wait_memory(fd: BorrowedFd<'_>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while raw::get_opt_at(fd, SOL, 55).unwrap_or(0) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let mut s = workload::start();
    if workload::arg::<String>(1, String::new()) == "cork" {
        corked(s);
    }
    let s4 = v4(UDP, &[]);
    let s6 = v6(UDP, &[]);
    let gone = v4(UDP, &[]);
    let mut u4 = Expect::new(
        "ipv4",
        v4(
            UDP,
            &[
                (SOL, libc::SO_BROADCAST, 1),
                (IP, libc::IP_TTL, 33),
                (IP, libc::IP_TOS, 0x20),
                (SOL, libc::SO_PRIORITY, 3),
                (IP, libc::IP_PKTINFO, 1),
                (SOL, libc::SO_TIMESTAMPNS, 1),
                (IP, libc::IP_MULTICAST_TTL, 5),
                (SOL, libc::SO_RCVBUF, 65536),
            ],
        ),
    );
    u4.send(&s4, b"first", None);
    u4.send(&gone, b"from a socket closed since", None);
    u4.send(&s4, &pattern(4, 40000), None);
    let mut u6 = Expect::new("ipv6", v6(UDP, &[(IP6, libc::IPV6_UNICAST_HOPS, 7), (IP6, libc::IPV6_RECVPKTINFO, 1)]));
    u6.send(&s6, b"six", None);
    let mut dual = Expect::new("dual-stack", udp(libc::AF_INET6, UDP, Some("[::]:0"), &[(IP6, libc::IPV6_V6ONLY, 0)]));
    let port = at(&dual.sock).port();
    dual.send(&s4, b"four to dual", Some(SocketAddr::from(([127, 0, 0, 1], port))));
    dual.send(&s6, b"six to dual", Some(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port))));
    let mut empty = Expect::new("empty datagram", v4(UDP, &[]));
    empty.send(&s4, b"", None);
    let mut conn = Expect::new("connected", v4(UDP, &[]));
    conn.send(&gone, b"early, from another source", None);
    conn.wait();
    conn.sock.connect(at(&s4)).or_fail("connect");
    conn.send(&s4, b"late, from the peer", None);
    drop(gone);
    let mut lite = Expect::new("udplite", v4(LITE, &[(LITE, UDPLITE_RECV_CSCOV, 20)]));
    let lite_sender = v4(LITE, &[(LITE, UDPLITE_SEND_CSCOV, 20)]);
    lite.send(&lite_sender, b"a UDP-Lite datagram checksummed over its first 20 bytes", None);
    let mut lite6 = Expect::new("udplite6", v6(LITE, &[]));
    let lite6_sender = v6(LITE, &[]);
    lite6.send(&lite6_sender, b"lite six", None);
    let shut_wr = v4(UDP, &[]);
    shut_wr.connect(at(&s4)).or_fail("connect");
    raw::shutdown_inet(shut_wr.as_fd(), libc::SHUT_WR).or_fail("shutdown");
    let shut_rd = v4(UDP, &[]);
    // An unconnected socket is shut down all the same, with ENOTCONN.
    let _ = raw::shutdown_inet(shut_rd.as_fd(), libc::SHUT_RD);
    let corked = udp(libc::AF_INET, UDP, None, &[(libc::SOL_UDP, libc::UDP_CORK, 1)]);
    let filtered = v4(UDP, &[]);
    raw::attach_filter(filtered.as_fd(), &FILTER).or_fail("SO_ATTACH_FILTER");
    raw::set_opt_at(filtered.as_fd(), SOL, SO_LOCK_FILTER, 1).or_fail("SO_LOCK_FILTER");
    let (m4, m6) = (members(libc::AF_INET), members(libc::AF_INET6));
    let receivers = [&u4, &u6, &dual, &conn, &lite, &lite6];
    for r in receivers {
        r.wait();
    }
    wait_memory(empty.sock.as_fd());
    let all: Vec<&UdpSocket> = receivers
        .iter()
        .map(|r| &r.sock)
        .chain([&empty.sock, &s4, &s6, &lite_sender, &lite6_sender, &shut_wr, &shut_rd, &corked, &filtered, &m4, &m6])
        .collect();
    let state = |socks: &[&UdpSocket]| -> Vec<_> {
        socks.iter().map(|s| (s.local_addr().ok(), s.peer_addr().ok(), options(s.as_fd()))).collect()
    };
    let before = state(&all);
    let extras = |f: &UdpSocket, m4: &UdpSocket, m6: &UdpSocket| {
        let ips: Vec<std::net::IpAddr> =
            [GROUP4, GROUP4_SOURCED, GROUP6].iter().map(|g| g.parse().or_fail("group")).collect();
        let sock = [m4, m4, m6];
        let levels = [IP, IP, IP6];
        let groups: Vec<_> =
            (0..3).map(|i| raw::multicast_filter(sock[i].as_fd(), levels[i], 1, ips[i]).ok()).collect();
        (raw::get_filter(f.as_fd()).ok(), raw::get_opt_at(f.as_fd(), SOL, SO_LOCK_FILTER).ok(), groups)
    };
    let extras_before = extras(&filtered, &m4, &m6);
    if extras_before.2.iter().any(Option::is_none) {
        workload::skip(&format!("multicast memberships on lo cannot be read back: {:?}", extras_before.2));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let after = state(&all);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        c.same(&format!("socket {i}: addresses and options"), b, a);
    }
    c.same("socket filter, its lock, multicast memberships", &extras_before, &extras(&filtered, &m4, &m6));
    c.ok("a datagram the filter passes", s4.send_to(b"long enough", at(&filtered)));
    filtered.set_read_timeout(Some(Duration::from_secs(30))).or_fail("timeout");
    let mut buf = [0u8; 64];
    s4.send_to(b"ab", at(&filtered)).or_fail("send");
    s4.send_to(b"abcd", at(&filtered)).or_fail("send");
    let first = filtered.recv(&mut buf).map(|n| buf[..n].to_vec());
    c.same("the filter passes the long one", &Some(b"long enough".to_vec()), &first.ok());
    let second = filtered.recv(&mut buf).map(|n| buf[..n].to_vec());
    c.same("the filter drops the short one", &Some(b"abcd".to_vec()), &second.ok());
    for r in receivers.iter().chain([&&empty]) {
        r.check(c);
    }
    check_after(c, &conn.sock, &s4, &shut_wr, &shut_rd, &u4.sock);
    s.finish()
}

/// The restored sockets still carry traffic as they did.
fn check_after(
    c: &mut Checker,
    conn: &UdpSocket,
    s4: &UdpSocket,
    shut_wr: &UdpSocket,
    shut_rd: &UdpSocket,
    u4: &UdpSocket,
) {
    let mut buf = [0u8; 64];
    for s in [conn, s4] {
        s.set_read_timeout(Some(Duration::from_secs(30))).or_fail("timeout");
        s.set_nonblocking(false).or_fail("blocking");
    }
    c.ok("the connected socket sends to its peer", conn.send(b"to the peer"));
    let got = s4.recv_from(&mut buf).map(|(n, f)| (buf[..n].to_vec(), f));
    c.same("the peer hears it", &Some((b"to the peer".to_vec(), at(conn))), &got.ok());
    c.ok("the peer answers", s4.send_to(b"back", at(conn)));
    c.same(
        "the connected socket hears its peer",
        &Some(b"back".to_vec()),
        &conn.recv(&mut buf).ok().map(|n| buf[..n].to_vec()),
    );
    let sent = shut_wr.send(b"must fail").map_err(|e| e.raw_os_error());
    c.same("the socket shut down for writing refuses to send", &Err(Some(libc::EPIPE)), &sent.map(drop));
    // Nothing is queued on it: poll says readable only because reading is shut down.
    c.same(
        "the socket shut down for reading polls readable",
        &Some(true),
        &raw::poll_readable(shut_rd.as_fd(), 0).ok(),
    );
    c.ok("a new datagram reaches the IPv4 receiver", s4.send_to(b"new", at(u4)));
    u4.set_nonblocking(false).or_fail("blocking");
    u4.set_read_timeout(Some(Duration::from_secs(30))).or_fail("timeout");
    c.same("it reads the new one", &Some(b"new".to_vec()), &u4.recv(&mut buf).ok().map(|n| buf[..n].to_vec()));
}

/// A socket holding bytes under UDP_CORK: refused by the dump; after the wake the datagram is
/// sent whole.
fn corked(mut s: workload::Session) -> ! {
    let to = v4(UDP, &[]);
    let from = v4(UDP, &[(libc::SOL_UDP, libc::UDP_CORK, 1)]);
    from.send_to(b"held ", at(&to)).or_fail("send");
    from.send_to(b"back", at(&to)).or_fail("send");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    raw::set_opt_at(from.as_fd(), libc::SOL_UDP, libc::UDP_CORK, 0).or_fail("uncork");
    to.set_read_timeout(Some(Duration::from_secs(30))).or_fail("timeout");
    let mut buf = [0u8; 64];
    let got = to.recv_from(&mut buf).map(|(n, f)| (buf[..n].to_vec(), f));
    c.same("the corked datagram arrives whole", &Some((b"held back".to_vec(), at(&from))), &got.ok());
    s.finish()
}
