//! Interval timers survive: ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF armed with long values and
//! intervals must afterwards report 0 < remaining <= the value set and the same interval, and none
//! may have fired. "The value set" is what getitimer reported right after setitimer: the kernel
//! rounds CPU-time timers up to a tick.

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, OrFail};
use std::time::Duration;

const TIMERS: [(&str, i32, i32, u64, u64); 3] = [
    ("ITIMER_REAL", libc::ITIMER_REAL, libc::SIGALRM, 1000, 500),
    ("ITIMER_VIRTUAL", libc::ITIMER_VIRTUAL, libc::SIGVTALRM, 900, 300),
    ("ITIMER_PROF", libc::ITIMER_PROF, libc::SIGPROF, 800, 200),
];

fn main() {
    let mut s = workload::start();
    let mut set = Vec::new();
    for (name, which, sig, value, interval) in TIMERS {
        raw::set_recording_handler(sig, libc::SA_RESTART, SigSet::empty()).or_fail("handler");
        let (v, i) = (Duration::from_secs(value), Duration::from_secs(interval));
        raw::setitimer(which, v, i).or_fail(name);
        set.push(raw::getitimer(which).or_fail(name));
    }
    // Use some CPU so the CPU-time timers are well below their set value (several ticks) before
    // the dump: a restore that re-arms the exact remaining time may then round up by a tick and
    // still stay below.
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(60) {
        std::hint::spin_loop();
    }
    s.ready();
    s.wait_for_wake();
    for ((name, which, sig, _, _), (value, interval)) in TIMERS.into_iter().zip(set) {
        let Some((rem, int)) = s.checker.ok(name, raw::getitimer(which)) else { continue };
        s.checker.check(!rem.is_zero() && rem <= value, || format!("{name} remaining {rem:?}, set to {value:?}"));
        s.checker.same(&format!("{name} interval"), &interval, &int);
        s.checker.same(&format!("{name} signal count"), &0, &raw::handler_record(sig).count);
        s.checker.note(format!("{name} remaining {rem:?}"));
    }
    s.finish()
}
