//! Per-process attributes, credentials and mm fields.

use stasis_tests::harness::checkpoint_restore;
use stasis_tests::workload;

#[test]
fn limits_umask_cwd_comm_personality_and_prctl_flags() {
    checkpoint_restore("proc_attrs", workload!("proc_attrs"));
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
