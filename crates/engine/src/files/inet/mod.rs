//! TCP sockets over IPv4 and IPv6 (dual-stack included): unbound, bound, listening, and connections
//! (with `--tcp-established`) established or half-closed (FIN-WAIT-1/2, CLOSE-WAIT, LAST-ACK,
//! CLOSING), with their integer options, linger, timeouts, congestion control and bound device;
//! UDP and UDP-Lite sockets ([`udp`]), raw sockets ([`raw`]) and ICMP ping sockets ([`ping`]).
//!
//! Dump ([`dump`]) reads a socket through our copy of it: `getsockname`/`getpeername`, `TCP_INFO`
//! (state, negotiated options, a listener's accept queue and backlog) and the options of [`OPTIONS`].
//! An established connection is first locked ([`crate::netlock`]), then put in repair mode
//! (`TCP_REPAIR`), and its sequence numbers, window, MSS, timestamp clock and both queues are read
//! without consuming them. It stays in repair mode, so that when the killed task closes it the
//! kernel sends nothing; a failed dump (or `--leave-running`) takes it out again ([`DumpState`]).
//!
//! Restore ([`restore`]) makes every socket in the controller before any process exists, listeners
//! and bound sockets first (an established connection shares its listener's port): options set
//! before `bind`, then `listen`; a connection in repair mode: bound, sequence numbers set,
//! `connect` (no packet), TCP options, timestamp clock, window, queues; then a half-closed one gets
//! its FINs back: the peer's sent to it as a packet from the peer ([`packet`]), ours queued with
//! `shutdown(SHUT_WR)` in repair mode (marked sent, not sent: the retransmission timer sends it
//! again if it was not acknowledged). [`Unfinished::finish`], once
//! every process exists, takes the connections out of repair mode and sends the bytes that had never
//! been sent.

mod dump;
mod membership;
mod packet;
mod ping;
mod raw;
mod restore;
mod udp;

pub use dump::{dump, is_inet, DumpState, Held};
pub use restore::{Established, Sockets, Unfinished};

use stasis_image::model::{InetSocket, SocketLevel};
use std::net::{IpAddr, SocketAddr};

const TCP_ESTABLISHED: u32 = 1;
const TCP_SYN_SENT: u32 = 2;
/// A handshake in progress on a listener, as `inet_diag` shows it.
const TCP_SYN_RECV: u8 = 3;
const TCP_FIN_WAIT1: u32 = 4;
const TCP_FIN_WAIT2: u32 = 5;
const TCP_CLOSE: u32 = 7;
const TCP_CLOSE_WAIT: u32 = 8;
const TCP_LAST_ACK: u32 = 9;
const TCP_LISTEN: u32 = 10;
const TCP_CLOSING: u32 = 11;

/// The states of a connection restored in repair mode (`--tcp-established`): established, and
/// half-closed or closing with one or both FINs.
fn is_connection(state: u32) -> bool {
    matches!(state, TCP_ESTABLISHED | TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING)
}

/// Our FIN was sent (`shutdown(SHUT_WR)` or `close`).
fn fin_sent(state: u32) -> bool {
    matches!(state, TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_LAST_ACK | TCP_CLOSING)
}

/// The peer's FIN was received.
fn peer_fin(state: u32) -> bool {
    matches!(state, TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING)
}

/// The integer options a dump reads and a restore sets (when a new socket's value differs), by
/// name: (name, level, option, only for sockets that are not connected), with the socket-level
/// ones of [`crate::files::sockopt`]. One table for TCP, UDP and raw sockets: an option of
/// another protocol's level fails with `ENOPROTOOPT` and is not recorded.
pub const OPTIONS: &[(&str, i32, i32, bool)] = &[
    ("TCP_NODELAY", libc::IPPROTO_TCP, libc::TCP_NODELAY, false),
    ("TCP_MAXSEG", libc::IPPROTO_TCP, libc::TCP_MAXSEG, true),
    ("TCP_CORK", libc::IPPROTO_TCP, libc::TCP_CORK, false),
    ("TCP_KEEPIDLE", libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, false),
    ("TCP_KEEPINTVL", libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, false),
    ("TCP_KEEPCNT", libc::IPPROTO_TCP, libc::TCP_KEEPCNT, false),
    ("TCP_SYNCNT", libc::IPPROTO_TCP, libc::TCP_SYNCNT, false),
    ("TCP_LINGER2", libc::IPPROTO_TCP, libc::TCP_LINGER2, false),
    ("TCP_DEFER_ACCEPT", libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, false),
    ("TCP_USER_TIMEOUT", libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, false),
    ("TCP_THIN_LINEAR_TIMEOUTS", libc::IPPROTO_TCP, libc::TCP_THIN_LINEAR_TIMEOUTS, false),
    ("TCP_FASTOPEN", libc::IPPROTO_TCP, libc::TCP_FASTOPEN, false),
    ("TCP_NOTSENT_LOWAT", libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, false),
    ("TCP_INQ", libc::IPPROTO_TCP, 36, false),
    ("IP_TOS", libc::IPPROTO_IP, libc::IP_TOS, false),
    ("IP_TTL", libc::IPPROTO_IP, libc::IP_TTL, false),
    ("IP_RECVERR", libc::IPPROTO_IP, libc::IP_RECVERR, false),
    ("IP_MTU_DISCOVER", libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, false),
    ("IP_FREEBIND", libc::IPPROTO_IP, libc::IP_FREEBIND, false),
    ("IP_TRANSPARENT", libc::IPPROTO_IP, libc::IP_TRANSPARENT, false),
    ("IP_BIND_ADDRESS_NO_PORT", libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, false),
    ("IPV6_V6ONLY", libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, false),
    ("IPV6_UNICAST_HOPS", libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, false),
    ("IPV6_TCLASS", libc::IPPROTO_IPV6, libc::IPV6_TCLASS, false),
    ("IPV6_RECVERR", libc::IPPROTO_IPV6, libc::IPV6_RECVERR, false),
    ("IPV6_MTU_DISCOVER", libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, false),
    ("IPV6_TRANSPARENT", libc::IPPROTO_IPV6, libc::IPV6_TRANSPARENT, false),
    ("IPV6_FREEBIND", libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, false),
    ("IP_PKTINFO", libc::IPPROTO_IP, libc::IP_PKTINFO, false),
    ("IP_RECVTTL", libc::IPPROTO_IP, libc::IP_RECVTTL, false),
    ("IP_RECVTOS", libc::IPPROTO_IP, libc::IP_RECVTOS, false),
    ("IP_RECVOPTS", libc::IPPROTO_IP, libc::IP_RECVOPTS, false),
    ("IP_MULTICAST_TTL", libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, false),
    ("IP_MULTICAST_LOOP", libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, false),
    ("IP_MULTICAST_ALL", libc::IPPROTO_IP, libc::IP_MULTICAST_ALL, false),
    ("IP_MULTICAST_IF", libc::IPPROTO_IP, libc::IP_MULTICAST_IF, false),
    ("IPV6_RECVPKTINFO", libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, false),
    ("IPV6_RECVHOPLIMIT", libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, false),
    ("IPV6_RECVTCLASS", libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS, false),
    ("IPV6_MULTICAST_HOPS", libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, false),
    ("IPV6_MULTICAST_LOOP", libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, false),
    ("IPV6_MULTICAST_IF", libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, false),
    ("IP_HDRINCL", libc::IPPROTO_IP, libc::IP_HDRINCL, false),
    ("IPV6_CHECKSUM", libc::IPPROTO_IPV6, libc::IPV6_CHECKSUM, false),
    ("IPV6_HDRINCL", libc::IPPROTO_IPV6, 36, false),
    ("UDP_CORK", libc::SOL_UDP, libc::UDP_CORK, false),
    ("UDP_NO_CHECK6_TX", libc::SOL_UDP, UDP_NO_CHECK6_TX, false),
    ("UDP_NO_CHECK6_RX", libc::SOL_UDP, UDP_NO_CHECK6_RX, false),
    ("UDP_SEGMENT", libc::SOL_UDP, UDP_SEGMENT, false),
    ("UDP_GRO", libc::SOL_UDP, UDP_GRO, false),
    ("UDPLITE_SEND_CSCOV", libc::IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, false),
    ("UDPLITE_RECV_CSCOV", libc::IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, false),
    ("UDP_ENCAP", libc::SOL_UDP, 100, false),
    ("TCP_WINDOW_CLAMP", libc::IPPROTO_TCP, libc::TCP_WINDOW_CLAMP, false),
    ("TCP_QUICKACK", libc::IPPROTO_TCP, libc::TCP_QUICKACK, false),
    ("TCP_SAVE_SYN", libc::IPPROTO_TCP, 27, false),
    ("TCP_FASTOPEN_CONNECT", libc::IPPROTO_TCP, 30, true),
    ("TCP_FASTOPEN_NO_COOKIE", libc::IPPROTO_TCP, 34, false),
    ("TCP_TX_DELAY", libc::IPPROTO_TCP, 37, false),
    ("TCP_RTO_MAX_MS", libc::IPPROTO_TCP, 44, false),
    ("TCP_RTO_MIN_US", libc::IPPROTO_TCP, 45, false),
    ("TCP_DELACK_MAX_US", libc::IPPROTO_TCP, 46, false),
    ("IP_RETOPTS", libc::IPPROTO_IP, 7, false),
    ("IP_PASSSEC", libc::IPPROTO_IP, 18, false),
    ("IP_RECVORIGDSTADDR", libc::IPPROTO_IP, 20, false),
    ("IP_MINTTL", libc::IPPROTO_IP, 21, false),
    ("IP_NODEFRAG", libc::IPPROTO_IP, 22, false),
    ("IP_CHECKSUM", libc::IPPROTO_IP, 23, false),
    ("IP_RECVFRAGSIZE", libc::IPPROTO_IP, 25, false),
    ("IP_RECVERR_RFC4884", libc::IPPROTO_IP, 26, false),
    ("IP_LOCAL_PORT_RANGE", libc::IPPROTO_IP, 51, false),
    ("IPV6_FLOWINFO", libc::IPPROTO_IPV6, 11, false),
    ("IPV6_MULTICAST_ALL", libc::IPPROTO_IPV6, 29, false),
    ("IPV6_RECVERR_RFC4884", libc::IPPROTO_IPV6, 31, false),
    ("IPV6_FLOWINFO_SEND", libc::IPPROTO_IPV6, 33, false),
    ("IPV6_RECVHOPOPTS", libc::IPPROTO_IPV6, 53, false),
    ("IPV6_RECVRTHDR", libc::IPPROTO_IPV6, 56, false),
    ("IPV6_RECVDSTOPTS", libc::IPPROTO_IPV6, 58, false),
    ("IPV6_RECVPATHMTU", libc::IPPROTO_IPV6, 60, false),
    ("IPV6_DONTFRAG", libc::IPPROTO_IPV6, 62, false),
    ("IPV6_AUTOFLOWLABEL", libc::IPPROTO_IPV6, 70, false),
    ("IPV6_ADDR_PREFERENCES", libc::IPPROTO_IPV6, 72, false),
    ("IPV6_MINHOPCOUNT", libc::IPPROTO_IPV6, 73, false),
    ("IPV6_RECVORIGDSTADDR", libc::IPPROTO_IPV6, 74, false),
    ("IPV6_RECVFRAGSIZE", libc::IPPROTO_IPV6, 77, false),
];

/// The socket-level settings of `s` that are not integer options (an IP socket keeps them in its
/// own fields, older than [`SocketLevel`]).
fn socket_level(s: &InetSocket) -> SocketLevel {
    SocketLevel {
        linger: s.linger,
        rcvtimeo_us: s.rcvtimeo_us,
        sndtimeo_us: s.sndtimeo_us,
        bound_device: s.bound_device.clone(),
        filter: s.filter.clone(),
        filter_locked: s.filter_locked,
        bytes_options: s.bytes_options.clone(),
    }
}

/// [`socket_level`] the other way.
fn put_socket_level(s: &mut InetSocket, l: SocketLevel) {
    s.linger = l.linger;
    s.rcvtimeo_us = l.rcvtimeo_us;
    s.sndtimeo_us = l.sndtimeo_us;
    s.bound_device = l.bound_device;
    s.filter = l.filter;
    s.filter_locked = l.filter_locked;
    s.bytes_options = l.bytes_options;
}

/// `linux/udp.h` options the libc crate does not name.
const UDP_NO_CHECK6_TX: i32 = 101;
const UDP_NO_CHECK6_RX: i32 = 102;
const UDP_SEGMENT: i32 = 103;
const UDP_GRO: i32 = 104;
const UDPLITE_SEND_CSCOV: i32 = 10;
const UDPLITE_RECV_CSCOV: i32 = 11;

/// The name of a TCP state (`include/net/tcp_states.h`), for messages.
fn state_name(state: u32) -> &'static str {
    const NAMES: [&str; 13] = [
        "unknown",
        "ESTABLISHED",
        "SYN-SENT",
        "SYN-RECV",
        "FIN-WAIT-1",
        "FIN-WAIT-2",
        "TIME-WAIT",
        "CLOSE",
        "CLOSE-WAIT",
        "LAST-ACK",
        "LISTEN",
        "CLOSING",
        "NEW-SYN-RECV",
    ];
    NAMES.get(state as usize).copied().unwrap_or("unknown")
}

/// `tcp`, `udp6`, `udplite`: the protocol and family of a socket, for messages.
fn kind_name(i: &InetSocket) -> String {
    let proto = match i.protocol as i32 {
        _ if is_raw(i) => "raw",
        _ if ping::is_ping(i) => "ping",
        libc::IPPROTO_UDP => "udp",
        libc::IPPROTO_UDPLITE => "udplite",
        _ => "tcp",
    };
    let six = if i.family == libc::AF_INET6 as u32 { "6" } else { "" };
    format!("{proto}{six}")
}

/// Whether an entry is a UDP or UDP-Lite socket.
fn is_udp(i: &InetSocket) -> bool {
    i.sock_type == libc::SOCK_DGRAM as u32
        && (i.protocol == libc::IPPROTO_UDP as u32 || i.protocol == libc::IPPROTO_UDPLITE as u32)
}

/// Whether an entry is a raw IP socket.
fn is_raw(i: &InetSocket) -> bool {
    i.sock_type == libc::SOCK_RAW as u32
}

/// Whether an entry is a TCP socket.
fn is_tcp(i: &InetSocket) -> bool {
    i.sock_type == libc::SOCK_STREAM as u32
}

/// `tcp socket:[N] 127.0.0.1:80` or `tcp6 socket:[N] [::1]:4000 -> [::1]:80`, for messages.
fn describe(i: &InetSocket) -> String {
    let kind = kind_name(i);
    let mut out = format!("{kind} socket socket:[{}] {}", i.ino, local(i).map_or("?".into(), |a| a.to_string()));
    if let Some(r) = remote(i) {
        out.push_str(&format!(" -> {r}"));
    }
    out
}

/// The connections of an image (established or closing), (local, remote), for the network lock.
pub fn connections(files: &[stasis_image::model::FileEntry]) -> Vec<crate::netlock::Conn> {
    files
        .iter()
        .filter_map(|f| match &f.kind {
            Some(stasis_image::model::FileKind::InetSocket(s)) if is_connection(s.state) && is_tcp(s) => {
                Some((local(s)?, remote(s)?))
            }
            _ => None,
        })
        .collect()
}

fn addr(ip: &str, port: u32) -> Option<SocketAddr> {
    Some(SocketAddr::new(ip.parse::<IpAddr>().ok()?, u16::try_from(port).ok()?))
}

fn local(i: &InetSocket) -> Option<SocketAddr> {
    addr(&i.local_addr, i.local_port)
}

fn remote(i: &InetSocket) -> Option<SocketAddr> {
    if i.remote_addr.is_empty() {
        return None;
    }
    addr(&i.remote_addr, i.remote_port)
}

/// TCP sockets, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "ip socket (tcp, udp, udplite, raw, ping)",
    dump: Some(super::kinds::Dumper {
        claims: |p| std::os::unix::fs::FileTypeExt::is_socket(&p.meta.file_type()) && is_inet(p.file),
        dump,
    }),
    configure: Some(|opts, ids| {
        let root = ids.root.0;
        let state = ids.state::<DumpState>();
        state.tcp_established = opts.tcp_established;
        state.skip_in_flight = opts.skip_in_flight;
        state.lock_mode = opts.network_lock;
        state.root = root;
    }),
    finish_dump: None,
    opener: Some(|files, settings| {
        let (sockets, unfinished) = Sockets::new(files, settings.tcp)?;
        Ok(Box::new(Opener { sockets, unfinished }))
    }),
    finish_restore: Some(|later, files, fds| match later.take::<Unfinished>() {
        Some(unfinished) => unfinished.finish(files, fds),
        None => Ok(()),
    }),
};

/// The restore's TCP and UDP sockets: made up front, with the TCP connections left in repair mode.
struct Opener {
    sockets: Sockets,
    unfinished: Unfinished,
}

impl super::kinds::Opener for Opener {
    fn open(&mut self, f: &stasis_image::model::FileEntry) -> Option<crate::error::Result<std::os::fd::OwnedFd>> {
        match &f.kind {
            Some(stasis_image::model::FileKind::InetSocket(s)) => Some(self.sockets.open(f.id, s, f.flags)),
            _ => None,
        }
    }

    fn inherited(&mut self, _: &stasis_image::model::FileEntry) {}

    fn opened(
        self: Box<Self>,
        _: &[stasis_image::model::FileEntry],
        _: &std::collections::HashMap<u32, std::os::fd::OwnedFd>,
        later: &mut super::kinds::Later,
    ) -> crate::error::Result<()> {
        later.unfinished.put(self.unfinished);
        Ok(())
    }
}
