//! IPv4 and IPv6 sockets for the workloads: made with options set before `bind` (SO_REUSEPORT,
//! IPV6_V6ONLY), bound and listening by [`SocketAddr`], and `int`/`SO_LINGER` options at any level.

use super::cvt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A new TCP socket of `family` (`AF_INET`, `AF_INET6`), close-on-exec.
pub fn tcp_socket(family: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, libc::IPPROTO_TCP) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `bind(2)` to `addr`.
pub fn bind_inet(fd: BorrowedFd<'_>, addr: SocketAddr) -> io::Result<()> {
    let (s, len) = sockaddr(addr);
    // SAFETY: `s` holds a valid address of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&s as *const libc::sockaddr_storage).cast(), len as u32) }).map(drop)
}

/// `connect(2)` to `addr` (blocking).
pub fn connect_inet(fd: BorrowedFd<'_>, addr: SocketAddr) -> io::Result<()> {
    let (s, len) = sockaddr(addr);
    // SAFETY: `s` holds a valid address of `len` bytes.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&s as *const libc::sockaddr_storage).cast(), len as u32) }).map(drop)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, usize) {
    // SAFETY: sockaddr_storage is plain data; zeroes are valid.
    let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: the storage is big enough and aligned for a sockaddr_in.
            unsafe { std::ptr::write((&mut s as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: the storage is big enough and aligned for a sockaddr_in6.
            unsafe { std::ptr::write((&mut s as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (s, len)
}

/// `listen(2)`, and the socket as a std listener.
pub fn listen_inet(fd: OwnedFd, backlog: i32) -> io::Result<TcpListener> {
    // SAFETY: plain integers on an open fd.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(TcpListener::from(fd))
}

/// `getsockopt(2)` of an int option at `level`.
pub fn get_opt_at(fd: BorrowedFd<'_>, level: i32, opt: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for the kernel to write.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, (&mut v as *mut i32).cast(), &mut len) })?;
    Ok(v)
}

/// `setsockopt(2)` of an int option at `level`.
pub fn set_opt_at(fd: BorrowedFd<'_>, level: i32, opt: i32, v: i32) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a valid int of `len` bytes.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, (&v as *const i32).cast(), len) }).map(drop)
}

/// `SO_LINGER` as (on, seconds).
pub fn get_linger(fd: BorrowedFd<'_>) -> io::Result<(i32, i32)> {
    let mut l = libc::linger { l_onoff: 0, l_linger: 0 };
    let mut len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: `l` and `len` are valid for the kernel to write.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&mut l as *mut libc::linger).cast(),
            &mut len,
        )
    })?;
    Ok((l.l_onoff, l.l_linger))
}

/// Set `SO_LINGER` on, for `secs` seconds.
pub fn set_linger(fd: BorrowedFd<'_>, secs: i32) -> io::Result<()> {
    let l = libc::linger { l_onoff: 1, l_linger: secs };
    let len = std::mem::size_of::<libc::linger>() as libc::socklen_t;
    // SAFETY: `l` is a valid linger of `len` bytes.
    cvt(unsafe {
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_LINGER, (&l as *const libc::linger).cast(), len)
    })
    .map(drop)
}

/// A new socket of `family`, `ty` and `protocol` (UDP, UDP-Lite ...), close-on-exec.
pub fn inet_socket(family: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    let fd = cvt(unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `shutdown(2)` with `how`.
pub fn shutdown_inet(fd: BorrowedFd<'_>, how: i32) -> io::Result<()> {
    // SAFETY: plain integers on an open fd.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) }).map(drop)
}

/// `tcpi_state` of `TCP_INFO`: 1 established ... 11 closing (`include/net/tcp_states.h`).
pub fn tcp_state(fd: BorrowedFd<'_>) -> io::Result<u8> {
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` holds `len` writable bytes.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len)
    })?;
    Ok(info[0])
}

/// Waits up to `timeout_ms` for `fd` to become writable (a connect in progress completes); true if
/// it did.
pub fn poll_writable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: one live pollfd.
    let n = cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(n > 0 && p.revents & libc::POLLOUT != 0)
}

/// `SO_ATTACH_FILTER` of a classic BPF program.
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[libc::sock_filter]) -> io::Result<()> {
    let mut insns = prog.to_vec();
    let fprog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_mut_ptr() };
    let len = std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t;
    // SAFETY: `fprog` points to `insns`, live for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            len,
        )
    })
    .map(drop)
}

/// `SO_GET_FILTER`: the attached classic program as (code, jt, jf, k).
pub fn get_filter(fd: BorrowedFd<'_>) -> io::Result<Vec<(u16, u8, u8, u32)>> {
    let mut prog = [libc::sock_filter { code: 0, jt: 0, jf: 0, k: 0 }; 64];
    // The length is counted in instructions.
    let mut len = prog.len() as libc::socklen_t;
    // SAFETY: `prog` holds `len` instructions.
    cvt(unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, prog.as_mut_ptr().cast(), &mut len)
    })?;
    Ok(prog[..(len as usize).min(64)].iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
}

/// `setsockopt` of raw bytes.
pub fn set_opt_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is live for the call, of the length passed.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, value.as_ptr().cast(), value.len() as libc::socklen_t) })
        .map(drop)
}

/// `getsockopt` of at most `max` raw bytes: the bytes the kernel wrote.
pub fn get_opt_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, max: usize) -> io::Result<Vec<u8>> {
    let mut b = vec![0u8; max];
    let mut len = max as libc::socklen_t;
    // SAFETY: `b` holds `len` writable bytes.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, b.as_mut_ptr().cast(), &mut len) })?;
    b.truncate(len as usize);
    Ok(b)
}

/// `getsockopt(MCAST_MSFILTER)` of `group` on interface `ifindex`: (filter mode, source count);
/// fails with `EADDRNOTAVAIL` if the socket is not a member.
pub fn multicast_filter(
    fd: BorrowedFd<'_>,
    level: i32,
    ifindex: u32,
    group: std::net::IpAddr,
) -> io::Result<(u32, u32)> {
    let storage = std::mem::size_of::<libc::sockaddr_storage>();
    let mut b = vec![0u8; 144 + 4 * storage];
    b[0..4].copy_from_slice(&ifindex.to_ne_bytes());
    let (s, _) = sockaddr(SocketAddr::new(group, 0));
    // SAFETY: sockaddr_storage is plain data of `storage` bytes.
    let raw: [u8; 128] = unsafe { std::mem::transmute(s) };
    b[8..8 + storage].copy_from_slice(&raw);
    let mut len = b.len() as libc::socklen_t;
    // SAFETY: `b` holds `len` writable bytes laid out as a struct group_filter.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), level, 48, b.as_mut_ptr().cast(), &mut len) })?;
    let word = |at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    Ok((word(136), word(140)))
}
