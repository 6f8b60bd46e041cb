//! Process trees: a fork tree three levels deep, sessions and process groups made with setsid and
//! setpgid, an open file description shared across processes, a stopped child, and a prefork
//! server whose workers share their parent's pages copy-on-write (the test measures the sum of
//! Pss before the dump and after the restore). Every process of the tree is compared before and
//! after (`/proc/PID/{maps,status,fd,fdinfo}`), not only the root. The `standalone_*` tests run
//! the same workloads without stasis, so that an end-to-end failure points at stasis, not at the
//! workload.

use stasis_tests::harness::{standalone, tree_pids, Case, Snapshot};
use stasis_tests::workload;

/// The Pss of `pid` in kB (`/proc/PID/smaps_rollup`).
fn pss_kb(case: &Case, pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_else(|e| case.fail(&format!("/proc/{pid}/smaps_rollup: {e}")));
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| case.fail(&format!("no Pss line in /proc/{pid}/smaps_rollup:\n{text}")))
}

/// The sum of the Pss of `pids`, in kB.
fn pss_sum(case: &Case, pids: &[i32]) -> u64 {
    pids.iter().map(|&p| pss_kb(case, p)).sum()
}

/// Checkpoints and restores the tree of `case`'s workload: snapshots every process, dumps the
/// root with its tree, reaps it, restores it, checks the same pids exist and compares every
/// process, optionally compares the Pss sum (restored at most 1.5 times the original), then wakes
/// the root and checks its PASS.
fn tree_checkpoint_restore(case: &Case, processes: usize, measure_pss: bool) {
    tree_checkpoint_restore_with(case, processes, measure_pss, &[]);
}

/// [`tree_checkpoint_restore`] with `dump_extra` given to the dump.
fn tree_checkpoint_restore_with(case: &Case, processes: usize, measure_pss: bool, dump_extra: &[&str]) {
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let pids = tree_pids(root);
    if pids.len() != processes {
        case.fail(&format!("the tree of pid {root} has {} processes {pids:?}, expected {processes}", pids.len()));
    }
    let before: Vec<Snapshot> = pids.iter().map(|&p| case.settled_snapshot(p)).collect();
    let pss_before = measure_pss.then(|| pss_sum(case, &pids));
    let images = case.images("images");
    case.dump_ok(&run, &images, dump_extra);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, root, &[]);
    let after = tree_pids(root);
    if after != pids {
        case.fail(&format!("processes before the dump {pids:?}, after the restore {after:?}"));
    }
    for (snap, &pid) in before.iter().zip(&pids) {
        case.compare(snap, pid);
    }
    let pss = pss_before.map(|b| (b, pss_sum(case, &pids)));
    if let Some((b, a)) = pss {
        eprintln!("Pss sum of the {} processes: {b} kB before the dump, {a} kB after the restore", pids.len());
    }
    case.finish(&mut restored);
    if let Some((b, a)) = pss {
        if a * 2 > b * 3 {
            case.fail(&format!(
                "pages shared copy-on-write were not shared after restore: Pss sum {b} kB before the dump, \
                 {a} kB after the restore (limit 1.5 x)"
            ));
        }
    }
}

#[test]
fn fork_tree_three_levels_deep() {
    let case = Case::new("tree_fork3", workload!("tree_fork3"));
    tree_checkpoint_restore(&case, 7, false);
}

#[test]
fn sessions_and_process_groups() {
    let case = Case::new("tree_sessions", workload!("tree_sessions"));
    tree_checkpoint_restore(&case, 7, false);
}

#[test]
fn reparented_into_a_session_whose_leader_exited() {
    let case = Case::new("tree_reparented", workload!("tree_reparented"));
    tree_checkpoint_restore(&case, 4, false);
}

#[test]
fn shell_pipeline_with_data_in_both_pipes() {
    let case = Case::new("pipeline", workload!("pipeline"));
    tree_checkpoint_restore(&case, 4, false);
}

#[test]
fn standalone_pipeline() {
    standalone("sa-pipeline", workload!("pipeline"));
}

#[test]
fn open_file_description_shared_across_processes() {
    let case = Case::new("tree_shared_offset", workload!("tree_shared_offset"));
    tree_checkpoint_restore(&case, 3, false);
}

#[test]
fn stopped_child_stays_stopped() {
    let case = Case::new("tree_stopped", workload!("tree_stopped"));
    tree_checkpoint_restore(&case, 3, false);
}

/// A child stopped by SIGTSTP (in a group of its own, not orphaned) is stopped by SIGTSTP again:
/// its parent's `waitid(WSTOPPED)` reports that signal.
#[test]
fn child_stopped_by_sigtstp_keeps_its_stop_signal() {
    let case = Case::new("tree_tstp", workload!("proc_tree_state").arg("tstp"));
    tree_checkpoint_restore(&case, 2, false);
}

/// Restored with `-d`, only the root's parent (stasis) exits: a child's parent-death signal, armed
/// against the restored root, is armed again.
#[test]
fn child_keeps_its_parent_death_signal_when_detached() {
    let case = Case::new("tree_pdeathsig", workload!("proc_tree_state").arg("pdeathsig"));
    tree_checkpoint_restore(&case, 2, false);
}

/// The root and its child each set an audit login uid of their own; both are restored.
#[test]
fn audit_login_uids_of_a_parent_and_a_child() {
    let case = Case::new("tree_loginuid", workload!("proc_tree_state").arg("loginuid"));
    tree_checkpoint_restore(&case, 2, false);
}

#[test]
fn standalone_proc_tree_state() {
    standalone("sa-tree_loginuid", workload!("proc_tree_state").arg("loginuid"));
    standalone("sa-tree_tstp", workload!("proc_tree_state").arg("tstp"));
    standalone("sa-tree_pdeathsig", workload!("proc_tree_state").arg("pdeathsig"));
}

#[test]
fn prefork_server_pages_stay_shared() {
    let case = Case::new("tree_prefork", workload!("tree_prefork"));
    tree_checkpoint_restore(&case, 9, true);
}

/// The same through compressed page files (`--compress`): each worker's pages are written into it
/// from its own compressed page file, the shared ones stay shared.
#[test]
fn prefork_server_pages_stay_shared_through_a_compressed_dump() {
    let case = Case::new("tree_prefork_z", workload!("tree_prefork"));
    tree_checkpoint_restore_with(&case, 9, true, &["--compress"]);
}

#[test]
fn standalone_tree_fork3() {
    standalone("sa-tree_fork3", workload!("tree_fork3"));
}

#[test]
fn standalone_tree_sessions() {
    standalone("sa-tree_sessions", workload!("tree_sessions"));
}

#[test]
fn standalone_tree_reparented() {
    standalone("sa-tree_reparented", workload!("tree_reparented"));
}

#[test]
fn standalone_tree_shared_offset() {
    standalone("sa-tree_shared_offset", workload!("tree_shared_offset"));
}

#[test]
fn standalone_tree_stopped() {
    standalone("sa-tree_stopped", workload!("tree_stopped"));
}

#[test]
fn standalone_tree_prefork() {
    standalone("sa-tree_prefork", workload!("tree_prefork"));
}

/// The tree of `tree_shm` (five processes sharing one MAP_SHARED | MAP_ANONYMOUS object) through
/// the flow of `tree_checkpoint_restore`, except that the maps are compared with the inode of the
/// shared object (`/dev/zero (deleted)`, a new kernel object after restore) replaced by its order
/// of appearance across the whole tree: so the comparison also checks that the five processes map
/// one object after the restore as before the dump, not one each.
#[test]
fn shared_memory_tree_three_levels() {
    let case = Case::new("tree_shm", workload!("tree_shm"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let pids = tree_pids(root);
    if pids.len() != 5 {
        case.fail(&format!("the tree of pid {root} has {} processes {pids:?}, expected 5", pids.len()));
    }
    let before = case.numbered_snapshots(&pids, true);
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, root, &[]);
    let after = tree_pids(root);
    if after != pids {
        case.fail(&format!("processes before the dump {pids:?}, after the restore {after:?}"));
    }
    case.compare_numbered(&before, &pids);
    case.finish(&mut restored);
}

#[test]
fn standalone_tree_shm() {
    standalone("sa-tree_shm", workload!("tree_shm"));
}
