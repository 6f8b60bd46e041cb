//! Socket-level (`SOL_SOCKET`) options, the same for every socket kind but unix sockets (which
//! keep theirs in [`super::unix`]): IP, packet and netlink sockets dump and restore them here, each
//! adding the options of its own levels.
//!
//! - The integer options of [`OPTIONS`]: each one a socket answers is recorded by name; restore
//!   sets those that differ from a new socket's value. One the kernel refuses for a kind
//!   (`ENOPROTOOPT`, `EOPNOTSUPP`) is not recorded: the program could not have set it either.
//! - Options that are not `int`s ([`BYTES_OPTIONS`]: `SO_TXTIME`, `SO_MAX_PACING_RATE` as the
//!   64-bit value) are recorded as read and set back the same way.
//! - `SO_LINGER`, `SO_RCVTIMEO`/`SO_SNDTIMEO`, `SO_BINDTODEVICE`, and the classic BPF filter
//!   (`SO_ATTACH_FILTER`, read back with `SO_GET_FILTER`) with its lock (`SO_LOCK_FILTER`),
//!   attached last so that it drops nothing a restore queues. An eBPF filter (`SO_ATTACH_BPF`)
//!   cannot be read back: the dump is refused by name.
//! - Buffer sizes as `getsockopt` reported them (the kernel doubles what is set: half goes in,
//!   through the `FORCE` variants), then `SO_BUF_LOCK` as dumped (setting a size locks it; a size
//!   the kernel was tuning must go on being tuned).

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{SockOpt, SockOptBytes, SocketLevel};
use stasis_sys::inet as net;
use stasis_sys::socket as sock;
use std::os::fd::BorrowedFd;

/// The integer `SOL_SOCKET` options a dump reads and a restore sets where they differ, by name.
/// `SO_BUF_LOCK` is set by [`set_buffers`], after the sizes.
pub const OPTIONS: &[(&str, i32)] = &[
    ("SO_REUSEADDR", libc::SO_REUSEADDR),
    ("SO_REUSEPORT", libc::SO_REUSEPORT),
    ("SO_KEEPALIVE", libc::SO_KEEPALIVE),
    ("SO_OOBINLINE", libc::SO_OOBINLINE),
    ("SO_PRIORITY", libc::SO_PRIORITY),
    ("SO_MARK", libc::SO_MARK),
    ("SO_RCVLOWAT", libc::SO_RCVLOWAT),
    ("SO_DONTROUTE", libc::SO_DONTROUTE),
    ("SO_BROADCAST", libc::SO_BROADCAST),
    ("SO_PASSCRED", libc::SO_PASSCRED),
    ("SO_PASSSEC", libc::SO_PASSSEC),
    ("SO_TIMESTAMP", libc::SO_TIMESTAMP),
    ("SO_TIMESTAMPNS", libc::SO_TIMESTAMPNS),
    ("SO_TIMESTAMPING", libc::SO_TIMESTAMPING),
    ("SO_RXQ_OVFL", libc::SO_RXQ_OVFL),
    ("SO_WIFI_STATUS", 41),
    ("SO_PEEK_OFF", sock::SO_PEEK_OFF),
    ("SO_NOFCS", 43),
    ("SO_SELECT_ERR_QUEUE", 45),
    ("SO_BUSY_POLL", 46),
    ("SO_INCOMING_CPU", 49),
    ("SO_ZEROCOPY", 60),
    ("SO_PREFER_BUSY_POLL", 69),
    ("SO_BUSY_POLL_BUDGET", 70),
    ("SO_BUF_LOCK", sock::SO_BUF_LOCK),
    ("SO_RESERVE_MEM", 73),
    ("SO_TXREHASH", 74),
    ("SO_RCVMARK", 75),
    ("SO_RCVPRIORITY", 82),
];

/// The options that are not `int`s: (name, level, option, bytes read).
pub const BYTES_OPTIONS: &[(&str, i32, i32, usize)] = &[
    // struct sock_txtime: clock id, flags.
    ("SO_TXTIME", libc::SOL_SOCKET, 61, 8),
    // The 64-bit rate (an `int` read clamps it to 32 bits).
    ("SO_MAX_PACING_RATE", libc::SOL_SOCKET, 47, 8),
];

/// `SO_LOCK_FILTER` (`asm-generic/socket.h`).
const SO_LOCK_FILTER: i32 = 44;
/// Most instructions of a classic program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// The level and number of a `SOL_SOCKET` option of [`OPTIONS`], by name.
pub fn find(name: &str) -> Option<(i32, i32)> {
    OPTIONS.iter().find(|(n, _)| *n == name).map(|&(_, opt)| (libc::SOL_SOCKET, opt))
}

/// Every option of [`OPTIONS`] the socket answers, into `out`.
pub fn read_ints(f: BorrowedFd<'_>, out: &mut Vec<SockOpt>) {
    for &(name, opt) in OPTIONS {
        if let Ok(value) = sock::get_int(f, libc::SOL_SOCKET, opt) {
            out.push(SockOpt { name: name.into(), value });
        }
    }
}

/// The socket's options that are not integers, its filter and device; `what` names the socket in
/// a refusal.
pub fn dump(p: &Probe, what: &str) -> Result<SocketLevel> {
    let f = p.file;
    let err = |what| Error::sys(p.pid.0, what);
    let linger = net::get_bytes(f, libc::SOL_SOCKET, libc::SO_LINGER, 8).map_err(err("reading SO_LINGER"))?;
    let word = |b: &[u8], at: usize| b.get(at..at + 4).map_or(0, |w| i32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    let mut l = SocketLevel {
        linger: if word(&linger, 0) != 0 { word(&linger, 4) } else { -1 },
        rcvtimeo_us: sock::get_timeout(f, libc::SO_RCVTIMEO).map_err(err("reading SO_RCVTIMEO"))?,
        sndtimeo_us: sock::get_timeout(f, libc::SO_SNDTIMEO).map_err(err("reading SO_SNDTIMEO"))?,
        bound_device: net::get_bytes(f, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, 64)
            .map(|b| c_string(&b))
            .unwrap_or_default(),
        ..Default::default()
    };
    for &(name, level, opt, len) in BYTES_OPTIONS {
        if let Ok(value) = net::get_bytes(f, level, opt, len) {
            l.bytes_options.push(SockOptBytes { name: name.into(), value });
        }
    }
    l.filter = match sock::get_filter(f) {
        Ok(prog) => prog,
        Err(e) if e.errno() == libc::EACCES => {
            return Err(p.unsupported(format!("{what}: an eBPF socket filter (SO_ATTACH_BPF)")));
        }
        Err(e) => return Err(err("reading SO_GET_FILTER")(e)),
    };
    l.filter_locked = sock::get_int(f, libc::SOL_SOCKET, SO_LOCK_FILTER).unwrap_or(0) != 0;
    Ok(l)
}

pub fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// An error of setting something on the socket `what` names.
pub fn fail(what: &str, doing: &str) -> impl FnOnce(stasis_sys::SysError) -> Error {
    let path = format!("{what}: {doing}");
    move |e| Error::Io { path: format!("{path} ({})", e.call).into(), source: e.source }
}

/// Set `o` (an option of [`OPTIONS`] or of `own`, the kind's (name, level, option) table) if the
/// socket's value differs; an unknown name is an image this build cannot restore.
pub fn set_int(f: BorrowedFd<'_>, o: &SockOpt, own: &[(&str, i32, i32)], what: &str) -> Result<()> {
    let Some((level, opt)) =
        find(&o.name).or_else(|| own.iter().find(|(n, ..)| *n == o.name).map(|&(_, l, opt)| (l, opt)))
    else {
        return Err(Error::Incompatible {
            file: "files.img".into(),
            what: format!("{what}: unknown option {}", o.name),
        });
    };
    if o.name == "SO_BUF_LOCK" || sock::get_int(f, level, opt).ok() == Some(o.value) {
        return Ok(());
    }
    sock::set_int(f, level, opt, o.value).map_err(fail(what, &format!("setting {} to {}", o.name, o.value)))
}

/// Linger, timeouts and the options that are not integers (not the device: [`set_device`]).
pub fn restore(l: &SocketLevel, f: BorrowedFd<'_>, what: &str) -> Result<()> {
    if l.linger >= 0 {
        let v: Vec<u8> = [1i32, l.linger].iter().flat_map(|w| w.to_ne_bytes()).collect();
        net::set_bytes(f, libc::SOL_SOCKET, libc::SO_LINGER, &v).map_err(fail(what, "setting SO_LINGER"))?;
    }
    sock::set_timeout(f, libc::SO_RCVTIMEO, l.rcvtimeo_us).map_err(fail(what, "setting SO_RCVTIMEO"))?;
    sock::set_timeout(f, libc::SO_SNDTIMEO, l.sndtimeo_us).map_err(fail(what, "setting SO_SNDTIMEO"))?;
    for o in &l.bytes_options {
        let Some(&(_, level, opt, len)) = BYTES_OPTIONS.iter().find(|(n, ..)| *n == o.name) else {
            let what = format!("{what}: unknown option {}", o.name);
            return Err(Error::Incompatible { file: "files.img".into(), what });
        };
        if net::get_bytes(f, level, opt, len).ok().as_ref() != Some(&o.value) {
            net::set_bytes(f, level, opt, &o.value).map_err(fail(what, &format!("setting {}", o.name)))?;
        }
    }
    Ok(())
}

/// `SO_BINDTODEVICE`, if the socket had a device.
pub fn set_device(l: &SocketLevel, f: BorrowedFd<'_>, what: &str) -> Result<()> {
    if !l.bound_device.is_empty() {
        net::set_bytes(f, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, l.bound_device.as_bytes())
            .map_err(fail(what, "setting SO_BINDTODEVICE"))?;
    }
    Ok(())
}

/// Attach the filter again, then lock it if it was.
pub fn restore_filter(l: &SocketLevel, f: BorrowedFd<'_>, what: &str) -> Result<()> {
    if !l.filter.len().is_multiple_of(8) || l.filter.len() > 8 * MAX_INSNS {
        let what = format!("{what}: a socket filter of {} bytes", l.filter.len());
        return Err(Error::Incompatible { file: "files.img".into(), what });
    }
    if !l.filter.is_empty() {
        sock::attach_filter(f, &l.filter).map_err(fail(what, "attaching its socket filter"))?;
    }
    if l.filter_locked {
        sock::set_int(f, libc::SOL_SOCKET, SO_LOCK_FILTER, 1).map_err(fail(what, "locking its socket filter"))?;
    }
    Ok(())
}

/// The buffer sizes as dumped, then `SO_BUF_LOCK` as dumped (if `options` holds it).
pub fn set_buffers(f: BorrowedFd<'_>, rcvbuf: i32, sndbuf: i32, options: &[SockOpt], what: &str) -> Result<()> {
    sock::set_buffer_sizes(f, rcvbuf, sndbuf).map_err(fail(what, "setting its buffer sizes"))?;
    set_buffer_lock(f, options, what)
}

/// `SO_BUF_LOCK` as dumped, if `options` holds it.
pub fn set_buffer_lock(f: BorrowedFd<'_>, options: &[SockOpt], what: &str) -> Result<()> {
    let Some(o) = options.iter().find(|o| o.name == "SO_BUF_LOCK") else { return Ok(()) };
    if sock::get_int(f, libc::SOL_SOCKET, sock::SO_BUF_LOCK).ok() == Some(o.value) {
        return Ok(());
    }
    sock::set_int(f, libc::SOL_SOCKET, sock::SO_BUF_LOCK, o.value).map_err(fail(what, "setting SO_BUF_LOCK"))
}

/// What a packet or netlink socket saved of its options: its integer options (those of [`OPTIONS`]
/// and of `own`, its levels' table), the rest, and its buffer sizes.
pub struct Saved<'a> {
    pub options: &'a [SockOpt],
    pub own: &'a [(&'a str, i32, i32)],
    pub level: &'a SocketLevel,
    pub rcvbuf: i32,
    pub sndbuf: i32,
}

impl Saved<'_> {
    /// Everything but the filter (attached last, [`restore_filter`]) on a new socket: the integer
    /// options, linger, timeouts, the options that are not integers, the device, the buffers and
    /// their lock.
    pub fn set_before_bind(&self, f: BorrowedFd<'_>, what: &str) -> Result<()> {
        for o in self.options {
            set_int(f, o, self.own, what)?;
        }
        restore(self.level, f, what)?;
        set_device(self.level, f, what)?;
        set_buffers(f, self.rcvbuf, self.sndbuf, self.options, what)
    }
}
