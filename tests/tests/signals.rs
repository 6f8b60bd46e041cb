//! Signal dispositions, masks, the alternate stack, pending signals and interval timers.

use stasis_tests::harness::checkpoint_restore;
use stasis_tests::workload;

#[test]
fn handlers_masks_altstack_and_pending_signals() {
    checkpoint_restore("signals", workload!("signals"));
}

#[test]
fn interval_timers() {
    checkpoint_restore("itimers", workload!("itimers"));
}
