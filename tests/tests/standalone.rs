//! Every workload run without stasis: start, READY, wake (or let it finish), PASS. This checks the
//! workloads themselves, so that an end-to-end failure points at stasis, not at the workload.

use stasis_tests::harness::{shell_job, skip, standalone, static_c_workload, Case};
use stasis_tests::workload;

#[test]
fn basic() {
    standalone("sa-basic", workload!("basic"));
}

#[test]
fn mem_basic() {
    standalone("sa-mem_basic", workload!("mem_basic"));
}

#[test]
fn mem_big() {
    standalone("sa-mem_big", workload!("mem_big").arg("64"));
}

#[test]
fn mem_mixed() {
    standalone("sa-mem_mixed", workload!("mem_mixed"));
}

#[test]
fn regs() {
    standalone("sa-regs", workload!("regs"));
}

#[test]
fn tls_rseq() {
    standalone("sa-tls_rseq", workload!("tls_rseq"));
}

#[test]
fn sleep_nanosleep() {
    standalone("sa-sleep_nanosleep", workload!("sleep_nanosleep").arg("2").self_finishing());
}

#[test]
fn sleep_nanosleep_eintr_ok() {
    standalone("sa-sleep_nanosleep_eintr_ok", workload!("sleep_nanosleep").arg("2").arg("eintr-ok").self_finishing());
}

#[test]
fn sleep_abstime() {
    standalone("sa-sleep_abstime", workload!("sleep_abstime").arg("2").self_finishing());
}

#[test]
fn wait_pause() {
    standalone("sa-wait_pause", workload!("wait_signal").arg("pause"));
}

#[test]
fn wait_sigsuspend() {
    standalone("sa-wait_sigsuspend", workload!("wait_signal").arg("sigsuspend"));
}

#[test]
fn pipe_read() {
    standalone("sa-pipe_read", workload!("pipe_read").arg("2").self_finishing());
}

#[test]
fn signals() {
    standalone("sa-signals", workload!("signals"));
}

#[test]
fn itimers() {
    standalone("sa-itimers", workload!("itimers"));
}

#[test]
fn proc_attrs() {
    standalone("sa-proc_attrs", workload!("proc_attrs"));
}

#[test]
fn creds() {
    standalone("sa-creds", workload!("creds"));
}

#[test]
fn mm_fields() {
    let w = workload!("mm_fields").arg("an argument with spaces").arg("").arg("ünïcödé");
    standalone("sa-mm_fields", w.env("STASIS_TEST_VAR", "value=with=equals"));
}

#[test]
fn fds() {
    standalone("sa-fds", workload!("fds"));
}

#[test]
fn fds_mixed_stdio() {
    standalone("sa-fds_mixed", workload!("fds").mixed_stdio());
}

#[test]
fn unsupported_udp() {
    standalone("sa-unsupported_udp", workload!("unsupported").arg("udp"));
}

#[test]
fn unsupported_userfaultfd() {
    standalone("sa-unsupported_userfaultfd", workload!("unsupported").arg("userfaultfd"));
}

#[test]
fn unsupported_thread() {
    standalone("sa-unsupported_thread", workload!("unsupported").arg("thread"));
}

#[test]
fn unsupported_child() {
    standalone("sa-unsupported_child", workload!("unsupported").arg("child"));
}

#[test]
fn tty() {
    shell_job(&Case::new("sa-tty", workload!("tty").shell_job()), false);
}

#[test]
fn static_mem() {
    let mut case = Case::new("sa-static_mem", workload!("basic"));
    match static_c_workload(&case.dir, "static_mem") {
        Ok(w) => case.workload = w,
        Err(reason) => return skip(&reason),
    }
    let Some(mut run) = case.start() else { return };
    case.finish(&mut run);
}

#[test]
fn uprobed_entry() {
    standalone("sa-uprobed_entry", workload!("uprobed").arg("entry"));
}

#[test]
fn uprobed_return() {
    standalone("sa-uprobed_return", workload!("uprobed").arg("return"));
}
