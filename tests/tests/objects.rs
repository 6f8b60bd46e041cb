//! Kernel objects that outlive their names: zombie children restored as zombies with their exit
//! status, files unlinked while open or mapped restored as unlinked files with their bytes, a
//! sealed memfd open and mapped restored as one object, and the limit on the size of unlinked
//! files kept in the image (`--ghost-limit`), over which the dump fails cleanly. The
//! `standalone_*` tests run the same workloads without stasis, so that an end-to-end failure
//! points at stasis, not at the workload.

use stasis_tests::harness::{number_deleted, standalone, tree_pids, Case, Running, Snapshot};
use stasis_tests::workload;
use std::time::{Duration, Instant};

/// `snap` with the inodes of objects restore makes anew numbered (see `number_deleted`).
fn deleted_numbered(snap: Snapshot) -> Snapshot {
    let mut snaps = [snap];
    number_deleted(&mut snaps);
    let [snap] = snaps;
    snap
}

/// The standard flow (start, snapshot, dump, reap, restore -d, compare, wake, PASS), with the
/// maps compared through `deleted_numbered`.
fn checkpoint_restore_deleted(case: &Case) {
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let before = deleted_numbered(case.settled_snapshot(pid));
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, pid, &[]);
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Some(d) = before.diff(&deleted_numbered(case.snapshot(pid))) {
        if Instant::now() > deadline {
            case.fail(&format!("state of pid {pid} differs after restore:\n{d}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    case.finish(&mut restored);
}

/// Reaps `pids`: the dump killed their parent, so its zombie children (which have no image of
/// their own for `Case::reap_dumped` to find) became children of this test process, the child
/// subreaper, and keep their pids until reaped.
fn reap_orphaned_zombies(case: &Case, pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for &pid in pids {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = stasis_tests::raw::try_waitpid(pid);
            if Instant::now() > deadline {
                case.fail(&format!("pid {pid} of the dumped tree still exists 10 s after the dump"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `snap` without the blocked mask and the shared pending signals if it is a zombie's: a dead
/// process never runs again, so no program can see them (its parent sees only the exit status),
/// and the restored zombie died with the mask its restorer had and the signal that killed it
/// already taken (before the dump `SigBlk` is the workload's 0x200 and the one killed by SIGTERM
/// shows it in `ShdPnd`).
fn zombie_view(mut snap: Snapshot) -> Snapshot {
    if snap.status.iter().any(|l| l.starts_with("State: Z")) {
        snap.status.retain(|l| !l.starts_with("SigBlk:") && !l.starts_with("ShdPnd:"));
    }
    snap
}

/// The root forks two children that exit (codes 7 and 0), one killed by SIGTERM, one by SIGKILL,
/// a group leader and a session leader that exit, none reaped, and one live child: the tree (six
/// zombies included) is compared process by process (every
/// difference reported at once), so the zombies must come back with their pids and state `Z`; the
/// root then checks and reaps them.
#[test]
fn zombies_restored_unreaped() {
    let case = Case::new("zombies", workload!("zombies"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let pids = tree_pids(root);
    if pids.len() != 9 {
        case.fail(&format!("the tree of pid {root} has {} processes {pids:?}, expected 9", pids.len()));
    }
    let before: Vec<Snapshot> = pids.iter().map(|&p| zombie_view(case.settled_snapshot(p))).collect();
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    reap_orphaned_zombies(&case, &pids[1..]);
    let mut restored = case.restore_ok(&images, root, &[]);
    let after = tree_pids(root);
    if after != pids {
        case.fail(&format!("processes before the dump {pids:?}, after the restore {after:?}"));
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let diffs: Vec<String> = (before.iter().zip(&pids))
            .filter_map(|(b, &pid)| {
                b.diff(&zombie_view(case.snapshot(pid)))
                    .map(|d| format!("state of pid {pid} differs after restore:\n{d}"))
            })
            .collect();
        if diffs.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            case.fail(&diffs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    case.finish(&mut restored);
}

#[test]
fn unlinked_files_held_open() {
    checkpoint_restore_deleted(&Case::new("unlinked_open", workload!("unlinked").arg("open")));
}

#[test]
fn unlinked_files_only_mapped() {
    checkpoint_restore_deleted(&Case::new("unlinked_mapped", workload!("unlinked").arg("mapped")));
}

/// Unlinked files with their owner, mode and times, one open write-only, a sparse file of 1 GiB
/// with 8 KiB of data (its holes kept), an `O_TMPFILE` file and an unlinked device node (see the
/// `ghost_kinds` workload).
#[test]
fn unlinked_kinds_with_attributes() {
    checkpoint_restore_deleted(&Case::new("ghost_kinds", workload!("ghost_kinds")));
}

#[test]
fn memfd_sealed_open_and_mapped() {
    checkpoint_restore_deleted(&Case::new("memfd", workload!("memfd")));
}

/// memfds: the mode and owner set with fchmod and fchown, a read-only description next to a
/// read-write one, mapped shared and private at once, and one run with execveat (see the
/// `memfd_attrs` workload).
#[test]
fn memfd_attributes_descriptions_and_exec() {
    checkpoint_restore_deleted(&Case::new("memfd_attrs", workload!("memfd_attrs")));
}

/// The value after `prefix` on a line of the workload's output.
fn reported(run: &Running, prefix: &str) -> String {
    let log = run.log_text();
    log.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_default().trim().to_string()
}

/// An unlinked file of 20000 bytes held open at fd 44, dumped with `--ghost-limit 4K`: the dump
/// fails naming the fd, the size and the option, and the workload runs on untouched and passes.
#[test]
fn ghost_limit_refuses_a_bigger_unlinked_file() {
    let case = Case::new("ghost_limit", workload!("unlinked").arg("big"));
    let Some(mut run) = case.start() else { return };
    let (fd, size) = (reported(&run, "FD "), reported(&run, "SIZE "));
    let fd_needles = [format!("fd {fd}"), format!("fd: {fd}"), format!("fd={fd}")];
    let fd_needles: Vec<&str> = fd_needles.iter().map(String::as_str).collect();
    let images = case.images("images");
    let r = case.dump(&run, &images, &["--ghost-limit", "4K"], &[]);
    let what = "dump of a process holding an unlinked file over --ghost-limit";
    case.expect_failed(&r, what, &[&fd_needles, &[&size], &["--ghost-limit"]]);
    if images.join("inventory.img").exists() {
        case.fail("the failed dump left an inventory.img");
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
}

#[test]
fn standalone_zombies() {
    standalone("sa-zombies", workload!("zombies"));
}

#[test]
fn standalone_unlinked_open() {
    standalone("sa-unlinked_open", workload!("unlinked").arg("open"));
}

#[test]
fn standalone_unlinked_mapped() {
    standalone("sa-unlinked_mapped", workload!("unlinked").arg("mapped"));
}

#[test]
fn standalone_unlinked_big() {
    standalone("sa-unlinked_big", workload!("unlinked").arg("big"));
}

#[test]
fn standalone_ghost_kinds() {
    standalone("sa-ghost_kinds", workload!("ghost_kinds"));
}

#[test]
fn standalone_memfd_attrs() {
    standalone("sa-memfd_attrs", workload!("memfd_attrs"));
}

#[test]
fn standalone_memfd() {
    standalone("sa-memfd", workload!("memfd"));
}

/// `workload` alone, woken, must fail (its `wrong` variant expects other values).
fn fails_standalone(test: &str, workload: stasis_tests::harness::Workload) {
    let case = Case::new(test, workload);
    let Some(mut run) = case.start() else { return };
    if run.finish(stasis_tests::harness::EXIT_TIMEOUT).is_ok() {
        case.fail(&format!("{} passed, expected FAIL:\n{}", run.name(), run.log_text()));
    }
}

/// The workloads' checks can fail: each variant expecting a wrong value (an exit code of 8 for
/// the first zombie, other file contents, other memfd seals) prints FAIL when run alone.
#[test]
fn workloads_detect_wrong_values() {
    fails_standalone("wrong-zombies", workload!("zombies").arg("8"));
    fails_standalone("wrong-unlinked_open", workload!("unlinked").arg("open").arg("wrong"));
    fails_standalone("wrong-unlinked_mapped", workload!("unlinked").arg("mapped").arg("wrong"));
    fails_standalone("wrong-memfd", workload!("memfd").arg("wrong"));
    fails_standalone("wrong-ghost_kinds", workload!("ghost_kinds").arg("wrong"));
    fails_standalone("wrong-memfd_attrs", workload!("memfd_attrs").arg("wrong"));
}
