//! Threads: what each thread of a process has of its own (registers and FPU state, blocked mask,
//! thread-directed queued signals, alternate signal stack, name, clear-child-tid address, robust futex
//! list, rseq registration, nice value, affinity, credentials, parent-death signal), and at restore
//! the creation of every thread with its original TID.
//!
//! A thread is created by the restored main thread itself: an injected `clone3` with `CLONE_THREAD`
//! and `set_tid`. With `PTRACE_O_TRACECLONE` the new thread is traced from its first instruction and
//! stops before running any; it gets its own injector (on the main thread's scratch area: see
//! `Injector::sharing`), its state, and at the very end its registers.

use crate::error::{Error, Result};
use crate::proc::ProcRoot;
use crate::regs;
use crate::task::Frozen;
use crate::{creds, misc, signals};
use stasis_image::model::TaskCore;
use stasis_sys::inject::{InjectError, Injector};
use stasis_sys::ptrace::{self, WaitStatus};
use stasis_sys::remote::Remote;
use stasis_sys::Pid;

/// Flags of a thread as pthread_create makes it (the TLS and tid pointers come from the registers
/// and the restored memory, not from clone).
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// The record of a thread other than the main one (the process-wide state is in the main thread's).
/// Its injected calls use the main thread's scratch area `scratch`.
pub fn dump(root: &ProcRoot, frozen: &mut Frozen, vdso: (u64, u64), scratch: (u64, u64)) -> Result<TaskCore> {
    let tid = frozen.pid;
    let mut core = TaskCore {
        pid: tid.0,
        regs: Some(regs::to_image(&frozen.regs)),
        xstate: frozen.xstate.clone(),
        sigmask: frozen.sigmask,
        pending: signals::dump_pending(tid, false)?,
        syscall_dispatch: frozen.syscall_dispatch(),
        ..Default::default()
    };
    let status = crate::proc::status(root, tid.0)?;
    core.no_new_privs = status.no_new_privs;
    let inj = frozen.injector_sharing(vdso, scratch)?;
    core.altstack = Some(signals::dump_altstack(inj)?);
    misc::dump_thread(inj, root, tid, &mut core)?;
    crate::cgroups::dump_task(root, tid, tid, &mut core)?;
    core.creds = Some(creds::dump(inj, &status)?);
    core.seccomp_mode = status.seccomp;
    core.seccomp_filters = crate::seccomp::dump(tid, status.seccomp)?;
    Ok(core)
}

/// Let a restored task go: its injector's last call removes the scratch area, then its registers
/// (with the syscall-restart fix-ups), blocked mask and syscall user dispatch are set, and it is detached (stopped again with
/// `stop_signal`, the signal that had stopped it at the dump; 0: it runs).
pub fn let_go(inj: Injector, core: &TaskCore, stop_signal: i32) -> Result<()> {
    let tid = inj.pid();
    inj.finish()?;
    regs::restore(tid, &core.regs.clone().unwrap_or_default(), &core.xstate)?;
    ptrace::set_sigmask(tid, core.sigmask).map_err(Error::sys(tid.0, "setting the signal mask"))?;
    // Last: once on, the task's own system calls outside its allowed range go to its handler.
    if let Some(d) = &core.syscall_dispatch {
        let conf = ptrace::SudConfig { mode: d.mode, selector: d.selector, offset: d.offset, len: d.len };
        ptrace::set_sud(tid, &conf).map_err(Error::sys(tid.0, "setting its syscall user dispatch"))?;
    }
    ptrace::detach(tid, stop_signal).map_err(Error::sys(tid.0, "detaching"))
}

/// A restored thread, stopped, waiting for its registers.
pub struct NewThread {
    tid: Pid,
    inj: Injector,
}

/// Create the thread of `core` in the process whose main thread `main` drives (it must have
/// `PTRACE_O_TRACECLONE` set), and restore its own state but its registers and mask. `tgid` is the
/// process and `main_core` the record of its main thread, whose state but its credentials is
/// restored already; `vdso` the final `[vdso]` range.
/// `parent_exits`: the process's parent is stasis, which exits once the tree runs (see
/// [`misc::restore_thread_after_creds`]).
///
/// Every injected call is a round trip through the scheduler, so what the new thread gets from
/// `clone3` is not set again: its clear-child-tid address (`CLONE_CHILD_CLEARTID`), and what it
/// inherits from the main thread (name, timer slack, scheduling, affinity; credentials are compared
/// with `/proc`); a disabled alternate signal stack is what a new thread has.
pub fn create(
    main: &mut Injector,
    (tgid, main_core): (Pid, &TaskCore),
    core: &TaskCore,
    vdso: (u64, u64),
    (parent_exits, local_tgid): (bool, Pid),
) -> Result<NewThread> {
    let want = Pid(core.pid);
    // In a nested PID namespace, `clone3` returns the thread's id there (see `crate::ns`).
    let cleartid = if core.clear_child_tid != 0 { libc::CLONE_CHILD_CLEARTID as u64 } else { 0 };
    let (mut args, seen) = crate::ns::thread_args(core.pid, &core.nspid, THREAD_FLAGS | cleartid);
    args.child_tid = core.clear_child_tid;
    let got = main.clone3(&args).map_err(|e| match &e {
        InjectError::Failed { source, .. } if source.raw_os_error() == Some(libc::EEXIST) => {
            Error::PidTaken { pid: want, holder: crate::restore::holder_of(want) }
        }
        _ => Error::Step { pid: tgid, what: format!("thread {want}"), source: Box::new(e.into()) },
    })?;
    if got != seen {
        return Err(Error::Failed { pid: tgid, what: format!("thread {want} was created as {got}") });
    }
    let tid = want;
    match ptrace::wait(tid).map_err(Error::sys(tid.0, "waiting for a new thread"))? {
        WaitStatus::Stopped { .. } => {}
        status => return Err(Error::Failed { pid: tid, what: format!("new thread did not stop: {status:?}") }),
    }
    let mut inj = Injector::sharing(tid, vdso, main.scratch(), main.calls())?;
    let local = (local_tgid, crate::ns::local(&core.nspid, tid));
    restore_state(&mut inj, (main_core, local), tid, core, parent_exits).map_err(|e| Error::Step {
        pid: tgid,
        what: format!("thread {tid}"),
        source: Box::new(e),
    })?;
    Ok(NewThread { tid, inj })
}

/// `local`: the process's and the thread's ids in the thread's own PID namespace; `tid` its id in
/// stasis's.
fn restore_state(
    inj: &mut dyn Remote,
    (main_core, local): (&TaskCore, (Pid, Pid)),
    tid: Pid,
    core: &TaskCore,
    parent_exits: bool,
) -> Result<()> {
    if let Some(ss) = core.altstack.as_ref().filter(|ss| ss.flags & libc::SS_DISABLE == 0) {
        signals::restore_altstack(inj, ss)?;
    }
    misc::restore_thread_but_tid_address(inj, core, Some(main_core))?;
    signals::restore_pending(inj, local.0, local.1, &core.pending)?;
    if let Some(c) = &core.creds {
        creds::restore(inj, tid, c)?;
    }
    misc::restore_thread_after_creds(inj, core, parent_exits)
}

impl NewThread {
    pub fn tid(&self) -> Pid {
        self.tid
    }

    /// The last injected call, then the thread's registers and mask; it runs once detached.
    pub fn release(self, core: &TaskCore, stop_signal: i32) -> Result<()> {
        let_go(self.inj, core, stop_signal)
    }

    /// Give up on the thread (the process is being killed).
    pub fn abandon(self) {
        self.inj.abandon();
    }

    /// The injector that drives the thread (for its last calls: see `crate::seccomp`).
    pub fn injector(&mut self) -> &mut Injector {
        &mut self.inj
    }

    /// Hand the thread over to another tracer thread (see [`Injector::park`]).
    pub fn park(self) -> Result<ParkedThread> {
        Ok(ParkedThread { tid: self.tid, parked: self.inj.park()? })
    }
}

/// A restored thread handed over to another tracer thread.
pub struct ParkedThread {
    tid: Pid,
    parked: stasis_sys::inject::Parked,
}

impl ParkedThread {
    /// Attach it from this thread, with ptrace `options`.
    pub fn adopt(self, options: u32) -> Result<NewThread> {
        Ok(NewThread { tid: self.tid, inj: self.parked.adopt(options)? })
    }
}
