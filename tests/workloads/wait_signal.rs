//! A task waiting for a signal resumes correctly. Argument `pause`: SIGUSR1 unblocked, pause()
//! must return exactly once (for SIGUSR1; a spurious EINTR means the restart went wrong).
//! Argument `sigsuspend` (default): the normal mask blocks SIGUSR1, SIGUSR2 and SIGHUP; the task
//! waits in sigsuspend with a different mask (SIGINT, SIGQUIT, SIGHUP); sigsuspend must return
//! exactly once and the normal mask must be back afterwards (the kernel keeps the normal mask
//! aside while the task sleeps).

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, OrFail, WAKE};

fn main() {
    let mut s = workload::start();
    let mode = workload::mode(1, &["pause", "sigsuspend"]).unwrap_or("sigsuspend");
    let mut returns = 0;
    if mode == "pause" {
        raw::sigprocmask(libc::SIG_UNBLOCK, SigSet::of(&[WAKE])).or_fail("unblock SIGUSR1");
        let mask = raw::blocked_mask();
        s.ready();
        while !s.woke() {
            raw::pause();
            returns += 1;
        }
        s.checker.same("blocked mask", &mask, &raw::blocked_mask());
    } else {
        let normal = SigSet::of(&[WAKE, libc::SIGUSR2, libc::SIGHUP]);
        raw::sigprocmask(libc::SIG_SETMASK, normal).or_fail("set mask");
        raw::set_recording_handler(libc::SIGUSR2, 0, SigSet::empty()).or_fail("SIGUSR2 handler");
        let during = SigSet::of(&[libc::SIGINT, libc::SIGQUIT, libc::SIGHUP]);
        s.ready();
        while !s.woke() {
            raw::sigsuspend(during);
            returns += 1;
        }
        s.checker.same("blocked mask after sigsuspend", &normal, &raw::blocked_mask());
        s.checker.same("handler mask during SIGUSR1", &during.with(WAKE), &raw::handler_record(WAKE).mask);
    }
    s.checker.same(&format!("{mode} returns"), &1, &returns);
    s.finish()
}
