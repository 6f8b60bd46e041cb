//! The simplest workload: a little heap and stack state and the protocol checks (pid, tid, mask).
//! Used by the lifecycle and failure-path tests. Optional argument: the exit code to use on PASS
//! (to check that `stasis restore` without `-d` passes the restored process's status through).

use stasis_tests::workload::{self, arg};

fn main() {
    let mut s = workload::start();
    let pass_code: i32 = arg(1, 0);
    let heap: Vec<u64> = (0..10_000u64).map(|i| i * i).collect();
    let text = String::from("the quick brown fox");
    let mut stack = [0u8; 4096];
    workload::pattern_fill(&mut stack, 7);
    s.ready();
    s.wait_for_wake();
    let sum: u64 = heap.iter().enumerate().map(|(i, &v)| v ^ (i as u64 * i as u64)).sum();
    s.checker.same("heap vector checksum", &0, &sum);
    s.checker.same("heap string", "the quick brown fox", text.as_str());
    let bad = workload::pattern_mismatch(&stack, 7);
    s.checker.check(bad.is_none(), || format!("stack array differs at {bad:?}"));
    s.finish_with(pass_code)
}
