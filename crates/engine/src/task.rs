//! A process frozen for a dump: every thread seized and interrupted, all signals blocked while we
//! inject, and put back exactly as it was on resume (registers with the syscall-restart fix-ups, signal
//! mask, scratch area gone), or killed. Dropping a `Frozen` thread that was neither resumed nor killed
//! resumes it, so every error path of the dump leaves the process running.

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use crate::regs::{self, RestartBlock};
use stasis_sys::inject::{Calls, Injector, SCRATCH_LEN};
use stasis_sys::ptrace::{self, Regs, WaitStatus};
use stasis_sys::{process, Pid};

pub struct Frozen {
    pub pid: Pid,
    /// Registers at the freeze.
    pub regs: Regs,
    pub xstate: Vec<u8>,
    /// Blocked signal mask at the freeze.
    pub sigmask: u64,
    /// The task was already stopped (SIGSTOP) before we froze it.
    pub was_stopped: bool,
    /// The signal of that stop (SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU), as its attach reports it; 0
    /// when it was not stopped.
    pub stop_signal: i32,
    /// Its syscall user dispatch, switched off while it is frozen (our calls must not be
    /// dispatched to its handler) and put back as it is let go.
    sud: ptrace::SudConfig,
    /// A SIGSTOP is sent to the process just before this (main) thread is let go
    /// (`--leave-stopped`): no injected call runs after it, so none can take it.
    stop_on_detach: bool,
    injector: Option<Injector>,
    /// Counts the calls injected by the dump.
    calls: Calls,
    /// Registers and mask were read (and signals blocked): they must be put back.
    captured: bool,
    done: bool,
}

impl Frozen {
    /// Seize and interrupt `pid`, then read its registers and mask and block every signal. Calls
    /// injected into it later are counted by `calls`.
    ///
    /// A task already stopped (SIGSTOP) is attached with `PTRACE_ATTACH` instead: a seized tracee in
    /// a group stop is trapped again each time it is resumed, so no call could be injected into it.
    ///
    /// A task under seccomp is traced with `PTRACE_O_SUSPEND_SECCOMP`, so that the calls injected
    /// into it are not filtered (see [`crate::seccomp`]).
    pub fn freeze(pid: Pid, was_stopped: bool, calls: &Calls) -> Result<Frozen> {
        let mut frozen = Frozen::seize(pid, was_stopped, calls)?;
        frozen.settle()?;
        Ok(frozen)
    }

    /// The first half of [`freeze`](Self::freeze): seize (or attach) and interrupt `pid`, without
    /// waiting for it to stop. A task of a frozen cgroup v1 freezer only stops once thawed, so the
    /// whole cgroup is seized first, thawed, then [`settle`](Self::settle)d.
    pub fn seize(pid: Pid, was_stopped: bool, calls: &Calls) -> Result<Frozen> {
        let options = options_for(pid);
        let attached = if was_stopped { ptrace::attach(pid) } else { ptrace::seize(pid, options) };
        attached.map_err(|e| match e.errno() {
            libc::ESRCH => Error::NoSuchProcess { pid },
            _ => Error::Sys { pid, what: "attaching with ptrace", source: e },
        })?;
        let frozen = Frozen {
            pid,
            regs: zero_regs(),
            xstate: Vec::new(),
            sigmask: 0,
            was_stopped,
            stop_signal: 0,
            stop_on_detach: false,
            sud: ptrace::SudConfig::default(),
            injector: None,
            calls: calls.clone(),
            captured: false,
            done: false,
        };
        if !was_stopped {
            ptrace::interrupt(pid).map_err(Error::sys(pid.0, "interrupting"))?;
        }
        Ok(frozen)
    }

    /// The second half of [`freeze`](Self::freeze): wait for the seized task to stop, then read its
    /// registers and mask and block every signal.
    pub fn settle(&mut self) -> Result<()> {
        let pid = self.pid;
        if self.was_stopped {
            self.wait_for_attach(options_for(pid))?;
        } else {
            self.wait_for_stop()?;
        }
        let (regs, xstate) = regs::dump(pid)?;
        self.regs = regs;
        self.xstate = xstate;
        self.sigmask = ptrace::get_sigmask(pid).map_err(Error::sys(pid.0, "reading the signal mask"))?;
        self.sud = ptrace::get_sud(pid).map_err(Error::sys(pid.0, "reading its syscall user dispatch"))?;
        self.captured = true;
        if self.sud.mode != 0 {
            let off = ptrace::SudConfig::default();
            ptrace::set_sud(pid, &off).map_err(Error::sys(pid.0, "switching its syscall user dispatch off"))?;
        }
        ptrace::set_sigmask(pid, u64::MAX).map_err(Error::sys(pid.0, "blocking signals"))?;
        Ok(())
    }

    fn wait_for_stop(&mut self) -> Result<()> {
        loop {
            match self.wait_bounded()? {
                WaitStatus::Stopped { event, .. } if event == libc::PTRACE_EVENT_STOP => return Ok(()),
                WaitStatus::Stopped { sig, .. } => {
                    // A signal was about to be delivered: let it go on; the interrupt stop follows.
                    log::debug!("pid {}: signal {sig} delivered while freezing", self.pid);
                    ptrace::cont(self.pid, sig).map_err(Error::sys(self.pid.0, "freezing"))?;
                }
                WaitStatus::SyscallStop => {
                    ptrace::cont(self.pid, 0).map_err(Error::sys(self.pid.0, "freezing"))?;
                }
                status => {
                    self.done = true;
                    return Err(Error::Exited { pid: self.pid, how: format!("{status:?}") });
                }
            }
        }
    }

    /// The next wait status of the task, waiting at most [`FREEZE_TIMEOUT`]: a task in a killable
    /// wait (a vfork parent waiting for its child, an uninterruptible file system call) does not
    /// stop for ptrace until the wait ends, and the dump must not hang on it. The error names its
    /// state and kernel wait channel; the task runs on (our attach ends with us).
    fn wait_bounded(&mut self) -> Result<WaitStatus> {
        let deadline = std::time::Instant::now() + FREEZE_TIMEOUT;
        let mut pause = std::time::Duration::from_micros(20);
        loop {
            if let Some(status) =
                ptrace::try_wait(self.pid).map_err(Error::sys(self.pid.0, "waiting for the freeze"))?
            {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                self.done = true;
                let (state, wchan) = (state_of(self.pid), proc::wchan(&ProcRoot::system(), self.pid.0));
                let what = format!(
                    "did not stop within {FREEZE_TIMEOUT:?} of being frozen (state {state}, waiting in {wchan}): a task in an uninterruptible wait cannot be checkpointed"
                );
                return Err(Error::Unsupported { pid: self.pid, what });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(2));
        }
    }

    /// The first stop of a task attached with `PTRACE_ATTACH`: a task in a group stop reports it
    /// with the signal that stopped it (the kernel keeps it in the task's job control state).
    fn wait_for_attach(&mut self, options: u32) -> Result<()> {
        match ptrace::wait(self.pid).map_err(Error::sys(self.pid.0, "waiting for the attach"))? {
            WaitStatus::Stopped { sig, .. } => {
                self.stop_signal = match sig {
                    libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => sig,
                    _ => libc::SIGSTOP,
                };
                ptrace::set_options(self.pid, options).map_err(Error::sys(self.pid.0, "setting ptrace options"))
            }
            status => {
                self.done = true;
                Err(Error::Exited { pid: self.pid, how: format!("{status:?}") })
            }
        }
    }

    /// Its syscall user dispatch for the image, when it was on.
    pub fn syscall_dispatch(&self) -> Option<stasis_image::model::SyscallDispatch> {
        let c = self.sud;
        (c.mode != 0).then_some(stasis_image::model::SyscallDispatch {
            mode: c.mode,
            selector: c.selector,
            offset: c.offset,
            len: c.len,
        })
    }

    /// The injector, mapping its scratch area on first use; `vdso` is the task's `[vdso]` range.
    pub fn injector(&mut self, vdso: (u64, u64)) -> Result<&mut Injector> {
        if self.injector.is_none() {
            self.injector = Some(Injector::new(self.pid, vdso, None, SCRATCH_LEN, &self.calls)?);
        }
        Ok(self.injector.as_mut().expect("just set"))
    }

    /// An injector using the scratch area `scratch` (start, end) that another thread of the process
    /// mapped (see [`Injector::sharing`]).
    pub fn injector_sharing(&mut self, vdso: (u64, u64), scratch: (u64, u64)) -> Result<&mut Injector> {
        if self.injector.is_none() {
            self.injector = Some(Injector::sharing(self.pid, vdso, scratch, &self.calls)?);
        }
        Ok(self.injector.as_mut().expect("just set"))
    }

    /// If the task died while frozen, say so instead of `err` (whatever failed because of it), and
    /// do not try to resume it.
    pub fn explain(&mut self, err: Error) -> Error {
        // A frozen task only ends if it is killed; one being killed may not be reapable yet when the
        // error shows (its memory goes first), so give it a moment.
        let mut status = ptrace::try_wait(self.pid);
        for _ in 0..20 {
            if !matches!(status, Ok(None)) || !dying(self.pid) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            status = ptrace::try_wait(self.pid);
        }
        match status {
            Ok(Some(status @ (WaitStatus::Exited(_) | WaitStatus::Signaled(_)))) => {
                self.done = true;
                if let Some(inj) = self.injector.take() {
                    inj.abandon();
                }
                let how = match status {
                    WaitStatus::Signaled(sig) => format!("killed by signal {sig}"),
                    WaitStatus::Exited(code) => format!("exit status {code}"),
                    _ => unreachable!(),
                };
                log::debug!("pid {}: {err} (the process is gone)", self.pid);
                Error::Exited { pid: self.pid, how }
            }
            _ => err,
        }
    }

    /// An error if the task is dying or dead (killed while frozen): its state may be incomplete.
    pub fn check_alive(&mut self) -> Result<()> {
        if !dying(self.pid) {
            return Ok(());
        }
        let what = "was killed during the dump".to_string();
        Err(self.explain(Error::Failed { pid: self.pid, what }))
    }

    /// Put the task back exactly as it was and let it run (or stay stopped if it was).
    pub fn resume(mut self) -> Result<()> {
        self.done = true;
        self.put_back()
    }

    /// Let go of this thread without touching it (its process is being killed).
    fn forget(&mut self) {
        self.done = true;
        if let Some(inj) = self.injector.take() {
            inj.abandon();
        }
    }

    fn put_back(&mut self) -> Result<()> {
        let pid = self.pid;
        // A failed unmap (tried twice) fails the dump once everything else is put back.
        let unmapped = match self.injector.take().map(|inj| inj.finish()) {
            Some(Err(e)) => Err(Error::Inject(e)),
            _ => Ok(()),
        };
        if !self.captured {
            // One seized but not stopped yet (in a frozen cgroup v1 freezer) cannot be detached:
            // its attach ends with the tracer thread.
            if let Err(e) = self.detach() {
                log::debug!("pid {pid}: let go before it stopped ({e})");
            }
            return unmapped;
        }
        let mut regs = self.regs;
        regs::restart_fixup(&mut regs, RestartBlock::Keep);
        ptrace::set_regs(pid, &regs).map_err(Error::sys(pid.0, "restoring registers"))?;
        if !self.xstate.is_empty() {
            ptrace::set_xstate(pid, &self.xstate).map_err(Error::sys(pid.0, "restoring the XSAVE area"))?;
        }
        ptrace::set_sigmask(pid, self.sigmask).map_err(Error::sys(pid.0, "restoring the signal mask"))?;
        self.detach()?;
        unmapped
    }

    /// Let the task go, with the signal that had stopped it; first the SIGSTOP of
    /// `--leave-stopped`, which the process takes once it runs (threads let go before it join the
    /// group stop).
    fn detach(&self) -> Result<()> {
        if self.sud.mode != 0 {
            ptrace::set_sud(self.pid, &self.sud)
                .map_err(Error::sys(self.pid.0, "putting its syscall user dispatch back"))?;
        }
        if self.stop_on_detach {
            process::kill(self.pid, libc::SIGSTOP).map_err(Error::sys(self.pid.0, "stopping it after the dump"))?;
        }
        ptrace::detach(self.pid, self.stop_signal).map_err(Error::sys(self.pid.0, "detaching"))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.put_back() {
                log::error!("pid {}: could not resume after a failed dump: {e}", self.pid);
            }
        }
    }
}

/// How long a task may take to stop once interrupted (CRIU's `--timeout`, 10 s by default, bounds
/// the same wait).
const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The state letter of `pid` in `/proc/PID/stat`, `?` if it cannot be read.
fn state_of(pid: Pid) -> char {
    proc::stat(&ProcRoot::system(), pid.0).map_or('?', |s| s.state)
}

/// The ptrace options a dump traces task `pid` with: `PTRACE_O_SUSPEND_SECCOMP` too if it is under
/// seccomp (the option needs CAP_SYS_ADMIN: it is not asked for otherwise).
fn options_for(pid: Pid) -> u32 {
    let seccomp = proc::status(&ProcRoot::system(), pid.0).is_ok_and(|s| s.seccomp != 0);
    ptrace::OPT_TRACESYSGOOD | if seccomp { ptrace::OPT_SUSPEND_SECCOMP } else { 0 }
}

fn zero_regs() -> Regs {
    regs::from_image(&Default::default())
}

/// Every thread of a process, frozen; the main thread first.
pub struct FrozenProcess {
    /// Its main thread first, once settled.
    pub threads: Vec<Frozen>,
    pid: Pid,
}

impl FrozenProcess {
    /// Freeze every thread of `pid`, listing them again until no new one appears (a thread that is
    /// still running may start another). `calls` counts the calls injected by the dump.
    pub fn freeze(root: &ProcRoot, pid: Pid, was_stopped: bool, calls: &Calls) -> Result<FrozenProcess> {
        let mut process = FrozenProcess::seize(root, pid, was_stopped, calls)?;
        process.settle(root, was_stopped, calls)?;
        Ok(process)
    }

    /// Every thread of `pid` seized and interrupted, none waited for (see [`Frozen::seize`]).
    pub fn seize(root: &ProcRoot, pid: Pid, was_stopped: bool, calls: &Calls) -> Result<FrozenProcess> {
        let mut process = FrozenProcess { threads: Vec::new(), pid };
        process.seize_new(root, was_stopped, calls)?;
        Ok(process)
    }

    /// Seize the threads of `pid` not held yet, listing them again until no new one shows; whether
    /// any was new.
    fn seize_new(&mut self, root: &ProcRoot, was_stopped: bool, calls: &Calls) -> Result<bool> {
        let (pid, mut any) = (self.pid, false);
        loop {
            let tids = proc::threads(root, pid.0)?;
            let new: Vec<i32> = tids.into_iter().filter(|t| !self.threads.iter().any(|f| f.pid.0 == *t)).collect();
            if new.is_empty() {
                return Ok(any);
            }
            any = true;
            for tid in new {
                self.threads.push(Frozen::seize(Pid(tid), was_stopped, calls)?);
            }
        }
    }

    /// Wait for every seized thread to stop, seizing (and waiting for) any thread made meanwhile,
    /// then check the process once nothing of it runs.
    pub fn settle(&mut self, root: &ProcRoot, was_stopped: bool, calls: &Calls) -> Result<()> {
        let pid = self.pid;
        loop {
            for t in self.threads.iter_mut().filter(|t| !t.captured) {
                t.settle()?;
            }
            if !self.seize_new(root, was_stopped, calls)? {
                break;
            }
        }
        self.threads.sort_by_key(|t| t.pid != pid);
        // Checked once nothing runs; on a refusal every thread is resumed as it was.
        for t in &self.threads {
            crate::signals::check_no_pending_trap(root, t.pid)?;
        }
        Ok(())
    }

    pub fn main(&mut self) -> &mut Frozen {
        &mut self.threads[0]
    }

    pub fn pid(&self) -> Pid {
        self.threads[0].pid
    }

    /// If the process died while frozen, say so instead of `err`, and touch none of its threads.
    pub fn explain(&mut self, err: Error) -> Error {
        let err = self.threads[0].explain(err);
        if matches!(err, Error::Exited { .. }) {
            self.threads.iter_mut().for_each(Frozen::forget);
        }
        err
    }

    /// Put every thread back and let them run, the main thread (whose scratch area is shared by
    /// none) last.
    pub fn resume(mut self) -> Result<()> {
        let main = self.threads.remove(0);
        let mut first_error = None;
        for t in self.threads {
            if let Err(e) = t.resume() {
                first_error.get_or_insert(e);
            }
        }
        main.resume()?;
        first_error.map_or(Ok(()), Err)
    }

    /// Put every thread back as [`resume`](Self::resume) does, and stop the process as by job
    /// control as it is let go (`--leave-stopped`).
    pub fn stop(mut self) -> Result<()> {
        self.threads[0].stop_on_detach = true;
        self.resume()
    }

    /// Kill the process (after a successful dump). It runs no code of its own once SIGKILL is sent;
    /// the kernel's teardown of its memory (tens of ms per GiB) is waited for on another thread,
    /// which collects the tracer's notification of each thread's death so that the parent gets the
    /// process's. Should we exit first, the kernel passes the dead process to its parent all the same.
    pub fn kill(mut self) -> Result<()> {
        let pid = self.pid();
        self.threads.iter_mut().for_each(Frozen::forget);
        process::kill(pid, libc::SIGKILL).map_err(Error::sys(pid.0, "killing after the dump"))?;
        let tids: Vec<Pid> = self.threads.iter().map(|t| t.pid).collect();
        // Reaped (as its tracer) before the dump returns, so that its parent can reap it at once: a
        // container engine checks the container is gone right after the dump (runc refuses to
        // remove a container whose init is still there, even as a zombie). One that takes longer
        // than REAP_DEADLINE to die is left to a thread of its own.
        let (done, reaped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            reap(&tids);
            let _ = done.send(());
        });
        if reaped.recv_timeout(REAP_DEADLINE).is_err() {
            log::warn!("pid {pid}: killed after the dump, not dead yet after {REAP_DEADLINE:?}");
        }
        Ok(())
    }
}

/// How long the dump waits for a process it killed to die.
const REAP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Wait for traced tasks to die, the other threads before the leader (a traced leader is reported
/// only once its threads are reaped).
pub fn reap(tids: &[Pid]) {
    for &tid in tids.iter().rev() {
        loop {
            match ptrace::wait(tid) {
                Ok(WaitStatus::Exited(_)) | Ok(WaitStatus::Signaled(_)) | Err(_) => break,
                Ok(_) => {
                    let _ = ptrace::cont(tid, 0);
                }
            }
        }
    }
}

/// The task has a fatal signal on its way or is exiting: a SIGKILL pending, or no longer stopped
/// by us (state other than `t`).
fn dying(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status.lines().any(|l| {
            (l.starts_with("State:") && !l.contains("(tracing stop)"))
                || (l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
                    && u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16).unwrap_or(0) & (1 << 8) != 0
        }),
        Err(_) => true,
    }
}
