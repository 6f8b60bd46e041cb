//! A task asleep in clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) resumes correctly: one call
//! with a deadline N seconds (argument, default 10) after READY must return 0 at or after the
//! deadline. Finishes by itself.

use stasis_tests::raw;
use stasis_tests::workload::{self, arg, OrFail};
use std::time::Duration;

fn main() {
    let mut s = workload::start();
    let secs: u64 = arg(1, 10);
    let deadline = raw::clock_gettime(libc::CLOCK_MONOTONIC).or_fail("clock_gettime") + Duration::from_secs(secs);
    s.ready();
    let first = raw::clock_nanosleep_abs(libc::CLOCK_MONOTONIC, deadline);
    s.checker.check(first.is_ok(), || format!("clock_nanosleep returned {first:?}"));
    while raw::clock_nanosleep_abs(libc::CLOCK_MONOTONIC, deadline).is_err() {}
    let now = raw::clock_gettime(libc::CLOCK_MONOTONIC).or_fail("clock_gettime");
    if first.is_ok() {
        s.checker.check(now >= deadline, || format!("woke at {now:?}, before the deadline {deadline:?}"));
    }
    s.finish()
}
