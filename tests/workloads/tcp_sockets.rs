//! TCP sockets of every kind stasis restores, all on loopback, on ports the kernel picks.
//!
//! Listeners: IPv4 on 127.0.0.1 with SO_REUSEADDR, backlog 7, TCP_DEFER_ACCEPT and a small
//! SO_RCVBUF; IPv6-only on ::1; dual-stack on :: (IPV6_V6ONLY 0); two SO_REUSEPORT listeners on
//! one port. A bound socket that does not listen (TCP_NODELAY, SO_KEEPALIVE with TCP_KEEPIDLE,
//! TCP_KEEPINTVL, TCP_KEEPCNT, SO_LINGER 5 s, IP_TOS, SO_RCVTIMEO) and an unbound one (TCP_CORK,
//! TCP_MAXSEG). With argument `connections` (the dump needs `--tcp-established`), established
//! connections with both ends in the process: an IPv4 one with 17 and 11 bytes queued unread each
//! way, TCP_NODELAY and O_NONBLOCK on the client; an IPv6 one with TCP_MAXSEG 1400; and one whose server end (4 KiB
//! receive buffer) stopped reading while the client (16 KiB send buffer) wrote until its send buffer was full, so the
//! client's send queue holds bytes sent and never acknowledged, and bytes never sent.
//!
//! After the wake every socket has the same addresses and options; the listeners accept new
//! connections (the dual-stack one from IPv4 too), the bound socket can listen, the unbound one
//! is still unbound; each connection reads exactly what was queued, in order, then carries new bytes
//! both ways.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

const TCP: i32 = libc::IPPROTO_TCP;
const IP: i32 = libc::IPPROTO_IP;
const IP6: i32 = libc::IPPROTO_IPV6;
const SOL: i32 = libc::SOL_SOCKET;
/// Options compared before and after: (level, option).
const WATCHED: [(i32, i32); 17] = [
    (SOL, libc::SO_REUSEADDR),
    (SOL, libc::SO_REUSEPORT),
    (SOL, libc::SO_KEEPALIVE),
    (SOL, libc::SO_ACCEPTCONN),
    (SOL, libc::SO_TYPE),
    (TCP, libc::TCP_NODELAY),
    (TCP, libc::TCP_CORK),
    (TCP, libc::TCP_KEEPIDLE),
    (TCP, libc::TCP_KEEPINTVL),
    (TCP, libc::TCP_KEEPCNT),
    (TCP, libc::TCP_DEFER_ACCEPT),
    (TCP, libc::TCP_MAXSEG),
    (IP, libc::IP_TOS),
    (IP, libc::IP_TTL),
    (IP6, libc::IPV6_V6ONLY),
    (SOL, libc::SO_RCVLOWAT),
    // Which buffer sizes the program fixed (a size set by hand, or SO_BUF_LOCK): the others the
    // kernel tunes as the connection goes.
    (SOL, SO_BUF_LOCK),
];
/// `SO_BUF_LOCK` (Linux 5.14).
const SO_BUF_LOCK: i32 = 72;
/// Most bytes the full connection's client writes.
const FILL_LIMIT: usize = 64 << 20;

fn options(fd: BorrowedFd<'_>) -> Vec<(i32, i32, Option<i32>)> {
    let mut out: Vec<_> = WATCHED.iter().map(|&(l, o)| (l, o, raw::get_opt_at(fd, l, o).ok())).collect();
    out.push((SOL, libc::SO_LINGER, raw::get_linger(fd).ok().map(|(on, s)| on * 1000 + s)));
    out.push((
        SOL,
        libc::SO_RCVTIMEO,
        raw::get_timeout(fd, libc::SO_RCVTIMEO).ok().map(|(s, u)| (s * 1000 + u / 1000) as i32),
    ));
    out.push((0, 0, raw::get_fl(fd).ok().map(|f| f & libc::O_NONBLOCK)));
    out
}

fn addr(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    let l = TcpListener::from(fd.try_clone_to_owned().ok()?);
    l.local_addr().ok()
}

fn peer(s: &TcpStream) -> Option<SocketAddr> {
    s.peer_addr().ok()
}

fn listener(family: i32, at: &str, opts: &[(i32, i32, i32)], backlog: i32) -> TcpListener {
    let fd = raw::tcp_socket(family).or_fail("socket");
    for &(l, o, v) in opts {
        raw::set_opt_at(fd.as_fd(), l, o, v).or_fail("setsockopt");
    }
    raw::bind_inet(fd.as_fd(), at.parse().or_fail("address")).or_fail("bind");
    raw::listen_inet(fd, backlog).or_fail("listen")
}

/// A connected pair through `l`: (client, accepted).
fn pair(l: &TcpListener, to: SocketAddr) -> (TcpStream, TcpStream) {
    let c = TcpStream::connect(to).or_fail("connect");
    let (a, _) = l.accept().or_fail("accept");
    (c, a)
}

/// Read exactly `n` bytes within 30 s.
fn read_n(s: &mut TcpStream, n: usize) -> std::io::Result<Vec<u8>> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Write the pattern until the kernel takes no more (the peer does not read): the bytes written.
fn fill(c: &mut TcpStream) -> usize {
    c.set_nonblocking(true).or_fail("nonblocking");
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut idle = 0;
    while total < FILL_LIMIT && Instant::now() < deadline {
        let chunk = pattern_at(total, 64 << 10);
        match c.write(&chunk) {
            Ok(n) => {
                total += n;
                idle = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The window closes after a few round trips on loopback; three quiet tries in a row
                // (10 ms apart) mean the buffers are full.
                idle += 1;
                if idle == 3 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => Err::<(), _>(e).or_fail("write"),
        }
    }
    total
}

/// `len` bytes of a stream numbered from `start`: byte i is (i * 7 + i / 251) mod 256.
fn pattern_at(start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(|i| (i.wrapping_mul(7) + i / 251) as u8).collect()
}

struct Conns {
    v4: (TcpStream, TcpStream),
    v6: (TcpStream, TcpStream),
    full: (TcpStream, TcpStream),
    filled: usize,
    /// Whether SO_PEEK_OFF was set on the IPv4 server's end.
    peek_off: bool,
}

fn main() {
    let mut s = workload::start();
    let with_connections = workload::arg::<String>(1, "listen".into()) == "connections";
    let l4 = listener(
        libc::AF_INET,
        "127.0.0.1:0",
        &[(SOL, libc::SO_REUSEADDR, 1), (SOL, libc::SO_RCVBUF, 4096), (TCP, libc::TCP_DEFER_ACCEPT, 5)],
        7,
    );
    let l6 = listener(libc::AF_INET6, "[::1]:0", &[(IP6, libc::IPV6_V6ONLY, 1)], 16);
    let dual = listener(libc::AF_INET6, "[::]:0", &[(IP6, libc::IPV6_V6ONLY, 0)], 4);
    let rp1 = listener(libc::AF_INET, "127.0.0.1:0", &[(SOL, libc::SO_REUSEPORT, 1)], 8);
    let rp_at = rp1.local_addr().or_fail("addr");
    let rp2 = listener(libc::AF_INET, &rp_at.to_string(), &[(SOL, libc::SO_REUSEPORT, 1)], 9);
    let bound = raw::tcp_socket(libc::AF_INET).or_fail("socket");
    for (l, o, v) in [(TCP, libc::TCP_NODELAY, 1), (SOL, libc::SO_KEEPALIVE, 1), (TCP, libc::TCP_KEEPIDLE, 33)] {
        raw::set_opt_at(bound.as_fd(), l, o, v).or_fail("setsockopt");
    }
    for (l, o, v) in [(TCP, libc::TCP_KEEPINTVL, 7), (TCP, libc::TCP_KEEPCNT, 4), (IP, libc::IP_TOS, 0x10)] {
        raw::set_opt_at(bound.as_fd(), l, o, v).or_fail("setsockopt");
    }
    raw::set_linger(bound.as_fd(), 5).or_fail("SO_LINGER");
    raw::set_timeout(bound.as_fd(), libc::SO_RCVTIMEO, 2, 500_000).or_fail("SO_RCVTIMEO");
    raw::set_opt(bound.as_fd(), SO_BUF_LOCK, 2).or_fail("SO_BUF_LOCK");
    raw::bind_inet(bound.as_fd(), "127.0.0.1:0".parse().or_fail("addr")).or_fail("bind");
    let unbound = raw::tcp_socket(libc::AF_INET6).or_fail("socket");
    raw::set_opt_at(unbound.as_fd(), TCP, libc::TCP_CORK, 1).or_fail("TCP_CORK");
    raw::set_opt_at(unbound.as_fd(), TCP, libc::TCP_MAXSEG, 1200).or_fail("TCP_MAXSEG");
    let conns = with_connections.then(|| connections(&l4, &l6));
    let fds: Vec<BorrowedFd> =
        [l4.as_fd(), l6.as_fd(), dual.as_fd(), rp1.as_fd(), rp2.as_fd(), bound.as_fd(), unbound.as_fd()]
            .into_iter()
            .chain(conns.iter().flat_map(|c| [c.v4.0.as_fd(), c.v4.1.as_fd(), c.v6.0.as_fd(), c.v6.1.as_fd()]))
            .collect();
    let before: Vec<_> = fds.iter().map(|&f| (addr(f), options(f))).collect();
    let peers: Vec<_> =
        conns.iter().flat_map(|c| [peer(&c.v4.0), peer(&c.v4.1), peer(&c.v6.0), peer(&c.v6.1)]).collect();
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let after: Vec<_> = fds.iter().map(|&f| (addr(f), options(f))).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        // A connection's TCP_MAXSEG is the kernel's current segment size, which it bounds by half
        // the peer's window as it goes: compared only where the program set it (the IPv6 one).
        let varies = |o: &(i32, i32, Option<i32>)| (7..9).contains(&i) && (o.0, o.1) == (TCP, libc::TCP_MAXSEG);
        let keep = |v: &Vec<(i32, i32, Option<i32>)>| v.iter().filter(|o| !varies(o)).cloned().collect::<Vec<_>>();
        c.same(&format!("socket {i}: address and options"), &(b.0, keep(&b.1)), &(a.0, keep(&a.1)));
    }
    let peers_after: Vec<_> =
        conns.iter().flat_map(|c| [peer(&c.v4.0), peer(&c.v4.1), peer(&c.v6.0), peer(&c.v6.1)]).collect();
    c.same("peer addresses", &peers, &peers_after);
    check_listeners(c, &l4, &l6, &dual, &rp1, &rp2);
    check_bound(c, bound, unbound, &l4);
    if let Some(conns) = conns {
        check_connections(c, conns);
    }
    s.finish()
}

fn connections(l4: &TcpListener, l6: &TcpListener) -> Conns {
    let mut v4 = pair(l4, l4.local_addr().or_fail("addr"));
    v4.0.set_nodelay(true).or_fail("nodelay");
    v4.0.write_all(b"hello from client").or_fail("write");
    // TCP_DEFER_ACCEPT on l4: the connection was accepted once data arrived; the server's reply
    // waits unread in the client.
    v4.1.write_all(b"hello again").or_fail("write");
    v4.0.set_nonblocking(true).or_fail("nonblocking");
    // A small MSS (the kernel lets a program set at most 32767; loopback's is bigger).
    let c6 = raw::tcp_socket(libc::AF_INET6).or_fail("socket");
    raw::set_opt_at(c6.as_fd(), TCP, libc::TCP_MAXSEG, 1400).or_fail("TCP_MAXSEG");
    let c6 = TcpStream::from(c6);
    let mut v6 = (connect_raw(c6, l6.local_addr().or_fail("addr")), l6.accept().or_fail("accept").0);
    v6.0.write_all(b"six").or_fail("write");
    v6.1.write_all(b"ipv6 reply").or_fail("write");
    // A small send buffer keeps the stream short: it drains through l4's 4 KiB window.
    let cf = raw::tcp_socket(libc::AF_INET).or_fail("socket");
    raw::set_opt(cf.as_fd(), libc::SO_SNDBUF, 16384).or_fail("SO_SNDBUF");
    let mut full = (connect_raw(TcpStream::from(cf), l4.local_addr().or_fail("addr")), l4.accept().or_fail("accept").0);
    full.0.write_all(b"x").or_fail("write");
    let filled = 1 + fill(&mut full.0);
    // Give the kernel time to move what it can into the server's receive queue.
    std::thread::sleep(Duration::from_millis(50));
    wait_queued(&v4.1, 17);
    wait_queued(&v4.0, 11);
    wait_queued(&v6.1, 3);
    wait_queued(&v6.0, 10);
    // A peek offset past the first 6 queued bytes (SO_PEEK_OFF, which TCP has since Linux 6.10):
    // the dump must save the whole queue and leave the offset as it was.
    let peek_off = raw::set_opt(v4.1.as_fd(), libc::SO_PEEK_OFF, 0).is_ok();
    if peek_off {
        let mut first = [0u8; 6];
        v4.1.peek(&mut first).or_fail("peek with SO_PEEK_OFF");
    }
    Conns { v4, v6, full, filled, peek_off }
}

/// `connect(2)` of a socket made with options.
fn connect_raw(s: TcpStream, to: SocketAddr) -> TcpStream {
    raw::connect_inet(s.as_fd(), to).or_fail("connect");
    s
}

/// Wait (at most 5 s) until `n` bytes are readable on `s`.
fn wait_queued(s: &TcpStream, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; n];
    while s.peek(&mut buf).unwrap_or(0) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn accepts(l: &TcpListener, to: SocketAddr) -> std::io::Result<SocketAddr> {
    let _c = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    l.accept().map(|(_, from)| from)
}

fn check_listeners(
    c: &mut Checker,
    l4: &TcpListener,
    l6: &TcpListener,
    dual: &TcpListener,
    rp1: &TcpListener,
    rp2: &TcpListener,
) {
    let at = |l: &TcpListener| l.local_addr().or_fail("addr");
    // l4 defers accept until data arrives: send some.
    let mut cl = TcpStream::connect(at(l4));
    if let Ok(cl) = &mut cl {
        let _ = cl.write_all(b"?");
    }
    c.ok("the IPv4 listener accepts", l4.accept());
    c.ok("the IPv6-only listener accepts", accepts(l6, at(l6)));
    let port = at(dual).port();
    let from = c.ok("the dual-stack listener accepts IPv4", accepts(dual, SocketAddr::from(([127, 0, 0, 1], port))));
    c.check(from.is_none_or(|f| f.is_ipv6()), || format!("dual-stack peer {from:?} is not v4-mapped"));
    c.ok("the dual-stack listener accepts IPv6", accepts(dual, SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port))));
    c.same("SO_REUSEPORT listeners share a port", &at(rp1).port(), &at(rp2).port());
    for (i, l) in [rp1, rp2].iter().enumerate() {
        l.set_nonblocking(true).or_fail("nonblocking");
        c.same(
            &format!("reuseport listener {i} listens"),
            &Some(1),
            &raw::get_opt(l.as_fd(), libc::SO_ACCEPTCONN).ok(),
        );
    }
}

fn check_bound(c: &mut Checker, bound: OwnedFd, unbound: OwnedFd, l4: &TcpListener) {
    let at = addr(bound.as_fd());
    let l = raw::listen_inet(bound, 1);
    if let Some(l) = c.ok("the bound socket listens", l) {
        c.check(at.is_some_and(|a| a.port() != 0), || format!("bound socket address {at:?}"));
        if let Some(a) = at {
            c.ok("the bound socket accepts", accepts(&l, a));
        }
    }
    c.same("the unbound socket's port", &Some(0), &addr(unbound.as_fd()).map(|a| a.port()));
    c.ok("a new socket connects to the IPv4 listener", TcpStream::connect(l4.local_addr().or_fail("addr")));
}

fn check_connections(c: &mut Checker, conns: Conns) {
    let Conns { mut v4, mut v6, mut full, filled, peek_off } = conns;
    if peek_off {
        c.same("SO_PEEK_OFF of the IPv4 server", &Some(6), &raw::get_opt(v4.1.as_fd(), libc::SO_PEEK_OFF).ok());
        let mut rest = [0u8; 11];
        let n = v4.1.peek(&mut rest).ok();
        c.same("peeked at SO_PEEK_OFF", &Some(b"from client".to_vec()), &n.map(|n| rest[..n].to_vec()));
    }
    c.same("queued to the IPv4 server", &Some(b"hello from client".to_vec()), &read_n(&mut v4.1, 17).ok());
    c.same("queued to the IPv4 client", &Some(b"hello again".to_vec()), &read_n(&mut v4.0, 11).ok());
    c.same("queued to the IPv6 server", &Some(b"six".to_vec()), &read_n(&mut v6.1, 3).ok());
    c.same("queued to the IPv6 client", &Some(b"ipv6 reply".to_vec()), &read_n(&mut v6.0, 10).ok());
    for (name, (a, b)) in [("IPv4", &mut v4), ("IPv6", &mut v6)] {
        let sent = a.write_all(b"after restore").and_then(|()| b.write_all(b"and back"));
        c.ok(&format!("{name}: writes after the restore"), sent);
        c.same(&format!("{name}: new bytes to the server"), &Some(b"after restore".to_vec()), &read_n(b, 13).ok());
        c.same(&format!("{name}: new bytes to the client"), &Some(b"and back".to_vec()), &read_n(a, 8).ok());
    }
    let got = read_n(&mut full.1, filled);
    match got {
        Ok(bytes) => {
            c.same("first byte of the full connection", &b'x', &bytes[0]);
            let want = pattern_at(0, filled - 1);
            let bad = bytes[1..].iter().zip(&want).position(|(a, b)| a != b);
            c.check(bad.is_none(), || format!("full connection: byte {bad:?} of {filled} differs"));
        }
        Err(e) => c.check(false, || format!("full connection: reading its {filled} bytes: {e}")),
    }
    c.note(format!("full connection carried {filled} bytes"));
}
