//! IPv4 and IPv6 socket system calls: making, binding and connecting sockets by
//! [`std::net::SocketAddr`], reading their addresses back, options of any size, the queue-length
//! ioctls, and TCP repair mode (`TCP_REPAIR`, see `tcp(7)` and the kernel's
//! `Documentation/networking/tcp-repair` notes in `include/uapi/linux/tcp.h`).

use crate::{check, SysError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `TCP_REPAIR` and its companions (`include/uapi/linux/tcp.h`).
pub const TCP_REPAIR: i32 = 19;
pub const TCP_REPAIR_QUEUE: i32 = 20;
pub const TCP_QUEUE_SEQ: i32 = 21;
pub const TCP_REPAIR_OPTIONS: i32 = 22;
pub const TCP_TIMESTAMP: i32 = 24;
pub const TCP_REPAIR_WINDOW: i32 = 29;
/// `TCP_REPAIR` values.
pub const TCP_REPAIR_ON: i32 = 1;
pub const TCP_REPAIR_OFF: i32 = 0;
/// `TCP_REPAIR_QUEUE` values.
pub const TCP_RECV_QUEUE: i32 = 1;
pub const TCP_SEND_QUEUE: i32 = 2;
/// `TCP_REPAIR_OPTIONS` codes (TCP option kinds).
pub const TCPOPT_MSS: u32 = 2;
pub const TCPOPT_WINDOW: u32 = 3;
pub const TCPOPT_SACK_PERM: u32 = 4;
pub const TCPOPT_TIMESTAMP: u32 = 8;
/// `tcpi_options` bits.
pub const TCPI_OPT_TIMESTAMPS: u8 = 1;
pub const TCPI_OPT_SACK: u8 = 2;
pub const TCPI_OPT_WSCALE: u8 = 4;
/// `SIOCINQ`, `SIOCOUTQ`, `SIOCOUTQNSD` (`sockios.h`).
pub const SIOCINQ: u64 = 0x541B;
pub const SIOCOUTQ: u64 = 0x5411;
pub const SIOCOUTQNSD: u64 = 0x894B;

/// `socket(2)`: a new close-on-exec socket of `family` (`AF_INET`, `AF_INET6`), `ty` and `protocol`.
pub fn socket(family: i32, ty: i32, protocol: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, protocol) };
    let fd = check("socket", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A `sockaddr_in` or `sockaddr_in6` for `addr`, as raw storage and its length.
fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut s as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut s as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (s, len as libc::socklen_t)
}

/// The address in `s` (as the kernel filled it), if it is an IPv4 or IPv6 one.
fn from_sockaddr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read((s as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((s as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

/// `bind(2)` to `addr`.
pub fn bind(fd: BorrowedFd<'_>, addr: &SocketAddr) -> Result<(), SysError> {
    let (s, len) = sockaddr(addr);
    // SAFETY: `s` holds a valid address of `len` bytes.
    let ret = unsafe { libc::bind(fd.as_raw_fd(), (&s as *const libc::sockaddr_storage).cast(), len) };
    check("bind", ret as libc::c_long).map(drop)
}

/// `connect(2)` to `addr` (in TCP repair mode: no packet, the socket is established at once).
pub fn connect(fd: BorrowedFd<'_>, addr: &SocketAddr) -> Result<(), SysError> {
    let (s, len) = sockaddr(addr);
    // SAFETY: `s` holds a valid address of `len` bytes.
    let ret = unsafe { libc::connect(fd.as_raw_fd(), (&s as *const libc::sockaddr_storage).cast(), len) };
    check("connect", ret as libc::c_long).map(drop)
}

/// `getsockname(2)` (`peer` false) or `getpeername(2)` (`peer` true); `None` for a family other
/// than IPv4 and IPv6.
pub fn address(fd: BorrowedFd<'_>, peer: bool) -> Result<Option<SocketAddr>, SysError> {
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut s as *mut libc::sockaddr_storage).cast();
    // SAFETY: `s` and `len` are valid for the kernel to write an address and its size.
    let ret = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    };
    check(if peer { "getpeername" } else { "getsockname" }, ret as libc::c_long)?;
    Ok(from_sockaddr(&s))
}

/// `getsockopt(2)` of an option of at most `max` bytes: the bytes the kernel wrote.
pub fn get_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, max: usize) -> Result<Vec<u8>, SysError> {
    let mut buf = vec![0u8; max];
    let mut len = max as libc::socklen_t;
    // SAFETY: `buf` holds `len` writable bytes.
    let ret = unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, buf.as_mut_ptr().cast(), &mut len) };
    check("getsockopt", ret as libc::c_long)?;
    buf.truncate(len as usize);
    Ok(buf)
}

/// `setsockopt(2)` of an option given as bytes.
pub fn set_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, value: &[u8]) -> Result<(), SysError> {
    // SAFETY: `value` is a live buffer of the length passed.
    let ret =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, value.as_ptr().cast(), value.len() as libc::socklen_t) };
    check("setsockopt", ret as libc::c_long).map(drop)
}

/// `ioctl(2)` returning an `int` through its argument (`SIOCINQ`, `SIOCOUTQ`, `SIOCOUTQNSD`).
pub fn ioctl_int(fd: BorrowedFd<'_>, request: u64) -> Result<i32, SysError> {
    let mut v: libc::c_int = 0;
    // SAFETY: the requests used here write one int to the pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut v as *mut libc::c_int) };
    check("ioctl", ret as libc::c_long).map(|_| v)
}

/// `ioctl(SIOCGSKNS)`: an fd of the network namespace the socket `fd` belongs to.
pub fn socket_netns(fd: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    const SIOCGSKNS: u64 = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGSKNS as _) };
    let ns = check("ioctl(SIOCGSKNS)", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ns as i32) })
}

/// `recv(2)` with `MSG_PEEK | MSG_DONTWAIT` of up to `len` bytes, left in the queue. In TCP repair
/// mode the queue is the one `TCP_REPAIR_QUEUE` selects.
pub fn peek(fd: BorrowedFd<'_>, len: usize) -> Result<Vec<u8>, SysError> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    // SAFETY: `buf` holds `len` writable bytes.
    let ret = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    let n = check("recv(MSG_PEEK)", ret as libc::c_long)?;
    buf.truncate(n as usize);
    Ok(buf)
}

/// `send(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL` of all of `data` (in TCP repair mode: into the queue
/// `TCP_REPAIR_QUEUE` selects); fails with `EAGAIN` when the buffer is full.
pub fn send_all(fd: BorrowedFd<'_>, data: &[u8]) -> Result<(), SysError> {
    let mut done = 0;
    while done < data.len() {
        let rest = &data[done..];
        // SAFETY: `rest` is a live buffer of the length passed.
        let ret = unsafe {
            libc::send(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        done += check("send", ret as libc::c_long)? as usize;
    }
    Ok(())
}

/// The fields of `struct tcp_info` (`TCP_INFO`) a dump needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// `TCP_ESTABLISHED` (1) ... `TCP_LISTEN` (10), as in `include/net/tcp_states.h`.
    pub state: u8,
    /// `TCPI_OPT_*` bits.
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// For a listener: connections waiting to be accepted; otherwise packets not acknowledged.
    pub unacked: u32,
    /// For a listener: its backlog.
    pub sacked: u32,
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)`, its first 32 bytes (`tcpi_state` ... `tcpi_sacked`).
pub fn tcp_info(fd: BorrowedFd<'_>) -> Result<TcpInfo, SysError> {
    let b = get_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 32)?;
    if b.len() < 32 {
        return Err(SysError::from_errno("getsockopt(TCP_INFO)", libc::EPROTO));
    }
    let word = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    Ok(TcpInfo {
        state: b[0],
        options: b[5],
        snd_wscale: b[6] & 0xf,
        rcv_wscale: b[6] >> 4,
        unacked: word(24),
        sacked: word(28),
    })
}

/// `struct tcp_repair_window` (`TCP_REPAIR_WINDOW`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairWindow {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}

/// `getsockopt(TCP_REPAIR_WINDOW)`, in repair mode.
pub fn repair_window(fd: BorrowedFd<'_>) -> Result<RepairWindow, SysError> {
    let b = get_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, 20)?;
    if b.len() < 20 {
        return Err(SysError::from_errno("getsockopt(TCP_REPAIR_WINDOW)", libc::EPROTO));
    }
    let w = |i: usize| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    Ok(RepairWindow { snd_wl1: w(0), snd_wnd: w(1), max_window: w(2), rcv_wnd: w(3), rcv_wup: w(4) })
}

/// `setsockopt(TCP_REPAIR_WINDOW)`, in repair mode.
pub fn set_repair_window(fd: BorrowedFd<'_>, w: &RepairWindow) -> Result<(), SysError> {
    let words = [w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup];
    let bytes: Vec<u8> = words.iter().flat_map(|v| v.to_ne_bytes()).collect();
    set_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &bytes)
}

/// `setsockopt(TCP_REPAIR_OPTIONS)` with `(code, value)` pairs (`struct tcp_repair_opt`), in repair
/// mode on an established socket.
pub fn set_repair_options(fd: BorrowedFd<'_>, opts: &[(u32, u32)]) -> Result<(), SysError> {
    let bytes: Vec<u8> = opts.iter().flat_map(|(c, v)| c.to_ne_bytes().into_iter().chain(v.to_ne_bytes())).collect();
    set_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &bytes)
}

/// An address as the family it travels as: an IPv4-mapped IPv6 address is IPv4 on the wire.
pub fn wire_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A datagram peeked from a socket's receive queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub data: Vec<u8>,
    /// Its source, if IPv4 or IPv6.
    pub from: Option<SocketAddr>,
    /// Its full length (more than `data` holds when it did not fit).
    pub len: usize,
}

/// `recvmsg(2)` with `MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC` of the datagram at the socket's peek
/// offset (`SO_PEEK_OFF`: with it set, successive calls walk the queue), into a buffer of `max`
/// bytes, left in the queue; `None` when no more is queued.
pub fn peek_datagram(fd: BorrowedFd<'_>, max: usize) -> Result<Option<Datagram>, SysError> {
    let mut data = vec![0u8; max];
    // SAFETY: sockaddr_storage is plain data; all zeroes is a valid value.
    let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: max };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    // SAFETY: every pointer in `msg` points to a live buffer of the length it states.
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    let len = match check("recvmsg(MSG_PEEK)", ret as libc::c_long) {
        Err(e) if e.errno() == libc::EAGAIN => return Ok(None),
        Err(e) => return Err(e),
        Ok(n) => n as usize,
    };
    data.truncate(len.min(max));
    Ok(Some(Datagram { data, from: from_sockaddr(&from), len }))
}

/// `sendto(2)` with `MSG_DONTWAIT | MSG_NOSIGNAL` of `data` to `to` (for a raw socket the port is
/// not used); returns the bytes sent.
pub fn send_to(fd: BorrowedFd<'_>, data: &[u8], to: &SocketAddr) -> Result<usize, SysError> {
    let (s, len) = sockaddr(to);
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: `data` is a live buffer of its length; `s` holds a valid address of `len` bytes.
    let ret = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            flags,
            (&s as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    check("sendto", ret as libc::c_long).map(|n| n as usize)
}

/// `connect(2)` to `AF_UNSPEC`: a datagram socket forgets its peer.
pub fn disconnect(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    // SAFETY: sockaddr is plain data; all zeroes with AF_UNSPEC is a valid address.
    let mut s: libc::sockaddr = unsafe { std::mem::zeroed() };
    s.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
    // SAFETY: `s` is a valid address of `len` bytes.
    let ret = unsafe { libc::connect(fd.as_raw_fd(), &s, len) };
    check("connect(AF_UNSPEC)", ret as libc::c_long).map(drop)
}

/// `MCAST_JOIN_GROUP` and `MCAST_MSFILTER` (`linux/in.h`, the same numbers at `IPPROTO_IPV6`).
pub const MCAST_JOIN_GROUP: i32 = 42;
pub const MCAST_MSFILTER: i32 = 48;
/// `gf_fmode` values.
pub const MCAST_EXCLUDE: u32 = 0;
pub const MCAST_INCLUDE: u32 = 1;
/// Most sources of one membership read back.
const MAX_SOURCES: usize = 64;
/// `struct group_filter` up to `gf_slist` (interface, padding, group, mode, count).
const GROUP_FILTER_HEAD: usize = 144;
const STORAGE: usize = std::mem::size_of::<libc::sockaddr_storage>();

/// A multicast membership of a socket: its filter mode (`MCAST_INCLUDE`, `MCAST_EXCLUDE`) and
/// sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub mode: u32,
    pub sources: Vec<IpAddr>,
}

fn storage_bytes(ip: IpAddr) -> [u8; STORAGE] {
    let (s, _) = sockaddr(&SocketAddr::new(ip, 0));
    // SAFETY: sockaddr_storage is plain data of STORAGE bytes.
    unsafe { std::mem::transmute::<libc::sockaddr_storage, [u8; STORAGE]>(s) }
}

fn storage_ip(b: &[u8]) -> Option<IpAddr> {
    let b: [u8; STORAGE] = b.get(..STORAGE)?.try_into().ok()?;
    // SAFETY: any bytes are a valid sockaddr_storage (plain data).
    let s: libc::sockaddr_storage = unsafe { std::mem::transmute::<[u8; STORAGE], libc::sockaddr_storage>(b) };
    from_sockaddr(&s).map(|a| a.ip())
}

/// `struct group_filter` for `group` on interface `ifindex` with `mode` and `sources`, with room
/// for `room` sources.
fn group_filter(ifindex: u32, group: IpAddr, mode: u32, sources: &[IpAddr], room: usize) -> Vec<u8> {
    let mut b = vec![0u8; GROUP_FILTER_HEAD + STORAGE * room.max(1)];
    b[0..4].copy_from_slice(&ifindex.to_ne_bytes());
    b[8..8 + STORAGE].copy_from_slice(&storage_bytes(group));
    b[136..140].copy_from_slice(&mode.to_ne_bytes());
    b[140..144].copy_from_slice(&(sources.len() as u32).to_ne_bytes());
    for (i, s) in sources.iter().enumerate().take(room) {
        let at = GROUP_FILTER_HEAD + STORAGE * i;
        b[at..at + STORAGE].copy_from_slice(&storage_bytes(*s));
    }
    b
}

/// `getsockopt(level, MCAST_MSFILTER)` (`level` `IPPROTO_IP` for an IPv4 group, `IPPROTO_IPV6`
/// for an IPv6 one): the socket's membership of `group` on interface `ifindex`, `None` if it is
/// not a member (`EADDRNOTAVAIL`).
pub fn membership(fd: BorrowedFd<'_>, level: i32, ifindex: u32, group: IpAddr) -> Result<Option<Membership>, SysError> {
    let mut b = group_filter(ifindex, group, 0, &[], MAX_SOURCES);
    // On the way in, gf_numsrc is the room for sources.
    b[140..144].copy_from_slice(&(MAX_SOURCES as u32).to_ne_bytes());
    let mut len = b.len() as libc::socklen_t;
    // SAFETY: `b` holds `len` writable bytes, laid out as a struct group_filter.
    let ret = unsafe { libc::getsockopt(fd.as_raw_fd(), level, MCAST_MSFILTER, b.as_mut_ptr().cast(), &mut len) };
    match check("getsockopt(MCAST_MSFILTER)", ret as libc::c_long) {
        Err(e) if e.errno() == libc::EADDRNOTAVAIL || e.errno() == libc::ENODEV => return Ok(None),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    let word = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let count = word(140) as usize;
    if count > MAX_SOURCES {
        return Err(SysError::from_errno("getsockopt(MCAST_MSFILTER): too many sources", libc::E2BIG));
    }
    let sources = (0..count).filter_map(|i| storage_ip(&b[GROUP_FILTER_HEAD + STORAGE * i..])).collect();
    Ok(Some(Membership { mode: word(136), sources }))
}

/// `setsockopt(level, MCAST_JOIN_GROUP)`, then `MCAST_MSFILTER` if the membership is not the
/// plain one (exclude nothing).
pub fn join(fd: BorrowedFd<'_>, level: i32, ifindex: u32, group: IpAddr, m: &Membership) -> Result<(), SysError> {
    let mut req = vec![0u8; 8 + STORAGE];
    req[0..4].copy_from_slice(&ifindex.to_ne_bytes());
    req[8..].copy_from_slice(&storage_bytes(group));
    set_bytes(fd, level, MCAST_JOIN_GROUP, &req)?;
    if m.mode == MCAST_EXCLUDE && m.sources.is_empty() {
        return Ok(());
    }
    let b = group_filter(ifindex, group, m.mode, &m.sources, m.sources.len());
    let len = GROUP_FILTER_HEAD + STORAGE * m.sources.len();
    set_bytes(fd, level, MCAST_MSFILTER, &b[..len.max(GROUP_FILTER_HEAD)])
}
