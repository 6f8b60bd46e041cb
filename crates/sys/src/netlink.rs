//! Netlink sockets (`netlink(7)`): making, binding and connecting them by port id and groups,
//! reading their addresses back, and their group memberships (`NETLINK_LIST_MEMBERSHIPS`, all
//! groups, where the address holds only the first 32).

use crate::{check, SysError};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SOL_NETLINK` and its options (`linux/netlink.h`).
pub const SOL_NETLINK: i32 = 270;
pub const NETLINK_ADD_MEMBERSHIP: i32 = 1;
pub const NETLINK_LIST_MEMBERSHIPS: i32 = 9;
/// Most groups a socket is asked about (a bitmap of this many bits).
const MAX_GROUPS: usize = 1024;

/// `socket(AF_NETLINK, ty, protocol)`, close-on-exec.
pub fn socket(ty: i32, protocol: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::socket(libc::AF_NETLINK, ty | libc::SOCK_CLOEXEC, protocol) };
    let fd = check("socket(AF_NETLINK)", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn address(portid: u32, groups: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all zeroes is a valid value.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a.nl_pid = portid;
    a.nl_groups = groups;
    a
}

/// `bind(2)` to port id `portid` (0: the kernel picks one) and the first 32 `groups` (a bitmap).
pub fn bind(fd: BorrowedFd<'_>, portid: u32, groups: u32) -> Result<(), SysError> {
    let a = address(portid, groups);
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `a` is a valid sockaddr_nl of `len` bytes.
    let ret = unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_nl).cast(), len) };
    check("bind(AF_NETLINK)", ret as libc::c_long).map(drop)
}

/// `connect(2)`: the default destination, a port id and a group.
pub fn connect(fd: BorrowedFd<'_>, portid: u32, groups: u32) -> Result<(), SysError> {
    let a = address(portid, groups);
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `a` is a valid sockaddr_nl of `len` bytes.
    let ret = unsafe { libc::connect(fd.as_raw_fd(), (&a as *const libc::sockaddr_nl).cast(), len) };
    check("connect(AF_NETLINK)", ret as libc::c_long).map(drop)
}

/// `getsockname(2)` (`peer` false) or `getpeername(2)`: (port id, first 32 groups).
pub fn name(fd: BorrowedFd<'_>, peer: bool) -> Result<(u32, u32), SysError> {
    let mut a = address(0, 0);
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    let p = (&mut a as *mut libc::sockaddr_nl).cast();
    // SAFETY: `a` and `len` are valid for the kernel to write a sockaddr_nl and its size.
    let ret = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    };
    check(if peer { "getpeername(AF_NETLINK)" } else { "getsockname(AF_NETLINK)" }, ret as libc::c_long)?;
    Ok((a.nl_pid, a.nl_groups))
}

/// `getsockopt(NETLINK_LIST_MEMBERSHIPS)`: every group joined, by number (1 is the first).
pub fn memberships(fd: BorrowedFd<'_>) -> Result<Vec<u32>, SysError> {
    let mut words = vec![0u32; MAX_GROUPS / 32];
    let mut len = (words.len() * 4) as libc::socklen_t;
    // SAFETY: `words` holds `len` writable bytes.
    let ret = unsafe {
        libc::getsockopt(fd.as_raw_fd(), SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words.as_mut_ptr().cast(), &mut len)
    };
    check("getsockopt(NETLINK_LIST_MEMBERSHIPS)", ret as libc::c_long)?;
    if len as usize > words.len() * 4 {
        return Err(SysError::from_errno("getsockopt(NETLINK_LIST_MEMBERSHIPS): too many groups", libc::E2BIG));
    }
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate().take(len as usize / 4) {
        out.extend((0..32).filter(|b| w & (1 << b) != 0).map(|b| (i * 32 + b + 1) as u32));
    }
    Ok(out)
}
