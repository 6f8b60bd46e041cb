//! POSIX timers keep their ids, clocks, notification and value, and fire on schedule after the
//! restore, counted from the checkpoint. Four timers are created (ids 0..=3) and timer 1 deleted,
//! so the ids have a gap:
//! - 0: CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+2 (blocked) with value 0xabc, one-shot 3 s: after the
//!   wake-up, 0 < time left <= 3 s, and the signal is taken with `sigtimedwait` no earlier than
//!   that, with SI_TIMER, the value and the timer id;
//! - 2: CLOCK_REALTIME, SIGEV_NONE, 2 h then every hour: the same interval, 0 < left <= 2 h;
//! - 3: CLOCK_MONOTONIC, SIGEV_THREAD_ID to the main thread, SIGRTMIN+3, disarmed;
//! - 4: CLOCK_MONOTONIC, SIGEV_THREAD_ID to a second thread, SIGRTMIN+4 with value 0x44, one-shot
//!   3 s: that thread, waiting in `sigtimedwait` across the checkpoint (again after the EINTR the
//!   freeze causes), takes it;
//! - 5: CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+5 with value 0x55, 10 ms, fired before the checkpoint:
//!   its signal is still pending after the restore, with SI_TIMER and the value.
//!
//! `/proc/self/timers` must read exactly as before, and timer 1 must not exist.

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, OrFail};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ONESHOT: Duration = Duration::from_secs(3);
const HOUR: Duration = Duration::from_secs(3600);
const SLACK: Duration = Duration::from_millis(5);
const SI_TIMER: i32 = -2;

fn main() {
    let mut s = workload::start();
    let (rt2, rt3, rt4, rt5) = (raw::sigrtmin() + 2, raw::sigrtmin() + 3, raw::sigrtmin() + 4, raw::sigrtmin() + 5);
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[rt2, rt3, rt4, rt5])).or_fail("block");
    let (tid_tx, tid_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tid_tx.send(raw::raw_gettid());
        // The freeze of a checkpoint interrupts sigtimedwait (EINTR, never restarted): wait again.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match raw::sigtimedwait(SigSet::of(&[rt4]), left) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                r => return r.map_err(|e| e.to_string()),
            }
        }
    });
    let waiter_tid = tid_rx.recv().or_fail("second thread's tid");
    let mono = libc::CLOCK_MONOTONIC;
    let t0 = raw::timer_create(mono, 0, rt2, 0xabc, 0).or_fail("timer_create 0");
    let t1 = raw::timer_create(mono, 0, rt2, 1, 0).or_fail("timer_create 1");
    let t2 = raw::timer_create(libc::CLOCK_REALTIME, 1, 0, 0, 0).or_fail("timer_create 2");
    let t3 = raw::timer_create(mono, 4, rt3, 3, s.tid()).or_fail("timer_create 3");
    let t4 = raw::timer_create(mono, 4, rt4, 0x44, waiter_tid).or_fail("timer_create 4");
    let t5 = raw::timer_create(mono, 0, rt5, 0x55, 0).or_fail("timer_create 5");
    raw::timer_delete(t1).or_fail("timer_delete 1");
    raw::timer_settime(t4, ONESHOT, Duration::ZERO).or_fail("settime 4");
    raw::timer_settime(t5, Duration::from_millis(10), Duration::ZERO).or_fail("settime 5");
    std::thread::sleep(Duration::from_millis(50));
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
    match raw::sigtimedwait(SigSet::of(&[rt5]), Duration::ZERO) {
        Ok(info) => {
            c.same("timer 5 pending signal", &(rt5, SI_TIMER, 0x55, t5), &(info.signo, info.code, info.value, info.pid))
        }
        Err(e) => c.check(false, || format!("timer {t5}'s signal is no longer pending: {e}")),
    }
    match waiter.join() {
        Ok(Ok(info)) => c.same(
            "timer 4 signal in the second thread",
            &(rt4, SI_TIMER, 0x44, t4),
            &(info.signo, info.code, info.value, info.pid),
        ),
        Ok(Err(e)) => c.check(false, || format!("the second thread did not get timer {t4}'s signal: {e}")),
        Err(_) => c.check(false, || "the second thread panicked".into()),
    }
    s.finish()
}
