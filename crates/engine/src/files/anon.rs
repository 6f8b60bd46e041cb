//! Event fds (counter, EFD_SEMAPHORE), signal fds (mask) and timer fds (clock, time left, interval,
//! unread expirations, settime flags). O_NONBLOCK of each is in the entry's flags.
//!
//! Dump reads `/proc/PID/fdinfo/FD` and nothing else, so nothing is consumed; for a timer fd it first
//! calls `timerfd_gettime` on our copy of the description, which folds the expirations of an interval
//! timer that fired into its tick count (as a `read` would count them) without consuming any. Restore
//! makes a new fd of the kind in the controller with the same state. A timer's time left is counted
//! from the restore (with TFD_TIMER_ABSTIME, the new absolute time is now + time left); its unread
//! expirations are set with `TFD_IOC_SET_TICKS`.

use super::Probe;
use crate::error::{Error, Result};
use crate::proc;
use stasis_image::model::{EventFd, FileKind, SignalFd, TimerFd};
use stasis_sys::anon::{self, Timespec};
use std::os::fd::{AsFd, OwnedFd};

const NONBLOCK: u32 = libc::O_NONBLOCK as u32;
/// `TFD_TIMER_ABSTIME`, `TFD_TIMER_CANCEL_ON_SET`.
const TFD_TIMER_ABSTIME: u32 = 1;
const TFD_SETTIME_FLAGS: u32 = 3;

/// The kind of an `anon_inode:[...]` link this module handles.
pub fn handles(inner: &str) -> bool {
    matches!(inner, "eventfd" | "signalfd" | "timerfd")
}

pub fn dump(p: &Probe, inner: &str) -> Result<FileKind> {
    if inner == "timerfd" {
        // Fold the expirations of a fired interval timer into its ticks before fdinfo shows them.
        anon::timerfd_gettime(p.file).map_err(Error::sys(p.pid.0, "reading a timerfd"))?;
    }
    let info = proc::fdinfo(p.root, p.pid.0, p.fd)?;
    let field = |key: &str| {
        info.get(key).ok_or_else(|| p.unsupported(format!("{inner} without '{key}' in its fdinfo (kernel too old?)")))
    };
    let num = |key: &str, radix: u32| -> Result<u64> {
        let v = field(key)?;
        u64::from_str_radix(v.trim(), radix)
            .map_err(|_| p.unsupported(format!("{inner} with '{key}: {v}' in its fdinfo")))
    };
    match inner {
        "eventfd" => Ok(FileKind::EventFd(EventFd {
            count: num("eventfd-count", 16)?,
            semaphore: num("eventfd-semaphore", 10)? != 0,
            id: info.get("eventfd-id").and_then(|v| v.parse().ok()).unwrap_or(0),
        })),
        "signalfd" => Ok(FileKind::SignalFd(SignalFd { sigmask: num("sigmask", 16)? })),
        _ => {
            let clockid = field("clockid")?.parse().map_err(|_| p.unsupported("a timerfd with a bad clockid"))?;
            let value = pair(field("it_value")?).ok_or_else(|| p.unsupported("a timerfd with a bad it_value"))?;
            let interval =
                pair(field("it_interval")?).ok_or_else(|| p.unsupported("a timerfd with a bad it_interval"))?;
            Ok(FileKind::TimerFd(TimerFd {
                clockid,
                ticks: num("ticks", 10)?,
                settime_flags: num("settime flags", 8)? as u32,
                value_sec: value.0,
                value_nsec: value.1,
                interval_sec: interval.0,
                interval_nsec: interval.1,
            }))
        }
    }
}

/// `(4, 987006479)` as fdinfo shows a time.
fn pair(s: &str) -> Option<(i64, i64)> {
    let (a, b) = s.trim().strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

fn io(what: &str) -> impl FnOnce(stasis_sys::SysError) -> Error + '_ {
    move |e| Error::Io { path: what.into(), source: e.source }
}

pub fn open_eventfd(e: &EventFd, flags: u32) -> Result<OwnedFd> {
    let mut efd = (flags & NONBLOCK) as i32;
    if e.semaphore {
        efd |= libc::EFD_SEMAPHORE;
    }
    let fd = anon::eventfd(efd).map_err(io("anon_inode:[eventfd]"))?;
    if e.count != 0 {
        anon::eventfd_add(fd.as_fd(), e.count).map_err(io("anon_inode:[eventfd]"))?;
    }
    Ok(fd)
}

pub fn open_signalfd(s: &SignalFd, flags: u32) -> Result<OwnedFd> {
    anon::signalfd(s.sigmask, (flags & NONBLOCK) as i32).map_err(io("anon_inode:[signalfd]"))
}

pub fn open_timerfd(t: &TimerFd, flags: u32) -> Result<OwnedFd> {
    let what = "anon_inode:[timerfd]";
    let fd = anon::timerfd_create(t.clockid, (flags & NONBLOCK) as i32).map_err(io(what))?;
    let mut value = Timespec { sec: t.value_sec, nsec: t.value_nsec };
    let interval = Timespec { sec: t.interval_sec, nsec: t.interval_nsec };
    let settime = t.settime_flags & TFD_SETTIME_FLAGS;
    if !value.is_zero() {
        if settime & TFD_TIMER_ABSTIME != 0 {
            value = anon::clock_gettime(t.clockid).map_err(io(what))?.plus(value);
        }
        anon::timerfd_settime(fd.as_fd(), settime as i32, value, interval).map_err(io(what))?;
    }
    if t.ticks != 0 {
        anon::timerfd_set_ticks(fd.as_fd(), t.ticks).map_err(io(what))?;
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pair_parses_fdinfo_times() {
        assert_eq!(super::pair("(4, 987006479)"), Some((4, 987006479)));
        assert_eq!(super::pair(" (0, 0) "), Some((0, 0)));
        assert_eq!(super::pair("4, 5"), None);
    }
}
