//! The end-to-end harness: runs workloads, checkpoints them with the `stasis` binary, restores
//! them, compares `/proc` before and after, and collects the workload's PASS/FAIL verdict.
//!
//! The test process makes itself a child subreaper so that a process restored with
//! `stasis restore -d` becomes its child when stasis exits and can be waited for. Every wait has a
//! timeout and every process a test starts is killed on drop, so a bug never hangs CI; each test
//! works in its own directory, so tests run in parallel.

mod cbuild;
mod dir;
mod flow;
mod process;
mod pty;
mod snapshot;
mod stasis;

pub use cbuild::static_c_workload;
pub use dir::{tail, TestDir, TmpfsMount};
pub use flow::{checkpoint_restore, processes_of, standalone, Case};
pub use process::{proc_state, tree_pids, Running, Workload, EXIT_TIMEOUT, READY_TIMEOUT};
pub use pty::{shell_job, Pty};
pub use snapshot::{line_diff, normalize_maps, number_deleted, select_status, Snapshot, STATUS_KEYS};
pub use stasis::{wait_child, CmdResult, Stasis, STASIS_TIMEOUT};

/// A [`Workload`] for the workload binary `name` of this package (`CARGO_BIN_EXE_<name>`; only
/// usable from integration tests, where Cargo sets it).
#[macro_export]
macro_rules! workload {
    ($name:literal) => {
        $crate::harness::Workload::new($name, env!(concat!("CARGO_BIN_EXE_", $name)))
    };
}

/// Process-wide setup: become a child subreaper (idempotent).
pub fn init() {
    crate::raw::set_child_subreaper().expect("prctl(PR_SET_CHILD_SUBREAPER)");
}

/// Reports that a test is skipped: `skipped: <reason>` on stderr.
pub fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
}
