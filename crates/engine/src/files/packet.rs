//! Packet sockets (`packet(7)`, `SOCK_RAW` and `SOCK_DGRAM`): protocol, bound interface, fanout
//! group, `PACKET_ADD_MEMBERSHIP`s (from `packet_diag`), the `PACKET_*` options and the
//! socket-level ones ([`super::sockopt`]: buffers and their lock, linger, timeouts, filter ...).
//!
//! Refused by name: an mmap'ed ring (`PACKET_RX_RING`/`PACKET_TX_RING`, TPACKET), frames waiting to
//! be read (they were captured from an interface and cannot be captured again), and a fanout group
//! steered by a BPF program (`PACKET_FANOUT_CBPF`/`EBPF`, whose program cannot be read back).
//! Restore makes the socket, sets its options, binds it to its interface and protocol, joins its
//! fanout group and adds its memberships.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{FileEntry, FileKind, PacketMembership, PacketSocket, SockOpt};
use stasis_sys::packet::{self as pk, SOL_PACKET};
use stasis_sys::socket as sock;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// The integer `SOL_PACKET` options read at dump and set at restore where they differ from a new
/// socket's (with the socket-level ones of [`super::sockopt`]). Not `PACKET_STATISTICS`: reading
/// it resets the counters.
const OPTIONS: &[(&str, i32, i32)] = &[
    ("PACKET_AUXDATA", SOL_PACKET, 8),
    ("PACKET_ORIGDEV", SOL_PACKET, 9),
    ("PACKET_VERSION", SOL_PACKET, 10),
    ("PACKET_RESERVE", SOL_PACKET, 12),
    ("PACKET_LOSS", SOL_PACKET, 14),
    ("PACKET_VNET_HDR", SOL_PACKET, 15),
    ("PACKET_TIMESTAMP", SOL_PACKET, 17),
    ("PACKET_QDISC_BYPASS", SOL_PACKET, 20),
    ("PACKET_TX_HAS_OFF", SOL_PACKET, 19),
    ("PACKET_IGNORE_OUTGOING", SOL_PACKET, 23),
    ("PACKET_VNET_HDR_SZ", SOL_PACKET, 24),
];
const PACKET_FANOUT: i32 = 18;
/// Fanout modes steered by a program (`PACKET_FANOUT_CBPF`, `PACKET_FANOUT_EBPF`).
const FANOUT_BPF: [u32; 2] = [6, 7];
/// `SO_MEMINFO` (`asm-generic/socket.h`).
const SO_MEMINFO: i32 = 55;

pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "packet socket",
    dump: Some(super::kinds::Dumper { claims, dump: |p, _| dump(p) }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, settings| Ok(super::kinds::Stateless::boxed(open, settings))),
    finish_restore: None,
};

fn claims(p: &Probe) -> bool {
    std::os::unix::fs::FileTypeExt::is_socket(&p.meta.file_type())
        && sock::get_int(p.file, libc::SOL_SOCKET, libc::SO_DOMAIN).ok() == Some(libc::AF_PACKET)
}

/// `packet socket socket:[N] (protocol 0x88b5, interface 1)`, for messages.
fn describe(s: &PacketSocket) -> String {
    let proto = u16::from_be(s.bound_protocol as u16);
    format!("packet socket socket:[{}] (protocol {proto:#06x}, interface {})", s.ino, s.ifindex)
}

fn dump(p: &Probe) -> Result<FileKind> {
    let f = p.file;
    let err = |what| Error::sys(p.pid.0, what);
    let int = |level, opt, what| sock::get_int(f, level, opt).map_err(err(what));
    let (ifindex, bound) = pk::name(f).map_err(err("reading a packet socket's address"))?;
    let mut s = PacketSocket {
        ino: p.meta.ino(),
        sock_type: int(libc::SOL_SOCKET, libc::SO_TYPE, "reading SO_TYPE")? as u32,
        protocol: int(libc::SOL_SOCKET, libc::SO_PROTOCOL, "reading SO_PROTOCOL")? as u32,
        bound_protocol: u32::from(bound),
        ifindex,
        fanout: int(SOL_PACKET, PACKET_FANOUT, "reading PACKET_FANOUT")? as u32,
        rcvbuf: int(libc::SOL_SOCKET, libc::SO_RCVBUF, "reading SO_RCVBUF")?,
        sndbuf: int(libc::SOL_SOCKET, libc::SO_SNDBUF, "reading SO_SNDBUF")?,
        ..Default::default()
    };
    for &(name, level, opt) in OPTIONS {
        if let Ok(value) = sock::get_int(f, level, opt) {
            s.options.push(SockOpt { name: name.into(), value });
        }
    }
    super::sockopt::read_ints(f, &mut s.options);
    s.socket = Some(super::sockopt::dump(p, &describe(&s))?);
    if s.fanout != 0 && FANOUT_BPF.contains(&((s.fanout >> 16) & 0xff)) {
        return Err(p.unsupported(format!("{}: a fanout group steered by a BPF program", describe(&s))));
    }
    let all = pk::dump_all().map_err(err("listing packet sockets (packet_diag)"))?;
    let Some(d) = all.iter().find(|d| u64::from(d.ino) == s.ino) else {
        return Err(p.unsupported(format!("{}: not listed by packet_diag (another network namespace?)", describe(&s))));
    };
    if d.ring {
        return Err(p.unsupported(format!("{}: a TPACKET ring (PACKET_RX_RING or PACKET_TX_RING)", describe(&s))));
    }
    s.memberships = d
        .memberships
        .iter()
        .map(|m| PacketMembership {
            ifindex: m.ifindex,
            count: m.count,
            kind: u32::from(m.kind),
            address: m.address.clone(),
        })
        .collect();
    let meminfo = stasis_sys::inet::get_bytes(f, libc::SOL_SOCKET, SO_MEMINFO, 4).map_err(err("reading SO_MEMINFO"))?;
    let queued = meminfo.get(..4).map_or(0, |w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    if queued != 0 {
        let what = format!(
            "{}: frames not read ({queued} bytes of receive memory; they cannot be captured again)",
            describe(&s)
        );
        return Err(p.unsupported(what));
    }
    Ok(FileKind::PacketSocket(s))
}

fn open(f: &FileEntry, _: &super::kinds::Settings) -> Option<Result<OwnedFd>> {
    match &f.kind {
        Some(FileKind::PacketSocket(s)) => Some(make(s, f.flags)),
        _ => None,
    }
}

fn fail(s: &PacketSocket, what: &str) -> impl FnOnce(stasis_sys::SysError) -> Error {
    let path = format!("{}: {what}", describe(s));
    move |e| Error::Io { path: format!("{path} ({})", e.call).into(), source: e.source }
}

/// The socket made again: options, buffers, `bind`, fanout, memberships, filter, file flags.
fn make(s: &PacketSocket, flags: u32) -> Result<OwnedFd> {
    let fd = pk::socket(s.sock_type as i32, s.protocol as u16).map_err(fail(s, "making it"))?;
    let f = fd.as_fd();
    let what = describe(s);
    let level = s.socket.clone().unwrap_or_default();
    let saved =
        super::sockopt::Saved { options: &s.options, own: OPTIONS, level: &level, rcvbuf: s.rcvbuf, sndbuf: s.sndbuf };
    saved.set_before_bind(f, &what)?;
    if s.ifindex != 0 || s.bound_protocol != s.protocol {
        pk::bind(f, s.ifindex, s.bound_protocol as u16).map_err(fail(s, "binding it"))?;
    }
    if s.fanout != 0 {
        sock::set_int(f, SOL_PACKET, PACKET_FANOUT, s.fanout as i32).map_err(fail(s, "joining its fanout group"))?;
    }
    for m in &s.memberships {
        let want = pk::PacketMembership {
            ifindex: m.ifindex,
            count: m.count,
            kind: m.kind as u16,
            address: m.address.clone(),
        };
        for _ in 0..m.count.clamp(1, 64) {
            pk::add_membership(f, &want).map_err(fail(s, "adding a membership (PACKET_ADD_MEMBERSHIP)"))?;
        }
    }
    super::sockopt::restore_filter(&level, f, &what)?;
    let status = (flags & libc::O_NONBLOCK as u32) as i32 | libc::O_RDWR;
    stasis_sys::fd::set_status_flags(f, status).map_err(fail(s, "setting its file flags"))?;
    Ok(fd)
}
