//! Raw IP sockets (`raw(7)`, `SOCK_RAW` of any protocol, IPv4 and IPv6): protocol, bound and
//! connected addresses, options (`IP_HDRINCL`, `IPV6_CHECKSUM` ...), the ICMP type filters
//! (`ICMP_FILTER`, `ICMPV6_FILTER`) and the BPF filter.
//!
//! Packets waiting to be read are refused by name: they are copies of what the host received, and
//! sending them again would deliver them to every other socket of the protocol too. Restore makes
//! the socket, sets its options and filters, binds and connects it.

use super::*;
use crate::error::{Error, Result};
use crate::files::Probe;
use stasis_sys::inet as net;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// `SOL_RAW` and `ICMP_FILTER` (`linux/icmp.h`); `ICMPV6_FILTER` at `IPPROTO_ICMPV6`.
const SOL_RAW: i32 = 255;
const ICMP_FILTER: i32 = 1;
const ICMPV6_FILTER: i32 = 1;
/// `SO_MEMINFO` (`asm-generic/socket.h`).
const SO_MEMINFO: i32 = 55;

/// The ICMP filter option of a socket: (level, option, size) for ICMP over IPv4 or IPv6.
fn icmp_filter(s: &InetSocket) -> Option<(i32, i32, usize)> {
    match (s.family as i32, s.protocol as i32) {
        (libc::AF_INET, libc::IPPROTO_ICMP) => Some((SOL_RAW, ICMP_FILTER, 4)),
        (libc::AF_INET6, libc::IPPROTO_ICMPV6) => Some((libc::IPPROTO_ICMPV6, ICMPV6_FILTER, 32)),
        _ => None,
    }
}

/// A raw socket: `s` holds its family, type, protocol and local address.
pub(super) fn dump(p: &Probe, mut s: InetSocket) -> Result<InetSocket> {
    let f = p.file;
    super::dump::read_peer(p, &mut s, "reading a raw socket's peer")?;
    super::dump::read_options(p, &mut s)?;
    if let Some((level, opt, size)) = icmp_filter(&s) {
        s.icmp_filter = net::get_bytes(f, level, opt, size).map_err(Error::sys(p.pid.0, "reading the ICMP filter"))?;
    }
    refuse_unread(p, &s)?;
    Ok(s)
}

/// Packets waiting to be read on a raw or ping socket are refused by name.
pub(super) fn refuse_unread(p: &Probe, s: &InetSocket) -> Result<()> {
    let meminfo =
        net::get_bytes(p.file, libc::SOL_SOCKET, SO_MEMINFO, 4).map_err(Error::sys(p.pid.0, "reading SO_MEMINFO"))?;
    let queued = meminfo.get(..4).map_or(0, |w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    if queued != 0 {
        let what = format!("{}: packets not read ({queued} bytes of receive memory)", describe(s));
        return Err(p.unsupported(what));
    }
    Ok(())
}

pub(super) fn fail(s: &InetSocket, what: &str) -> impl FnOnce(stasis_sys::SysError) -> Error {
    let path = format!("{}: {what}", describe(s));
    move |e| Error::Io { path: format!("{path} ({})", e.call).into(), source: e.source }
}

/// A raw socket made again: options, ICMP filter, buffers, device, `bind`, `connect`, BPF filter.
pub(super) fn make(s: &InetSocket) -> Result<OwnedFd> {
    let fd = net::socket(s.family as i32, s.sock_type as i32, s.protocol as i32).map_err(fail(s, "making it"))?;
    let f = fd.as_fd();
    super::restore::set_options(s, f, &[])?;
    set_icmp_filter(s, f)?;
    super::restore::set_buffers(s, f)?;
    super::restore::set_device(s, f)?;
    place(s, f, |here| !here.ip().is_unspecified())?;
    Ok(fd)
}

/// The end of a raw or ping socket's restore: `bind` to its address (when `bound` says it was
/// bound), `connect` when it was connected, then the BPF filter.
pub(super) fn place(s: &InetSocket, f: BorrowedFd<'_>, bound: impl Fn(&std::net::SocketAddr) -> bool) -> Result<()> {
    let bad = || Error::Incompatible {
        file: "files.img".into(),
        what: format!("{}: an address that does not parse", describe(s)),
    };
    let here = local(s).ok_or_else(bad)?;
    if bound(&here) {
        net::bind(f, &here).map_err(fail(s, "binding it"))?;
    }
    if s.state == TCP_ESTABLISHED {
        let there = remote(s).ok_or_else(bad)?;
        net::connect(f, &there).map_err(fail(s, "connecting it"))?;
    }
    super::restore::set_filter(s, f)
}

fn set_icmp_filter(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    match icmp_filter(s) {
        Some((level, opt, size)) if s.icmp_filter.len() == size => {
            net::set_bytes(f, level, opt, &s.icmp_filter).map_err(fail(s, "setting its ICMP filter"))
        }
        _ => Ok(()),
    }
}
