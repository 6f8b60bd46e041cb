//! Timer fds keep their clock, time left, interval, unread expirations and settime flags, and fire on
//! schedule after the restore, counted from the checkpoint:
//! - `oneshot`: CLOCK_MONOTONIC, 3 s, blocking: after the wake-up 0 < time left <= 3 s, and a
//!   blocking read returns 1 no earlier than that time left;
//! - `periodic`: CLOCK_MONOTONIC, every 20 ms, left unread for 200 ms before READY: the first read
//!   after the wake-up returns at least the 10 expirations that happened before, and the interval
//!   is still 20 ms;
//! - `expired`: a one-shot of 10 ms that fired unread: disarmed, and reads 1 (non-blocking);
//! - `abstime`: CLOCK_REALTIME, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, one hour ahead: the same
//!   settime flags and 0 < time left <= 1 h.

use stasis_tests::raw;
use stasis_tests::workload::{self, fdinfo_field, OrFail};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

const ONESHOT: Duration = Duration::from_secs(3);
const PERIOD: Duration = Duration::from_millis(20);
const HOUR: Duration = Duration::from_secs(3600);
/// How early a read may return (the clock's granularity; no timer fires before its time).
const SLACK: Duration = Duration::from_millis(5);

fn main() {
    let mut s = workload::start();
    let mono = libc::CLOCK_MONOTONIC;
    let oneshot = raw::timerfd_create(mono, 0).or_fail("timerfd");
    let periodic = raw::timerfd_create(mono, libc::TFD_NONBLOCK).or_fail("timerfd");
    let expired = raw::timerfd_create(mono, libc::TFD_NONBLOCK).or_fail("timerfd");
    let abstime = raw::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK).or_fail("timerfd");
    raw::timerfd_settime(oneshot.as_fd(), 0, ONESHOT, Duration::ZERO).or_fail("settime oneshot");
    raw::timerfd_settime(periodic.as_fd(), 0, PERIOD, PERIOD).or_fail("settime periodic");
    raw::timerfd_settime(expired.as_fd(), 0, Duration::from_millis(10), Duration::ZERO).or_fail("settime expired");
    let now = raw::clock_gettime(libc::CLOCK_REALTIME).or_fail("clock_gettime");
    let flags = libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET;
    raw::timerfd_settime(abstime.as_fd(), flags, now + HOUR, Duration::ZERO).or_fail("settime abstime");
    std::thread::sleep(10 * PERIOD);
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;

    let left = raw::timerfd_gettime(oneshot.as_fd()).map(|t| t.0).unwrap_or_default();
    c.check(!left.is_zero() && left <= ONESHOT, || format!("oneshot: time left {left:?} (set to {ONESHOT:?})"));
    let t0 = Instant::now();
    let n = raw::read_u64(oneshot.as_fd());
    let took = t0.elapsed();
    c.same("oneshot expirations", &1, &n.unwrap_or(0));
    c.check(took + SLACK >= left, || format!("oneshot fired after {took:?}, {left:?} early"));
    c.note(format!("oneshot: {left:?} left after the restore, fired after {took:?}"));

    let n = raw::read_u64(periodic.as_fd()).unwrap_or(0);
    c.check(n >= 10, || format!("periodic: {n} expirations read, at least 10 happened before the checkpoint"));
    let interval = raw::timerfd_gettime(periodic.as_fd()).map(|t| t.1).unwrap_or_default();
    c.same("periodic interval", &PERIOD, &interval);
    c.note(format!("periodic: {n} expirations"));

    let (value, _) = raw::timerfd_gettime(expired.as_fd()).unwrap_or((Duration::MAX, Duration::ZERO));
    c.same("expired: time left", &Duration::ZERO, &value);
    c.same("expired: unread expirations", &1, &raw::read_u64(expired.as_fd()).unwrap_or(0));
    c.same("expired: ticks after the read", &Some("0".to_string()), &fdinfo_field(expired.as_raw_fd(), "ticks"));

    let left = raw::timerfd_gettime(abstime.as_fd()).map(|t| t.0).unwrap_or_default();
    c.check(!left.is_zero() && left <= HOUR, || format!("abstime: time left {left:?}"));
    c.same("abstime settime flags", &Some("03".to_string()), &fdinfo_field(abstime.as_raw_fd(), "settime flags"));
    c.same("abstime clockid", &Some("0".to_string()), &fdinfo_field(abstime.as_raw_fd(), "clockid"));
    c.same("oneshot clockid", &Some("1".to_string()), &fdinfo_field(oneshot.as_raw_fd(), "clockid"));
    let fl = raw::get_fl(oneshot.as_fd()).unwrap_or(-1) & libc::O_NONBLOCK;
    c.same("oneshot O_NONBLOCK", &0, &fl);
    let fl = raw::get_fl(periodic.as_fd()).unwrap_or(-1) & libc::O_NONBLOCK;
    c.same("periodic O_NONBLOCK", &libc::O_NONBLOCK, &fl);
    s.finish()
}
