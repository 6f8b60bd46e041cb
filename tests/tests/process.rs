//! Per-process attributes, credentials and mm fields.

use stasis_tests::harness::{checkpoint_restore, skip, standalone, static_c_workload, Case};
use stasis_tests::workload;

#[test]
fn limits_umask_cwd_comm_personality_and_prctl_flags() {
    checkpoint_restore("proc_attrs", workload!("proc_attrs").arg("detached"));
}

/// Restored without -d, stasis stays the parent until the process ends: the parent-death signal is
/// armed again (and must not fire).
#[test]
fn parent_death_signal_with_an_attached_restore() {
    let case = Case::new("proc_attrs_attached", workload!("proc_attrs"));
    case.checkpoint_restore_attached();
}

#[test]
fn root_directory_nice_value_and_cpu_affinity() {
    checkpoint_restore("sched_root", workload!("sched_root"));
}

#[test]
fn credentials_and_capabilities() {
    checkpoint_restore("creds", workload!("creds"));
}

#[test]
fn cmdline_environ_exe_auxv_and_layout() {
    let w = workload!("mm_fields").arg("an argument with spaces").arg("").arg("ünïcödé");
    checkpoint_restore("mm_fields", w.env("STASIS_TEST_VAR", "value=with=equals"));
}

/// The `unsupported` workload's `thread` mode (a second thread that keeps counting) was refused before
/// threads were supported; now it is checkpointed and restored, and the thread must still count.
#[test]
fn a_second_thread_keeps_counting() {
    checkpoint_restore("second_thread", workload!("unsupported").arg("thread"));
}

/// The `unsupported` workload's `child` mode (a child process it must still be able to talk to) was
/// refused before process trees were supported; now the pair is checkpointed and restored.
#[test]
fn a_child_process_is_restored_with_its_parent() {
    checkpoint_restore("child_process", workload!("unsupported").arg("child"));
}

/// A child made with clone(CLONE_VM | CLONE_FILES | CLONE_FS | CLONE_SIGHAND): after restore it
/// shares its parent's address space, fd table, fs info and signal handlers again (C, built by the
/// test).
#[test]
fn a_child_sharing_its_parents_mm_files_fs_and_handlers() {
    let mut case = Case::new("clone_sharing", workload!("basic"));
    match static_c_workload(&case.dir, "clone_sharing") {
        Ok(w) => case.workload = w,
        Err(reason) => return skip(&reason),
    }
    case.checkpoint_restore(&[], &[]);
}

/// Seccomp filters: a chain of two in the root (one shared with its thread, synchronised again with
/// TSYNC after the restore, one of its own with the log flag), and a child's inherited filter plus
/// its own; every injected call of the dump and restore runs with the filters suspended.
#[test]
fn seccomp_filters_shared_by_threads_and_inherited_by_a_child() {
    checkpoint_restore("seccomp_filter", workload!("seccomp").arg("filter"));
}

/// A filter installed with CAP_SYS_ADMIN, then that capability dropped, without no_new_privs (as
/// runc leaves a container's process): the restore installs it before the credentials.
#[test]
fn seccomp_filters_of_a_process_that_dropped_cap_sys_admin() {
    checkpoint_restore("seccomp_dropped", workload!("seccomp_dropped"));
}

/// A child in seccomp strict mode, blocked in `read`, is restored in strict mode and can still
/// read, write and exit.
#[test]
fn seccomp_strict_mode() {
    checkpoint_restore("seccomp_strict", workload!("seccomp").arg("strict"));
}

#[test]
fn standalone_seccomp() {
    standalone("sa-seccomp_filter", workload!("seccomp").arg("filter"));
    standalone("sa-seccomp_strict", workload!("seccomp").arg("strict"));
}
