//! Dump and restore used repeatedly and in their other modes: two --leave-running dumps in a row,
//! the same image restored twice, restore without -d (stasis exits with the workload's status),
//! and a restore that must fail because the original pid is taken; `--leave-stopped` after a dump
//! and after a restore.

use stasis_tests::harness::{proc_state, tree_pids, wait_child, Case, Snapshot, EXIT_TIMEOUT};
use stasis_tests::raw::{self, Exit};
use stasis_tests::workload;

#[test]
fn two_leave_running_dumps_in_a_row() {
    let case = Case::new("leave_running_twice", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let before = case.settled_snapshot(pid);
    let (first, second) = (case.images("first"), case.images("second"));
    case.dump_ok(&run, &first, &["--leave-running"]);
    case.expect_untouched(&run);
    case.dump_ok(&run, &second, &["--leave-running"]);
    case.expect_untouched(&run);
    case.compare(&before, pid);
    run.kill_and_reap();
    for images in [&second, &first] {
        let mut restored = case.restore_ok(images, pid, &[]);
        case.compare(&before, pid);
        case.finish(&mut restored);
    }
}

#[test]
fn same_image_restored_twice() {
    let case = Case::new("restore_twice", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let before = case.settled_snapshot(pid);
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let mut first = case.restore_ok(&images, pid, &[]);
    case.compare(&before, pid);
    first.kill_and_reap();
    // This CPU has every feature of the dump's (the same one): the strictest check passes.
    let mut second = case.restore_ok(&images, pid, &["--cpu-cap=all"]);
    case.compare(&before, pid);
    case.finish(&mut second);
}

#[test]
fn restore_without_detach_exits_with_the_workload_status() {
    let case = Case::new("restore_attached", workload!("basic").arg("7"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let (mut restored, mut child) = case.restore_attached(&images, pid);
    restored.signal(libc::SIGUSR1).expect("SIGUSR1");
    let (exit, timed_out) = wait_child(&mut child, EXIT_TIMEOUT);
    restored.forget();
    if exit != Exit::Code(7) {
        case.fail(&format!(
            "stasis restore (attached) ended with {exit:?} (timed out: {timed_out}), want the workload's exit code 7"
        ));
    }
    let text = restored.log_text();
    if text.lines().last() != Some("PASS") {
        case.fail(&format!("restored workload output:\n{text}"));
    }
}

#[test]
fn restore_refused_while_the_pid_is_taken() {
    let case = Case::new("pid_taken", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--leave-running"]);
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    let pid_text = pid.to_string();
    case.expect_failed(&r, "restore while the original runs", &[&[pid_text.as_str()], &["basic"]]);
    let others: Vec<i32> = stasis_tests::harness::processes_of(&case.dir).into_iter().filter(|&p| p != pid).collect();
    if !others.is_empty() {
        case.fail(&format!("the failed restore left processes {others:?}"));
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// Checks that every process of `pids` is stopped by job control and untraced (after `what` with
/// `--leave-stopped`), then lets each go on with SIGCONT.
fn expect_stopped_then_continue(case: &Case, pids: &[i32], what: &str) {
    let not = stasis_tests::workload::wait_processes_in(pids, &['T'], std::time::Duration::from_secs(5));
    if !not.is_empty() {
        case.fail(&format!("after {what} with --leave-stopped, processes (pid, state) {not:?} are not stopped"));
    }
    for &pid in pids {
        if proc_state(pid) != Some(('T', 0)) {
            case.fail(&format!(
                "after {what}: pid {pid} is {:?} (state, tracer), not stopped and free",
                proc_state(pid)
            ));
        }
        raw::kill(pid, libc::SIGCONT).unwrap_or_else(|e| case.fail(&format!("SIGCONT to {pid}: {e}")));
    }
}

#[test]
fn leave_stopped_after_the_dump_and_after_the_restore() {
    let case = Case::new("leave_stopped", workload!("tree_fork3"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let pids = tree_pids(root);
    let before: Vec<Snapshot> = pids.iter().map(|&p| case.settled_snapshot(p)).collect();
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--leave-stopped"]);
    expect_stopped_then_continue(&case, &pids, "the dump");
    for (snap, &pid) in before.iter().zip(&pids) {
        case.compare(snap, pid);
    }
    for &pid in pids.iter().rev() {
        raw::kill(pid, libc::SIGKILL).unwrap_or_else(|e| case.fail(&format!("SIGKILL to {pid}: {e}")));
    }
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, root, &["--leave-stopped"]);
    let after = tree_pids(root);
    if after != pids {
        case.fail(&format!("processes before the dump {pids:?}, after the restore {after:?}"));
    }
    expect_stopped_then_continue(&case, &pids, "the restore");
    for (snap, &pid) in before.iter().zip(&pids) {
        case.compare(snap, pid);
    }
    case.finish(&mut restored);
}

/// `--exec-cmd -- CMD`: once the tree runs, stasis becomes the command, whose child the restored
/// root is (the command lists its own children in a file and exits; the root then goes on).
#[test]
fn exec_cmd_becomes_the_parent_of_the_restored_root() {
    let case = Case::new("exec_cmd", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let children = case.dir.path().join("children");
    let script = format!("cat /proc/$$/task/$$/children > {}", children.display());
    let mut restored = case.restore_ok(&images, pid, &["--exec-cmd", "--", "sh", "-c", &script]);
    let listed = std::fs::read_to_string(&children)
        .unwrap_or_else(|e| case.fail(&format!("the command of --exec-cmd did not run: {}: {e}", children.display())));
    if !listed.split_whitespace().any(|c| c == pid.to_string()) {
        case.fail(&format!("the command of --exec-cmd had children {listed:?}, not the restored pid {pid}"));
    }
    case.finish(&mut restored);
}
