//! File locks (`--file-locks`): flock, POSIX and OFD locks and a lease held by a parent and its
//! child come back with their owners, ranges and types; without the option the dump (and the
//! restore of an image with locks) fails naming it; a lock held outside the tree on a file of the
//! tree fails the dump, named. Each checks from this test process, which is outside the tree,
//! what another process sees (`F_GETLK`, `F_OFD_GETLK`, `flock(LOCK_NB)`, `/proc/locks`), and
//! the workload checks what its processes see.

use stasis_tests::harness::{standalone, tree_pids, Case, Running, Snapshot};
use stasis_tests::raw::{self, RecordLock};
use stasis_tests::workload;
use std::fs::{File, OpenOptions};
use std::path::Path;

/// The `/proc/locks` entries on the files in `dir`, without their ordinal numbers, sorted.
fn locks_on(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut inodes = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(m) = e.metadata() {
            inodes.push((m.ino(), e.file_name().to_string_lossy().into_owned()));
        }
    }
    let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().skip(1).collect();
            let ino: u64 = t.get(4)?.rsplit(':').next()?.parse().ok()?;
            let name = &inodes.iter().find(|(i, _)| *i == ino)?.1;
            let mut t: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            t[4] = name.clone();
            Some(t.join(" "))
        })
        .collect();
    out.sort();
    out
}

fn open(case: &Case, name: &str) -> File {
    let path = case.dir.work().join(name);
    OpenOptions::new().read(true).write(true).open(&path).unwrap_or_else(|e| case.fail(&format!("{name}: {e}")))
}

/// What `cmd` reports for a write lock probe of `start`+`len` on `name`.
fn probe(case: &Case, name: &str, cmd: i32, start: i64, len: i64) -> (i32, i64, i64, i32) {
    let f = open(case, name);
    let l = raw::record_lock(&f, cmd, RecordLock { kind: libc::F_WRLCK, start, len, pid: 0 })
        .unwrap_or_else(|e| case.fail(&format!("{name}: lock probe: {e}")));
    if l.kind == libc::F_UNLCK {
        (l.kind, 0, 0, 0)
    } else {
        (l.kind, l.start, l.len, l.pid)
    }
}

/// Checks from outside the tree (parent `root`, child `child`) that every lock is held as set.
fn expect_locked(case: &Case, root: i32, child: i32) {
    let checks = [
        ("posix.lck F_GETLK 0-99", probe(case, "posix.lck", libc::F_GETLK, 0, 100), (libc::F_WRLCK, 0, 100, root)),
        (
            "posix.lck F_GETLK 200-299",
            probe(case, "posix.lck", libc::F_GETLK, 200, 100),
            (libc::F_RDLCK, 200, 0, child),
        ),
        ("ofd.lck F_OFD_GETLK 10-19", probe(case, "ofd.lck", libc::F_OFD_GETLK, 10, 10), (libc::F_WRLCK, 10, 10, -1)),
        ("ofd.lck F_GETLK 100-149", probe(case, "ofd.lck", libc::F_GETLK, 100, 50), (libc::F_RDLCK, 100, 50, -1)),
    ];
    for (what, got, want) in checks {
        if got != want {
            case.fail(&format!("{what}: (type, start, len, pid) {got:?}, want {want:?}"));
        }
    }
    for (name, op) in [("flock.lck", libc::LOCK_SH), ("flock2.lck", libc::LOCK_EX)] {
        let r = raw::flock(open(case, name), op | libc::LOCK_NB);
        if r.as_ref().err().and_then(|e| e.raw_os_error()) != Some(libc::EWOULDBLOCK) {
            case.fail(&format!("flock of {name} from outside the tree: {r:?}, want EWOULDBLOCK"));
        }
    }
    if raw::flock(open(case, "flock2.lck"), libc::LOCK_SH | libc::LOCK_NB).is_err() {
        case.fail("a shared flock of flock2.lck (held shared by the child) is refused");
    }
}

fn start(case: &Case) -> Option<(Running, i32, i32)> {
    let run = case.start()?;
    let pids = tree_pids(run.pid());
    if pids.len() != 2 {
        case.fail(&format!("the tree of pid {} has {} processes {pids:?}, expected 2", run.pid(), pids.len()));
    }
    let (root, child) = (pids[0], pids[1]);
    Some((run, root, child))
}

/// The locks of the tree seen from outside before the dump, after a refused restore without
/// `--file-locks` (which must leave no process), and after the restore: the same `/proc/locks`
/// entries (kind, type, owner pid, file, range), the same answers to F_GETLK, F_OFD_GETLK and
/// flock; both processes compared; the workload's own checks pass.
#[test]
fn locks_restored_with_owners_ranges_and_types() {
    let case = Case::new("file_locks", workload!("file_locks"));
    let Some((mut run, root, child)) = start(&case) else { return };
    expect_locked(&case, root, child);
    let locks = locks_on(&case.dir.work());
    if locks.len() != 7 {
        case.fail(&format!("expected 7 locks on the workload's files, /proc/locks has {locks:#?}"));
    }
    let before: Vec<Snapshot> = [root, child].iter().map(|&p| case.settled_snapshot(p)).collect();
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--file-locks"]);
    case.reap_dumped(&mut run);
    let (r, _pidfile) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore of an image with locks without --file-locks", &[&["--file-locks"]]);
    case.expect_no_process_left(root);
    let mut restored = case.restore_ok(&images, root, &["--file-locks"]);
    let after = locks_on(&case.dir.work());
    if after != locks {
        case.fail(&format!("/proc/locks before the dump {locks:#?}\nafter the restore {after:#?}"));
    }
    expect_locked(&case, root, child);
    for (snap, pid) in before.iter().zip([root, child]) {
        case.compare(snap, pid);
    }
    case.finish(&mut restored);
}

/// Without `--file-locks` the dump fails naming an fd and the option, writes no inventory and
/// leaves the tree running with its locks; woken, it passes.
#[test]
fn dump_without_file_locks_refused() {
    let case = Case::new("file_locks_refused", workload!("file_locks"));
    let Some((mut run, root, child)) = start(&case) else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump of a tree holding file locks without --file-locks", &[&["fd 7"], &["--file-locks"]]);
    if images.join("inventory.img").exists() {
        case.fail("the failed dump left an inventory.img");
    }
    case.expect_untouched(&run);
    expect_locked(&case, root, child);
    case.finish(&mut run);
}

/// This test process holds a POSIX lock on bytes 100-149 of `posix.lck`, which the tree has open:
/// the dump with `--file-locks` fails naming this process's pid and leaves the tree running.
#[test]
fn lock_held_outside_the_tree_refused() {
    let case = Case::new("file_locks_outside", workload!("file_locks"));
    let Some((mut run, root, child)) = start(&case) else { return };
    let mine = open(&case, "posix.lck");
    let held = RecordLock { kind: libc::F_WRLCK, start: 100, len: 50, pid: 0 };
    raw::record_lock(&mine, libc::F_SETLK, held).unwrap_or_else(|e| case.fail(&format!("F_SETLK 100-149: {e}")));
    let images = case.images("images");
    let r = case.dump(&run, &images, &["--file-locks"], &[]);
    let me = format!("pid {}", std::process::id());
    case.expect_failed(&r, "dump while a lock on a file of the tree is held outside it", &[&[&me], &["outside"]]);
    if images.join("inventory.img").exists() {
        case.fail("the failed dump left an inventory.img");
    }
    case.expect_untouched(&run);
    drop(mine);
    expect_locked(&case, root, child);
    case.finish(&mut run);
}

#[test]
fn standalone_file_locks() {
    standalone("sa-file_locks", workload!("file_locks"));
}

/// The workload's checks can fail: expecting a write lease, it prints FAIL when run alone.
#[test]
fn workload_detects_a_wrong_lock() {
    let case = Case::new("wrong-file_locks", workload!("file_locks").arg("wrong"));
    let Some(mut run) = case.start() else { return };
    if run.finish(stasis_tests::harness::EXIT_TIMEOUT).is_ok() {
        case.fail(&format!("{} passed, expected FAIL:\n{}", run.name(), run.log_text()));
    }
}
