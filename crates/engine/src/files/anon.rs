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
use crate::proc::FdInfo;
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
    let info = p.fdinfo()?;
    from_fdinfo(inner, &info).map_err(|what| p.unsupported(what))
}

/// The state of an `inner` fd (`eventfd`, `signalfd`, `timerfd`) as its fdinfo shows it; the error
/// says what is missing or malformed.
fn from_fdinfo(inner: &str, info: &FdInfo) -> std::result::Result<FileKind, String> {
    let field =
        |key: &str| info.get(key).ok_or_else(|| format!("{inner} without '{key}' in its fdinfo (kernel too old?)"));
    let num = |key: &str, radix: u32| {
        let v = field(key)?;
        u64::from_str_radix(v.trim(), radix).map_err(|_| format!("{inner} with '{key}: {v}' in its fdinfo"))
    };
    let time = |key: &str| pair(field(key)?).ok_or_else(|| format!("{inner} with a bad {key} in its fdinfo"));
    match inner {
        "eventfd" => Ok(FileKind::EventFd(EventFd {
            count: num("eventfd-count", 16)?,
            semaphore: num("eventfd-semaphore", 10)? != 0,
            id: info.get("eventfd-id").and_then(|v| v.parse().ok()).unwrap_or(0),
        })),
        "signalfd" => Ok(FileKind::SignalFd(SignalFd { sigmask: num("sigmask", 16)? })),
        _ => {
            let clockid = field("clockid")?.parse().map_err(|_| format!("{inner} with a bad clockid in its fdinfo"))?;
            let (value, interval) = (time("it_value")?, time("it_interval")?);
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

/// eventfd, signalfd and timerfd, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "eventfd/signalfd/timerfd",
    dump: Some(super::kinds::Dumper {
        claims: |p| p.anon_inode().is_some_and(|i| handles(&i)),
        dump: |p, _| dump(p, &p.anon_inode().unwrap_or_default()),
    }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, settings| Ok(super::kinds::Stateless::boxed(open, settings))),
    finish_restore: None,
};

fn open(f: &stasis_image::model::FileEntry, _: &super::kinds::Settings) -> Option<Result<OwnedFd>> {
    match &f.kind {
        Some(FileKind::EventFd(e)) => Some(open_eventfd(e, f.flags)),
        Some(FileKind::SignalFd(s)) => Some(open_signalfd(s, f.flags)),
        Some(FileKind::TimerFd(t)) => Some(open_timerfd(t, f.flags)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{from_fdinfo, FdInfo};
    use stasis_image::model::{EventFd, FileKind, SignalFd, TimerFd};

    /// An fdinfo with the lines of `text` after `pos`, `flags`, `mnt_id`, as the kernel writes them.
    fn info(text: &str) -> FdInfo {
        let extra = text
            .lines()
            .map(|l| l.split_once(':').map_or((l.to_string(), String::new()), |(k, v)| (k.into(), v.trim().into())))
            .collect();
        FdInfo { pos: 0, flags: 0o2, mnt_id: 17, extra }
    }

    #[test]
    fn eventfd_signalfd_timerfd_from_fdinfo() {
        // As Linux 6.18 writes them (the eventfd counter in hex, padded).
        let e = info("ino:\t1038\neventfd-count:                1a\neventfd-id: 4\neventfd-semaphore: 1");
        let want = FileKind::EventFd(EventFd { count: 26, semaphore: true, id: 4 });
        assert_eq!(from_fdinfo("eventfd", &e), Ok(want));
        let s = info("ino:\t1038\nsigmask:\t0000000c00000800");
        assert_eq!(from_fdinfo("signalfd", &s), Ok(FileKind::SignalFd(SignalFd { sigmask: 0xc00000800 })));
        let t = info(
            "ino:\t1038\nclockid: 1\nticks: 35\nsettime flags: 03\nit_value: (4, 987006479)\nit_interval: (0, 20000000)",
        );
        let want = FileKind::TimerFd(TimerFd {
            clockid: 1,
            ticks: 35,
            settime_flags: 3,
            value_sec: 4,
            value_nsec: 987006479,
            interval_sec: 0,
            interval_nsec: 20000000,
        });
        assert_eq!(from_fdinfo("timerfd", &t), Ok(want));
        // An older kernel without the eventfd-semaphore line is refused, naming the line.
        let old = info("eventfd-count:                1");
        assert!(from_fdinfo("eventfd", &old).unwrap_err().contains("eventfd-semaphore"));
        assert!(from_fdinfo("timerfd", &info("clockid: x")).is_err());
    }

    #[test]
    fn pair_parses_fdinfo_times() {
        assert_eq!(super::pair("(4, 987006479)"), Some((4, 987006479)));
        assert_eq!(super::pair(" (0, 0) "), Some((0, 0)));
        assert_eq!(super::pair("4, 5"), None);
    }
}
