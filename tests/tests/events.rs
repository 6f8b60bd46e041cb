//! Event fds, signal fds, timer fds, pidfds, POSIX timers and POSIX message queues: each workload
//! verifies its own state after a checkpoint and restore (see each `ev_*` workload), also run
//! without stasis; and what is not supported (a pidfd of a process outside the tree, a message
//! queue with a notification registered) is refused by name, the process left untouched.

use stasis_tests::harness::{checkpoint_restore, standalone, tree_pids, Case};
use stasis_tests::workload;
use std::time::{Duration, Instant};

#[test]
fn epoll_loop_over_pipe_eventfd_timerfd_socket() {
    checkpoint_restore("epoll_loop", workload!("epoll_loop"));
}

#[test]
fn standalone_epoll_loop() {
    standalone("sa-epoll_loop", workload!("epoll_loop"));
}

#[test]
fn eventfd_counter_semaphore_nonblock() {
    checkpoint_restore("ev_eventfd", workload!("ev_eventfd"));
}

#[test]
fn signalfd_mask_flags_and_signals() {
    checkpoint_restore("ev_signalfd", workload!("ev_signalfd"));
}

#[test]
fn timerfd_fires_on_schedule() {
    checkpoint_restore("ev_timerfd", workload!("ev_timerfd"));
}

/// The standard flow, but the workload's zombie child (which has no image of its own for
/// `Case::reap_dumped` to find) is reaped too once the dump killed its parent: this test process,
/// the child subreaper, inherits it, and its pid stays taken until it is reaped.
#[test]
fn pidfds_of_child_self_zombie_and_reaped() {
    let case = Case::new("ev_pidfd", workload!("ev_pidfd"));
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let children: Vec<i32> = tree_pids(root).into_iter().filter(|&p| p != root).collect();
    let before = case.settled_snapshot(root);
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in children {
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = stasis_tests::raw::try_waitpid(pid);
            if Instant::now() > deadline {
                case.fail(&format!("pid {pid} of the dumped tree still exists 10 s after the dump"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut restored = case.restore_ok(&images, root, &[]);
    case.compare(&before, root);
    case.finish(&mut restored);
}

#[test]
fn posix_timers_ids_and_schedule() {
    checkpoint_restore("ev_posix_timers", workload!("ev_posix_timers"));
}

#[test]
fn mqueue_messages_and_attributes() {
    checkpoint_restore("ev_mqueue", workload!("ev_mqueue"));
}

/// The dump of `workload` must fail naming `needles` (see `Case::expect_failed`), leaving it
/// untouched and passing when woken.
fn refused(test: &str, workload: stasis_tests::harness::Workload, needles: &[&[&str]]) {
    let case = Case::new(test, workload);
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, test, needles);
    if images.join("inventory.img").exists() {
        case.fail("the failed dump left an inventory.img");
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
}

#[test]
fn pidfd_outside_the_tree_is_refused() {
    refused("ev_pidfd_outside", workload!("ev_pidfd").arg("outside"), &[&["pidfd of pid 1"], &["outside"], &["fd 44"]]);
}

#[test]
fn mqueue_with_notification_is_refused() {
    refused("ev_mqueue_notify", workload!("ev_mqueue").arg("notify"), &[&["/stasis-ev-"], &["mq_notify"]]);
}

/// A dump that fails after it has read the queues (`STASIS_FAULT=dump-fail-after-memory`) has put
/// every message back, in order: the workload, woken afterwards, receives them all and passes.
#[test]
fn mqueue_messages_kept_by_a_failed_dump() {
    let case = Case::new("ev_mqueue_failed_dump", workload!("ev_mqueue"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[("STASIS_FAULT", "dump-fail-after-memory")]);
    case.expect_failed(&r, "dump with a fault injected", &[&["dump-fail-after-memory"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

#[test]
fn standalone_eventfd() {
    standalone("sa-ev_eventfd", workload!("ev_eventfd"));
}

#[test]
fn standalone_signalfd() {
    standalone("sa-ev_signalfd", workload!("ev_signalfd"));
}

#[test]
fn standalone_timerfd() {
    standalone("sa-ev_timerfd", workload!("ev_timerfd"));
}

#[test]
fn standalone_pidfd() {
    standalone("sa-ev_pidfd", workload!("ev_pidfd"));
}

#[test]
fn standalone_posix_timers() {
    standalone("sa-ev_posix_timers", workload!("ev_posix_timers"));
}

#[test]
fn standalone_mqueue() {
    standalone("sa-ev_mqueue", workload!("ev_mqueue"));
}
