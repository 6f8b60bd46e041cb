//! Every option a program can set on a socket, table-driven, one mode per family: `packet`,
//! `netlink`, `tcp`, `tcp6` (listeners), `tcp-conn`, `tcp6-conn` (an established connection, its
//! listener and peer in the workload too: dump with `--tcp-established`), `tcp-close` (as
//! `tcp-conn`, restored with `--tcp-close`: the socket is closed, its options are back), `udp`, `udp6`,
//! `udplite`, `raw`, `raw6`.
//!
//! The workload makes one socket of the family, sets a value other than a new socket's for every
//! option of its tables (the socket-level ones, then its own levels; integers, and the options
//! that are not: linger, timeouts, `SO_TXTIME`, `SO_MAX_PACING_RATE`, a bound device, a locked
//! classic BPF filter, congestion control), and the file flags, owner and I/O signal of its
//! description. An option the kernel refuses for the kind (`ENOPROTOOPT`, `EOPNOTSUPP` ...) is
//! reported as an INFO line and left out; one that still reads as a new socket's value is noted.
//! After the wake it reads every option back: FAIL lists each mismatch by name.
//!
//! No traffic: the filter drops every packet (other tests' frames, pings or datagrams cannot
//! queue on the socket), the packet socket uses an ethertype of its own (0x88b6) and the raw
//! sockets protocol 254 (experimental).
//!
//! With argument `tcp-md5`: a listener holding a TCP-MD5 key (the dump must refuse it); after
//! the wake the key is still there.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const SOL_PACKET: i32 = 263;
const SOL_NETLINK: i32 = 270;
const PROTO: u16 = 0x88b6;

/// A value to set: an `int`, or bytes (read back as that many bytes).
#[derive(Clone)]
enum V {
    Int(i32),
    Bytes(Vec<u8>),
}

/// (name, level, option, value).
type Opt = (&'static str, i32, i32, V);

fn int(name: &'static str, level: i32, opt: i32, v: i32) -> Opt {
    (name, level, opt, V::Int(v))
}

fn words(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

fn words32(w: &[i32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// The socket-level options, in the order set (buffer sizes before `SO_BUF_LOCK`).
fn socket_level(dev: bool) -> Vec<Opt> {
    let s = libc::SOL_SOCKET;
    let mut v = vec![
        int("SO_REUSEADDR", s, libc::SO_REUSEADDR, 1),
        int("SO_REUSEPORT", s, libc::SO_REUSEPORT, 1),
        int("SO_KEEPALIVE", s, libc::SO_KEEPALIVE, 1),
        int("SO_OOBINLINE", s, libc::SO_OOBINLINE, 1),
        int("SO_MARK", s, libc::SO_MARK, 0x5a5),
        int("SO_RCVLOWAT", s, libc::SO_RCVLOWAT, 7),
        int("SO_DONTROUTE", s, libc::SO_DONTROUTE, 1),
        int("SO_BROADCAST", s, libc::SO_BROADCAST, 1),
        int("SO_PASSCRED", s, libc::SO_PASSCRED, 1),
        int("SO_PASSSEC", s, libc::SO_PASSSEC, 1),
        int("SO_TIMESTAMPNS", s, libc::SO_TIMESTAMPNS, 1),
        // SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE
        int("SO_TIMESTAMPING", s, libc::SO_TIMESTAMPING, 0x18),
        int("SO_RXQ_OVFL", s, libc::SO_RXQ_OVFL, 1),
        int("SO_WIFI_STATUS", s, 41, 1),
        int("SO_PEEK_OFF", s, 42, 0),
        int("SO_NOFCS", s, 43, 1),
        int("SO_SELECT_ERR_QUEUE", s, 45, 1),
        int("SO_BUSY_POLL", s, 46, 50),
        int("SO_INCOMING_CPU", s, 49, 0),
        int("SO_ZEROCOPY", s, 60, 1),
        int("SO_PREFER_BUSY_POLL", s, 69, 1),
        int("SO_BUSY_POLL_BUDGET", s, 70, 16),
        int("SO_TXREHASH", s, 74, 0),
        int("SO_RCVMARK", s, 75, 1),
        int("SO_RCVPRIORITY", s, 82, 1),
        int("SO_RCVBUF", s, libc::SO_RCVBUF, 70000),
        // Past net.core.wmem_max: only the FORCE variant sets it; read back as SO_SNDBUF.
        int("SO_SNDBUFFORCE", s, libc::SO_SNDBUFFORCE, 300000),
        // Receive size fixed, send size tuned by the kernel.
        int("SO_BUF_LOCK", s, 72, 2),
        // struct sock_txtime: CLOCK_MONOTONIC, SOF_TXTIME_REPORT_ERRORS
        ("SO_TXTIME", s, 61, V::Bytes(words32(&[1, 2]))),
        // Past 32 bits: an int read would clamp it.
        ("SO_MAX_PACING_RATE", s, 47, V::Bytes(words(&[5_000_000_000]))),
        ("SO_LINGER", s, libc::SO_LINGER, V::Bytes(words32(&[1, 3]))),
        ("SO_RCVTIMEO", s, libc::SO_RCVTIMEO, V::Bytes(words(&[1, 500_000]))),
        ("SO_SNDTIMEO", s, libc::SO_SNDTIMEO, V::Bytes(words(&[2, 250_000]))),
        // SO_PRIORITY after IP_TOS/IPV6_TCLASS (which may set it): see `main`.
    ];
    if dev {
        v.push(("SO_BINDTODEVICE", s, libc::SO_BINDTODEVICE, V::Bytes(b"lo\0".to_vec())));
    }
    v
}

fn ip_level() -> Vec<Opt> {
    let i = libc::IPPROTO_IP;
    vec![
        int("IP_TOS", i, libc::IP_TOS, 0x20),
        int("IP_TTL", i, libc::IP_TTL, 33),
        int("IP_RECVTTL", i, libc::IP_RECVTTL, 1),
        int("IP_RECVTOS", i, libc::IP_RECVTOS, 1),
        int("IP_PKTINFO", i, libc::IP_PKTINFO, 1),
        int("IP_RECVERR", i, libc::IP_RECVERR, 1),
        int("IP_MTU_DISCOVER", i, libc::IP_MTU_DISCOVER, 3),
        int("IP_FREEBIND", i, libc::IP_FREEBIND, 1),
        int("IP_TRANSPARENT", i, libc::IP_TRANSPARENT, 1),
        int("IP_BIND_ADDRESS_NO_PORT", i, libc::IP_BIND_ADDRESS_NO_PORT, 1),
        int("IP_LOCAL_PORT_RANGE", i, 51, 40000 | 50000 << 16),
        int("IP_MINTTL", i, 21, 5),
        int("IP_RECVOPTS", i, libc::IP_RECVOPTS, 1),
        int("IP_RETOPTS", i, 7, 1),
        int("IP_PASSSEC", i, 18, 1),
        int("IP_RECVORIGDSTADDR", i, 20, 1),
        int("IP_CHECKSUM", i, 23, 1),
        int("IP_RECVFRAGSIZE", i, 25, 1),
        int("IP_RECVERR_RFC4884", i, 26, 1),
    ]
}

fn ip_multicast() -> Vec<Opt> {
    let i = libc::IPPROTO_IP;
    vec![
        int("IP_MULTICAST_TTL", i, libc::IP_MULTICAST_TTL, 7),
        int("IP_MULTICAST_LOOP", i, libc::IP_MULTICAST_LOOP, 0),
        int("IP_MULTICAST_ALL", i, libc::IP_MULTICAST_ALL, 0),
        int("IP_MULTICAST_IF", i, libc::IP_MULTICAST_IF, i32::from_ne_bytes([127, 0, 0, 1])),
    ]
}

fn ipv6_level() -> Vec<Opt> {
    let i = libc::IPPROTO_IPV6;
    vec![
        int("IPV6_V6ONLY", i, libc::IPV6_V6ONLY, 1),
        int("IPV6_UNICAST_HOPS", i, libc::IPV6_UNICAST_HOPS, 33),
        int("IPV6_TCLASS", i, libc::IPV6_TCLASS, 0x20),
        int("IPV6_RECVERR", i, libc::IPV6_RECVERR, 1),
        int("IPV6_MTU_DISCOVER", i, libc::IPV6_MTU_DISCOVER, 3),
        int("IPV6_TRANSPARENT", i, libc::IPV6_TRANSPARENT, 1),
        int("IPV6_FREEBIND", i, libc::IPV6_FREEBIND, 1),
        int("IPV6_RECVPKTINFO", i, libc::IPV6_RECVPKTINFO, 1),
        int("IPV6_RECVHOPLIMIT", i, libc::IPV6_RECVHOPLIMIT, 1),
        int("IPV6_RECVTCLASS", i, libc::IPV6_RECVTCLASS, 1),
        int("IPV6_FLOWINFO", i, 11, 1),
        int("IPV6_FLOWINFO_SEND", i, 33, 1),
        int("IPV6_RECVERR_RFC4884", i, 31, 1),
        int("IPV6_RECVHOPOPTS", i, 53, 1),
        int("IPV6_RECVRTHDR", i, 56, 1),
        int("IPV6_RECVDSTOPTS", i, 58, 1),
        int("IPV6_RECVPATHMTU", i, 60, 1),
        int("IPV6_DONTFRAG", i, 62, 1),
        int("IPV6_AUTOFLOWLABEL", i, 70, 0),
        // IPV6_PREFER_SRC_TMP
        int("IPV6_ADDR_PREFERENCES", i, 72, 1),
        int("IPV6_MINHOPCOUNT", i, 73, 5),
        int("IPV6_RECVORIGDSTADDR", i, 74, 1),
        int("IPV6_RECVFRAGSIZE", i, 77, 1),
    ]
}

fn ipv6_multicast() -> Vec<Opt> {
    let i = libc::IPPROTO_IPV6;
    vec![
        int("IPV6_MULTICAST_HOPS", i, libc::IPV6_MULTICAST_HOPS, 7),
        int("IPV6_MULTICAST_LOOP", i, libc::IPV6_MULTICAST_LOOP, 0),
        int("IPV6_MULTICAST_ALL", i, 29, 0),
        int("IPV6_MULTICAST_IF", i, libc::IPV6_MULTICAST_IF, 1),
    ]
}

fn tcp_level() -> Vec<Opt> {
    let t = libc::IPPROTO_TCP;
    vec![
        int("TCP_NODELAY", t, libc::TCP_NODELAY, 1),
        int("TCP_MAXSEG", t, libc::TCP_MAXSEG, 1000),
        int("TCP_CORK", t, libc::TCP_CORK, 1),
        int("TCP_KEEPIDLE", t, libc::TCP_KEEPIDLE, 77),
        int("TCP_KEEPINTVL", t, libc::TCP_KEEPINTVL, 11),
        int("TCP_KEEPCNT", t, libc::TCP_KEEPCNT, 4),
        int("TCP_SYNCNT", t, libc::TCP_SYNCNT, 3),
        int("TCP_LINGER2", t, libc::TCP_LINGER2, 17),
        int("TCP_DEFER_ACCEPT", t, libc::TCP_DEFER_ACCEPT, 7),
        int("TCP_WINDOW_CLAMP", t, libc::TCP_WINDOW_CLAMP, 20000),
        int("TCP_QUICKACK", t, libc::TCP_QUICKACK, 0),
        int("TCP_USER_TIMEOUT", t, libc::TCP_USER_TIMEOUT, 12345),
        int("TCP_THIN_LINEAR_TIMEOUTS", t, libc::TCP_THIN_LINEAR_TIMEOUTS, 1),
        int("TCP_SAVE_SYN", t, 27, 1),
        int("TCP_FASTOPEN_CONNECT", t, 30, 1),
        int("TCP_FASTOPEN_NO_COOKIE", t, 34, 1),
        int("TCP_NOTSENT_LOWAT", t, libc::TCP_NOTSENT_LOWAT, 4096),
        int("TCP_INQ", t, 36, 1),
        int("TCP_TX_DELAY", t, 37, 100),
        int("TCP_FASTOPEN", t, libc::TCP_FASTOPEN, 5),
        ("TCP_CONGESTION", t, libc::TCP_CONGESTION, V::Bytes(b"reno".to_vec())),
    ]
}

fn udp_level(lite: bool) -> Vec<Opt> {
    let u = libc::SOL_UDP;
    let mut v = vec![
        int("UDP_CORK", u, libc::UDP_CORK, 1),
        // UDP_ENCAP_L2TPINUDP
        int("UDP_ENCAP", u, 100, 3),
        int("UDP_NO_CHECK6_TX", u, 101, 1),
        int("UDP_NO_CHECK6_RX", u, 102, 1),
        int("UDP_SEGMENT", u, 103, 1000),
        int("UDP_GRO", u, 104, 1),
    ];
    if lite {
        v.push(int("UDPLITE_SEND_CSCOV", libc::IPPROTO_UDPLITE, 10, 20));
        v.push(int("UDPLITE_RECV_CSCOV", libc::IPPROTO_UDPLITE, 11, 20));
    }
    v
}

fn packet_level() -> Vec<Opt> {
    let p = SOL_PACKET;
    vec![
        int("PACKET_AUXDATA", p, 8, 1),
        int("PACKET_ORIGDEV", p, 9, 1),
        int("PACKET_VERSION", p, 10, 1),
        int("PACKET_RESERVE", p, 12, 64),
        int("PACKET_LOSS", p, 14, 1),
        int("PACKET_VNET_HDR", p, 15, 1),
        int("PACKET_TIMESTAMP", p, 17, 1),
        int("PACKET_TX_HAS_OFF", p, 19, 1),
        int("PACKET_QDISC_BYPASS", p, 20, 1),
        int("PACKET_IGNORE_OUTGOING", p, 23, 1),
        int("PACKET_VNET_HDR_SZ", p, 24, 12),
    ]
}

fn netlink_level() -> Vec<Opt> {
    let n = SOL_NETLINK;
    vec![
        int("NETLINK_PKTINFO", n, 3, 1),
        int("NETLINK_BROADCAST_ERROR", n, 4, 1),
        int("NETLINK_NO_ENOBUFS", n, 5, 1),
        int("NETLINK_LISTEN_ALL_NSID", n, 8, 1),
        int("NETLINK_CAP_ACK", n, 10, 1),
        int("NETLINK_EXT_ACK", n, 11, 1),
        int("NETLINK_GET_STRICT_CHK", n, 12, 1),
    ]
}

/// How an option reads back: the name it is read under and the bytes to read.
fn read(fd: BorrowedFd<'_>, o: &Opt) -> Result<String, i32> {
    let (_, level, opt, v) = o;
    let opt = match *opt {
        libc::SO_SNDBUFFORCE => libc::SO_SNDBUF,
        libc::SO_RCVBUFFORCE => libc::SO_RCVBUF,
        x => x,
    };
    let r = match v {
        V::Int(_) => raw::get_opt_at(fd, *level, opt).map(|x| x.to_string()),
        V::Bytes(b) => raw::get_opt_bytes(fd, *level, opt, b.len().max(16))
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    };
    r.map_err(|e| e.raw_os_error().unwrap_or(0))
}

fn set(fd: BorrowedFd<'_>, o: &Opt) -> std::io::Result<()> {
    match &o.3 {
        V::Int(x) => raw::set_opt_at(fd, o.1, o.2, *x),
        V::Bytes(b) => raw::set_opt_bytes(fd, o.1, o.2, b),
    }
}

/// A filter that drops every packet: `ld #1; ret #0`.
const DROP_ALL: [libc::sock_filter; 2] =
    [libc::sock_filter { code: 0x00, jt: 0, jf: 0, k: 1 }, libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }];

fn make_tcp(family: i32) -> OwnedFd {
    raw::inet_socket(family, libc::SOCK_STREAM, 0).or_fail("socket")
}

/// The description's file flags, owner, I/O signal and close-on-exec flag.
fn fd_state(fd: BorrowedFd<'_>) -> String {
    let fl = raw::fcntl_int(fd, libc::F_GETFL, 0).map(|f| f & (libc::O_NONBLOCK | libc::O_ASYNC));
    let cloexec = raw::fcntl_int(fd, libc::F_GETFD, 0);
    format!(
        "flags {fl:?} owner {:?} signal {:?} fd flags {cloexec:?}",
        raw::get_owner(fd).ok(),
        raw::get_io_signal(fd).ok()
    )
}

/// A listener with a TCP-MD5 key for a peer (a dump must refuse it by name); after the wake the
/// key is still there (adding it again replaces it, deleting it works once).
fn md5(mut s: workload::Session) -> ! {
    let fd = raw::inet_socket(libc::AF_INET, libc::SOCK_STREAM, 0).or_fail("socket");
    let f = fd.as_fd();
    raw::bind_inet(f, "127.0.0.1:0".parse().unwrap()).or_fail("bind");
    raw::listen(f, 4).or_fail("listen");
    // struct tcp_md5sig: sockaddr_storage (AF_INET 127.0.0.2), flags, prefixlen, keylen, ifindex, key.
    let md5sig = |keylen: u16| {
        let mut b = vec![0u8; 216];
        b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        b[4..8].copy_from_slice(&[127, 0, 0, 2]);
        b[130..132].copy_from_slice(&keylen.to_ne_bytes());
        b[136..140].copy_from_slice(b"abcd");
        b
    };
    raw::set_opt_bytes(f, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &md5sig(4)).or_fail("TCP_MD5SIG");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let del = || raw::set_opt_bytes(f, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &md5sig(0));
    c.ok("the MD5 key is still there (deleted)", del());
    let again = del().map_err(|e| e.raw_os_error());
    c.same("deleting it again", &Err(Some(libc::ENOENT)), &again);
    s.finish()
}

fn main() {
    let mut s = workload::start();
    if workload::arg::<String>(1, String::new()) == "tcp-md5" {
        md5(s);
    }
    let known =
        "packet, netlink, tcp, tcp6, tcp-conn, tcp6-conn, tcp-close, udp, udp6, udplite, raw, raw6, unix, tcp-md5";
    let modes = [
        "packet",
        "netlink",
        "tcp",
        "tcp6",
        "tcp-conn",
        "tcp6-conn",
        "tcp-close",
        "udp",
        "udp6",
        "udplite",
        "raw",
        "raw6",
        "unix",
    ];
    let Some(mode) = workload::mode(1, &modes) else {
        workload::unknown_mode(&workload::arg::<String>(1, String::new()), known);
    };
    // `tcp-close`: a connection as `tcp-conn`, restored with `--tcp-close`.
    let (mode, closed) = if mode == "tcp-close" { ("tcp-conn", true) } else { (mode, false) };
    let (v4, v6) = (libc::AF_INET, libc::AF_INET6);
    let make = || -> OwnedFd {
        match mode {
            "packet" => raw::packet_socket(libc::SOCK_RAW, PROTO).or_fail("socket"),
            "netlink" => raw::netlink_socket(libc::SOCK_RAW, libc::NETLINK_ROUTE).or_fail("socket"),
            "tcp" | "tcp-conn" => raw::inet_socket(v4, libc::SOCK_STREAM, 0).or_fail("socket"),
            "tcp6" | "tcp6-conn" => raw::inet_socket(v6, libc::SOCK_STREAM, 0).or_fail("socket"),
            "udp" => raw::inet_socket(v4, libc::SOCK_DGRAM, 0).or_fail("socket"),
            "udp6" => raw::inet_socket(v6, libc::SOCK_DGRAM, 0).or_fail("socket"),
            "udplite" => raw::inet_socket(v4, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE).or_fail("socket"),
            "raw" => raw::inet_socket(v4, libc::SOCK_RAW, 254).or_fail("socket"),
            "unix" => raw::unix_socket(libc::SOCK_DGRAM).or_fail("socket"),
            _ => raw::inet_socket(v6, libc::SOCK_RAW, 254).or_fail("socket"),
        }
    };
    let fd = make();
    let f = fd.as_fd();
    // A connection: the socket connected to a listener of ours, its options set after.
    let _ends = mode.ends_with("-conn").then(|| {
        let at = if mode == "tcp-conn" { "127.0.0.1:0" } else { "[::1]:0" };
        let l = if mode == "tcp-conn" { make_tcp(v4) } else { make_tcp(v6) };
        raw::bind_inet(l.as_fd(), at.parse().unwrap()).or_fail("bind");
        let l = raw::listen_inet(l, 4).or_fail("listen");
        raw::connect_inet(f, l.local_addr().or_fail("getsockname")).or_fail("connect");
        let peer = l.accept().or_fail("accept");
        (l, peer)
    });
    raw::attach_filter(f, &DROP_ALL).or_fail("SO_ATTACH_FILTER");
    let mut table = socket_level(mode != "netlink" && mode != "unix");
    match mode {
        "packet" => table.extend(packet_level()),
        "netlink" => table.extend(netlink_level()),
        "unix" => {}
        "tcp" | "tcp-conn" => table.extend(ip_level().into_iter().chain(tcp_level())),
        "tcp6" | "tcp6-conn" => table.extend(ipv6_level().into_iter().chain(tcp_level())),
        "udp" => table.extend(ip_level().into_iter().chain(ip_multicast()).chain(udp_level(false))),
        "udplite" => table.extend(ip_level().into_iter().chain(ip_multicast()).chain(udp_level(true))),
        "udp6" => table.extend(ipv6_level().into_iter().chain(ipv6_multicast()).chain(udp_level(false))),
        "raw" => {
            table.extend(ip_level().into_iter().chain(ip_multicast()));
            table.push(int("IP_HDRINCL", libc::IPPROTO_IP, libc::IP_HDRINCL, 1));
            table.push(int("IP_NODEFRAG", libc::IPPROTO_IP, 22, 1));
        }
        _ => {
            table.extend(ipv6_level().into_iter().chain(ipv6_multicast()));
            table.push(int("IPV6_CHECKSUM", libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, 2));
            table.push(int("IPV6_HDRINCL", libc::IPPROTO_IPV6, 36, 1));
        }
    }
    table.push(int("SO_PRIORITY", libc::SOL_SOCKET, libc::SO_PRIORITY, 5));
    if mode.ends_with("-conn") {
        // A connection reads its current MSS as TCP_MAXSEG, which the kernel derives from the
        // path and, on loopback, from half the peer's window: the restore brings the negotiated
        // MSS back, and the current one follows at the next send.
        table.retain(|o| o.0 != "TCP_MAXSEG");
    }
    let fresh = make();
    let mut applied = Vec::new();
    for o in &table {
        match set(f, o) {
            Ok(()) => applied.push(o.clone()),
            Err(e) => s.checker.note(format!("{mode}: {} not settable here ({e})", o.0)),
        }
    }
    raw::set_opt_at(f, libc::SOL_SOCKET, 44, 1).or_fail("SO_LOCK_FILTER");
    // The address last (a packet socket's interface and protocol, a listener's port).
    match mode {
        "packet" => raw::packet_bind(f, 1, PROTO).or_fail("bind"),
        "netlink" => raw::netlink_bind(f, 0, 0).or_fail("bind"),
        "tcp" | "tcp6" => {
            let at = if mode == "tcp" { "127.0.0.1:0" } else { "[::1]:0" };
            raw::bind_inet(f, at.parse().unwrap()).or_fail("bind");
            raw::listen(f, 4).or_fail("listen");
        }
        "udp" | "udplite" => raw::bind_inet(f, "127.0.0.1:0".parse().unwrap()).or_fail("bind"),
        "udp6" => raw::bind_inet(f, "[::1]:0".parse().unwrap()).or_fail("bind"),
        _ => {}
    }
    raw::fcntl_int(f, libc::F_SETFL, libc::O_NONBLOCK | libc::O_ASYNC).or_fail("F_SETFL");
    raw::set_owner(f, 1, s.pid()).or_fail("F_SETOWN_EX");
    raw::set_io_signal(f, libc::SIGRTMIN() + 1).or_fail("F_SETSIG");
    raw::fcntl_int(f, libc::F_SETFD, 0).or_fail("F_SETFD");
    let before: Vec<_> = applied.iter().map(|o| read(f, o)).collect();
    for (o, b) in applied.iter().zip(&before) {
        if *b == read(fresh.as_fd(), o) {
            s.checker.note(format!("{mode}: {} reads as a new socket's value ({b:?})", o.0));
        }
    }
    drop(fresh);
    let filter_before = raw::get_filter(f).map_err(|e| e.raw_os_error());
    let fd_before = fd_state(f);
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let mut wrong = Vec::new();
    for (o, b) in applied.iter().zip(&before) {
        let now = read(f, o);
        if now != *b {
            wrong.push(format!("{} was {b:?}, now {now:?}", o.0));
        }
    }
    c.check(wrong.is_empty(), || format!("{mode} options: {}", wrong.join(", ")));
    c.same(&format!("{mode}: the filter"), &filter_before, &raw::get_filter(f).map_err(|e| e.raw_os_error()));
    c.same(&format!("{mode}: SO_LOCK_FILTER"), &Ok(1), &raw::get_opt_at(f, libc::SOL_SOCKET, 44).map_err(|e| e.kind()));
    c.same(&format!("{mode}: the description"), &fd_before, &fd_state(f));
    if closed {
        c.same("the connection, restored closed: TCP state", &Ok(7), &raw::tcp_state(f).map_err(|e| e.kind()));
    }
    s.finish()
}
