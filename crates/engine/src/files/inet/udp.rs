//! UDP and UDP-Lite sockets over IPv4 and IPv6 (dual-stack included): unbound, bound and
//! connected, with their options, shutdown state and the datagrams queued unread.
//!
//! Dump reads the queue without consuming it: with `SO_PEEK_OFF` set on our copy of the socket,
//! each `MSG_PEEK` returns the next datagram and its source; the peek offset is put back as it was.
//! Data written but held back by `UDP_CORK` or `MSG_MORE` (the kernel keeps it in the socket until
//! the datagram is complete) cannot be read back: such a socket is refused by name. The shutdown
//! state comes from `inet_diag` (no `getsockopt` shows it).
//!
//! Restore makes the socket, sets its options, binds it, and queues its datagrams again before it
//! connects (a connected socket takes datagrams from its peer only): each is sent to the socket
//! through a raw socket (`IPPROTO_RAW`, IP header included) with its original source address and
//! port, so that no port needs to be free and the program reads the same sources; the restore
//! waits until each is queued (`SO_MEMINFO`) before it sends the next, and fails naming the
//! socket and the datagram if one is dropped. Then the
//! buffer sizes, the bound device, `connect`, and `shutdown`. What is lost: the datagrams' receive
//! timestamps, TTL and TOS (new ones), and their IP options. A zero-length datagram that was
//! peeked before the dump (by the program, or a dump that failed) is invisible to a walk by peek
//! offset (the kernel skips it, see `__skb_try_recv_from_queue`) and is not saved.

use super::*;
use crate::error::{Error, Result};
use crate::files::Probe;
use stasis_image::model::Datagram;
use stasis_sys::inet as net;
use stasis_sys::socket as sock;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// Most bytes of datagrams one socket may have queued in the image.
const MAX_QUEUED: usize = 16 << 20;
/// A buffer for any datagram (a UDP length field is 16 bits).
const MAX_DATAGRAM: usize = 65536;
/// How long a restore waits for a re-sent datagram to be queued (it crosses the loopback
/// device's backlog, normally within a millisecond).
const REQUEUE_WAIT: Duration = Duration::from_secs(10);
/// How long a dump waits for datagrams being sent to leave the socket before it calls what stays
/// held back (corked).
const CORK_WAIT: Duration = Duration::from_millis(200);

/// A UDP or UDP-Lite socket: `s` holds its family, type, protocol and local address.
pub(super) fn dump(p: &Probe, mut s: InetSocket) -> Result<InetSocket> {
    let f = p.file;
    match net::address(f, true) {
        Ok(Some(peer)) => {
            s.state = TCP_ESTABLISHED;
            s.remote_addr = peer.ip().to_string();
            s.remote_port = peer.port() as u32;
        }
        Ok(None) => return Err(p.unsupported(format!("{}: a peer of an unknown family", describe(&s)))),
        Err(e) if e.errno() == libc::ENOTCONN => s.state = TCP_CLOSE,
        Err(e) => return Err(Error::sys(p.pid.0, "reading a UDP socket's peer")(e)),
    }
    super::dump::read_options(p, &mut s)?;
    refuse_corked(p, &s)?;
    s.shutdown = shutdown_state(p, &s)?;
    s.datagrams = queued(p, &s)?;
    Ok(s)
}

/// Bytes written and held in the socket (`UDP_CORK`, `MSG_MORE`) make the dump fail by name.
fn refuse_corked(p: &Probe, s: &InetSocket) -> Result<()> {
    let deadline = Instant::now() + CORK_WAIT;
    loop {
        let held = net::ioctl_int(p.file, net::SIOCOUTQ).map_err(Error::sys(p.pid.0, "reading SIOCOUTQ"))?;
        if held == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            let what = format!(
                "{}: data written and not sent, held by UDP_CORK or MSG_MORE until its datagram is complete ({held} bytes of send buffer)",
                describe(s)
            );
            return Err(p.unsupported(what));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The socket's `RCV_SHUTDOWN`/`SEND_SHUTDOWN` bits, from `inet_diag`.
fn shutdown_state(p: &Probe, s: &InetSocket) -> Result<u32> {
    let all = stasis_sys::inet_diag::dump_all(s.family as i32, s.protocol as i32)
        .map_err(Error::sys(p.pid.0, "listing UDP sockets (inet_diag)"))?;
    match all.iter().find(|d| u64::from(d.ino) == s.ino) {
        Some(d) => Ok(u32::from(d.shutdown)),
        // An unbound socket is in no hash table, so inet_diag does not list it: taken as not
        // shut down (a program has no reason to shut down a socket it never used).
        None if s.local_port == 0 => Ok(0),
        None => Err(p.unsupported(format!("{}: not listed by inet_diag (another network namespace?)", describe(s)))),
    }
}

/// Every datagram queued on the socket, oldest first, left in the queue.
fn queued(p: &Probe, s: &InetSocket) -> Result<Vec<Datagram>> {
    let all = peek_all(p.file).map_err(Error::sys(p.pid.0, "peeking a UDP socket's queue"))?;
    let mut total = 0;
    let mut out = Vec::with_capacity(all.len());
    for d in all {
        total += d.data.len();
        let Some(from) = d.from.filter(|_| d.len == d.data.len() && total <= MAX_QUEUED) else {
            let what = format!("{}: a queued datagram of {} bytes could not be read whole", describe(s), d.len);
            return Err(p.unsupported(what));
        };
        out.push(Datagram { data: d.data, source_addr: from.ip().to_string(), source_port: from.port() as u32 });
    }
    Ok(out)
}

/// The queue, peeked datagram by datagram from peek offset 0, with the peek offset put back.
fn peek_all(f: BorrowedFd<'_>) -> std::result::Result<Vec<net::Datagram>, stasis_sys::SysError> {
    let was = sock::get_int(f, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    sock::set_int(f, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out = Vec::new();
    let walked = loop {
        match net::peek_datagram(f, MAX_DATAGRAM) {
            Ok(Some(d)) if out.len() < MAX_QUEUED => out.push(d),
            Ok(_) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    sock::set_int(f, libc::SOL_SOCKET, libc::SO_PEEK_OFF, was)?;
    walked.map(|()| out)
}

/// A UDP socket made again: options, `bind`, its datagrams queued again, buffers, device,
/// `connect`, `shutdown`.
pub(super) fn make(s: &InetSocket) -> Result<OwnedFd> {
    let fd = net::socket(s.family as i32, s.sock_type as i32, s.protocol as i32).map_err(fail(s, "making it"))?;
    let f = fd.as_fd();
    super::restore::set_options(s, f, &[])?;
    let here = local(s).ok_or_else(|| bad(s, "an address that does not parse"))?;
    if here.port() != 0 {
        net::bind(f, &here).map_err(fail(s, "binding it"))?;
    }
    requeue(s, f)?;
    super::restore::set_buffers(s, f)?;
    super::restore::set_device(s, f)?;
    if s.state == TCP_ESTABLISHED {
        let there = remote(s).ok_or_else(|| bad(s, "a peer address that does not parse"))?;
        net::connect(f, &there).map_err(fail(s, "connecting it"))?;
    }
    for (bit, how) in [(1, libc::SHUT_RD), (2, libc::SHUT_WR)] {
        if s.shutdown & bit != 0 {
            // An unconnected socket is shut down all the same, with ENOTCONN.
            match sock::shutdown(f, how) {
                Err(e) if e.errno() != libc::ENOTCONN => return Err(fail(s, "shutting it down")(e)),
                _ => {}
            }
        }
    }
    Ok(fd)
}

fn fail(s: &InetSocket, what: &str) -> impl FnOnce(stasis_sys::SysError) -> Error {
    let path = format!("{}: {what}", describe(s));
    move |e| Error::Io { path: format!("{path} ({})", e.call).into(), source: e.source }
}

fn bad(s: &InetSocket, what: &str) -> Error {
    Error::Incompatible { file: "files.img".into(), what: format!("{}: {what}", describe(s)) }
}

/// Send every datagram of the image to the socket from its source, one at a time, each once the
/// one before is queued (so that they queue in order whichever CPU carries them).
fn requeue(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    if s.datagrams.is_empty() {
        return Ok(());
    }
    let bytes: usize = s.datagrams.iter().map(|d| d.data.len() + 1024).sum();
    let room = (2 * bytes + (1 << 20)).min(i32::MAX as usize / 2) as i32;
    sock::set_int(f, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, room).map_err(fail(s, "making room for its datagrams"))?;
    let here = net::address(f, false).ok().flatten().ok_or_else(|| bad(s, "bound to no address"))?;
    let lite = s.protocol == libc::IPPROTO_UDPLITE as u32;
    for (i, d) in s.datagrams.iter().enumerate() {
        let from =
            addr(&d.source_addr, d.source_port).ok_or_else(|| bad(s, "a datagram source that does not parse"))?;
        let what = format!("re-sending datagram {} of {} (from {from})", i + 1, s.datagrams.len());
        let (to, packet) =
            packet(from, here, lite, &d.data).ok_or_else(|| bad(s, &format!("{what}: mixed families")))?;
        let family = if to.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        let before = receive_memory(f).map_err(fail(s, "reading SO_MEMINFO"))?;
        let raw = net::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(fail(s, &what))?;
        net::send_to(raw.as_fd(), &packet, &to).map_err(fail(s, &what))?;
        wait_queued(s, f, before, &what)?;
    }
    Ok(())
}

/// Wait until the socket's receive memory grows past `before` (the datagram is queued).
fn wait_queued(s: &InetSocket, f: BorrowedFd<'_>, before: u32, what: &str) -> Result<()> {
    let deadline = Instant::now() + REQUEUE_WAIT;
    while receive_memory(f).map_err(fail(s, "reading SO_MEMINFO"))? <= before {
        if Instant::now() > deadline {
            let why = format!("{what}: it was not queued (dropped by the kernel)");
            return Err(Error::Failed { pid: stasis_sys::Pid(0), what: format!("{}: {why}", describe(s)) });
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// `SK_MEMINFO_RMEM_ALLOC` of `SO_MEMINFO`: the memory the receive queue holds.
fn receive_memory(f: BorrowedFd<'_>) -> std::result::Result<u32, stasis_sys::SysError> {
    let b = net::get_bytes(f, libc::SOL_SOCKET, SO_MEMINFO, 4 * 9)?;
    Ok(b.get(..4).map_or(0, |w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
}

/// `SO_MEMINFO` (`asm-generic/socket.h`).
const SO_MEMINFO: i32 = 55;

/// The IP packet carrying `data` from `from` to the socket bound at `here` (the loopback address
/// if it is bound to any), and where to send it; `None` if the families cannot meet (an IPv4
/// source and an IPv6-only destination).
fn packet(from: SocketAddr, here: SocketAddr, lite: bool, data: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
    let src = net::wire_ip(from.ip());
    let dst = match (net::wire_ip(here.ip()), src) {
        (IpAddr::V6(a), IpAddr::V4(_)) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(a), IpAddr::V4(_)) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V6(a), IpAddr::V6(_)) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (d, _) => d,
    };
    let proto = if lite { libc::IPPROTO_UDPLITE } else { libc::IPPROTO_UDP } as u8;
    let udp_len = 8 + data.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&here.port().to_be_bytes());
    // UDP-Lite: a coverage of 0 is the whole datagram.
    udp.extend_from_slice(&(if lite { 0 } else { udp_len as u16 }).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    let mut out = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_header(s, d, proto, udp_len),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_header(s, d, proto, udp_len),
        _ => return None,
    };
    let sum = match checksum(&pseudo_header(src, dst, proto, udp_len), &udp) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&udp);
    Some((SocketAddr::new(dst, 0), out))
}

/// An IPv4 header (no options, don't fragment, TTL 64); the kernel fills in its checksum and id.
fn ipv4_header(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: usize) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// An IPv6 header (traffic class and flow label 0, hop limit 64).
fn ipv6_header(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, payload: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload as u16).to_be_bytes());
    h.extend_from_slice(&[proto, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// The pseudo-header the UDP checksum covers (RFC 768, RFC 8200 section 8.1).
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            p.extend_from_slice(&v6(s));
            p.extend_from_slice(&v6(d));
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p
}

/// The Internet checksum (RFC 1071) of `a` then `b` (`a` of even length).
fn checksum(a: &[u8], b: &[u8]) -> u16 {
    let words =
        |x: &[u8]| -> u64 { x.chunks(2).map(|c| u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0))).sum() };
    let mut sum = words(a) + words(b);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2, complemented 220d.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03], &[0xf4, 0xf5, 0xf6, 0xf7]), 0x220d);
    }

    #[test]
    fn a_packet_checksums_to_zero_over_its_pseudo_header() {
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let here: SocketAddr = "0.0.0.0:53".parse().unwrap();
        let (to, p) = packet(from, here, false, b"abc").expect("same family");
        assert_eq!(to, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
        assert_eq!(p.len(), 20 + 8 + 3);
        let pseudo = pseudo_header(from.ip(), to.ip(), 17, 11);
        assert_eq!(checksum(&pseudo, &p[20..]), 0);
        assert_eq!(&p[20..24], &[0x0f, 0xa0, 0, 53]);
    }

    #[test]
    fn a_v4_mapped_source_travels_as_ipv4_to_a_dual_stack_socket() {
        let from: SocketAddr = "[::ffff:127.0.0.1]:4000".parse().unwrap();
        let here: SocketAddr = "[::]:53".parse().unwrap();
        let (to, p) = packet(from, here, true, b"").expect("dual stack");
        assert!(to.is_ipv4());
        assert_eq!(p[9], libc::IPPROTO_UDPLITE as u8);
        assert_eq!(&p[24..26], &[0, 0], "full coverage");
        let v6only: SocketAddr = "[::1]:53".parse().unwrap();
        assert!(packet(from, v6only, false, b"").is_none());
    }
}
