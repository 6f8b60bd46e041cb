//! A process in a time namespace of its own, started by `unshare --time --fork --monotonic=S
//! --boottime=S` (the harness checkpoints the child). It records its namespace's offsets
//! (`/proc/self/timens_offsets`) and its monotonic and boot clocks, through the vDSO and through
//! the system call.
//!
//! After the wake it checks the offsets are the same, and that each clock went on from where it
//! was (not back, and still past the offset: the namespace's clocks, not the host's).

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::time::Duration;

/// The offsets the harness gives `unshare` (seconds), far above this machine's uptime.
const MONOTONIC: u64 = 1_000_000;
const BOOTTIME: u64 = 2_000_000;

fn clocks() -> [Duration; 4] {
    let vdso = |c| raw::clock_gettime(c).or_fail("clock_gettime");
    let sys = |c| raw::clock_gettime_syscall(c).or_fail("clock_gettime (system call)");
    [vdso(libc::CLOCK_MONOTONIC), vdso(libc::CLOCK_BOOTTIME), sys(libc::CLOCK_MONOTONIC), sys(libc::CLOCK_BOOTTIME)]
}

fn main() {
    let mut s = workload::start();
    let offsets = std::fs::read_to_string("/proc/self/timens_offsets").or_fail("timens_offsets");
    let before = clocks();
    s.ready();
    s.wait_for_wake();
    let after = clocks();
    let now = std::fs::read_to_string("/proc/self/timens_offsets").map_err(|e| e.to_string());
    s.checker.same("timens_offsets", &Ok(offsets), &now);
    let names = ["monotonic (vDSO)", "boottime (vDSO)", "monotonic (syscall)", "boottime (syscall)"];
    let floors = [MONOTONIC, BOOTTIME, MONOTONIC, BOOTTIME];
    for ((name, floor), (b, a)) in names.iter().zip(floors).zip(before.iter().zip(&after)) {
        let ok = a >= b && a.as_secs() >= floor && b.as_secs() >= floor;
        s.checker.check(ok, || format!("{name}: {b:?} before, {a:?} after, want both past {floor} s, not back"));
    }
    s.finish();
}
