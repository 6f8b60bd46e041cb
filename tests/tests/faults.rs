//! A fault at every call: a small single-process workload and a tree (threads, a pipe, a UNIX
//! socket pair and a pty between two processes) are dumped with `STASIS_FAULT=dump-call:N` for
//! each injected call N and `dump-write:N` for each image write, and restored with
//! `restore-call:N` for each call of a restore. After each failed dump every process of the tree
//! runs on as it was (its maps, with no scratch area left, its status and every thread's signal
//! masks, its fds and their positions and flags, nobody tracing it) and no image is left; after
//! each failed restore no process of the image is left, running or stopped. In the end the tree
//! is dumped and restored for real, compared with the state before the sweep, and PASSes.
//!
//! The counts come from the `--json` reports of a clean dump (`--leave-running`) and a clean
//! restore. N runs over every call for the small workload; for the tree over every call too unless
//! there are more than [`EVERY_CALL_UP_TO`], then over the first and last [`ENDS`] and a fixed
//! stride between (deterministic: the same N every run).

use stasis_tests::harness::{proc_state, select_status, tree_pids, Case, CmdResult, Running, Snapshot};
use stasis_tests::workload;
use std::path::Path;
use std::time::{Duration, Instant};

/// Up to this many calls, every one is failed in turn.
const EVERY_CALL_UP_TO: u64 = 120;
/// With more, the first and last this many, and [`STRIDE_COUNT`] spread evenly between.
const ENDS: u64 = 10;
const STRIDE_COUNT: u64 = 60;
/// How long the tree may take to settle back into its waits after a failed dump.
const SETTLE: Duration = Duration::from_secs(10);
/// The pty indices the tree leaves free below its own, for the ptys of tests running meanwhile.
const PTYS_BELOW: &str = "36";

/// Everything compared of one process: its snapshot and each thread's status lines.
#[derive(Debug, PartialEq, Eq)]
struct ProcessState {
    pid: i32,
    snapshot: Snapshot,
    threads: Vec<(i32, Vec<String>)>,
}

fn thread_states(pid: i32) -> Vec<(i32, Vec<String>)> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    tids.sort_unstable();
    tids.into_iter()
        .map(|t| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/status")).unwrap_or_default();
            (t, select_status(&text))
        })
        .collect()
}

fn tree_state(case: &Case, pids: &[i32]) -> Vec<ProcessState> {
    pids.iter().map(|&pid| ProcessState { pid, snapshot: case.snapshot(pid), threads: thread_states(pid) }).collect()
}

/// The tree's state once it has settled (two reads 100 ms apart agree).
fn settled(case: &Case, pids: &[i32]) -> Vec<ProcessState> {
    let deadline = Instant::now() + SETTLE;
    let mut last = tree_state(case, pids);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = tree_state(case, pids);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// The first difference between two states of the tree, readable.
fn difference(before: &[ProcessState], after: &[ProcessState]) -> Option<String> {
    for (b, a) in before.iter().zip(after) {
        if let Some(d) = b.snapshot.diff(&a.snapshot) {
            return Some(format!("pid {}:\n{d}", b.pid));
        }
        if b.threads != a.threads {
            return Some(format!("pid {} threads:\n{:?}\nbecame\n{:?}", b.pid, b.threads, a.threads));
        }
    }
    (before.len() != after.len()).then(|| "the number of processes changed".to_string())
}

/// Waits until the tree is as `before`, else fails naming `what` and the difference.
fn expect_unchanged(case: &Case, pids: &[i32], before: &[ProcessState], what: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let untouched = pids.iter().all(|&p| matches!(proc_state(p), Some((s, 0)) if s != 'T' && s != 't' && s != 'Z'));
        let diff = difference(before, &tree_state(case, pids));
        match diff {
            None if untouched => return,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            d => {
                let states: Vec<_> = pids.iter().map(|&p| (p, proc_state(p))).collect();
                case.fail(&format!("after {what}: (pid, (state, tracer)) {states:?}; {}", d.unwrap_or_default()))
            }
        }
    }
}

/// The number `"key": N` in a `--json` report.
fn number_in(report: &str, key: &str) -> Option<u64> {
    let (_, rest) = report.split_once(&format!("\"{key}\":"))?;
    rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The number `"key": N` of the `--json` report of `r`.
fn report_number(case: &Case, r: &CmdResult, key: &str) -> u64 {
    number_in(&r.stdout, key).unwrap_or_else(|| case.fail(&format!("no {key} in the report:\n{}", r.describe())))
}

/// The N to fail out of `total`: every one, or the ends and a fixed stride between.
fn spread(total: u64, every: bool) -> Vec<u64> {
    if every || total <= EVERY_CALL_UP_TO {
        return (1..=total).collect();
    }
    let stride = (total - 2 * ENDS) / STRIDE_COUNT + 1;
    let mut ns: Vec<u64> = (1..=ENDS).chain((ENDS + 1..=total - ENDS).step_by(stride as usize)).collect();
    ns.extend(total - ENDS + 1..=total);
    ns
}

fn expect_no_images(case: &Case, images: &Path, what: &str) {
    let left: Vec<_> =
        std::fs::read_dir(images).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    if !left.is_empty() {
        case.fail(&format!("{what} left {left:?} in {}", images.display()));
    }
}

/// One dump with `fault` (`point:N`) and `extra` options, which must fail saying so and leave the
/// tree as `before`, unless it is a dump without `--leave-running` that made fewer than N calls:
/// then it must succeed, and the report is returned.
fn faulted_dump(
    case: &Case,
    run: &Running,
    tree: (&[i32], &[ProcessState]),
    fault: (&str, u64),
    extra: &[&str],
) -> Option<CmdResult> {
    let (pids, before) = tree;
    let fault = (fault.0, fault.1, format!("{}:{}", fault.0, fault.1));
    let images = case.images("faulted");
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = case.dump(run, &images, &args, &[("STASIS_FAULT", &fault.2)]);
    let what = format!("the dump {extra:?} with STASIS_FAULT={}", fault.2);
    if r.success() && extra.is_empty() && fault.0 == "dump-call" && report_number(case, &r, "injected_calls") < fault.1
    {
        return Some(r);
    }
    case.expect_failed(&r, &what, &[&["fault injected", "STASIS_FAULT"]]);
    expect_no_images(case, &images, &what);
    expect_unchanged(case, pids, before, &what);
    None
}

/// One restore of `images` with `restore-call:n`, which must fail and leave no process of `pids`,
/// unless the restore made fewer than `n` calls: then it must succeed, and the restored tree is
/// returned.
fn faulted_restore(case: &Case, images: &Path, pids: &[i32], n: u64) -> Option<Running> {
    let fault = format!("restore-call:{n}");
    let (r, pidfile) = case.stasis().restore_detached(&case.dir, images, &["--json"], &[("STASIS_FAULT", &fault)]);
    if r.success() && report_number(case, &r, "injected_calls") < n {
        let restored = Running::adopt(pids[0], case.workload.name(), case.log_of_first_run(), case.workload.wakes());
        let text = std::fs::read_to_string(&pidfile).unwrap_or_default();
        if text.trim() != pids[0].to_string() {
            case.fail(&format!("the restore wrote pid {text:?} into {}, not {}", pidfile.display(), pids[0]));
        }
        return Some(restored);
    }
    let what = format!("the restore with STASIS_FAULT={fault}");
    case.expect_failed(&r, &what, &[&["fault injected", "STASIS_FAULT"]]);
    expect_gone_unreaped(case, pids, &what);
    for &pid in pids {
        case.expect_no_process_left(pid);
    }
    None
}

/// Every process of `pids` is gone, without our reaping any: a zombie of the failed restore that
/// came to us (the subreaper) holds its pid (and the groups and sessions it is in) until reaped.
fn expect_gone_unreaped(case: &Case, pids: &[i32], what: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let left: Vec<_> = pids.iter().filter_map(|&p| Some((p, proc_state(p)?))).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            case.fail(&format!("{what} left (pid, (state, tracer)) {left:?}, not reaped by stasis"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The dump sweep of a running tree: every chosen call and every write fails in a dump with
/// `--leave-running`, then every write and every chosen call in a dump that kills the tree, up to
/// the first N past the calls such a dump makes, which succeeds. Returns its image directory.
fn dump_sweep(case: &Case, run: &mut Running, pids: &[i32], every: bool) -> std::path::PathBuf {
    let before = settled(case, pids);
    let counted = case.images("counted");
    let r = case.dump(run, &counted, &["--leave-running", "--json"], &[]);
    if !r.success() {
        case.fail(&format!("the clean dump failed:\n{}", r.describe()));
    }
    expect_unchanged(case, pids, &before, "the clean dump with --leave-running");
    let (calls, writes) = (report_number(case, &r, "injected_calls"), report_number(case, &r, "image_writes"));
    eprintln!("dump: {calls} injected calls, {writes} image writes");
    let tree = (pids, before.as_slice());
    for n in spread(calls, every) {
        faulted_dump(case, run, tree, ("dump-call", n), &["--leave-running"]);
    }
    for n in 1..=writes {
        faulted_dump(case, run, tree, ("dump-write", n), &["--leave-running"]);
        faulted_dump(case, run, tree, ("dump-write", n), &[]);
    }
    for n in spread(calls, every).into_iter().chain([calls + 1]) {
        if faulted_dump(case, run, tree, ("dump-call", n), &[]).is_some() {
            case.reap_dumped(run);
            return case.images("faulted");
        }
    }
    case.fail(&format!("the dump with STASIS_FAULT=dump-call:{} failed", calls + 1))
}

/// The sweep: the dump sweep, a restore to count its calls and a dump again, the restore sweep up
/// to the first N past the calls a restore makes, which succeeds; then compare and PASS.
fn sweep(case: &Case, every: bool) {
    let Some(mut run) = case.start() else { return };
    let pids = tree_pids(run.pid());
    let before = settled(case, &pids);
    let images = dump_sweep(case, &mut run, &pids, every);
    let mut restored = case.restore_ok(&images, run.pid(), &["--json"]);
    let calls = restore_calls(case);
    eprintln!("restore: {calls} injected calls");
    let again = case.images("again");
    case.dump_ok(&restored, &again, &[]);
    case.reap_dumped(&mut restored);
    let Some(mut restored) =
        spread(calls, every).into_iter().chain([calls + 1]).find_map(|n| faulted_restore(case, &again, &pids, n))
    else {
        case.fail(&format!("the restore with STASIS_FAULT=restore-call:{} failed", calls + 1))
    };
    if let Some(d) = difference(&before, &settled(case, &pids)) {
        case.fail(&format!("the restored tree differs from the tree before the sweep: {d}"));
    }
    case.finish(&mut restored);
}

/// `injected_calls` of the last restore's report (its stdout file in the test directory).
fn restore_calls(case: &Case) -> u64 {
    let mut outs: Vec<_> = std::fs::read_dir(case.dir.path())
        .expect("list the test directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("restore")))
        .filter(|p| p.extension().is_some_and(|e| e == "stdout"))
        .collect();
    outs.sort();
    let out = outs.last().unwrap_or_else(|| case.fail("no restore stdout file"));
    let stdout = std::fs::read_to_string(out).unwrap_or_default();
    number_in(&stdout, "injected_calls")
        .unwrap_or_else(|| case.fail(&format!("no injected_calls in {}:\n{stdout}", out.display())))
}

#[test]
fn a_fault_at_every_call_of_a_small_process() {
    sweep(&Case::new("faults_small", workload!("basic")), true);
}

#[test]
fn a_fault_at_every_call_of_a_tree() {
    sweep(&Case::new("faults_tree", workload!("fault_tree").arg(PTYS_BELOW)), false);
}

#[test]
fn spread_is_every_call_or_the_ends_and_a_stride() {
    assert_eq!(spread(5, false), [1, 2, 3, 4, 5]);
    let ns = spread(1000, false);
    assert_eq!(&ns[..10], (1..=10).collect::<Vec<_>>());
    assert_eq!(&ns[ns.len() - 10..], (991..=1000).collect::<Vec<_>>());
    assert!(ns.windows(2).all(|w| w[0] < w[1]), "{ns:?}");
    assert!(ns.len() < 250, "{}", ns.len());
}

/// More workloads, swept by hand (`--ignored`): each takes longer than the suite allows.
mod more {
    use super::*;

    #[test]
    #[ignore = "a longer sweep, run by hand"]
    fn unix_scm() {
        sweep(&Case::new("faults_unix_scm", workload!("unix_scm")), false);
    }

    #[test]
    #[ignore = "a longer sweep, run by hand"]
    fn tree_sessions() {
        sweep(&Case::new("faults_tree_sessions", workload!("tree_sessions")), false);
    }

    #[test]
    #[ignore = "a longer sweep, run by hand"]
    fn tree_fork3() {
        sweep(&Case::new("faults_tree_fork3", workload!("tree_fork3")), false);
    }

    #[test]
    #[ignore = "a longer sweep, run by hand"]
    fn threads_signals() {
        sweep(&Case::new("faults_threads_signals", workload!("threads_signals")), false);
    }

    #[test]
    #[ignore = "a longer sweep, run by hand"]
    fn fds() {
        sweep(&Case::new("faults_fds", workload!("fds")), false);
    }

    #[test]
    #[ignore = "a longer sweep, run by hand"]
    fn mem_flags_tree() {
        sweep(&Case::new("faults_mem_flags_tree", workload!("mem_flags").arg("tree")), false);
    }
}
