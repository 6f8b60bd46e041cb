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
mod outside;
mod process;
mod program;
mod pty;
mod snapshot;
mod stasis;
mod swrk;

pub use cbuild::static_c_workload;
pub use dir::{tail, TestDir, TmpfsMount};
pub use flow::{checkpoint_restore, processes_of, standalone, Case};
pub use outside::{OutsideReader, INHERITED_FD};
pub use process::{proc_state, tree_pids, Running, Workload, EXIT_TIMEOUT, READY_TIMEOUT};
pub use program::{ask, busybox_rootfs, find_program, program_file, BUSYBOX_COUNTER};
pub use pty::{shell_job, Pty};
pub use snapshot::{line_diff, normalize_maps, number_deleted, select_status, Snapshot, STATUS_KEYS};
pub use stasis::{wait_child, CmdResult, Stasis, STASIS_TIMEOUT};
pub use swrk::{request, SwrkClient};

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

/// The environment variable naming the file where skipped tests are recorded (set by
/// `scripts/test.sh`, whose totals line counts them as skipped, not passed).
pub const SKIPPED_FILE_ENV: &str = "STASIS_SKIPPED_FILE";

/// Reports that a test is skipped: `skipped: <reason>` on stderr, and, when
/// [`SKIPPED_FILE_ENV`] names a file, one line `<test binary>\t<test name>\t<reason>` appended to
/// it. A Rust test cannot mark itself skipped at run time: it returns and is counted as passed,
/// so the suite's totals move the tests of that file from passed to skipped.
pub fn skip(reason: &str) {
    eprintln!("skipped: {reason}");
    let Some(file) = std::env::var_os(SKIPPED_FILE_ENV) else { return };
    let line = format!("{}\t{}\t{}\n", test_binary(), test_name(), reason.replace(['\t', '\n'], " "));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        panic!("record the skip in {}: {e}", std::path::Path::new(&file).display());
    }
}

/// The running test's name: libtest (under cargo test and nextest) names the thread of each test
/// after it.
fn test_name() -> String {
    std::thread::current().name().unwrap_or("unknown").to_string()
}

/// The test binary's name without Cargo's hash (`memory-0123abcd` is `memory`).
fn test_binary() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe.as_deref().and_then(|e| e.file_stem()).map(|s| s.to_string_lossy().into_owned());
    let stem = stem.unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => stem,
    }
}
