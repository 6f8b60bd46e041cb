//! Netlink sockets for the workloads: made, bound by port id and groups, their address and
//! memberships read back, a message sent to the kernel and one received.

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `socket(AF_NETLINK, ty, protocol)`, close-on-exec.
pub fn netlink_socket(ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    let fd = cvt(unsafe { libc::socket(libc::AF_NETLINK, ty | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn address(portid: u32, groups: u32) -> libc::sockaddr_nl {
    // SAFETY: plain data; zeroes are valid.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a.nl_pid = portid;
    a.nl_groups = groups;
    a
}

/// `bind(2)` to `portid` (0: the kernel's pick) and the group bitmap `groups`.
pub fn netlink_bind(fd: BorrowedFd<'_>, portid: u32, groups: u32) -> io::Result<()> {
    let a = address(portid, groups);
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `a` is a valid address of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_nl).cast(), len) }).map(drop)
}

/// `getsockname(2)`: (port id, group bitmap).
pub fn netlink_name(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut a = address(0, 0);
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `a` and `len` are valid for the kernel to write.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), (&mut a as *mut libc::sockaddr_nl).cast(), &mut len) })?;
    Ok((a.nl_pid, a.nl_groups))
}

/// `NETLINK_LIST_MEMBERSHIPS`: the first 64 groups' bitmap.
pub fn netlink_groups(fd: BorrowedFd<'_>) -> io::Result<[u32; 2]> {
    let mut words = [0u32; 2];
    let mut len = 8 as libc::socklen_t;
    // SAFETY: `words` holds `len` writable bytes.
    cvt(unsafe { libc::getsockopt(fd.as_raw_fd(), 270, 9, words.as_mut_ptr().cast(), &mut len) })?;
    Ok(words)
}

/// Ask the kernel for link `ifindex` (`RTM_GETLINK`) and return the type of the first reply
/// message (`RTM_NEWLINK`, 16) within 30 s.
pub fn rtm_getlink(fd: BorrowedFd<'_>, ifindex: i32) -> io::Result<u16> {
    rtm_getlink_send(fd, ifindex)?;
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd.
    if cvt(unsafe { libc::poll(&mut p, 1, 30_000) })? == 0 {
        return Err(io::ErrorKind::TimedOut.into());
    }
    let mut buf = vec![0u8; 64 << 10];
    // SAFETY: `buf` is live and of its length.
    let n = cvt(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) as i32 })?;
    if n < 16 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok(u16::from_ne_bytes([buf[4], buf[5]]))
}

/// Send `RTM_GETLINK` for link `ifindex`, without reading the reply.
pub fn rtm_getlink_send(fd: BorrowedFd<'_>, ifindex: i32) -> io::Result<()> {
    let mut req = Vec::with_capacity(32);
    req.extend_from_slice(&32u32.to_ne_bytes());
    req.extend_from_slice(&18u16.to_ne_bytes()); // RTM_GETLINK
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    req.extend_from_slice(&7u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg: family, pad, type, index, flags, change
    req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    req.extend_from_slice(&ifindex.to_ne_bytes());
    req.extend_from_slice(&[0; 8]);
    // SAFETY: `req` is live for the call.
    cvt(unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) as i32 }).map(drop)
}
