//! Probes of what restoring timers needs: `TFD_IOC_SET_TICKS` on a timerfd of our own
//! (`timerfd_create(2)`, CONFIG_CHECKPOINT_RESTORE) and `PR_TIMER_CREATE_RESTORE_IDS` asked for its
//! current setting only (`PR_TIMER_CREATE_RESTORE_IDS_GET`, `linux/prctl.h` of Linux 6.18).

use super::Probed;
use crate::anon;
use std::os::fd::AsFd;

/// `PR_TIMER_CREATE_RESTORE_IDS` and `PR_TIMER_CREATE_RESTORE_IDS_GET`.
const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
const RESTORE_IDS_GET: libc::c_ulong = 2;

pub(super) fn probe_timerfd_ticks() -> Probed {
    let fd = match anon::timerfd_create(libc::CLOCK_MONOTONIC, 0) {
        Ok(fd) => fd,
        Err(e) => return Probed::failed("timerfd_create", e.errno()),
    };
    match anon::timerfd_set_ticks(fd.as_fd(), 1) {
        Ok(()) => Probed::yes("TFD_IOC_SET_TICKS accepted"),
        Err(e) => Probed::failed("ioctl(TFD_IOC_SET_TICKS)", e.errno()),
    }
}

pub(super) fn probe_timer_restore_ids() -> Probed {
    // SAFETY: the GET form only reads this process's setting; the other arguments are unused.
    let ret = unsafe { libc::prctl(PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_GET, 0, 0, 0) };
    match super::sys(ret as libc::c_long) {
        Ok(on) => Probed::yes(format!("PR_TIMER_CREATE_RESTORE_IDS_GET returned {on}")),
        Err(errno) => Probed::failed("prctl(PR_TIMER_CREATE_RESTORE_IDS)", errno),
    }
}
