//! The small per-task settings: resource limits, umask, working and root directory, personality,
//! command name, timer slack, THP opt-out, parent-death signal, dumpable flag, no_new_privs, the
//! clear-child-tid address, the robust futex list, the rseq registration, the nice value, the CPU
//! affinity, the OOM score adjustment and the cgroup v2 membership.
//!
//! Settings that a credential change resets (parent-death signal, dumpable) are restored by
//! [`restore_after_creds`], after [`crate::creds`].

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use crate::scratch::{read_u64s, write_cstr, write_u64s};
use stasis_image::model::{RLimit, Rseq, TaskCore};
use stasis_sys::inject::Injector;
use stasis_sys::{process, ptrace, Pid};

const RLIMIT_COUNT: u32 = 16;
const PR_SET_PDEATHSIG: u64 = 1;
/// `SCHED_RESET_ON_FORK`, or'ed into a policy.
const SCHED_RESET_ON_FORK: i32 = 0x4000_0000;
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_SET_DUMPABLE: u64 = 4;
const PR_SET_NAME: u64 = 15;
const PR_GET_TIMERSLACK: u64 = 30;
const PR_SET_TIMERSLACK: u64 = 29;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_GET_TID_ADDRESS: u64 = 40;
const PR_SET_THP_DISABLE: u64 = 41;
const PR_GET_THP_DISABLE: u64 = 42;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
/// Room for 1024 CPUs in an affinity mask.
const AFFINITY_BYTES: u64 = 128;

fn prctl(inj: &mut Injector, what: &'static str, args: [u64; 5]) -> Result<u64> {
    Ok(inj.call(what, libc::SYS_prctl, [args[0], args[1], args[2], args[3], args[4], 0])?)
}

/// Fill the misc fields of `core` for the main thread `pid` (the injector runs in it): the
/// process-wide settings and the thread's own.
pub fn dump(inj: &mut Injector, root: &ProcRoot, pid: Pid, status: &proc::Status, core: &mut TaskCore) -> Result<()> {
    dump_process(inj, root, pid, status, core)?;
    dump_thread(inj, root, pid, core)
}

/// Settings every thread has its own of: name, parent-death signal, timer slack, clear-child-tid
/// address, robust futex list, rseq registration, nice value, scheduling policy, CPU affinity.
pub fn dump_thread(inj: &mut Injector, root: &ProcRoot, tid: Pid, core: &mut TaskCore) -> Result<()> {
    core.comm = proc::comm(root, tid.0)?;
    let data = inj.data();
    prctl(inj, "prctl(PR_GET_PDEATHSIG)", [PR_GET_PDEATHSIG, data, 0, 0, 0])?;
    core.pdeathsig = read_u64s(inj, data, 1)?[0] as u32 as i32;
    core.timer_slack_ns = prctl(inj, "prctl(PR_GET_TIMERSLACK)", [PR_GET_TIMERSLACK, 0, 0, 0, 0])?;
    prctl(inj, "prctl(PR_GET_TID_ADDRESS)", [PR_GET_TID_ADDRESS, data, 0, 0, 0])?;
    core.clear_child_tid = read_u64s(inj, data, 1)?[0];
    let (head, len) = process::get_robust_list(tid).map_err(Error::sys(tid.0, "reading the robust futex list"))?;
    core.robust_list = head;
    core.robust_list_len = len;
    core.rseq = dump_rseq(tid)?;
    let prio = inj.call("getpriority", libc::SYS_getpriority, [libc::PRIO_PROCESS as u64, 0, 0, 0, 0, 0])?;
    core.nice = 20 - prio as i32;
    core.sched_policy = inj.call("sched_getscheduler", libc::SYS_sched_getscheduler, [0; 6])? as i32;
    inj.call("sched_getparam", libc::SYS_sched_getparam, [0, data, 0, 0, 0, 0])?;
    core.sched_priority = read_u64s(inj, data, 1)?[0] as u32 as i32;
    let n = inj.call("sched_getaffinity", libc::SYS_sched_getaffinity, [0, AFFINITY_BYTES, data, 0, 0, 0])?;
    let mut mask = vec![0u8; n as usize];
    inj.read(data, &mut mask)?;
    core.cpu_affinity = mask;
    Ok(())
}

/// Process-wide settings: umask, no_new_privs, personality, directories, limits, dumpable, THP,
/// OOM score adjustment, cgroup.
fn dump_process(
    inj: &mut Injector,
    root: &ProcRoot,
    pid: Pid,
    status: &proc::Status,
    core: &mut TaskCore,
) -> Result<()> {
    let p = pid.0;
    core.umask = status.umask;
    core.no_new_privs = status.no_new_privs;
    core.personality = proc::personality(root, p)?;
    core.cwd = path_string(proc::link(root, p, "cwd")?);
    core.root = path_string(proc::link(root, p, "root")?);
    core.rlimits = dump_rlimits(root, pid)?;
    core.dumpable = prctl(inj, "prctl(PR_GET_DUMPABLE)", [PR_GET_DUMPABLE, 0, 0, 0, 0])? as i32;
    core.thp_disabled = prctl(inj, "prctl(PR_GET_THP_DISABLE)", [PR_GET_THP_DISABLE, 0, 0, 0, 0])? != 0;
    let data = inj.data();
    prctl(inj, "prctl(PR_GET_CHILD_SUBREAPER)", [PR_GET_CHILD_SUBREAPER, data, 0, 0, 0])?;
    core.child_subreaper = read_u64s(inj, data, 1)?[0] as u32 != 0;
    let path = root.pid_path(p, "oom_score_adj");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    core.oom_score_adj = text.trim().parse().unwrap_or(0);
    let path = root.pid_path(p, "cgroup");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    core.cgroup = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("").to_string();
    Ok(())
}

/// Settings made from outside the task, right after it is created: its cgroup (so that its memory
/// is charged there from the start) and its OOM score adjustment.
/// Each is written only if the task (a copy of its parent or of us) does not have it already: a
/// write to `cgroup.procs` costs milliseconds.
pub fn restore_from_outside(pid: Pid, core: &TaskCore) {
    let now = |what: &str| std::fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap_or_default();
    let cgroup_now = now("cgroup");
    let in_cgroup = cgroup_now.lines().find_map(|l| l.strip_prefix("0::")) == Some(core.cgroup.as_str());
    if !core.cgroup.is_empty() && !in_cgroup {
        match cgroup2_mount() {
            Some(mount) => {
                let procs = format!("{mount}{}/cgroup.procs", core.cgroup);
                if let Err(e) = std::fs::write(&procs, pid.0.to_string()) {
                    log::warn!("pid {pid}: cannot join cgroup {} ({procs}): {e}; it stays in ours", core.cgroup);
                }
            }
            None => log::warn!("pid {pid}: no cgroup2 mount here; cgroup {} not restored", core.cgroup),
        }
    }
    if now("oom_score_adj").trim() == core.oom_score_adj.to_string() {
        return;
    }
    let path = format!("/proc/{pid}/oom_score_adj");
    if let Err(e) = std::fs::write(&path, core.oom_score_adj.to_string()) {
        log::warn!(
            "pid {pid}: cannot set oom_score_adj to {} (lowering it needs CAP_SYS_RESOURCE): {e}",
            core.oom_score_adj
        );
    }
}

fn cgroup2_mount() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
    })
}

fn path_string(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

fn dump_rlimits(root: &ProcRoot, pid: Pid) -> Result<Vec<RLimit>> {
    let limits = proc::limits(root, pid.0)?;
    if limits.len() != RLIMIT_COUNT as usize {
        let what = format!("/proc/{pid}/limits lists {} limits, not {RLIMIT_COUNT}", limits.len());
        return Err(Error::Failed { pid: pid.0, what });
    }
    Ok((0..RLIMIT_COUNT).zip(limits).map(|(resource, (cur, max))| RLimit { resource, cur, max }).collect())
}

fn dump_rseq(pid: Pid) -> Result<Option<Rseq>> {
    let conf = ptrace::get_rseq_config(pid).map_err(Error::sys(pid.0, "reading the rseq registration"))?;
    Ok((conf.rseq_abi_pointer != 0).then_some(Rseq {
        ptr: conf.rseq_abi_pointer,
        len: conf.rseq_abi_size,
        signature: conf.signature,
    }))
}

/// Drop the rseq registration a new task inherited from us: the area is about to be unmapped.
pub fn unregister_inherited_rseq(inj: &mut Injector, pid: Pid) -> Result<()> {
    if let Some(r) = dump_rseq(pid)? {
        let args = [r.ptr, r.len as u64, RSEQ_FLAG_UNREGISTER, r.signature as u64, 0, 0];
        inj.call("rseq(RSEQ_FLAG_UNREGISTER)", libc::SYS_rseq, args)?;
    }
    Ok(())
}

/// Everything but the settings a credential change would reset, for the main thread. `inherited` is
/// what a child forked from its restored parent already has (the parent's record): equal settings are
/// not set again.
pub fn restore(inj: &mut Injector, core: &TaskCore, inherited: Option<&TaskCore>) -> Result<()> {
    restore_process(inj, core, inherited)?;
    restore_thread(inj, core, inherited)
}

fn restore_process(inj: &mut Injector, core: &TaskCore, inherited: Option<&TaskCore>) -> Result<()> {
    let data = inj.data();
    if core.child_subreaper {
        // Not inherited by fork; set before the children are made (see `session`).
        prctl(inj, "prctl(PR_SET_CHILD_SUBREAPER)", [PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0])?;
    }
    let had = |l: &RLimit| inherited.is_some_and(|p| p.rlimits.contains(l));
    for l in core.rlimits.iter().filter(|l| !had(l)) {
        write_u64s(inj, data, &[l.cur, l.max])?;
        inj.call("prlimit64", libc::SYS_prlimit64, [0, l.resource as u64, data, 0, 0, 0]).map_err(|e| Error::Step {
            pid: core.pid,
            what: format!("resource limit {}", l.resource),
            source: Box::new(e.into()),
        })?;
    }
    if let Some(p) = inherited.filter(|p| {
        (&p.cwd, &p.root, p.umask, p.personality, p.thp_disabled)
            == (&core.cwd, &core.root, core.umask, core.personality, core.thp_disabled)
    }) {
        log::trace!("pid {}: directories, umask, personality as its parent {}", core.pid, p.pid);
        return Ok(());
    }
    inj.call("umask", libc::SYS_umask, [core.umask as u64, 0, 0, 0, 0, 0])?;
    // Both paths are as our root sees them: change directory first, then root.
    write_cstr(inj, data, &core.cwd)?;
    inj.call("chdir", libc::SYS_chdir, [data, 0, 0, 0, 0, 0]).map_err(|e| Error::Step {
        pid: core.pid,
        what: format!("working directory {}", core.cwd),
        source: Box::new(e.into()),
    })?;
    if core.root != "/" {
        write_cstr(inj, data, &core.root)?;
        inj.call("chroot", libc::SYS_chroot, [data, 0, 0, 0, 0, 0])?;
    }
    inj.call("personality", libc::SYS_personality, [core.personality as u64, 0, 0, 0, 0, 0])?;
    prctl(inj, "prctl(PR_SET_THP_DISABLE)", [PR_SET_THP_DISABLE, core.thp_disabled as u64, 0, 0, 0])?;
    Ok(())
}

/// The settings of one thread (see [`dump_thread`]), but its parent-death signal.
pub fn restore_thread(inj: &mut Injector, core: &TaskCore, inherited: Option<&TaskCore>) -> Result<()> {
    // What a child forked from its restored parent has already (fork copies the name, the timer
    // slack, the scheduling policy unless SCHED_RESET_ON_FORK, the nice value and the affinity).
    let had = |same: &dyn Fn(&TaskCore) -> bool| inherited.is_some_and(same);
    let data = inj.data();
    if !had(&|p| p.comm == core.comm) {
        write_cstr(inj, data, &core.comm)?;
        prctl(inj, "prctl(PR_SET_NAME)", [PR_SET_NAME, data, 0, 0, 0])?;
    }
    if core.timer_slack_ns != 0 && !had(&|p| p.timer_slack_ns == core.timer_slack_ns) {
        prctl(inj, "prctl(PR_SET_TIMERSLACK)", [PR_SET_TIMERSLACK, core.timer_slack_ns, 0, 0, 0])?;
    }
    inj.call("set_tid_address", libc::SYS_set_tid_address, [core.clear_child_tid, 0, 0, 0, 0, 0])?;
    let robust = [core.robust_list, core.robust_list_len, 0, 0, 0, 0];
    inj.call("set_robust_list", libc::SYS_set_robust_list, robust)?;
    if let Some(r) = &core.rseq {
        inj.call("rseq", libc::SYS_rseq, [r.ptr, r.len as u64, 0, r.signature as u64, 0, 0])?;
    }
    let reset_on_fork = |p: &TaskCore| p.sched_policy & SCHED_RESET_ON_FORK != 0;
    let same_sched = |p: &TaskCore| {
        !reset_on_fork(p)
            && (p.sched_policy, p.sched_priority, p.nice) == (core.sched_policy, core.sched_priority, core.nice)
    };
    if !had(&same_sched) {
        restore_sched(inj, core)?;
    }
    if !core.cpu_affinity.is_empty()
        && core.cpu_affinity.len() as u64 <= AFFINITY_BYTES
        && !had(&|p| p.cpu_affinity == core.cpu_affinity)
    {
        inj.write(data, &core.cpu_affinity)?;
        let args = [0, core.cpu_affinity.len() as u64, data, 0, 0, 0];
        if let Err(e) = inj.call("sched_setaffinity", libc::SYS_sched_setaffinity, args) {
            log::warn!("pid {}: CPU affinity not restored (CPUs missing here?): {e}", core.pid);
        }
    }
    Ok(())
}

/// Scheduling policy and priority, then the nice value.
fn restore_sched(inj: &mut Injector, core: &TaskCore) -> Result<()> {
    let data = inj.data();
    write_u64s(inj, data, &[core.sched_priority as u32 as u64])?;
    let policy = core.sched_policy as u32 as u64;
    inj.call("sched_setscheduler", libc::SYS_sched_setscheduler, [0, policy, data, 0, 0, 0]).map_err(|e| {
        Error::Step {
            pid: core.pid,
            what: format!("scheduling policy {} priority {}", core.sched_policy, core.sched_priority),
            source: Box::new(e.into()),
        }
    })?;
    // After the policy: SCHED_OTHER and SCHED_BATCH keep the nice value set here.
    let nice = core.nice as i64 as u64;
    inj.call("setpriority", libc::SYS_setpriority, [libc::PRIO_PROCESS as u64, 0, nice, 0, 0, 0])?;
    Ok(())
}

/// The settings a credential change resets (parent-death signal, dumpable), and no_new_privs, for the
/// main thread.
///
/// With `detached`, the parent-death signal is not armed: the restored process's parent is stasis,
/// which is about to exit on purpose, and the parent the signal was armed against is gone anyway.
pub fn restore_after_creds(inj: &mut Injector, core: &TaskCore, detached: bool) -> Result<()> {
    restore_thread_after_creds(inj, core, detached)?;
    if core.dumpable == 0 || core.dumpable == 1 {
        prctl(inj, "prctl(PR_SET_DUMPABLE)", [PR_SET_DUMPABLE, core.dumpable as u64, 0, 0, 0])?;
    } else {
        log::warn!("pid {}: dumpable mode {} cannot be set by prctl; left as is", core.pid, core.dumpable);
    }
    Ok(())
}

/// What each thread has of its own among those settings: parent-death signal, no_new_privs.
pub fn restore_thread_after_creds(inj: &mut Injector, core: &TaskCore, detached: bool) -> Result<()> {
    if core.pdeathsig != 0 && detached {
        log::warn!(
            "pid {}: parent-death signal {} not armed: restored with -d, its parent (stasis) exits now",
            core.pid,
            core.pdeathsig
        );
    } else if core.pdeathsig != 0 {
        // Every new task starts with none: 0 needs no call.
        prctl(inj, "prctl(PR_SET_PDEATHSIG)", [PR_SET_PDEATHSIG, core.pdeathsig as u64, 0, 0, 0])?;
    }
    if core.no_new_privs {
        prctl(inj, "prctl(PR_SET_NO_NEW_PRIVS)", [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0])?;
    }
    Ok(())
}
