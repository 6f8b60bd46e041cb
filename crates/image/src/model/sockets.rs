//! Sockets (in `files.img`): unix, inet (with TCP connections), netlink and packet, and their
//! options.

use super::*;
use serde::Serialize;

/// A packet socket (`packet(7)`): its type, protocol, interface, fanout group, memberships and
/// options.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PacketSocket {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// `SOCK_RAW` (3) or `SOCK_DGRAM` (2).
    #[prost(uint32, tag = "2")]
    pub sock_type: u32,
    /// The protocol the socket was made with and the one it is bound to, in network byte order
    /// (`htons(ETH_P_ALL)` ...).
    #[prost(uint32, tag = "3")]
    pub protocol: u32,
    #[prost(uint32, tag = "4")]
    pub bound_protocol: u32,
    /// The bound interface, 0 for every interface.
    #[prost(int32, tag = "5")]
    pub ifindex: i32,
    /// `PACKET_FANOUT` as `getsockopt` reads it (id, type and flags), 0 for none.
    #[prost(uint32, tag = "6")]
    pub fanout: u32,
    /// `PACKET_ADD_MEMBERSHIP`s, as `packet_diag` lists them.
    #[prost(message, repeated, tag = "7")]
    pub memberships: Vec<PacketMembership>,
    /// Integer options by name (`PACKET_AUXDATA`, `PACKET_VERSION` ...).
    #[prost(message, repeated, tag = "8")]
    pub options: Vec<SockOpt>,
    #[prost(int32, tag = "9")]
    pub rcvbuf: i32,
    #[prost(int32, tag = "10")]
    pub sndbuf: i32,
    /// The socket-level (`SOL_SOCKET`) settings that are not integers: linger, timeouts, device,
    /// filter (absent in images made before them: nothing set).
    #[prost(message, optional, tag = "399")]
    pub socket: Option<SocketLevel>,
}

/// One `PACKET_ADD_MEMBERSHIP` of a packet socket.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PacketMembership {
    #[prost(uint32, tag = "1")]
    pub ifindex: u32,
    /// How many times it was added.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// `PACKET_MR_MULTICAST` (0), `PACKET_MR_PROMISC` (1), `PACKET_MR_ALLMULTI` (2), `PACKET_MR_UNICAST` (3).
    #[prost(uint32, tag = "3")]
    pub kind: u32,
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub address: Vec<u8>,
}

/// A netlink socket (`netlink(7)`): its protocol, port id, groups, default destination and options.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct NetlinkSocket {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// `SOCK_RAW` (3) or `SOCK_DGRAM` (2).
    #[prost(uint32, tag = "2")]
    pub sock_type: u32,
    /// `NETLINK_ROUTE` (0), `NETLINK_SOCK_DIAG` (4), `NETLINK_KOBJECT_UEVENT` (15) ...
    #[prost(uint32, tag = "3")]
    pub protocol: u32,
    /// The bound port id; 0 for a socket never bound (nor autobound by a send).
    #[prost(uint32, tag = "4")]
    pub portid: u32,
    /// Every group joined, by number (1 is the first).
    #[prost(uint32, repeated, tag = "5")]
    pub groups: Vec<u32>,
    /// The default destination set with `connect` (port id, group bitmap), 0 for none.
    #[prost(uint32, tag = "6")]
    pub dst_portid: u32,
    #[prost(uint32, tag = "7")]
    pub dst_groups: u32,
    /// Integer options by name (`NETLINK_EXT_ACK`, `SO_PASSCRED` ...), as `getsockopt` read them.
    #[prost(message, repeated, tag = "8")]
    pub options: Vec<SockOpt>,
    /// `SO_RCVBUF`, `SO_SNDBUF` as `getsockopt` reports them.
    #[prost(int32, tag = "9")]
    pub rcvbuf: i32,
    #[prost(int32, tag = "10")]
    pub sndbuf: i32,
    /// The socket-level settings that are not integers (see [`PacketSocket::socket`]).
    #[prost(message, optional, tag = "399")]
    pub socket: Option<SocketLevel>,
}

/// The socket-level (`SOL_SOCKET`) settings of a packet or netlink socket that are not integer
/// options (those are in the socket's `options`); an IP socket keeps the same in its own fields.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SocketLevel {
    /// `SO_LINGER`: -1 when off, else the seconds.
    #[prost(int32, tag = "1")]
    pub linger: i32,
    /// `SO_RCVTIMEO`, `SO_SNDTIMEO` in microseconds, 0 for none.
    #[prost(uint64, tag = "2")]
    pub rcvtimeo_us: u64,
    #[prost(uint64, tag = "3")]
    pub sndtimeo_us: u64,
    /// `SO_BINDTODEVICE`, empty for none.
    #[prost(string, tag = "4")]
    pub bound_device: String,
    /// The classic BPF program (`SO_ATTACH_FILTER`, read back with `SO_GET_FILTER`), 8 bytes per
    /// `struct sock_filter`; empty for none.
    #[prost(bytes = "vec", tag = "5")]
    #[serde(serialize_with = "hex_bytes")]
    pub filter: Vec<u8>,
    /// `SO_LOCK_FILTER`.
    #[prost(bool, tag = "6")]
    pub filter_locked: bool,
    /// Options that are not `int`s (`SO_TXTIME`, `SO_MAX_PACING_RATE`), by name, as read.
    #[prost(message, repeated, tag = "7")]
    pub bytes_options: Vec<SockOptBytes>,
}

/// One socket option whose value is not an `int`, as `getsockopt` returned it.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SockOptBytes {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "hex_bytes")]
    pub value: Vec<u8>,
}

/// A UNIX domain socket (`unix(7)`). Sockets refer to each other by their inode number at dump time
/// (`ino`, `peer`, `icons`); the messages queued on a socket are stored with it, the files in flight
/// in them as ids of other entries of `files.img`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct UnixSocket {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_SEQPACKET` (5).
    #[prost(uint32, tag = "2")]
    pub sock_type: u32,
    /// `TCP_ESTABLISHED` (1), `TCP_CLOSE` (7) or `TCP_LISTEN` (10), as `unix_diag` reports it.
    #[prost(uint32, tag = "3")]
    pub state: u32,
    /// The address: empty if unnamed, a leading NUL byte for an abstract name, else a path.
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub name: Vec<u8>,
    /// Inode of the peer (0: none, or a peer that is closed).
    #[prost(uint64, tag = "5")]
    pub peer: u64,
    /// The peer is outside the dumped tree (`--ext-unix-sk`): restore connects to `peer_name`.
    #[prost(bool, tag = "6")]
    pub external_peer: bool,
    #[prost(bytes = "vec", tag = "7")]
    #[serde(serialize_with = "hex_bytes")]
    pub peer_name: Vec<u8>,
    /// Listening socket: its backlog, and the inodes of the client sockets whose connections wait to
    /// be accepted, oldest first; 0 for a connection whose client was closed since.
    #[prost(uint32, tag = "8")]
    pub backlog: u32,
    #[prost(uint64, repeated, tag = "9")]
    pub icons: Vec<u64>,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2).
    #[prost(uint32, tag = "10")]
    pub shutdown: u32,
    /// The receive queue, oldest first.
    #[prost(message, repeated, tag = "11")]
    pub queue: Vec<UnixMessage>,
    #[prost(message, optional, tag = "12")]
    pub options: Option<SocketOptions>,
    /// A path name: the socket file's mode, owner and group, and whether it was still there at dump
    /// (a program may unlink it while the socket stays bound).
    #[prost(uint32, tag = "13")]
    pub path_mode: u32,
    #[prost(uint32, tag = "14")]
    pub path_uid: u32,
    #[prost(uint32, tag = "15")]
    pub path_gid: u32,
    #[prost(bool, tag = "16")]
    pub path_present: bool,
    /// A relative path name: the absolute directory it is relative to (found at dump as the working
    /// directory of the process holding the socket, checked against the socket file's inode).
    #[prost(string, tag = "17")]
    pub bind_dir: String,
}

/// An IPv4 or IPv6 TCP socket (`tcp(7)`): unbound, bound, listening or established; or a UDP or
/// UDP-Lite socket (`udp(7)`, `udplite(7)`): unbound, bound or connected (state 1). Addresses are
/// text (`127.0.0.1`, `::1`, `::ffff:127.0.0.1`); an unbound socket has port 0.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct InetSocket {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// `AF_INET` (2) or `AF_INET6` (10).
    #[prost(uint32, tag = "2")]
    pub family: u32,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_RAW` (3).
    #[prost(uint32, tag = "3")]
    pub sock_type: u32,
    /// `IPPROTO_TCP` (6), `IPPROTO_UDP` (17) or `IPPROTO_UDPLITE` (136); any for a raw socket.
    #[prost(uint32, tag = "4")]
    pub protocol: u32,
    /// `TCP_ESTABLISHED` (1), `TCP_CLOSE` (7) or `TCP_LISTEN` (10).
    #[prost(uint32, tag = "5")]
    pub state: u32,
    #[prost(string, tag = "6")]
    pub local_addr: String,
    #[prost(uint32, tag = "7")]
    pub local_port: u32,
    #[prost(string, tag = "8")]
    pub remote_addr: String,
    #[prost(uint32, tag = "9")]
    pub remote_port: u32,
    /// A listener's backlog (`listen(2)`).
    #[prost(uint32, tag = "10")]
    pub backlog: u32,
    /// Integer options by name (`SO_REUSEADDR`, `TCP_NODELAY`, `IPV6_V6ONLY`, ...), each as
    /// `getsockopt` read it; restore sets those that differ from a new socket's.
    #[prost(message, repeated, tag = "11")]
    pub options: Vec<SockOpt>,
    /// `SO_LINGER`: -1 when off, else the seconds.
    #[prost(int32, tag = "12")]
    pub linger: i32,
    /// `SO_RCVTIMEO`, `SO_SNDTIMEO` in microseconds, 0 for none.
    #[prost(uint64, tag = "13")]
    pub rcvtimeo_us: u64,
    #[prost(uint64, tag = "14")]
    pub sndtimeo_us: u64,
    /// `TCP_CONGESTION`.
    #[prost(string, tag = "15")]
    pub congestion: String,
    /// `SO_BINDTODEVICE`, empty for none.
    #[prost(string, tag = "16")]
    pub bound_device: String,
    /// `SO_RCVBUF`, `SO_SNDBUF` as `getsockopt` reports them (the kernel doubles what was set).
    #[prost(int32, tag = "17")]
    pub rcvbuf: i32,
    #[prost(int32, tag = "18")]
    pub sndbuf: i32,
    /// An established connection (`--tcp-established`): what `TCP_REPAIR` read.
    #[prost(message, optional, tag = "19")]
    pub tcp: Option<TcpConnection>,
    /// A UDP or UDP-Lite socket: the datagrams queued unread, oldest first.
    #[prost(message, repeated, tag = "350")]
    pub datagrams: Vec<Datagram>,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2), as `inet_diag` reports them.
    #[prost(uint32, tag = "351")]
    pub shutdown: u32,
    /// The classic BPF program attached with `SO_ATTACH_FILTER` (read back with `SO_GET_FILTER`),
    /// 8 bytes per `struct sock_filter`; empty for none.
    #[prost(bytes = "vec", tag = "352")]
    #[serde(serialize_with = "hex_bytes")]
    pub filter: Vec<u8>,
    /// `SO_LOCK_FILTER`: the filter cannot be changed.
    #[prost(bool, tag = "353")]
    pub filter_locked: bool,
    /// Multicast groups joined (UDP), each on its interface.
    #[prost(message, repeated, tag = "354")]
    pub memberships: Vec<Membership>,
    /// A raw ICMP socket's type filter (`ICMP_FILTER`, 4 bytes; `ICMPV6_FILTER`, 32 bytes).
    #[prost(bytes = "vec", tag = "355")]
    #[serde(serialize_with = "hex_bytes")]
    pub icmp_filter: Vec<u8>,
    /// Options that are not `int`s (`SO_TXTIME`, `SO_MAX_PACING_RATE`, `IP_LOCAL_PORT_RANGE`
    /// read whole), by name, as read.
    #[prost(message, repeated, tag = "399")]
    pub bytes_options: Vec<SockOptBytes>,
}

/// A multicast group a socket joined (`IP_ADD_MEMBERSHIP`, `MCAST_JOIN_GROUP` ...), with its
/// source filter (`MCAST_MSFILTER`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Membership {
    /// The group address, as text.
    #[prost(string, tag = "1")]
    pub group: String,
    /// The interface index.
    #[prost(uint32, tag = "2")]
    pub ifindex: u32,
    /// `MCAST_INCLUDE` (only `sources`) rather than `MCAST_EXCLUDE` (all but `sources`).
    #[prost(bool, tag = "3")]
    pub include: bool,
    #[prost(string, repeated, tag = "4")]
    pub sources: Vec<String>,
}

/// One datagram queued on a UDP or UDP-Lite socket, with its source.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Datagram {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    /// The source address (text, as `local_addr`) and port.
    #[prost(string, tag = "2")]
    pub source_addr: String,
    #[prost(uint32, tag = "3")]
    pub source_port: u32,
}

/// One integer socket option.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SockOpt {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "2")]
    pub value: i32,
}

/// The state of an established TCP connection, read in repair mode (`TCP_REPAIR`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TcpConnection {
    /// Sequence number of the first byte of `send_queue` (the oldest not acknowledged).
    #[prost(uint32, tag = "1")]
    pub send_seq: u32,
    /// Sequence number of the first byte of `recv_queue` (the oldest not read).
    #[prost(uint32, tag = "2")]
    pub recv_seq: u32,
    /// Written and not acknowledged, sent or not; the last `unsent` bytes were never sent.
    #[prost(bytes = "vec", tag = "3")]
    #[serde(serialize_with = "hex_bytes")]
    pub send_queue: Vec<u8>,
    #[prost(uint32, tag = "4")]
    pub unsent: u32,
    /// Received and not read.
    #[prost(bytes = "vec", tag = "5")]
    #[serde(serialize_with = "hex_bytes")]
    pub recv_queue: Vec<u8>,
    /// `TCP_MAXSEG` of the connection.
    #[prost(uint32, tag = "6")]
    pub mss: u32,
    /// Negotiated options (`tcpi_options`): window scaling with both scales, SACK, timestamps.
    #[prost(bool, tag = "7")]
    pub wscale_ok: bool,
    #[prost(uint32, tag = "8")]
    pub snd_wscale: u32,
    #[prost(uint32, tag = "9")]
    pub rcv_wscale: u32,
    #[prost(bool, tag = "10")]
    pub sack: bool,
    #[prost(bool, tag = "11")]
    pub timestamps: bool,
    /// `TCP_TIMESTAMP`: the connection's timestamp clock.
    #[prost(uint32, tag = "12")]
    pub timestamp: u32,
    /// `TCP_REPAIR_WINDOW`.
    #[prost(uint32, tag = "13")]
    pub snd_wl1: u32,
    #[prost(uint32, tag = "14")]
    pub snd_wnd: u32,
    #[prost(uint32, tag = "15")]
    pub max_window: u32,
    #[prost(uint32, tag = "16")]
    pub rcv_wnd: u32,
    #[prost(uint32, tag = "17")]
    pub rcv_wup: u32,
}

/// One message (datagram, seqpacket record, or run of stream bytes) in a socket's receive queue.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct UnixMessage {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    /// Files in flight with it (`SCM_RIGHTS`): ids in `files.img`.
    #[prost(uint32, repeated, tag = "2")]
    pub fds: Vec<u32>,
    /// Credentials attached to it (`SCM_CREDENTIALS`).
    #[prost(bool, tag = "3")]
    pub has_creds: bool,
    #[prost(int32, tag = "4")]
    pub pid: i32,
    #[prost(uint32, tag = "5")]
    pub uid: u32,
    #[prost(uint32, tag = "6")]
    pub gid: u32,
    /// The sender's address (datagrams).
    #[prost(bytes = "vec", tag = "7")]
    #[serde(serialize_with = "hex_bytes")]
    pub sender: Vec<u8>,
}

/// Socket options a program can read back (`socket(7)`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SocketOptions {
    /// As `getsockopt` reports them (the kernel doubles what was set).
    #[prost(int32, tag = "1")]
    pub rcvbuf: i32,
    #[prost(int32, tag = "2")]
    pub sndbuf: i32,
    #[prost(bool, tag = "3")]
    pub passcred: bool,
    /// -1 when disabled.
    #[prost(int32, tag = "4")]
    pub peek_off: i32,
    /// Microseconds, 0 for none.
    #[prost(uint64, tag = "5")]
    pub rcvtimeo_us: u64,
    #[prost(uint64, tag = "6")]
    pub sndtimeo_us: u64,
    #[prost(int32, tag = "7")]
    pub rcvlowat: i32,
    #[prost(int32, tag = "8")]
    pub priority: i32,
    #[prost(uint32, tag = "9")]
    pub mark: u32,
    #[prost(bool, tag = "10")]
    pub passsec: bool,
    #[prost(bool, tag = "11")]
    pub passpidfd: bool,
    /// The other integer `SOL_SOCKET` options by name, as read (`SO_BUF_LOCK`, `SO_TIMESTAMP`,
    /// `SO_KEEPALIVE`, `SO_BUSY_POLL` ...; not those above).
    #[prost(message, repeated, tag = "398")]
    pub options: Vec<SockOpt>,
    /// Linger, the options that are not integers, the filter (see [`PacketSocket::socket`]).
    #[prost(message, optional, tag = "399")]
    pub socket: Option<SocketLevel>,
}
