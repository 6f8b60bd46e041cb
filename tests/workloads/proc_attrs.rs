//! Per-process attributes survive: resource limits (lowered soft and hard limits), umask, cwd, comm
//! name, personality, no_new_privs, parent-death signal, dumpable flag and timer slack.

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, OrFail};

const LIMITS: [(u32, u64, u64); 8] = [
    (libc::RLIMIT_NOFILE, 256, 512),
    (libc::RLIMIT_CORE, 0, 1 << 20),
    (libc::RLIMIT_STACK, 6 << 20, u64::MAX),
    (libc::RLIMIT_MSGQUEUE, 4096, 8192),
    (libc::RLIMIT_MEMLOCK, 32 << 10, 64 << 10),
    (libc::RLIMIT_CPU, 10_000, 20_000),
    (libc::RLIMIT_FSIZE, 1 << 30, 2 << 30),
    (libc::RLIMIT_RTPRIO, 0, 0),
];

#[derive(Debug, PartialEq)]
struct Attrs {
    limits: Vec<(u64, u64)>,
    umask: u32,
    cwd: std::path::PathBuf,
    comm: String,
    personality: u64,
    no_new_privs: i32,
    pdeathsig: i32,
    dumpable: i32,
    timer_slack: i32,
}

fn read_attrs() -> std::io::Result<Attrs> {
    let umask = raw::umask(0o077);
    raw::umask(umask);
    Ok(Attrs {
        limits: (0..16).map(|r| raw::getrlimit(r).unwrap_or((1, 1))).collect(),
        umask,
        cwd: std::env::current_dir()?,
        comm: raw::get_comm()?,
        personality: raw::get_personality()?,
        no_new_privs: raw::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0)?,
        pdeathsig: raw::get_pdeathsig()?,
        dumpable: raw::prctl(libc::PR_GET_DUMPABLE, 0, 0)?,
        timer_slack: raw::prctl(libc::PR_GET_TIMERSLACK, 0, 0)?,
    })
}

/// Argument `detached`: the harness restores with `-d`.
fn main() {
    let detached = workload::mode(1, &["detached"]).is_some();
    let mut s = workload::start();
    for (res, soft, hard) in LIMITS {
        // Only ever lower: raising a hard limit needs CAP_SYS_RESOURCE, which root lacks here.
        let hard = hard.min(raw::getrlimit(res).or_fail("getrlimit").1);
        raw::setrlimit(res, soft.min(hard), hard).or_fail(&format!("setrlimit({res})"));
    }
    raw::umask(0o027);
    let dir = workload::work_dir().join("cwd with space");
    std::fs::create_dir_all(&dir).or_fail("mkdir");
    std::env::set_current_dir(&dir).or_fail("chdir");
    raw::set_comm("stasis-attrs").or_fail("PR_SET_NAME");
    raw::set_personality(libc::ADDR_NO_RANDOMIZE as u64).or_fail("personality");
    raw::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).or_fail("PR_SET_NO_NEW_PRIVS");
    raw::set_recording_handler(libc::SIGWINCH, 0, SigSet::empty()).or_fail("SIGWINCH handler");
    raw::prctl(libc::PR_SET_PDEATHSIG, libc::SIGWINCH as u64, 0).or_fail("PR_SET_PDEATHSIG");
    raw::prctl(libc::PR_SET_DUMPABLE, 0, 0).or_fail("PR_SET_DUMPABLE");
    raw::prctl(libc::PR_SET_TIMERSLACK, 123_456, 0).or_fail("PR_SET_TIMERSLACK");
    let before = read_attrs().or_fail("read attributes");
    s.ready();
    s.wait_for_wake();
    match read_attrs() {
        Ok(after) => {
            for (r, (b, a)) in before.limits.iter().zip(&after.limits).enumerate() {
                s.checker.same(&format!("rlimit {r}"), b, a);
            }
            s.checker.same("umask", &format!("{:o}", before.umask), &format!("{:o}", after.umask));
            s.checker.same("cwd", &before.cwd, &after.cwd);
            s.checker.same("comm", &before.comm, &after.comm);
            s.checker.same("personality", &format!("{:#x}", before.personality), &format!("{:#x}", after.personality));
            s.checker.same("no_new_privs", &before.no_new_privs, &after.no_new_privs);
            if detached {
                // Restored with -d: stasis, the new parent, exits at once, so the signal is not armed.
                s.checker.same("pdeathsig (restored detached)", &0, &after.pdeathsig);
            } else {
                s.checker.same("pdeathsig", &before.pdeathsig, &after.pdeathsig);
            }
            s.checker.same("dumpable", &before.dumpable, &after.dumpable);
            s.checker.same("timer slack", &before.timer_slack, &after.timer_slack);
        }
        Err(e) => s.checker.check(false, || format!("reading attributes: {e}")),
    }
    let delivered = raw::handler_record(libc::SIGWINCH).count;
    s.checker.check(delivered == 0, || format!("the parent-death signal was delivered {delivered} times"));
    s.finish()
}
