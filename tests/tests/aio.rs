//! AIO contexts (`io_setup`): two rings of different sizes in a parent (slots 0 and 2, one gone
//! round its end) with completed events not yet reaped, and a child that maps them from the fork
//! and has one context of its own; each process checks its rings, their pending events, and that
//! new requests and `io_destroy` work after the restore. The maps of both processes are compared
//! with the rings' inodes numbered, so the child's copies of its parent's rings must be the
//! parent's rings again.

use stasis_tests::harness::{standalone, tree_pids, Case, Running};
use stasis_tests::workload;

#[test]
fn standalone_rings() {
    standalone("sa-aio_rings", workload!("aio").arg("rings"));
}

#[test]
fn rings_with_pending_events_in_a_parent_and_its_child() {
    let case = Case::new("aio_rings", workload!("aio").arg("rings"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let pids = tree_pids(root);
    if pids.len() != 2 {
        case.fail(&format!("the tree of pid {root} has processes {pids:?}, expected 2"));
    }
    let before = case.numbered_snapshots(&pids, true);
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, root, &[]);
    case.compare_numbered(&before, &pids);
    case.finish(&mut restored);
}

/// A dump with `--leave-running` leaves the rings as they were: the process, woken after it,
/// finds every pending event and passes.
#[test]
fn rings_are_untouched_by_a_dump_that_leaves_them_running() {
    let case = Case::new("aio_leave_running", workload!("aio").arg("rings"));
    let Some(mut run) = case.start() else { return };
    case.dump_ok(&run, &case.images("images"), &["--leave-running"]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

#[test]
fn standalone_orphan_ring() {
    standalone("sa-aio_orphan", workload!("aio").arg("orphan"));
}

/// The value after `prefix` on a line of the workload's output.
fn reported(run: &Running, prefix: &str) -> String {
    let log = run.log_text();
    log.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_default().trim().to_string()
}

/// A child's copy of a ring whose context its parent destroyed is refused naming the child and
/// the mapping; both processes run on untouched.
#[test]
fn a_ring_no_process_owns_is_refused_by_name() {
    let case = Case::new("aio_orphan", workload!("aio").arg("orphan"));
    let Some(mut run) = case.start() else { return };
    let (child, ring) = (reported(&run, "CHILD "), reported(&run, "RING "));
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    let pid = format!("pid {child}");
    let needles: [&[&str]; 3] = [&[&pid], &[&ring], &["the ring of an aio context of another process"]];
    case.expect_failed(&r, "dump of a child mapping a destroyed AIO ring", &needles);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// A poll request in flight that completes while the tree is frozen (an action script writes to
/// the pipe at post-dump) is refused naming the process and the context; the process then reaps
/// exactly that completion.
#[test]
fn a_request_that_completes_during_the_dump_is_refused_by_name() {
    let case = Case::new("aio_inflight", workload!("aio").arg("inflight"));
    let Some(mut run) = case.start() else { return };
    let (ring, fd) = (reported(&run, "RING "), reported(&run, "WRITE_FD "));
    let pipe = format!("/proc/{}/fd/{fd}", run.pid());
    let script = format!("[ \"$CRTOOLS_SCRIPT_ACTION\" != post-dump ] || printf x > {pipe}");
    let r = case.dump(&run, &case.images("images"), &["--action-script", &script], &[]);
    let pid = format!("pid {}", run.pid());
    let needles: [&[&str]; 3] = [&[&pid], &[&ring], &["requests in flight"]];
    case.expect_failed(&r, "dump of a process whose poll request completed during the dump", &needles);
    case.expect_untouched(&run);
    case.finish(&mut run);
}
