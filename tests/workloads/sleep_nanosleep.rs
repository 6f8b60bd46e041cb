//! A task asleep in nanosleep resumes correctly: one nanosleep call of N seconds (first argument,
//! default 10) is made right after READY and the total elapsed monotonic time must be at least N
//! seconds. Strict by default: the call must return 0, as after any ptrace stop on a real kernel
//! (the sleep is continued transparently, never cut short with EINTR). With `eintr-ok` as second
//! argument an EINTR is tolerated: the sleep goes on for the remaining time the kernel wrote back,
//! as a careful program does. Finishes by itself.

use stasis_tests::raw;
use stasis_tests::workload::{self, arg, OrFail};
use std::time::Duration;

fn main() {
    let mut s = workload::start();
    let secs: u64 = arg(1, 10);
    let eintr_ok = workload::mode(2, &["eintr-ok"]).is_some();
    let want = Duration::from_secs(secs);
    let t0 = raw::clock_gettime(libc::CLOCK_MONOTONIC).or_fail("clock_gettime");
    s.ready();
    let mut result = raw::nanosleep(want);
    if let Err((e, rem)) = &result {
        let tolerated = eintr_ok && e.raw_os_error() == Some(libc::EINTR);
        s.checker.check(tolerated, || format!("nanosleep failed: {e}, remaining {rem:?}"));
        s.checker.note(format!("nanosleep returned {e}, remaining {rem:?}"));
        // Sleep the rest so the elapsed-time check below still means something.
        let mut left = *rem;
        while let Err((_, rem)) = raw::nanosleep(left) {
            left = rem;
        }
        result = Ok(());
    }
    let elapsed = raw::clock_gettime(libc::CLOCK_MONOTONIC).or_fail("clock_gettime") - t0;
    s.checker.check(result.is_ok() && elapsed >= want, || format!("slept {elapsed:?}, asked for {want:?}"));
    s.checker.note(format!("slept {elapsed:?} for {want:?}"));
    s.finish()
}
