//! `sock_diag(7)`: one `SOCK_DIAG_BY_FAMILY` dump over `NETLINK_SOCK_DIAG` and the walk of its
//! replies. The per-family modules ([`crate::inet_diag`], [`crate::unix_diag`], [`crate::packet`])
//! build the request body (their `*_diag_req`) and parse each message; this module owns the netlink
//! socket, and [`crate::nlmsg`] the header, the receive loop and the `NLMSG_DONE`/`NLMSG_ERROR`
//! handling.
//!
//! # References
//! `sock_diag(7)`, `netlink(7)`, `linux/sock_diag.h`.

use crate::nlmsg;
pub(crate) use crate::nlmsg::{u16_at, u32_at, Family};
use crate::{check, SysError};
use std::os::fd::{FromRawFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;

/// Send a dump request whose body is `body` and collect every reply message, each parsed by
/// `parse` (given the message without its netlink header; `None` fails the dump as `EPROTO`).
pub(crate) fn dump<T>(family: &Family, body: &[u8], parse: impl Fn(&[u8]) -> Option<T>) -> Result<Vec<T>, SysError> {
    dump_in(None, family, body, parse)
}

/// A `NETLINK_SOCK_DIAG` socket, close-on-exec.
fn diag_socket() -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    let fd = check("socket(NETLINK_SOCK_DIAG)", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A `NETLINK_SOCK_DIAG` socket of the network namespace `netns`: made by a thread of ours that
/// joined it (a socket stays in the namespace it was made in; `setns` moves only that thread).
fn diag_socket_in(netns: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    let ns = netns.try_clone_to_owned().map_err(|e| SysError::from_errno("dup", e.raw_os_error().unwrap_or(0)))?;
    std::thread::spawn(move || {
        crate::ns::setns(std::os::fd::AsFd::as_fd(&ns), crate::ns::Kind::Net)?;
        diag_socket()
    })
    .join()
    .unwrap_or_else(|_| Err(SysError::from_errno("setns", libc::EINVAL)))
}

/// [`dump`] in the network namespace `netns` (ours when `None`).
pub(crate) fn dump_in<T>(
    netns: Option<std::os::fd::BorrowedFd<'_>>,
    family: &Family,
    body: &[u8],
    parse: impl Fn(&[u8]) -> Option<T>,
) -> Result<Vec<T>, SysError> {
    let sock = match netns {
        Some(ns) => diag_socket_in(ns)?,
        None => diag_socket()?,
    };
    let ty = (SOCK_DIAG_BY_FAMILY, libc::NLM_F_DUMP as u16);
    nlmsg::transact(std::os::fd::AsFd::as_fd(&sock), ty, family, body, parse)
}
