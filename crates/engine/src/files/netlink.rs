//! Netlink sockets (`netlink(7)`: route, sock_diag, uevent and the other protocols): the protocol,
//! the bound port id, every group joined (`NETLINK_LIST_MEMBERSHIPS`, also past the 32 the
//! address holds), the default destination (`connect`), the `NETLINK_*` options and the
//! socket-level ones ([`super::sockopt`]: buffers and their lock, linger, timeouts, filter ...).
//!
//! Messages waiting to be read came from the kernel (replies, notifications) and cannot be sent
//! again: a socket with any (`SO_MEMINFO` receive memory) is refused by name, as is a reply being
//! produced (a dump request not read to its end leaves the rest in the queue too). Restore makes
//! the socket, sets its options, binds it to its port id (the old one is free: its owner is gone),
//! joins its groups and connects it.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{FileEntry, FileKind, NetlinkSocket, SockOpt};
use stasis_sys::netlink::{self as nl, SOL_NETLINK};
use stasis_sys::socket as sock;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// The integer `SOL_NETLINK` options read at dump and set at restore where they differ from a new
/// socket's (with the socket-level ones of [`super::sockopt`]).
const OPTIONS: &[(&str, i32, i32)] = &[
    ("NETLINK_PKTINFO", SOL_NETLINK, 3),
    ("NETLINK_BROADCAST_ERROR", SOL_NETLINK, 4),
    ("NETLINK_NO_ENOBUFS", SOL_NETLINK, 5),
    ("NETLINK_LISTEN_ALL_NSID", SOL_NETLINK, 8),
    ("NETLINK_CAP_ACK", SOL_NETLINK, 10),
    ("NETLINK_EXT_ACK", SOL_NETLINK, 11),
    ("NETLINK_GET_STRICT_CHK", SOL_NETLINK, 12),
];
/// `SO_MEMINFO` (`asm-generic/socket.h`).
const SO_MEMINFO: i32 = 55;

pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "netlink socket",
    dump: Some(super::kinds::Dumper { claims, dump: |p, _| dump(p) }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, settings| Ok(super::kinds::Stateless::boxed(open, settings))),
    finish_restore: None,
};

fn claims(p: &Probe) -> bool {
    std::os::unix::fs::FileTypeExt::is_socket(&p.meta.file_type())
        && sock::get_int(p.file, libc::SOL_SOCKET, libc::SO_DOMAIN).ok() == Some(libc::AF_NETLINK)
}

fn dump(p: &Probe) -> Result<FileKind> {
    let f = p.file;
    let err = |what| Error::sys(p.pid.0, what);
    let int = |level, opt, what| sock::get_int(f, level, opt).map_err(err(what));
    let mut n = NetlinkSocket {
        ino: p.meta.ino(),
        sock_type: int(libc::SOL_SOCKET, libc::SO_TYPE, "reading SO_TYPE")? as u32,
        protocol: int(libc::SOL_SOCKET, libc::SO_PROTOCOL, "reading SO_PROTOCOL")? as u32,
        rcvbuf: int(libc::SOL_SOCKET, libc::SO_RCVBUF, "reading SO_RCVBUF")?,
        sndbuf: int(libc::SOL_SOCKET, libc::SO_SNDBUF, "reading SO_SNDBUF")?,
        ..Default::default()
    };
    n.portid = nl::name(f, false).map_err(err("reading a netlink socket's address"))?.0;
    (n.dst_portid, n.dst_groups) = nl::name(f, true).map_err(err("reading a netlink socket's peer"))?;
    n.groups = nl::memberships(f).map_err(err("reading NETLINK_LIST_MEMBERSHIPS"))?;
    for &(name, level, opt) in OPTIONS {
        if let Ok(value) = sock::get_int(f, level, opt) {
            n.options.push(SockOpt { name: name.into(), value });
        }
    }
    super::sockopt::read_ints(f, &mut n.options);
    n.socket = Some(super::sockopt::dump(p, &describe(&n))?);
    let meminfo = stasis_sys::inet::get_bytes(f, libc::SOL_SOCKET, SO_MEMINFO, 4).map_err(err("reading SO_MEMINFO"))?;
    let queued = meminfo.get(..4).map_or(0, |w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    if queued != 0 {
        let what = format!(
            "{}: messages not read ({queued} bytes of receive memory; they came from the kernel and cannot be sent again)",
            describe(&n)
        );
        return Err(p.unsupported(what));
    }
    Ok(FileKind::NetlinkSocket(n))
}

/// `netlink route socket socket:[N] portid P`, for messages.
fn describe(n: &NetlinkSocket) -> String {
    let proto = match n.protocol as i32 {
        libc::NETLINK_ROUTE => "route".to_string(),
        libc::NETLINK_SOCK_DIAG => "sock_diag".to_string(),
        libc::NETLINK_KOBJECT_UEVENT => "uevent".to_string(),
        p => format!("protocol {p}"),
    };
    format!("netlink {proto} socket socket:[{}] portid {}", n.ino, n.portid)
}

fn open(f: &FileEntry, _: &super::kinds::Settings) -> Option<Result<OwnedFd>> {
    match &f.kind {
        Some(FileKind::NetlinkSocket(n)) => Some(make(n, f.flags)),
        _ => None,
    }
}

fn fail(n: &NetlinkSocket, what: &str) -> impl FnOnce(stasis_sys::SysError) -> Error {
    let path = format!("{}: {what}", describe(n));
    move |e| Error::Io { path: format!("{path} ({})", e.call).into(), source: e.source }
}

/// The socket made again: options, buffers, `bind`, groups, `connect`, file flags.
fn make(n: &NetlinkSocket, flags: u32) -> Result<OwnedFd> {
    let fd = nl::socket(n.sock_type as i32, n.protocol as i32).map_err(fail(n, "making it"))?;
    let f = fd.as_fd();
    let what = describe(n);
    let level = n.socket.clone().unwrap_or_default();
    let saved =
        super::sockopt::Saved { options: &n.options, own: OPTIONS, level: &level, rcvbuf: n.rcvbuf, sndbuf: n.sndbuf };
    saved.set_before_bind(f, &what)?;
    if n.portid != 0 {
        nl::bind(f, n.portid, 0).map_err(fail(n, "binding it to its port id"))?;
    }
    for &g in &n.groups {
        sock::set_int(f, SOL_NETLINK, nl::NETLINK_ADD_MEMBERSHIP, g as i32)
            .map_err(fail(n, &format!("joining group {g}")))?;
    }
    if n.dst_portid != 0 || n.dst_groups != 0 {
        nl::connect(f, n.dst_portid, n.dst_groups).map_err(fail(n, "connecting it"))?;
    }
    super::sockopt::restore_filter(&level, f, &what)?;
    let status = (flags & libc::O_NONBLOCK as u32) as i32 | libc::O_RDWR;
    stasis_sys::fd::set_status_flags(f, status).map_err(fail(n, "setting its file flags"))?;
    Ok(fd)
}
