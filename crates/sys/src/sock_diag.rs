//! `sock_diag(7)`: one `SOCK_DIAG_BY_FAMILY` dump over `NETLINK_SOCK_DIAG` and the walk of its
//! replies. The per-family modules ([`crate::inet_diag`], [`crate::unix_diag`], [`crate::packet`])
//! build the request body (their `*_diag_req`) and parse each message; this module owns the netlink
//! socket, the header, the receive loop and the `NLMSG_DONE`/`NLMSG_ERROR` handling.
//!
//! # References
//! `sock_diag(7)`, `netlink(7)`, `linux/sock_diag.h`.

use crate::{check, SysError};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;

/// Names for the errors of one family's dump: the failed dump and a reply that does not parse.
pub(crate) struct Family {
    pub dump: &'static str,
    pub parse: &'static str,
}

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
    let req = request(body);
    // SAFETY: `req` is a live buffer of its length.
    let n = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    check("send(NETLINK_SOCK_DIAG)", n as libc::c_long)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: `buf` is a live buffer of its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = check("recv(NETLINK_SOCK_DIAG)", n as libc::c_long)? as usize;
        if parse_batch(family, &buf[..n], &parse, &mut out)? {
            return Ok(out);
        }
    }
}

/// The netlink header of a `SOCK_DIAG_BY_FAMILY` dump request, then `body`.
fn request(body: &[u8]) -> Vec<u8> {
    let mut req = Vec::with_capacity(NLMSG_HDR + body.len());
    req.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id
    req.extend_from_slice(body);
    req
}

/// Parse one datagram of netlink messages into `out`; true at the end of the dump.
fn parse_batch<T>(
    family: &Family,
    mut b: &[u8],
    parse: &impl Fn(&[u8]) -> Option<T>,
    out: &mut Vec<T>,
) -> Result<bool, SysError> {
    let bad = || SysError::from_errno(family.parse, libc::EPROTO);
    while b.len() >= NLMSG_HDR {
        let len = u32_at(b, 0).ok_or_else(bad)? as usize;
        let ty = u16_at(b, 4).ok_or_else(bad)?;
        if len < NLMSG_HDR || len > b.len() {
            return Err(bad());
        }
        match ty as i32 {
            libc::NLMSG_DONE => return Ok(true),
            libc::NLMSG_ERROR => {
                let errno = u32_at(b, NLMSG_HDR).ok_or_else(bad)? as i32;
                return Err(SysError::from_errno(family.dump, -errno));
            }
            _ => out.push(parse(&b[NLMSG_HDR..len]).ok_or_else(bad)?),
        }
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    Ok(false)
}

/// The native-endian `u32` at `at` of `b`.
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The native-endian `u16` at `at` of `b`.
pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Family = Family { dump: "test dump", parse: "parsing a test reply" };

    fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_batch_is_parsed_up_to_done() {
        let mut b = msg(20, &7u32.to_ne_bytes());
        b.extend(msg(libc::NLMSG_DONE as u16, &[0; 4]));
        let mut out = Vec::new();
        assert!(parse_batch(&TEST, &b, &|m: &[u8]| u32_at(m, 0), &mut out).unwrap());
        assert_eq!(out, vec![7]);
    }

    #[test]
    fn an_error_message_and_a_short_message_fail() {
        let b = msg(libc::NLMSG_ERROR as u16, &(-libc::EPERM).to_ne_bytes());
        let e = parse_batch(&TEST, &b, &|m: &[u8]| u32_at(m, 0), &mut Vec::new()).unwrap_err();
        assert_eq!((e.call, e.errno()), ("test dump", libc::EPERM));
        let mut b = msg(20, &[1]);
        b[0] = 200;
        let e = parse_batch(&TEST, &b, &|m: &[u8]| u32_at(m, 0), &mut Vec::new()).unwrap_err();
        assert_eq!((e.call, e.errno()), ("parsing a test reply", libc::EPROTO));
    }
}
