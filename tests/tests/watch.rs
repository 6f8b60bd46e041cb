//! epoll, inotify and fanotify instances and FIFOs: each workload sets up its objects, is
//! checkpointed, killed and restored, and checks them itself (items, watches, marks, queued data)
//! and that they keep working. What cannot be restored is refused by name, the workload untouched
//! (it then checks nothing was taken from it). The `standalone_*` tests run the workloads without
//! stasis.

use stasis_tests::harness::{checkpoint_restore, skip, standalone, Case, TestDir, TmpfsMount, Workload};
use stasis_tests::workload;

/// Starts `workload`, expects the dump to fail naming the fd the workload printed (`fd N`) and one
/// of `what`, then checks the workload is untouched and passes.
fn refused(test: &str, workload: Workload, what: &[&str]) {
    refused_case(Case::new(test, workload), what);
}

/// [`refused`] for a case made already.
fn refused_case(case: Case, what: &[&str]) {
    let Some(mut run) = case.start() else { return };
    let log = run.log_text();
    let fd = log.lines().find_map(|l| l.strip_prefix("fd ")).unwrap_or_else(|| case.fail("no fd line")).trim();
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    let fd_needles = [format!("fd {fd}")];
    let fd_needles: Vec<&str> = fd_needles.iter().map(String::as_str).collect();
    case.expect_failed(&r, "the dump", &[&fd_needles, what]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

#[test]
fn epoll_items_closed_fd_nested_and_loop() {
    checkpoint_restore("watch_epoll", workload!("watch_epoll"));
}

#[test]
fn standalone_epoll() {
    standalone("sa-watch_epoll", workload!("watch_epoll"));
}

#[test]
fn inotify_watches_descriptors_and_new_events() {
    checkpoint_restore("watch_inotify", workload!("watch_inotify"));
}

#[test]
fn inotify_with_unread_events_is_refused() {
    refused("watch_inotify_queued", workload!("watch_inotify").arg("queued"), &["inotify"]);
}

#[test]
fn standalone_inotify() {
    standalone("sa-watch_inotify", workload!("watch_inotify"));
}

#[test]
fn standalone_inotify_queued() {
    standalone("sa-watch_inotify_queued", workload!("watch_inotify").arg("queued"));
}

#[test]
fn fifo_with_data_shared_by_two_processes() {
    checkpoint_restore("watch_fifo", workload!("watch_fifo"));
}

#[test]
fn fifo_whose_path_is_gone() {
    checkpoint_restore("watch_fifo_gone", workload!("watch_fifo").arg("gone"));
}

/// A FIFO in packet mode keeps its packet boundaries.
#[test]
fn a_packet_mode_fifo_keeps_its_packets() {
    checkpoint_restore("watch_fifo_packets", workload!("watch_fifo").arg("packets"));
}

#[test]
fn standalone_fifo() {
    standalone("sa-watch_fifo", workload!("watch_fifo"));
}

#[test]
fn standalone_fifo_gone() {
    standalone("sa-watch_fifo_gone", workload!("watch_fifo").arg("gone"));
}

/// The fanotify workload on a tmpfs mounted for the test: (case, mount), or `None` (skipped) if the
/// mount fails.
fn fanotify_case(test: &str, extra: &[&str]) -> Option<(Case, TmpfsMount)> {
    let dir = TestDir::new(&format!("{test}-mnt"));
    let mnt_path = dir.join("mnt");
    let mount = match TmpfsMount::new(&mnt_path, "size=1m") {
        Ok(m) => m,
        Err(e) => {
            skip(&format!("{test}: {e}"));
            return None;
        }
    };
    let workload = extra.iter().fold(workload!("watch_fanotify").arg(&mnt_path), |w, a| w.arg(a));
    Some((Case::new(test, workload), mount))
}

#[test]
fn fanotify_group_and_marks() {
    let Some((case, _mount)) = fanotify_case("watch_fanotify", &[]) else { return };
    case.checkpoint_restore(&[], &[]);
}

#[test]
fn standalone_fanotify() {
    let Some((case, _mount)) = fanotify_case("sa-watch_fanotify", &[]) else { return };
    let Some(mut run) = case.start() else { return };
    case.finish(&mut run);
}

#[test]
fn epoll_watching_a_file_only_a_child_holds() {
    checkpoint_restore("watch_epoll_tree", workload!("watch_epoll_tree"));
}

#[test]
fn epoll_watching_a_file_held_outside_the_tree_is_refused() {
    refused("watch_epoll_outside", workload!("watch_epoll_tree").arg("outside"), &["epoll"]);
}

#[test]
fn standalone_epoll_tree() {
    standalone("sa-watch_epoll_tree", workload!("watch_epoll_tree"));
}

#[test]
fn standalone_epoll_outside() {
    standalone("sa-watch_epoll_outside", workload!("watch_epoll_tree").arg("outside"));
}

#[test]
fn fanotify_with_unread_events_is_refused() {
    let Some((case, _mount)) = fanotify_case("watch_fanotify_queued", &["queued"]) else { return };
    refused_case(case, &["fanotify"]);
}

#[test]
fn standalone_fanotify_queued() {
    let Some((case, _mount)) = fanotify_case("sa-watch_fanotify_queued", &["queued"]) else { return };
    let Some(mut run) = case.start() else { return };
    case.finish(&mut run);
}
