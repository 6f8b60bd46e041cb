//! File descriptors: regular files, directories, devices, stdio, and a terminal (--shell-job).

use stasis_tests::harness::{checkpoint_restore, shell_job, Case};
use stasis_tests::workload;

#[test]
fn files_directories_and_devices() {
    checkpoint_restore("fds", workload!("fds"));
}

#[test]
fn stdin_from_a_file_stderr_to_dev_null() {
    checkpoint_restore("fds_mixed", workload!("fds").mixed_stdio());
}

#[test]
fn shell_job_on_a_terminal() {
    shell_job(&Case::new("tty", workload!("tty").shell_job()), true);
}

#[test]
fn io_signal_owners_in_a_parent_and_a_child() {
    checkpoint_restore("fd_owners", workload!("fd_owners"));
}

#[test]
fn o_path_descriptors() {
    checkpoint_restore("fd_paths_o_path", workload!("fd_paths").arg("o_path"));
}

/// Fds on `/proc/PID/...` of processes of the tree (the holder itself, its child, its parent, a
/// younger sibling) and namespace fds come back as the restored processes' files.
#[test]
fn proc_files_of_the_tree_and_namespace_fds() {
    checkpoint_restore("fd_proc", workload!("fd_proc"));
}

#[test]
fn standalone_fd_proc() {
    stasis_tests::harness::standalone("sa-fd_proc", workload!("fd_proc"));
}

/// A device node of the test's (/dev/null's device, made with mknod), removed after the dump: the
/// restore fails naming it, and restores with `--evasive-devices` through /dev/null, the same
/// device; the fd keeps its flags and still behaves as /dev/null.
#[test]
fn a_removed_device_node_fails_the_restore_but_with_evasive_devices() {
    let node = std::env::temp_dir().join(format!("stasis-my-null-{}", std::process::id()));
    let _ = std::fs::remove_file(&node);
    let made = std::process::Command::new("mknod").arg(&node).args(["c", "1", "3"]).status();
    if !made.is_ok_and(|s| s.success()) {
        return stasis_tests::harness::skip("mknod of a device node failed here");
    }
    let case = Case::new("evasive_devices", workload!("dev_node").arg(node.to_str().unwrap()));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    std::fs::remove_file(&node).expect("removing the node");
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore of a removed device node", &[&["stasis-my-null"]]);
    case.expect_no_process_left(run.pid());
    let mut restored = case.restore_ok(&images, run.pid(), &["--evasive-devices"]);
    case.finish(&mut restored);
}
