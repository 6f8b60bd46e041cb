//! POSIX timers keep their ids, clocks, notification and value, and fire on schedule after the
//! restore, counted from the checkpoint. Four timers are created (ids 0..=3) and timer 1 deleted,
//! so the ids have a gap:
//! - 0: CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+2 (blocked) with value 0xabc, one-shot 3 s: after the
//!   wake-up, 0 < time left <= 3 s, and the signal is taken with `sigtimedwait` no earlier than
//!   that, with SI_TIMER, the value and the timer id;
//! - 2: CLOCK_REALTIME, SIGEV_NONE, 2 h then every hour: the same interval, 0 < left <= 2 h;
//! - 3: CLOCK_MONOTONIC, SIGEV_THREAD_ID to the main thread, SIGRTMIN+3, disarmed.
//!
//! `/proc/self/timers` must read exactly as before, and timer 1 must not exist.

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, OrFail};
use std::time::{Duration, Instant};

const ONESHOT: Duration = Duration::from_secs(3);
const HOUR: Duration = Duration::from_secs(3600);
const SLACK: Duration = Duration::from_millis(5);
const SI_TIMER: i32 = -2;

fn main() {
    let mut s = workload::start();
    let (rt2, rt3) = (raw::sigrtmin() + 2, raw::sigrtmin() + 3);
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[rt2, rt3])).or_fail("block");
    let mono = libc::CLOCK_MONOTONIC;
    let t0 = raw::timer_create(mono, 0, rt2, 0xabc, 0).or_fail("timer_create 0");
    let t1 = raw::timer_create(mono, 0, rt2, 1, 0).or_fail("timer_create 1");
    let t2 = raw::timer_create(libc::CLOCK_REALTIME, 1, 0, 0, 0).or_fail("timer_create 2");
    let t3 = raw::timer_create(mono, 4, rt3, 3, s.tid()).or_fail("timer_create 3");
    raw::timer_delete(t1).or_fail("timer_delete 1");
    raw::timer_settime(t0, ONESHOT, Duration::ZERO).or_fail("settime 0");
    raw::timer_settime(t2, 2 * HOUR, HOUR).or_fail("settime 2");
    let listing = std::fs::read_to_string("/proc/self/timers").or_fail("/proc/self/timers");
    workload::say(&format!("TIMERS {t0} {t2} {t3}"));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("/proc/self/timers", &listing, &std::fs::read_to_string("/proc/self/timers").unwrap_or_default());
    let gone = raw::timer_gettime(t1);
    c.check(matches!(&gone, Err(e) if e.raw_os_error() == Some(libc::EINVAL)), || {
        format!("deleted timer {t1}: {gone:?}")
    });

    let (left, _) = raw::timer_gettime(t0).unwrap_or_default();
    c.check(!left.is_zero() && left <= ONESHOT, || format!("timer {t0}: time left {left:?} (set to {ONESHOT:?})"));
    let start = Instant::now();
    let got = raw::sigtimedwait(SigSet::of(&[rt2]), left + Duration::from_secs(10));
    let took = start.elapsed();
    match got {
        Ok(info) => {
            c.same("timer 0 signal", &(rt2, SI_TIMER, 0xabc), &(info.signo, info.code, info.value));
            c.same("timer 0 si_timerid", &t0, &info.pid);
            c.check(took + SLACK >= left, || format!("timer {t0} fired after {took:?}, {left:?} early"));
        }
        Err(e) => c.check(false, || format!("timer {t0} did not fire: {e}")),
    }
    c.note(format!("timer {t0}: {left:?} left after the restore, fired after {took:?}"));

    let (left, interval) = raw::timer_gettime(t2).unwrap_or_default();
    c.check(!left.is_zero() && left <= 2 * HOUR, || format!("timer {t2}: time left {left:?}"));
    c.same("timer 2 interval", &HOUR, &interval);
    c.same("timer 3 (disarmed)", &Some((Duration::ZERO, Duration::ZERO)), &raw::timer_gettime(t3).ok());
    let pending = raw::sigpending().unwrap_or(SigSet::empty());
    c.check(!pending.contains(rt3), || "timer 3 signalled though disarmed".into());
    s.finish()
}
