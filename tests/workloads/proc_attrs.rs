//! Per-process attributes survive: resource limits (lowered soft and hard limits), umask, cwd, comm
//! name, personality, no_new_privs, parent-death signal, dumpable flag and timer slack; the I/O
//! priority of the main thread and another of a second thread, the memory-error kill policy,
//! memory-deny-write-execute, syscall user dispatch (a call made with the selector at "block" goes to
//! the SIGSYS handler, before and after), and rdtsc made to fault (set last before READY, checked and undone
//! first after the wake: the vDSO's clocks use rdtsc).

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
    ioprio: i32,
    mce_kill: i32,
    mdwe: i32,
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
        ioprio: raw::ioprio_get(0)?,
        mce_kill: raw::prctl(libc::PR_MCE_KILL_GET, 0, 0)?,
        mdwe: raw::prctl(raw::PR_GET_MDWE, 0, 0)?,
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
    // Best effort, class 2 (best effort) level 3; the thread's level 6.
    raw::ioprio_set(2 << 13 | 3).or_fail("ioprio_set");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        raw::ioprio_set(2 << 13 | 6).or_fail("ioprio_set in a thread");
        tx.send(raw::raw_gettid()).or_fail("send");
        loop {
            std::thread::park();
        }
    });
    let thread = rx.recv().or_fail("the thread's tid");
    raw::prctl(libc::PR_MCE_KILL, libc::PR_MCE_KILL_SET as u64, libc::PR_MCE_KILL_EARLY as u64).or_fail("PR_MCE_KILL");
    // PR_MDWE_REFUSE_EXEC_GAIN: stasis' own areas in the task must do without write+exec.
    raw::prctl(raw::PR_SET_MDWE, 1, 0).or_fail("PR_SET_MDWE");
    raw::enable_syscall_dispatch().or_fail("PR_SET_SYSCALL_USER_DISPATCH");
    s.checker.same("system calls dispatched before the dump", &1, &raw::dispatch_one());
    let before = read_attrs().or_fail("read attributes");
    let thread_before = raw::ioprio_get(thread).or_fail("the thread's ioprio");
    raw::prctl(libc::PR_SET_TSC, libc::PR_TSC_SIGSEGV as u64, 0).or_fail("PR_SET_TSC");
    s.ready();
    s.wait_for_wake();
    let tsc = raw::get_tsc();
    raw::prctl(libc::PR_SET_TSC, libc::PR_TSC_ENABLE as u64, 0).or_fail("PR_SET_TSC back");
    s.checker.same(
        "rdtsc mode",
        &format!("{:?}", Ok::<i32, ()>(libc::PR_TSC_SIGSEGV)),
        &format!("{:?}", tsc.map_err(drop)),
    );
    s.checker.same("the thread's I/O priority", &Some(thread_before), &raw::ioprio_get(thread).ok());
    s.checker.same("system calls dispatched after the restore", &2, &raw::dispatch_one());
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
            s.checker.same("I/O priority", &before.ioprio, &after.ioprio);
            s.checker.same("memory-error kill policy", &before.mce_kill, &after.mce_kill);
            s.checker.same("memory-deny-write-execute", &before.mdwe, &after.mdwe);
        }
        Err(e) => s.checker.check(false, || format!("reading attributes: {e}")),
    }
    let delivered = raw::handler_record(libc::SIGWINCH).count;
    s.checker.check(delivered == 0, || format!("the parent-death signal was delivered {delivered} times"));
    s.finish()
}
