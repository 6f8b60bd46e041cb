//! The small per-task settings: resource limits, umask, working and root directory, personality,
//! command name, timer slack, THP opt-out, parent-death signal, dumpable flag, no_new_privs, the
//! clear-child-tid address, the robust futex list, the rseq registration, the nice value, the CPU
//! affinity, the OOM score adjustment, the cgroup v2 membership and the audit login uid.
//!
//! Settings that a credential change resets (parent-death signal, dumpable) are restored by
//! [`restore_after_creds`], after [`crate::creds`].

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::{RLimit, Rseq, TaskCore};
use stasis_sys::remote::{Prctl, Remote};
use stasis_sys::{process, ptrace, Pid};

const RLIMIT_COUNT: u32 = 16;
/// `SCHED_RESET_ON_FORK`, or'ed into a policy.
const SCHED_RESET_ON_FORK: i32 = 0x4000_0000;
const RSEQ_FLAG_UNREGISTER: i32 = 1;
/// Room for 1024 CPUs in an affinity mask.
const AFFINITY_BYTES: u64 = 128;

/// Fill the misc fields of `core` for the main thread `pid` (the injector runs in it): the
/// process-wide settings and the thread's own.
pub fn dump(inj: &mut dyn Remote, root: &ProcRoot, pid: Pid, status: &proc::Status, core: &mut TaskCore) -> Result<()> {
    dump_process(inj, root, pid, status, core)?;
    dump_thread(inj, root, pid, core)
}

/// Settings every thread has its own of: name, parent-death signal, timer slack, clear-child-tid
/// address, robust futex list, rseq registration, nice value, scheduling policy, CPU affinity.
pub fn dump_thread(inj: &mut dyn Remote, root: &ProcRoot, tid: Pid, core: &mut TaskCore) -> Result<()> {
    core.comm = proc::comm(root, tid.0)?;
    // Only these need the thread itself; the rest is read from outside, saving a round trip
    // through the scheduler per value.
    core.pdeathsig = inj.prctl(Prctl::GetPdeathsig)? as i32;
    core.clear_child_tid = inj.prctl(Prctl::GetTidAddress)?;
    dump_traps(inj, core)?;
    let slack = root.pid_path(tid.0, "timerslack_ns");
    let text = std::fs::read_to_string(&slack).map_err(Error::io(&slack))?;
    core.timer_slack_ns = text.trim().parse().unwrap_or(0);
    let (head, len) = process::get_robust_list(tid).map_err(Error::sys(tid.0, "reading the robust futex list"))?;
    core.robust_list = head;
    core.robust_list_len = len;
    core.rseq = dump_rseq(tid)?;
    core.nice = process::nice(tid).map_err(Error::sys(tid.0, "reading its nice value"))?;
    (core.sched_policy, core.sched_priority) =
        process::sched(tid).map_err(Error::sys(tid.0, "reading its scheduling policy"))?;
    core.cpu_affinity =
        process::affinity(tid, AFFINITY_BYTES as usize).map_err(Error::sys(tid.0, "reading its CPU affinity"))?;
    core.ioprio = process::ioprio(tid).map_err(Error::sys(tid.0, "reading its I/O priority"))?;
    Ok(())
}

/// The thread's memory-error kill policy, rdtsc mode and CPUID faulting: each thread has its own
/// (a new thread starts with its creator's).
fn dump_traps(inj: &mut dyn Remote, core: &mut TaskCore) -> Result<()> {
    // Stored plus one: 0 is a policy (PR_MCE_KILL_LATE) and a mode, and means "not read" in images
    // older than these fields (and in the thread records of images made before each thread's own
    // were saved).
    core.mce_kill = inj.prctl(Prctl::GetMceKill)? as i32 + 1;
    core.tsc_mode = inj.prctl(Prctl::GetTsc)? as i32;
    core.cpuid_faulting = inj.arch_get_cpuid()? == 0;
    Ok(())
}

/// The path of the directory `/proc/PID/LINK` (`cwd`, `root`) leads to; refused if it was removed
/// (no links left: nothing to enter at restore).
fn present_dir(root: &ProcRoot, pid: Pid, link: &str, what: &str) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let path = path_string(proc::link(root, pid.0, link)?);
    let at = root.pid_path(pid.0, link);
    let meta = std::fs::metadata(&at).map_err(Error::io(&at))?;
    if meta.nlink() == 0 {
        let what = format!("a {what} removed since it was entered ({path})");
        return Err(Error::Unsupported { pid, what });
    }
    Ok(path)
}

/// Process-wide settings: umask, no_new_privs, personality, directories, limits, dumpable, THP,
/// OOM score adjustment, cgroup.
fn dump_process(
    inj: &mut dyn Remote,
    root: &ProcRoot,
    pid: Pid,
    status: &proc::Status,
    core: &mut TaskCore,
) -> Result<()> {
    let p = pid.0;
    core.umask = status.umask;
    core.no_new_privs = status.no_new_privs;
    core.personality = proc::personality(root, p)?;
    core.cwd = present_dir(root, pid, "cwd", "working directory")?;
    core.root = present_dir(root, pid, "root", "root directory")?;
    core.rlimits = dump_rlimits(root, pid)?;
    core.dumpable = inj.prctl(Prctl::GetDumpable)? as i32;
    core.thp_disabled = inj.prctl(Prctl::GetThpDisable)? != 0;
    core.child_subreaper = inj.prctl(Prctl::GetChildSubreaper)? != 0;
    // EINVAL before Linux 6.3: no MDWE there.
    core.mdwe = match inj.prctl(Prctl::GetMdwe) {
        Err(stasis_sys::inject::InjectError::Failed { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => 0,
        other => other? as u32,
    };
    let path = root.pid_path(p, "oom_score_adj");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    core.oom_score_adj = text.trim().parse().unwrap_or(0);
    crate::cgroups::dump_task(root, pid, pid, core)?;
    (core.loginuid, core.audit_session) = (audit_value(root, p, "loginuid"), audit_value(root, p, "sessionid"));
    Ok(())
}

/// Every thread must have the main thread's audit login uid (`core`'s): restore sets it once, in
/// the main thread, before the threads are made.
pub fn check_threads_loginuid(root: &ProcRoot, core: &TaskCore, threads: &[TaskCore]) -> Result<()> {
    for t in threads {
        let own = audit_value(root, t.pid, "loginuid");
        if own != core.loginuid {
            let what = format!("an audit login uid {own:?} other than its main thread's {:?}", core.loginuid);
            return Err(Error::Unsupported { pid: Pid(t.pid), what });
        }
    }
    Ok(())
}

/// `/proc/PID/loginuid` or `sessionid`; none without audit support in the kernel.
fn audit_value(root: &ProcRoot, pid: i32, what: &str) -> Option<u32> {
    std::fs::read_to_string(root.pid_path(pid, what)).ok()?.trim().parse().ok()
}

/// The audit login uid, which a task can only set for itself (`/proc/self/loginuid`, with
/// CAP_AUDIT_CONTROL once it is set: before the credentials), and which threads and children
/// inherit (so before they are made). Writing it makes the kernel assign a new audit session id; a
/// task that has the saved uid already (inherited from its parent, or from stasis for the root)
/// keeps its session id, otherwise a warning says the session id changed.
pub fn restore_loginuid(inj: &mut dyn Remote, pid: Pid, core: &TaskCore) -> Result<()> {
    let Some(want) = core.loginuid else { return Ok(()) };
    let root = ProcRoot::system();
    let Some(now) = audit_value(&root, pid.0, "loginuid") else {
        log::warn!("pid {pid}: audit login uid {want} not restored: this kernel has no audit support");
        return Ok(());
    };
    if now != want {
        let text = want.to_string();
        let written = inj.openat("/proc/self/loginuid", libc::O_WRONLY).and_then(|fd| {
            let w = inj.write_bytes(fd, text.as_bytes());
            inj.close(fd)?;
            w
        });
        written.map_err(|e| Error::Step {
            pid,
            what: format!("audit login uid {want}"),
            source: Box::new(e.into()),
        })?;
    }
    let session = audit_value(&root, pid.0, "sessionid");
    if let Some(saved) = core.audit_session.filter(|s| session != Some(*s)) {
        let now = session.map_or("none".into(), |s| s.to_string());
        log::warn!("pid {pid}: audit session id {now} after the restore, {saved} at the dump (the kernel assigns it)");
    }
    Ok(())
}

/// Settings made from outside the task, right after it is created: its cgroup (so that its memory
/// is charged there from the start; see [`crate::cgroups`]) and its OOM score adjustment, written
/// only if the task (a copy of its parent or of us) does not have it already.
pub fn restore_from_outside(pid: Pid, core: &TaskCore, cgroups: &crate::cgroups::restore::Placement) -> Result<()> {
    cgroups.join_process(pid, &core.cgroup, &core.cgroups_v1)?;
    let now = |what: &str| std::fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap_or_default();
    if now("oom_score_adj").trim() == core.oom_score_adj.to_string() {
        return Ok(());
    }
    let path = format!("/proc/{pid}/oom_score_adj");
    if let Err(e) = std::fs::write(&path, core.oom_score_adj.to_string()) {
        log::warn!(
            "pid {pid}: cannot set oom_score_adj to {} (lowering it needs CAP_SYS_RESOURCE): {e}",
            core.oom_score_adj
        );
    }
    Ok(())
}

fn path_string(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

fn dump_rlimits(root: &ProcRoot, pid: Pid) -> Result<Vec<RLimit>> {
    let limits = proc::limits(root, pid.0)?;
    if limits.len() != RLIMIT_COUNT as usize {
        let what = format!("/proc/{pid}/limits lists {} limits, not {RLIMIT_COUNT}", limits.len());
        return Err(Error::Failed { pid, what });
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
pub fn unregister_inherited_rseq(inj: &mut dyn Remote, pid: Pid) -> Result<()> {
    if let Some(r) = dump_rseq(pid)? {
        inj.rseq(r.ptr, r.len, RSEQ_FLAG_UNREGISTER, r.signature)?;
    }
    Ok(())
}

/// Everything but the settings a credential change would reset, for the main thread. `inherited` is
/// what a child forked from its restored parent already has (the parent's record): equal settings are
/// not set again.
pub fn restore(inj: &mut dyn Remote, core: &TaskCore, inherited: Option<&TaskCore>) -> Result<()> {
    restore_process(inj, core, inherited)?;
    restore_thread(inj, core, inherited)
}

fn restore_process(inj: &mut dyn Remote, core: &TaskCore, inherited: Option<&TaskCore>) -> Result<()> {
    if core.child_subreaper {
        // Not inherited by fork; set before the children are made (see `session`).
        inj.prctl(Prctl::SetChildSubreaper(true))?;
    }
    let had = |l: &RLimit| inherited.is_some_and(|p| p.rlimits.contains(l));
    for l in core.rlimits.iter().filter(|l| !had(l)) {
        inj.prlimit64_set(l.resource, l.cur, l.max).map_err(|e| Error::Step {
            pid: Pid(core.pid),
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
    inj.umask(core.umask)?;
    // Both paths are as our root sees them: change directory first, then root.
    inj.chdir(&core.cwd).map_err(|e| Error::Step {
        pid: Pid(core.pid),
        what: format!("working directory {}", core.cwd),
        source: Box::new(e.into()),
    })?;
    if core.root != "/" {
        inj.chroot(&core.root)?;
    }
    inj.personality(core.personality as u64)?;
    inj.prctl(Prctl::SetThpDisable(core.thp_disabled))?;
    Ok(())
}

/// The thread's memory-error kill policy, rdtsc mode and CPUID faulting, where they differ from
/// what it inherited: a main thread its parent's (or a fresh task's defaults), another thread its
/// main thread's, restored before the threads are made. Nothing for a record that did not read
/// them (`mce_kill` 0: an image older than these fields, or than their per-thread values).
fn restore_traps(inj: &mut dyn Remote, core: &TaskCore, inherited: Option<&TaskCore>) -> Result<()> {
    if core.mce_kill == 0 {
        return Ok(());
    }
    let (mce, tsc, cpuid) = inherited.map_or((3, 1, false), |p| (p.mce_kill, p.tsc_mode, p.cpuid_faulting));
    if core.mce_kill != mce {
        inj.prctl(Prctl::SetMceKill(core.mce_kill - 1))?;
    }
    if core.tsc_mode != 0 && core.tsc_mode != tsc {
        inj.prctl(Prctl::SetTsc(core.tsc_mode))?;
    }
    if core.cpuid_faulting != cpuid {
        inj.arch_set_cpuid(!core.cpuid_faulting).map_err(|e| Error::Step {
            pid: Pid(core.pid),
            what: "CPUID faulting (this CPU may not have it)".into(),
            source: Box::new(e.into()),
        })?;
    }
    Ok(())
}

/// The process's memory-deny-write-execute flags (`PR_SET_MDWE`), once nothing more of its memory
/// is mapped (they refuse the writable executable areas the fill uses).
pub fn restore_mdwe(inj: &mut dyn Remote, core: &TaskCore) -> Result<()> {
    if core.mdwe == 0 {
        return Ok(());
    }
    inj.prctl(Prctl::SetMdwe(core.mdwe)).map(drop).map_err(|e| Error::Step {
        pid: Pid(core.pid),
        what: format!("memory-deny-write-execute flags {:#x}", core.mdwe),
        source: Box::new(e.into()),
    })
}

/// The settings of one thread (see [`dump_thread`]), but its parent-death signal.
pub fn restore_thread(inj: &mut dyn Remote, core: &TaskCore, inherited: Option<&TaskCore>) -> Result<()> {
    restore_thread_with(inj, core, inherited, true)
}

/// [`restore_thread`] but the clear-child-tid address, for a thread `clone3` gave it already (see
/// `crate::threads`); `inherited` is then the thread that made it, whose name, timer slack,
/// scheduling and affinity a new thread starts with as a forked child does.
pub fn restore_thread_but_tid_address(
    inj: &mut dyn Remote,
    core: &TaskCore,
    inherited: Option<&TaskCore>,
) -> Result<()> {
    restore_thread_with(inj, core, inherited, false)
}

fn restore_thread_with(
    inj: &mut dyn Remote,
    core: &TaskCore,
    inherited: Option<&TaskCore>,
    tid_address: bool,
) -> Result<()> {
    // What a child forked from its restored parent has already (fork copies the name, the timer
    // slack, the scheduling policy unless SCHED_RESET_ON_FORK, the nice value and the affinity).
    let had = |same: &dyn Fn(&TaskCore) -> bool| inherited.is_some_and(same);
    if !had(&|p| p.comm == core.comm) {
        inj.prctl(Prctl::SetName(&core.comm))?;
    }
    if core.timer_slack_ns != 0 && !had(&|p| p.timer_slack_ns == core.timer_slack_ns) {
        inj.prctl(Prctl::SetTimerslack(core.timer_slack_ns))?;
    }
    restore_traps(inj, core, inherited)?;
    if tid_address {
        inj.set_tid_address(core.clear_child_tid)?;
    }
    inj.set_robust_list(core.robust_list, core.robust_list_len)?;
    // Read from outside: what the task has now (its creator's, or none).
    if process::ioprio(Pid(core.pid)).is_ok_and(|now| now != core.ioprio) {
        inj.ioprio_set_own(core.ioprio).map_err(|e| Error::Step {
            pid: Pid(core.pid),
            what: format!("I/O priority {:#x}", core.ioprio),
            source: Box::new(e.into()),
        })?;
    }
    if let Some(r) = &core.rseq {
        inj.rseq(r.ptr, r.len, 0, r.signature)?;
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
        match inj.sched_setaffinity(0, &core.cpu_affinity) {
            Err(e) if e.is_fault() => return Err(e.into()),
            Err(e) => log::warn!("pid {}: CPU affinity not restored (CPUs missing here?): {e}", core.pid),
            Ok(()) => {}
        }
    }
    Ok(())
}

/// Scheduling policy and priority, then the nice value.
fn restore_sched(inj: &mut dyn Remote, core: &TaskCore) -> Result<()> {
    inj.sched_setscheduler(0, core.sched_policy, core.sched_priority).map_err(|e| Error::Step {
        pid: Pid(core.pid),
        what: format!("scheduling policy {} priority {}", core.sched_policy, core.sched_priority),
        source: Box::new(e.into()),
    })?;
    // After the policy: SCHED_OTHER and SCHED_BATCH keep the nice value set here.
    inj.setpriority(libc::PRIO_PROCESS as i32, 0, core.nice)?;
    Ok(())
}

/// The settings a credential change resets (parent-death signal, dumpable), and no_new_privs, for the
/// main thread.
///
/// With `parent_exits`, the parent-death signal is not armed: the restored process's parent is
/// stasis (only the root's can be), which is about to exit on purpose (`restore -d`), and the parent
/// the signal was armed against is gone anyway. Every other process's parent is restored with it.
pub fn restore_after_creds(inj: &mut dyn Remote, core: &TaskCore, parent_exits: bool) -> Result<()> {
    restore_thread_after_creds(inj, core, parent_exits)?;
    if core.dumpable == 0 || core.dumpable == 1 {
        inj.prctl(Prctl::SetDumpable(core.dumpable))?;
    } else {
        log::warn!("pid {}: dumpable mode {} cannot be set by prctl; left as is", core.pid, core.dumpable);
    }
    Ok(())
}

/// What each thread has of its own among those settings: parent-death signal, no_new_privs.
pub fn restore_thread_after_creds(inj: &mut dyn Remote, core: &TaskCore, parent_exits: bool) -> Result<()> {
    if core.pdeathsig != 0 && parent_exits {
        log::warn!(
            "pid {}: parent-death signal {} not armed: restored with -d, its parent (stasis) exits now",
            core.pid,
            core.pdeathsig
        );
    } else if core.pdeathsig != 0 {
        // Every new task starts with none: 0 needs no call.
        inj.prctl(Prctl::SetPdeathsig(core.pdeathsig))?;
    }
    if core.no_new_privs {
        inj.prctl(Prctl::SetNoNewPrivs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::restore;
    use stasis_image::model::{RLimit, TaskCore};
    use stasis_sys::remote::fake::FakeTask;
    use stasis_sys::Pid;

    fn core() -> TaskCore {
        TaskCore {
            pid: 700,
            umask: 0o27,
            cwd: "/srv".into(),
            root: "/".into(),
            personality: 0,
            comm: "worker".into(),
            timer_slack_ns: 50_000,
            clear_child_tid: 0x7f00_0000_2000,
            robust_list: 0x7f00_0000_3000,
            robust_list_len: 24,
            nice: 5,
            cpu_affinity: vec![0x3],
            rlimits: vec![RLimit { resource: 7, cur: 1024, max: 4096 }, RLimit { resource: 4, cur: 0, max: u64::MAX }],
            ..Default::default()
        }
    }

    /// A child forked from its restored parent has what fork copies already: only what fork does not
    /// copy (clear-child-tid address, robust list) and what differs (one limit, the nice value) is set.
    #[test]
    fn a_forked_child_gets_only_what_it_lacks() {
        let parent = core();
        let mut child = core();
        child.pid = 701;
        child.rlimits[0].cur = 512;
        child.nice = 10;
        let mut t = FakeTask::new(Pid(701));
        restore(&mut t, &child, Some(&parent)).expect("fake");
        assert_eq!(t.names(), ["prlimit64", "set_tid_address", "set_robust_list", "sched_setscheduler", "setpriority"]);
        assert_eq!(t.log()[4], "setpriority(0, 0, 10)");
    }

    /// A thread sets the memory-error kill policy and rdtsc mode it has of its own, and not those
    /// it has from its main thread; a record that did not read them (an older image) sets none.
    #[test]
    fn a_thread_sets_its_own_traps() {
        let mut main = core();
        (main.mce_kill, main.tsc_mode) = (3, 1);
        let mut own = main.clone();
        (own.pid, own.mce_kill, own.tsc_mode) = (702, 2, 2);
        let mut t = FakeTask::new(Pid(702));
        super::restore_thread_but_tid_address(&mut t, &own, Some(&main)).expect("fake");
        assert_eq!(t.log()[0], "prctl(PR_MCE_KILL, 1, 1, 0, 0)");
        assert_eq!(t.log()[1], "prctl(PR_SET_TSC, 2, 0, 0, 0)");
        let same = TaskCore { pid: 703, ..main.clone() };
        let old = TaskCore { pid: 704, mce_kill: 0, tsc_mode: 0, ..main.clone() };
        for record in [same, old] {
            let mut t = FakeTask::new(Pid(record.pid));
            super::restore_thread_but_tid_address(&mut t, &record, Some(&main)).expect("fake");
            assert_eq!(t.names(), ["set_robust_list"], "thread {}", record.pid);
        }
    }

    /// A process with no parent in the image (the root) gets every setting.
    #[test]
    fn the_root_gets_every_setting() {
        let mut t = FakeTask::new(Pid(700));
        restore(&mut t, &core(), None).expect("fake");
        assert_eq!(
            t.names(),
            [
                "prlimit64",
                "prlimit64",
                "umask",
                "chdir",
                "personality",
                "prctl",
                "prctl",
                "prctl",
                "set_tid_address",
                "set_robust_list",
                "sched_setscheduler",
                "setpriority",
                "sched_setaffinity",
            ]
        );
        assert_eq!(t.log()[5], "prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0)");
    }

    /// An affinity the kernel refuses (CPUs missing here) is only a warning, but an injected fault
    /// is not taken for one.
    #[test]
    fn a_refused_affinity_is_tolerated_but_a_fault_is_not() {
        let mut t = FakeTask::new(Pid(700));
        t.fail("sched_setaffinity", libc::EINVAL);
        restore(&mut t, &core(), None).expect("EINVAL is tolerated");
        let mut t = FakeTask::new(Pid(700));
        t.fault("sched_setaffinity");
        let err = restore(&mut t, &core(), None).expect_err("a fault fails the restore");
        assert!(err.to_string().contains("fault injected at call 13"), "{err}");
    }
}
