//! SysV shared memory: the segments a tree has attached or created come back with their ids, keys,
//! sizes, permissions and contents, attached where they were, and still shared between a parent
//! and the child that inherited the attachment. The segments live in the IPC namespace, not in
//! the processes, so the originals outlive the dump: a test removes them (IPC_RMID, by the ids the
//! workload prints) before restoring; another leaves them in place, where the restore must use
//! them (they are the same objects), and two check that a restore refuses a segment that is in use
//! or is another one with the same key. The standalone test runs the same workload without stasis, so that an end-to-end
//! failure points at stasis, not at the workload.
//!
//! The tests of this file run one at a time: a restore sets `/proc/sys/kernel/shm_next_id`, which
//! holds for the whole IPC namespace, so a segment another test's workload made meanwhile could
//! take the id meant for the restored one.

use stasis_tests::harness::{tree_pids, Case, Running, Snapshot};
use stasis_tests::raw;
use stasis_tests::workload;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The IPC namespace's next segment id, which a restore sets for each segment and resets to -1.
const SHM_NEXT_ID: &str = "/proc/sys/kernel/shm_next_id";

/// Held by each test of this file while it runs (see the module docs).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The two segments of a `sysv_shm` run, by the ids it printed; removed on drop (best effort), so
/// that a failed test leaves no segment behind in the IPC namespace.
struct Segments {
    a: i32,
    b: i32,
}

impl Segments {
    /// The ids in the `SHM A <id>` and `SHM B <id>` lines of `run`'s output.
    fn printed(case: &Case, run: &Running) -> Segments {
        let text = run.log_text();
        let id = |name: &str| {
            let prefix = format!("SHM {name} ");
            text.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok()).unwrap_or_else(|| {
                case.fail(&format!("no `{prefix}<id>` line in the output of {}:\n{text}", run.name()))
            })
        };
        Segments { a: id("A"), b: id("B") }
    }

    /// Removes segment `id` (`what` in messages), which nothing has attached any more, and checks
    /// it is gone.
    fn remove(case: &Case, what: &str, id: i32) {
        if let Err(e) = raw::shm_remove(id) {
            case.fail(&format!("IPC_RMID of segment {what} (id {id}): {e}"));
        }
        expect_gone(case, what, id);
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        // Removed already when the test got through; nothing more to do about an error here.
        let _ = raw::shm_remove(self.a);
        let _ = raw::shm_remove(self.b);
    }
}

/// Checks, allowing 2 s (the last detach may still be on its way), that segment `id` is gone.
fn expect_gone(case: &Case, what: &str, id: i32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Ok(stat) = raw::shm_stat(id) {
        if Instant::now() > deadline {
            case.fail(&format!("segment {what} (id {id}) still exists: {stat:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks that no restore left `/proc/sys/kernel/shm_next_id` set.
fn expect_next_id_unset(case: &Case) {
    let next = std::fs::read_to_string(SHM_NEXT_ID).unwrap_or_else(|e| case.fail(&format!("{SHM_NEXT_ID}: {e}")));
    if next.trim() != "-1" {
        case.fail(&format!("{SHM_NEXT_ID} is {:?} after the restore, want -1", next.trim()));
    }
}

/// Segment A (keyed, attached by the root and its child) and B (private, detached) through the
/// standard flow for a tree of two, with the originals removed between the dump and the restore:
/// both processes are compared (their maps name A by its id, the inode of a SysV segment), and
/// the workload checks the ids, keys, sizes, modes, attachments and contents, and that root and
/// child share A again; it removes both segments itself at the end.
#[test]
fn segments_restored_with_ids_and_contents() {
    let _serial = one_at_a_time();
    let case = Case::new("sysv_shm", workload!("sysv_shm"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let segs = Segments::printed(&case, &run);
    let pids = tree_pids(root);
    if pids.len() != 2 {
        case.fail(&format!("the tree of pid {root} has {} processes {pids:?}, expected 2", pids.len()));
    }
    let before: Vec<Snapshot> = pids.iter().map(|&p| case.settled_snapshot(p)).collect();
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    Segments::remove(&case, "A", segs.a);
    Segments::remove(&case, "B", segs.b);
    let mut restored = case.restore_ok(&images, root, &[]);
    expect_next_id_unset(&case);
    let after = tree_pids(root);
    if after != pids {
        case.fail(&format!("processes before the dump {pids:?}, after the restore {after:?}"));
    }
    for (snap, &pid) in before.iter().zip(&pids) {
        case.compare(snap, pid);
    }
    case.finish(&mut restored);
    expect_gone(&case, "A (removed by the workload)", segs.a);
    expect_gone(&case, "B (removed by the workload)", segs.b);
}

/// The originals left where the dump left them (killing the tree does not remove a segment), A
/// scribbled on by this test meanwhile (attached, overwritten, detached): the restore must use
/// both segments (same key, id, size, mode, owner, creator and change time, nothing attached) with
/// the contents they had at the dump, and the workload must pass as after a restore elsewhere.
#[test]
fn segments_left_by_the_dump_are_used() {
    let _serial = one_at_a_time();
    let case = Case::new("sysv_shm_kept", workload!("sysv_shm"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let segs = Segments::printed(&case, &run);
    let pids = tree_pids(root);
    let before: Vec<Snapshot> = pids.iter().map(|&p| case.settled_snapshot(p)).collect();
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    wait_unattached(&case, "A", segs.a);
    let a = raw::ShmAttached::attach(segs.a).unwrap_or_else(|e| case.fail(&format!("attach A (id {}): {e}", segs.a)));
    for w in a.words().iter().take(64) {
        w.store(0x5c41_bb1e, std::sync::atomic::Ordering::SeqCst);
    }
    a.detach().unwrap_or_else(|e| case.fail(&format!("detach A: {e}")));
    wait_unattached(&case, "A", segs.a);
    let mut restored = case.restore_ok(&images, root, &[]);
    expect_next_id_unset(&case);
    for (snap, &pid) in before.iter().zip(&pids) {
        case.compare(snap, pid);
    }
    case.finish(&mut restored);
    expect_gone(&case, "A (removed by the workload)", segs.a);
    expect_gone(&case, "B (removed by the workload)", segs.b);
}

/// Waits (up to 2 s: the dumped processes' detaches may still be on their way) until nothing has
/// segment `id` attached.
fn wait_unattached(case: &Case, what: &str, id: i32) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stat = raw::shm_stat(id).unwrap_or_else(|e| case.fail(&format!("IPC_STAT of {what} (id {id}): {e}")));
        if stat.nattch == 0 {
            return;
        }
        if Instant::now() > deadline {
            case.fail(&format!("segment {what} (id {id}) is still attached after the dump: {stat:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// With the original segment A still there but attached by this test (so it is in use, not
/// merely left behind) and B removed, the restore must refuse and name A's id; it must leave no
/// segment it made (B) and no process behind, keep the original A untouched and reset
/// `shm_next_id`.
#[test]
fn restore_refused_while_segment_attached() {
    let _serial = one_at_a_time();
    let case = Case::new("sysv_shm_taken", workload!("sysv_shm"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let segs = Segments::printed(&case, &run);
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    Segments::remove(&case, "B", segs.b);
    wait_unattached(&case, "A", segs.a);
    let held =
        raw::ShmAttached::attach(segs.a).unwrap_or_else(|e| case.fail(&format!("attach A (id {}): {e}", segs.a)));
    let a_before = raw::shm_stat(segs.a).unwrap_or_else(|e| case.fail(&format!("IPC_STAT of A (id {}): {e}", segs.a)));
    let (r, _pidfile) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore while segment A is attached", &[&["shared memory"], &["attached"]]);
    expect_names_id(&case, &r, segs.a);
    expect_gone(&case, "B (made again by the failed restore?)", segs.b);
    let a_after = raw::shm_stat(segs.a);
    if a_after.as_ref().ok() != Some(&a_before) {
        case.fail(&format!("the original A (id {}) was {a_before:?} before the restore, {a_after:?} after", segs.a));
    }
    expect_next_id_unset(&case);
    drop(held);
    Segments::remove(&case, "A", segs.a);
    case.expect_no_process_left(root);
}

/// Checks the refusal `r` names segment id `id`.
fn expect_names_id(case: &Case, r: &stasis_tests::harness::CmdResult, id: i32) {
    let id = id.to_string();
    if !r.stderr.split(|c: char| !c.is_ascii_digit()).any(|number| number == id) {
        case.fail(&format!("the refused restore does not name segment id {id}:\n{}", r.describe()));
    }
}

/// A removed after the dump and another segment made with its key (so with another id, creator
/// and change time): the restore must refuse, naming A's id, rather than take the stranger for A;
/// the stranger is left as it was.
#[test]
fn restore_refused_when_another_segment_has_the_key() {
    let _serial = one_at_a_time();
    let case = Case::new("sysv_shm_stranger", workload!("sysv_shm"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let segs = Segments::printed(&case, &run);
    let key = raw::shm_stat(segs.a).unwrap_or_else(|e| case.fail(&format!("IPC_STAT of A: {e}"))).key;
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    Segments::remove(&case, "A", segs.a);
    Segments::remove(&case, "B", segs.b);
    let stranger = raw::shmget(key, 64 << 10, libc::IPC_CREAT | libc::IPC_EXCL | 0o640)
        .unwrap_or_else(|e| case.fail(&format!("shmget of a new segment with A's key {key:#x}: {e}")));
    let _cleanup = Segments { a: stranger, b: stranger };
    let (r, _pidfile) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore while another segment has A's key", &[&["shared memory"], &["another segment"]]);
    expect_names_id(&case, &r, segs.a);
    let st = raw::shm_stat(stranger).unwrap_or_else(|e| case.fail(&format!("the new segment {stranger} is gone: {e}")));
    if st.key != key || st.nattch != 0 {
        case.fail(&format!("the new segment {stranger} was changed by the failed restore: {st:?}"));
    }
    expect_gone(&case, "B (made again by the failed restore?)", segs.b);
    expect_next_id_unset(&case);
    case.expect_no_process_left(root);
}

/// The workload alone: it must pass and remove both its segments.
#[test]
fn standalone_sysv_shm() {
    let _serial = one_at_a_time();
    let case = Case::new("sa-sysv_shm", workload!("sysv_shm"));
    let Some(mut run) = case.start() else { return };
    let segs = Segments::printed(&case, &run);
    case.finish(&mut run);
    expect_gone(&case, "A (removed by the workload)", segs.a);
    expect_gone(&case, "B (removed by the workload)", segs.b);
}
