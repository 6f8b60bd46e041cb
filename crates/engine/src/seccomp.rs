//! Seccomp: each task's mode (strict, or filter with its chain of classic BPF programs), dumped and
//! restored per thread.
//!
//! Dump: a task under seccomp is traced with `PTRACE_O_SUSPEND_SECCOMP` (see [`crate::task`]), so
//! the calls stasis injects are not filtered; its chain is read with `PTRACE_SECCOMP_GET_FILTER`
//! (and the log flag with `PTRACE_SECCOMP_GET_METADATA`), oldest filter first.
//!
//! Restore: the filters are installed once every thread and child of the process exists, just
//! before the main thread's credentials are restored (installing a filter takes CAP_SYS_ADMIN or
//! no_new_privs, and a container's process has neither), and from then on the tasks are traced with
//! `PTRACE_O_SUSPEND_SECCOMP` (kept when they change tracer thread), so that the calls injected
//! after them are not filtered. The kernel gives no identity to a filter, so sharing
//! is read from the programs: the filters every thread of a process begins its chain with (the
//! common prefix) are one object, installed by the main thread with `SECCOMP_FILTER_FLAG_TSYNC` on
//! the last of them (so every thread gets the same filters); what follows is each thread's own,
//! installed by it. Strict mode is set last. A process's chain is inherited by a fork; each restored
//! process installs its whole chain itself (its children exist by then).
//!
//! Refused at dump, by pid and tid: a filter that can return `SECCOMP_RET_USER_NOTIF` (its listener
//! cannot be given back); filters that two threads have beyond the common prefix (they would be two
//! objects after restore); a thread other than the main one with filters of its own beyond the
//! common prefix that it could not install with its credentials restored (neither no_new_privs nor
//! CAP_SYS_ADMIN: threads get theirs when they are made); a shared prefix that `TSYNC` would give a
//! no_new_privs flag a thread does not have.

use crate::error::{Error, Result};
use stasis_image::model::{SeccompFilter, TaskCore};
use stasis_sys::inject::Injector;
use stasis_sys::ptrace::{self, BPF_INSN_SIZE, BPF_MAXINSNS};
use stasis_sys::remote::Remote;
use stasis_sys::Pid;

/// Seccomp modes (`/proc/PID/status` `Seccomp`).
pub const MODE_STRICT: u32 = 1;
pub const MODE_FILTER: u32 = 2;
const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
const SECCOMP_FILTER_FLAG_LOG: u32 = 2;
/// `BPF_RET | BPF_K`: return a constant.
const BPF_RET_K: u16 = 0x06;
/// `SECCOMP_RET_ACTION_FULL` and `SECCOMP_RET_USER_NOTIF`.
const RET_ACTION_FULL: u32 = 0xffff_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const CAP_SYS_ADMIN: u64 = 1 << 21;
/// Most filters a chain may hold (each costs at least one instruction of the kernel's 32768 per
/// path, plus 4).
const MAX_CHAIN: usize = 32768 / 5;

/// The chain of task `tid` in `mode` (empty but in filter mode), the oldest filter first (the
/// kernel counts from it: index 0 is the first installed). The task must be in a ptrace stop.
pub fn dump(tid: Pid, mode: u32) -> Result<Vec<SeccompFilter>> {
    if mode != MODE_FILTER {
        return Ok(Vec::new());
    }
    let mut chain = Vec::new();
    for index in 0.. {
        let program = match ptrace::seccomp_filter(tid, index) {
            Ok(p) => p,
            Err(e) if e.errno() == libc::ENOENT && index > 0 => break,
            Err(e) => return Err(Error::sys(tid.0, "reading its seccomp filters")(e)),
        };
        if notifies(&program) {
            let what = format!("seccomp filter {index} (0: the first installed): a filter that notifies a listener");
            return Err(Error::Unsupported { pid: tid, what });
        }
        let flags =
            ptrace::seccomp_filter_flags(tid, index).map_err(Error::sys(tid.0, "reading a seccomp filter's flags"))?;
        chain.push(SeccompFilter { program, log: flags & ptrace::SECCOMP_FILTER_FLAG_LOG != 0 });
        if chain.len() > MAX_CHAIN {
            return Err(Error::Failed { pid: tid, what: format!("more than {MAX_CHAIN} seccomp filters") });
        }
    }
    Ok(chain)
}

/// Whether `program` has a `ret SECCOMP_RET_USER_NOTIF` instruction.
fn notifies(program: &[u8]) -> bool {
    program.chunks_exact(BPF_INSN_SIZE).any(|insn| {
        let code = u16::from_ne_bytes([insn[0], insn[1]]);
        let k = u32::from_ne_bytes([insn[4], insn[5], insn[6], insn[7]]);
        code == BPF_RET_K && k & RET_ACTION_FULL == RET_USER_NOTIF
    })
}

/// How a process's chains are made again: the number of filters at the start of every task's chain
/// (installed once by the main thread and synchronised to every thread), the rest each task's own.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub shared: usize,
}

/// The [`Plan`] for the main thread `main` and the other threads `threads`, or why the filters
/// could not be made again as they are (see the module doc), naming the task.
pub fn plan(main: &TaskCore, threads: &[TaskCore]) -> Result<Plan> {
    let tasks: Vec<&TaskCore> = std::iter::once(main).chain(threads).collect();
    let shared = (0..)
        .take_while(|&i| tasks.iter().all(|t| t.seccomp_filters.get(i).is_some_and(|f| *f == main.seccomp_filters[i])))
        .count();
    for (n, t) in tasks.iter().enumerate() {
        check_task(t, n > 0 && t.seccomp_filters.len() > shared)?;
        let own = t.seccomp_filters.get(shared);
        if let Some(other) = own.and_then(|f| tasks[..n].iter().find(|o| o.seccomp_filters.get(shared) == Some(f))) {
            let what = format!(
                "a seccomp filter thread {} also has, which its process's other threads lack (it would be two filters \
                 after restore)",
                other.pid
            );
            return Err(Error::Unsupported { pid: Pid(t.pid), what });
        }
        if shared > 0 && main.no_new_privs && !t.no_new_privs {
            let what =
                format!("seccomp filters shared with main thread {}, which has no_new_privs, without it", main.pid);
            return Err(Error::Unsupported { pid: Pid(t.pid), what });
        }
    }
    Ok(Plan { shared })
}

/// A task's filters must be valid programs; one that installs some with its credentials restored
/// (`after_creds`) must be able to.
fn check_task(t: &TaskCore, after_creds: bool) -> Result<()> {
    if t.seccomp_filters.is_empty() {
        return Ok(());
    }
    if t.seccomp_mode != MODE_FILTER {
        let what = format!("field seccomp_filters of task {} in seccomp mode {}", t.pid, t.seccomp_mode);
        return Err(Error::Incompatible { file: "core.img".into(), what });
    }
    if let Some(f) = t.seccomp_filters.iter().find(|f| {
        f.program.is_empty() || f.program.len() % BPF_INSN_SIZE != 0 || f.program.len() > BPF_MAXINSNS * BPF_INSN_SIZE
    }) {
        let what = format!("task {}: field seccomp_filters: a program of {} bytes", t.pid, f.program.len());
        return Err(Error::Incompatible { file: "core.img".into(), what });
    }
    let privileged = t.creds.as_ref().is_some_and(|c| c.cap_eff & CAP_SYS_ADMIN != 0);
    if after_creds && !t.no_new_privs && !privileged {
        let what = "seccomp filters without no_new_privs or CAP_SYS_ADMIN (they could not be installed again)".into();
        return Err(Error::Unsupported { pid: Pid(t.pid), what });
    }
    Ok(())
}

/// Whether any task of the process is under seccomp.
pub fn any(main: &TaskCore, threads: &[TaskCore]) -> bool {
    std::iter::once(main).chain(threads).any(|t| t.seccomp_mode != 0)
}

/// Install every task's filters and modes (see the module doc), last before the release. `tasks` is
/// every task of the process, the main thread first, each with its injector and record; each is
/// traced again with `options | PTRACE_O_SUSPEND_SECCOMP` first.
pub fn restore(tasks: &mut [(&mut Injector, &TaskCore)], options: u32) -> Result<()> {
    let cores: Vec<TaskCore> = tasks.iter().map(|(_, c)| (*c).clone()).collect();
    let plan = plan(&cores[0], &cores[1..])?;
    for (inj, _) in tasks.iter() {
        let tid = inj.pid();
        ptrace::set_options(tid, options | ptrace::OPT_SUSPEND_SECCOMP)
            .map_err(Error::sys(tid.0, "suspending seccomp (needs CAP_SYS_ADMIN)"))?;
    }
    let many = tasks.len() > 1;
    let (main_inj, main) = &mut tasks[0];
    for (i, f) in main.seccomp_filters[..plan.shared].iter().enumerate() {
        install(*main_inj, f, many && i + 1 == plan.shared)?;
    }
    for (inj, core) in tasks.iter_mut() {
        for f in &core.seccomp_filters[plan.shared..] {
            install(*inj, f, false)?;
        }
        if core.seccomp_mode == MODE_STRICT {
            inj.seccomp_set_mode_strict()?;
        }
    }
    Ok(())
}

/// `seccomp(SECCOMP_SET_MODE_FILTER)` of `f` in the task, with TSYNC if `sync`.
fn install(inj: &mut dyn Remote, f: &SeccompFilter, sync: bool) -> Result<()> {
    let flags = if f.log { SECCOMP_FILTER_FLAG_LOG } else { 0 } | if sync { SECCOMP_FILTER_FLAG_TSYNC } else { 0 };
    let ret = inj.seccomp_set_mode_filter(&f.program, flags)?;
    if ret != 0 {
        // TSYNC names the thread it could not synchronise.
        let what = format!("thread {ret} could not take the process's seccomp filters (TSYNC)");
        return Err(Error::Failed { pid: inj.pid(), what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(tag: u8) -> SeccompFilter {
        // ret SECCOMP_RET_ALLOW, with `tag` in the jump fields to tell programs apart.
        SeccompFilter { program: vec![0x06, 0, tag, tag, 0, 0, 0xff, 0x7f], log: false }
    }

    fn task(pid: i32, chain: &[u8]) -> TaskCore {
        let mode = if chain.is_empty() { 0 } else { MODE_FILTER };
        let seccomp_filters = chain.iter().map(|&t| filter(t)).collect();
        TaskCore { pid, seccomp_mode: mode, seccomp_filters, no_new_privs: true, ..Default::default() }
    }

    #[test]
    fn threads_with_the_main_threads_chain_share_it() {
        let p = plan(&task(1, &[1, 2]), &[task(2, &[1, 2]), task(3, &[1, 2, 3])]).expect("plan");
        assert_eq!(p, Plan { shared: 2 });
    }

    #[test]
    fn a_thread_without_filters_shares_none() {
        let p = plan(&task(1, &[1, 2]), &[task(2, &[])]).expect("plan");
        assert_eq!(p, Plan { shared: 0 });
    }

    #[test]
    fn two_threads_with_one_filter_the_main_thread_lacks_are_refused() {
        let err = plan(&task(1, &[1]), &[task(2, &[1, 5]), task(3, &[1, 5])]).unwrap_err();
        assert!(err.to_string().contains("pid 3"), "{err}");
    }

    #[test]
    fn only_a_thread_that_could_not_install_its_own_filters_is_refused() {
        let mut main = task(1, &[1]);
        main.no_new_privs = false;
        assert!(plan(&main, &[]).is_ok(), "the main thread installs before its credentials");
        let mut t = task(2, &[1, 2]);
        t.no_new_privs = false;
        assert!(plan(&main, std::slice::from_ref(&t)).is_err());
        t.creds = Some(stasis_image::model::Creds { cap_eff: CAP_SYS_ADMIN, ..Default::default() });
        assert!(plan(&main, &[t]).is_ok());
        let mut shared = task(3, &[1]);
        shared.no_new_privs = false;
        assert!(plan(&main, &[shared]).is_ok(), "a thread taking only the shared filters (TSYNC)");
    }

    #[test]
    fn a_notifying_filter_is_found() {
        assert!(notifies(&[0x06, 0, 0, 0, 0, 0, 0xc0, 0x7f]));
        assert!(!notifies(&filter(0).program));
    }
}
