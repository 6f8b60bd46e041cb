//! Packet sockets for the workloads: made, bound to an interface and protocol, read back, a frame
//! sent on an interface.

use super::cvt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `socket(AF_PACKET, ty, htons(protocol))`, close-on-exec.
pub fn packet_socket(ty: i32, protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    let fd = cvt(unsafe { libc::socket(libc::AF_PACKET, ty | libc::SOCK_CLOEXEC, i32::from(protocol.to_be())) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn address(ifindex: i32, protocol: u16) -> libc::sockaddr_ll {
    // SAFETY: plain data; zeroes are valid.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = protocol.to_be();
    a.sll_ifindex = ifindex;
    a
}

/// `bind(2)` to interface `ifindex` and `protocol`.
pub fn packet_bind(fd: BorrowedFd<'_>, ifindex: i32, protocol: u16) -> io::Result<()> {
    let a = address(ifindex, protocol);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `a` is a valid address of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_ll).cast(), len) }).map(drop)
}

/// `getsockname(2)`: (interface index, protocol).
pub fn packet_name(fd: BorrowedFd<'_>) -> io::Result<(i32, u16)> {
    let mut a = address(0, 0);
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `a` and `len` are valid for the kernel to write.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), (&mut a as *mut libc::sockaddr_ll).cast(), &mut len) })?;
    Ok((a.sll_ifindex, u16::from_be(a.sll_protocol)))
}

/// Send the Ethernet `frame` on interface `ifindex` (a `SOCK_RAW` packet socket).
pub fn packet_send(fd: BorrowedFd<'_>, ifindex: i32, protocol: u16, frame: &[u8]) -> io::Result<()> {
    let a = address(ifindex, protocol);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `frame` and `a` are live for the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&a as *const libc::sockaddr_ll).cast(),
            len,
        )
    };
    cvt(n as i32).map(drop)
}
