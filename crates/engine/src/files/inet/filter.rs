//! The classic BPF program of an IP socket (`SO_ATTACH_FILTER`) and its lock (`SO_LOCK_FILTER`):
//! read back at dump with `SO_GET_FILTER`, attached again last at restore (after the queued
//! datagrams are back, which it could otherwise drop). An eBPF program (`SO_ATTACH_BPF`) cannot be
//! read back and is refused by name.

use super::*;
use crate::error::{Error, Result};
use crate::files::Probe;
use stasis_sys::socket as sock;
use std::os::fd::BorrowedFd;

/// `SO_LOCK_FILTER` (`asm-generic/socket.h`).
const SO_LOCK_FILTER: i32 = 44;
/// Most instructions of a classic program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

/// The socket's filter and lock into `s`.
pub(super) fn dump(p: &Probe, s: &mut InetSocket) -> Result<()> {
    s.filter = match sock::get_filter(p.file) {
        Ok(prog) => prog,
        Err(e) if e.errno() == libc::EACCES => {
            return Err(p.unsupported(format!("{}: an eBPF socket filter (SO_ATTACH_BPF)", describe(s))));
        }
        Err(e) => return Err(Error::sys(p.pid.0, "reading SO_GET_FILTER")(e)),
    };
    s.filter_locked = sock::get_int(p.file, libc::SOL_SOCKET, SO_LOCK_FILTER).unwrap_or(0) != 0;
    Ok(())
}

/// Attach the filter again, then lock it if it was.
pub(super) fn restore(s: &InetSocket, f: BorrowedFd<'_>) -> Result<()> {
    if !s.filter.len().is_multiple_of(8) || s.filter.len() > 8 * MAX_INSNS {
        let what = format!("{}: a socket filter of {} bytes", describe(s), s.filter.len());
        return Err(Error::Incompatible { file: "files.img".into(), what });
    }
    let fail = |what: &'static str| {
        let path = format!("{}: {what}", describe(s));
        move |e: stasis_sys::SysError| Error::Io { path: format!("{path} ({})", e.call).into(), source: e.source }
    };
    if !s.filter.is_empty() {
        sock::attach_filter(f, &s.filter).map_err(fail("attaching its socket filter"))?;
    }
    if s.filter_locked {
        sock::set_int(f, libc::SOL_SOCKET, SO_LOCK_FILTER, 1).map_err(fail("locking its socket filter"))?;
    }
    Ok(())
}
