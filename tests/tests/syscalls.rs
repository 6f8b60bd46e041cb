//! Tasks asleep in system calls resume correctly after restore (syscall restart). The sleeping
//! workloads finish by themselves; they sleep long enough for the dump and restore to happen
//! first (if not, the dump finds the process gone and the test fails, saying so).

use stasis_tests::harness::checkpoint_restore;
use stasis_tests::workload;

/// The strict form: the sleep must not return EINTR (as after a ptrace stop on a real kernel).
#[test]
fn nanosleep_is_not_interrupted() {
    checkpoint_restore("sleep_nanosleep", workload!("sleep_nanosleep").arg("10").self_finishing());
}

/// The tolerant form: an EINTR with the correct remaining time is accepted; the total time slept
/// must still be at least the time asked for.
#[test]
fn nanosleep_sleeps_the_total_time() {
    let w = workload!("sleep_nanosleep").arg("10").arg("eintr-ok").self_finishing();
    checkpoint_restore("sleep_nanosleep_eintr_ok", w);
}

#[test]
fn clock_nanosleep_abstime() {
    checkpoint_restore("sleep_abstime", workload!("sleep_abstime").arg("10").self_finishing());
}

#[test]
fn pause() {
    checkpoint_restore("wait_pause", workload!("wait_signal").arg("pause"));
}

#[test]
fn sigsuspend_with_its_own_mask() {
    checkpoint_restore("wait_sigsuspend", workload!("wait_signal").arg("sigsuspend"));
}

#[test]
fn read_blocked_on_a_pipe() {
    checkpoint_restore("pipe_read", workload!("pipe_read").arg("10").self_finishing());
}
