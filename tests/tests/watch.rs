//! epoll, inotify and fanotify instances and FIFOs: each workload sets up its objects, is
//! checkpointed, killed and restored, and checks them itself (items, watches, marks, queued data)
//! and that they keep working. What cannot be restored is refused by name, the workload untouched.
//! The `standalone_*` tests run the workloads without stasis.

use stasis_tests::harness::{checkpoint_restore, standalone};
use stasis_tests::workload;

#[test]
fn epoll_items_closed_fd_nested_and_loop() {
    checkpoint_restore("watch_epoll", workload!("watch_epoll"));
}

#[test]
fn standalone_epoll() {
    standalone("sa-watch_epoll", workload!("watch_epoll"));
}
