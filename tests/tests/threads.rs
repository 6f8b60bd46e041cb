//! Multi-threaded processes: every thread's registers (caught in user space and in system calls),
//! TLS and segment bases, name, blocked mask, thread-directed pending signals, alternate stack,
//! rseq, robust list, clear-child-tid address, scheduling attributes, and its original tid. The `standalone_*` tests run the same workloads without stasis,
//! so that an end-to-end failure points at stasis, not at the workload.

use stasis_tests::harness::{checkpoint_restore, standalone};
use stasis_tests::workload;

#[test]
fn pool_of_sixteen_threads_in_four_kinds_of_wait() {
    checkpoint_restore("threads_pool", workload!("threads_pool"));
}

#[test]
fn per_thread_pending_signals_and_alternate_stacks() {
    checkpoint_restore("threads_signals", workload!("threads_signals"));
}

#[test]
fn per_thread_rseq_tls_robust_list_and_clear_child_tid() {
    checkpoint_restore("threads_rseq_tls", workload!("threads_rseq_tls"));
}

#[test]
fn standalone_threads_pool() {
    standalone("sa-threads_pool", workload!("threads_pool"));
}

#[test]
fn standalone_threads_signals() {
    standalone("sa-threads_signals", workload!("threads_signals"));
}

#[test]
fn standalone_threads_rseq_tls() {
    standalone("sa-threads_rseq_tls", workload!("threads_rseq_tls"));
}

#[test]
fn every_threads_regs_caught_in_user_space() {
    checkpoint_restore("threads_regs", workload!("threads_regs"));
}

#[test]
fn standalone_threads_regs() {
    standalone("sa-threads_regs", workload!("threads_regs"));
}

#[test]
fn per_thread_nice_policy_affinity_timer_slack_and_traps() {
    checkpoint_restore("threads_attrs", workload!("threads_attrs"));
}

#[test]
fn standalone_threads_attrs() {
    standalone("sa-threads_attrs", workload!("threads_attrs"));
}
