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
