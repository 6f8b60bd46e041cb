//! The injection engine: make a stopped, traced task execute one system call at a time.
//!
//! The task runs no code of ours. The first call (an `mmap` of a scratch area) goes through a
//! `syscall` instruction found in the task's vDSO (or, in a task without one, in another of its
//! executable areas), with `PTRACE_SYSCALL` stopping the task at the
//! syscall exit. The scratch area's first page then holds `syscall; int3`, and every further call
//! points the instruction pointer there and runs to the `int3` stop: one stop per call. The rest of
//! the scratch area is a data area for arguments and results. The last call, unmapping the scratch
//! area, goes through the vDSO again (its `int3` would no longer exist).
//!
//! Invariants: every injected register set has `orig_rax = -1`, so the kernel's syscall-restart logic
//! never rewrites our registers; the caller blocks all signals (`PTRACE_SETSIGMASK`) while injecting, so
//! the only stops are ours; the caller restores the task's own registers when done.
//!
//! The calls themselves are typed in [`crate::remote`]; an `Injector` is its real [`Target`]. Each
//! injector counts its calls on the [`CallCounter`] of the dump or restore it works for, which can
//! make the Nth call of that run fail without running it (fault injection for tests).

use crate::mem::ProcMem;
use crate::ptrace::{self, Regs, WaitStatus};
use crate::remote::{self, Call, Target};
use crate::{Pid, SysError};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// `syscall; int3`.
const CODE: [u8; 3] = [0x0f, 0x05, 0xcc];
const PAGE: u64 = 4096;
/// Default size of the scratch area: one code page and 15 data pages.
pub const SCRATCH_LEN: u64 = 16 * PAGE;

/// An injection went wrong.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("pid {pid}")]
    Ptrace {
        pid: Pid,
        #[source]
        source: SysError,
    },
    #[error("pid {pid}: injected {call}")]
    Failed {
        pid: Pid,
        call: Box<Call>,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: fault injected at call {n} of this run ({call}, STASIS_FAULT)")]
    Fault { pid: Pid, call: Box<Call>, n: u64 },
    #[error("pid {pid}: the arguments of injected {call} take {len} bytes, more than the data area's {room}")]
    TooBig { pid: Pid, call: &'static str, len: u64, room: u64 },
    #[error("pid {pid} exited during injection ({status:?})")]
    Died { pid: Pid, status: WaitStatus },
    #[error("pid {pid}: unexpected stop during injected {call}: {status:?}")]
    UnexpectedStop { pid: Pid, call: &'static str, status: WaitStatus },
    #[error("pid {pid}: no syscall instruction in the given code area")]
    NoGadget { pid: Pid },
    #[error("pid {pid}: scratch area at {addr:#x} landed at {got:#x}")]
    ScratchMoved { pid: Pid, addr: u64, got: u64 },
    #[error("pid {pid}: memory at {addr:#x}")]
    Memory {
        pid: Pid,
        addr: u64,
        #[source]
        source: io::Error,
    },
}

impl InjectError {
    /// Whether this is a fault injected on purpose (see [`CallCounter`]), which no caller may take
    /// for an ordinary, tolerated failure.
    pub fn is_fault(&self) -> bool {
        matches!(self, InjectError::Fault { .. })
    }
}

/// The injected calls of one dump or one restore, counted over all its tracer threads; with
/// `fail_at` = N, the Nth fails with [`InjectError::Fault`] instead of running.
#[derive(Debug, Default)]
pub struct CallCounter {
    made: AtomicU64,
    fail_at: Option<u64>,
}

/// A [`CallCounter`] shared by the injectors of one run.
pub type Calls = Arc<CallCounter>;

impl CallCounter {
    pub fn new(fail_at: Option<u64>) -> Calls {
        Arc::new(CallCounter { made: AtomicU64::new(0), fail_at })
    }

    /// Calls counted so far (the faulted one included).
    pub fn count(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Count `call` in `pid`; the error if it is the one to fail.
    fn next(&self, pid: Pid, call: Call) -> Result<(), InjectError> {
        let n = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        match self.fail_at {
            Some(at) if at == n => Err(InjectError::Fault { pid, call: Box::new(call), n }),
            _ => Ok(()),
        }
    }
}

/// A task that executes system calls on our behalf.
pub struct Injector {
    pid: Pid,
    mem: ProcMem,
    /// Address of a `syscall` instruction in the vDSO, and its offset there.
    gadget: u64,
    gadget_off: u64,
    scratch: u64,
    scratch_len: u64,
    /// Register template: the task's registers when the injector was made.
    template: Regs,
    live: bool,
    /// The scratch area is this injector's (else another thread's of the same process: see
    /// [`Injector::sharing`]), to unmap when done.
    owns: bool,
    /// The run's call counter.
    calls: Calls,
    /// The call [`Injector::vmsplice_start`] began, until [`Injector::wait_call`].
    started: Option<Call>,
}

impl Injector {
    /// Map a scratch area into the stopped task `pid`: at `hint` exactly (`MAP_FIXED_NOREPLACE`) when
    /// given, anywhere otherwise. `vdso` is a range of the task holding a `syscall` instruction: its
    /// `[vdso]`, or any executable area when it has none; `calls` counts the calls of the run.
    pub fn new(
        pid: Pid,
        vdso: (u64, u64),
        hint: Option<u64>,
        len: u64,
        calls: &Calls,
    ) -> Result<Injector, InjectError> {
        let mut inj = Injector::attach(pid, vdso, (0, len), calls)?;
        inj.live = false;
        let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if hint.is_some() {
            flags |= libc::MAP_FIXED_NOREPLACE;
        }
        let addr = inj.map_scratch(hint.unwrap_or(0), len, flags)?;
        if let Some(want) = hint.filter(|&h| h != addr) {
            return Err(InjectError::ScratchMoved { pid, addr: want, got: addr });
        }
        inj.scratch = addr;
        inj.live = true;
        inj.owns = true;
        inj.write(addr, &CODE)?;
        Ok(inj)
    }

    /// Map the scratch area: one writable, executable area; or, in a process that denies memory
    /// both writable and executable (`PR_SET_MDWE`: EACCES), an executable one whose data pages are
    /// then made writable instead (the code is written through `/proc/PID/mem`, which may write
    /// where the task may not).
    fn map_scratch(&mut self, hint: u64, len: u64, flags: i32) -> Result<u64, InjectError> {
        let mmap = |prot: i32| Call::new("mmap", libc::SYS_mmap, &[hint, len, prot as u64, flags as u64, u64::MAX, 0]);
        let rwx = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        match self.via_gadget(mmap(rwx)) {
            Err(InjectError::Failed { source, .. }) if source.raw_os_error() == Some(libc::EACCES) => {
                let addr = self.via_gadget(mmap(libc::PROT_READ | libc::PROT_EXEC))?;
                let rw = (libc::PROT_READ | libc::PROT_WRITE) as u64;
                self.via_gadget(Call::new("mprotect", libc::SYS_mprotect, &[addr + PAGE, len - PAGE, rw]))?;
                Ok(addr)
            }
            other => other,
        }
    }

    /// An injector for thread `pid` that uses the scratch area `scratch` (start, end) another
    /// thread's injector mapped in the same process: the threads of a process share its memory, and
    /// one controller thread drives them one call at a time, so they can share the data area too.
    /// Nothing is mapped or unmapped for it; the owner's injector must outlive it.
    pub fn sharing(pid: Pid, vdso: (u64, u64), scratch: (u64, u64), calls: &Calls) -> Result<Injector, InjectError> {
        Injector::attach(pid, vdso, scratch, calls)
    }

    /// An injector on the scratch area `scratch` (start, end), owned by another (see `new`): the
    /// task's memory, the vDSO gadget and the register template.
    fn attach(pid: Pid, vdso: (u64, u64), scratch: (u64, u64), calls: &Calls) -> Result<Injector, InjectError> {
        let mem = ProcMem::open(pid).map_err(|source| InjectError::Memory { pid, addr: vdso.0, source })?;
        let gadget_off = find_gadget(&mem, vdso).ok_or(InjectError::NoGadget { pid })?;
        let template = ptrace::get_regs(pid).map_err(|source| InjectError::Ptrace { pid, source })?;
        Ok(Injector {
            pid,
            mem,
            gadget: vdso.0 + gadget_off,
            gadget_off,
            scratch: scratch.0,
            scratch_len: scratch.1 - scratch.0,
            template,
            live: true,
            owns: false,
            calls: calls.clone(),
            started: None,
        })
    }

    /// The call counter of the run this injector works for.
    pub fn calls(&self) -> &Calls {
        &self.calls
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The scratch area: `(start, end)`.
    pub fn scratch(&self) -> (u64, u64) {
        (self.scratch, self.scratch + self.scratch_len)
    }

    /// Start of the data area (everything after the code page).
    pub fn data(&self) -> u64 {
        self.scratch + PAGE
    }

    /// Size of the data area.
    pub fn data_len(&self) -> u64 {
        self.scratch_len - PAGE
    }

    /// The vDSO moved to `base` (restore remaps it): follow it.
    pub fn vdso_moved(&mut self, base: u64) {
        self.gadget = base + self.gadget_off;
    }

    /// Address of the `syscall` instruction the first and last calls go through.
    pub fn gadget(&self) -> u64 {
        self.gadget
    }

    /// Go through a `syscall` instruction in `code` (start, end) from now on: the area the gadget
    /// was in is gone (a process without a vDSO, restored).
    pub fn use_gadget_in(&mut self, code: (u64, u64)) -> Result<(), InjectError> {
        let off = find_gadget(&self.mem, code).ok_or(InjectError::NoGadget { pid: self.pid })?;
        self.gadget = code.0 + off;
        self.gadget_off = off;
        Ok(())
    }

    /// Write into the task's memory (any protection).
    pub fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), InjectError> {
        self.mem.write(addr, bytes).map_err(|source| InjectError::Memory { pid: self.pid, addr, source })
    }

    /// Read from the task's memory (any protection).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), InjectError> {
        self.mem.read(addr, buf).map_err(|source| InjectError::Memory { pid: self.pid, addr, source })
    }

    pub fn mem(&self) -> &ProcMem {
        &self.mem
    }

    /// Run `call` to its `int3` stop; its raw result.
    fn exec(&mut self, call: Call) -> Result<i64, InjectError> {
        self.begin(call)?;
        self.wait_raw(call.name())
    }

    /// Count `call`, set its registers and let the task run it.
    fn begin(&mut self, call: Call) -> Result<(), InjectError> {
        self.calls.next(self.pid, call)?;
        let mut regs = self.call_regs(&call);
        regs.rip = self.scratch;
        self.set_regs(&regs)?;
        ptrace::cont(self.pid, 0).map_err(|source| InjectError::Ptrace { pid: self.pid, source })
    }

    /// Start `vmsplice(fd, iov, n, flags)` (see [`crate::remote`]) and return at once, so the caller
    /// can work while the task pins the pages; [`Injector::wait_call`] collects the result. Nothing
    /// else may be asked of the task in between.
    pub fn vmsplice_start(&mut self, fd: i32, iov: &[(u64, u64)], flags: u32) -> Result<(), InjectError> {
        let call = remote::calls_vmsplice(self, fd, iov, flags)?;
        self.begin(call)?;
        self.started = Some(call);
        Ok(())
    }

    /// Wait for the call [`Injector::vmsplice_start`] began; a negative result becomes an error
    /// naming it.
    pub fn wait_call(&mut self) -> Result<u64, InjectError> {
        let call = self.started.take().expect("a call was started");
        let ret = self.wait_raw(call.name())?;
        self.errno(call, ret)
    }

    /// Make the task call `exit_group(code)` and give it up: it ends (collect it with `waitpid`).
    pub fn exit_group(mut self, code: i32) -> Result<(), InjectError> {
        self.begin(remote::calls_exit_group(code))?;
        self.abandon();
        Ok(())
    }

    /// Make the task send itself `sig` with `tgkill(tgid, tid, sig)` and give it up: the caller
    /// unblocked `sig`, whose default action ends the task.
    pub fn tgkill_and_leave(mut self, tgid: Pid, tid: Pid, sig: i32) -> Result<(), InjectError> {
        self.begin(remote::calls_tgkill(tgid, tid, sig))?;
        self.abandon();
        Ok(())
    }

    fn wait_raw(&mut self, call: &'static str) -> Result<i64, InjectError> {
        loop {
            match self.wait()? {
                WaitStatus::Stopped { sig: libc::SIGTRAP, event: 0 } => return Ok(self.result()? as i64),
                // An injected clone3 with PTRACE_O_TRACECLONE / TRACEFORK stops once more before it
                // returns; the SIGSTOP PTRACE_ATTACH queued (for a stopped task) is dropped.
                WaitStatus::Stopped {
                    sig: libc::SIGTRAP,
                    event: libc::PTRACE_EVENT_CLONE | libc::PTRACE_EVENT_FORK,
                }
                | WaitStatus::Stopped { sig: libc::SIGSTOP, event: 0 } => {
                    ptrace::cont(self.pid, 0).map_err(|source| InjectError::Ptrace { pid: self.pid, source })?;
                }
                status => return Err(InjectError::UnexpectedStop { pid: self.pid, call, status }),
            }
        }
    }

    /// Unmap the scratch area with the very last injected call, ending at its syscall-exit stop (an
    /// injector [`Injector::sharing`] another's area unmaps nothing: the task is at the stop after
    /// its last call). The task's registers are then the caller's to set.
    ///
    /// A failed unmap is tried once more, so that the area goes all the same; the error of the
    /// first try is returned even then (the run it belongs to failed, and says so).
    pub fn finish(mut self) -> Result<(), InjectError> {
        let mut first = Ok(());
        if self.owns {
            let (start, len) = (self.scratch, self.scratch_len);
            let unmap = Call::new("munmap", libc::SYS_munmap, &[start, len]);
            if let Err(e) = self.via_gadget(unmap) {
                // The first error is the one to report; if this try fails too, the area stays.
                let _ = self.via_gadget(unmap);
                first = Err(e);
            }
        }
        self.live = false;
        first.map(drop)
    }

    /// Hand the task over to another thread of ours (see [`park`]); [`Parked::adopt`], on the
    /// other thread, attaches it again.
    pub fn park(mut self) -> Result<Parked, InjectError> {
        park(self.pid, self.scratch)?;
        self.live = false;
        Ok(Parked { inj: self })
    }

    /// Give up the injector without unmapping the scratch area (the task is about to be killed).
    pub fn abandon(mut self) {
        self.live = false;
    }

    fn via_gadget(&mut self, call: Call) -> Result<u64, InjectError> {
        self.calls.next(self.pid, call)?;
        let mut regs = self.call_regs(&call);
        regs.rip = self.gadget;
        self.set_regs(&regs)?;
        let mut stops = 0;
        while stops < 2 {
            ptrace::syscall(self.pid).map_err(|source| InjectError::Ptrace { pid: self.pid, source })?;
            match self.wait()? {
                WaitStatus::SyscallStop => stops += 1,
                // The SIGSTOP PTRACE_ATTACH queued (for a stopped task): dropped by resuming without it.
                WaitStatus::Stopped { sig: libc::SIGSTOP, event: 0 } => {}
                status => return Err(InjectError::UnexpectedStop { pid: self.pid, call: call.name(), status }),
            }
        }
        let ret = self.result()? as i64;
        self.errno(call, ret)
    }

    fn call_regs(&self, call: &Call) -> Regs {
        let args = call.registers();
        let mut regs = self.template;
        regs.rax = call.nr() as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        regs
    }

    fn set_regs(&self, regs: &Regs) -> Result<(), InjectError> {
        ptrace::set_regs(self.pid, regs).map_err(|source| InjectError::Ptrace { pid: self.pid, source })
    }

    fn result(&self) -> Result<u64, InjectError> {
        let regs = ptrace::get_regs(self.pid).map_err(|source| InjectError::Ptrace { pid: self.pid, source })?;
        Ok(regs.rax)
    }

    fn wait(&self) -> Result<WaitStatus, InjectError> {
        let status = ptrace::wait(self.pid).map_err(|source| InjectError::Ptrace { pid: self.pid, source })?;
        match status {
            WaitStatus::Exited(_) | WaitStatus::Signaled(_) => Err(InjectError::Died { pid: self.pid, status }),
            s => Ok(s),
        }
    }

    fn errno(&self, call: Call, ret: i64) -> Result<u64, InjectError> {
        if (-4095..0).contains(&ret) {
            let source = io::Error::from_raw_os_error(-ret as i32);
            return Err(InjectError::Failed { pid: self.pid, call: Box::new(call), source });
        }
        Ok(ret as u64)
    }
}

/// A task left by [`Injector::park`], untraced, blocked in `pause()`.
pub struct Parked {
    inj: Injector,
}

impl Parked {
    pub fn pid(&self) -> Pid {
        self.inj.pid
    }

    /// Attach the task from this thread (see [`adopt`]) and go on injecting.
    pub fn adopt(self, options: u32) -> Result<Injector, InjectError> {
        let mut inj = self.inj;
        adopt(inj.pid, options)?;
        inj.live = true;
        Ok(inj)
    }
}

/// Hand the stopped, traced task `pid` over to another thread of ours (ptrace requests must come from
/// the thread that attached a task): it is detached into a `pause()` through the `syscall` at `code`
/// (a scratch area's, possibly inherited from a parent), which nothing wakes as every signal is
/// blocked. [`adopt`] attaches it again.
pub fn park(pid: Pid, code: u64) -> Result<(), InjectError> {
    let fail = |source| InjectError::Ptrace { pid, source };
    let mut regs = ptrace::get_regs(pid).map_err(fail)?;
    regs.rax = libc::SYS_pause as u64;
    regs.orig_rax = u64::MAX;
    regs.rip = code;
    ptrace::set_regs(pid, &regs).map_err(fail)?;
    ptrace::detach(pid, 0).map_err(fail)
}

/// Attach a task [`park`] left, from this thread (`PTRACE_SEIZE` with `options`, `PTRACE_INTERRUPT`).
/// Wherever the interrupt finds it (before its `pause()` or in it), the next injected call sets
/// every register, with `orig_rax = -1`, so nothing of the `pause()` is restarted.
pub fn adopt(pid: Pid, options: u32) -> Result<(), InjectError> {
    let fail = |source| InjectError::Ptrace { pid, source };
    ptrace::seize(pid, options).map_err(fail)?;
    ptrace::interrupt(pid).map_err(fail)?;
    match ptrace::wait(pid).map_err(fail)? {
        WaitStatus::Stopped { event: libc::PTRACE_EVENT_STOP, .. } => Ok(()),
        status => Err(InjectError::UnexpectedStop { pid, call: "pause (adopting a parked task)", status }),
    }
}

impl Target for Injector {
    fn pid(&self) -> Pid {
        self.pid
    }

    fn data(&self) -> u64 {
        Injector::data(self)
    }

    fn data_len(&self) -> u64 {
        Injector::data_len(self)
    }

    fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), InjectError> {
        Injector::write(self, addr, bytes)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), InjectError> {
        Injector::read(self, addr, buf)
    }

    fn run(&mut self, call: Call) -> Result<i64, InjectError> {
        self.exec(call)
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        if self.live && self.owns {
            let (start, len) = (self.scratch, self.scratch_len);
            let _ = self.via_gadget(Call::new("munmap", libc::SYS_munmap, &[start, len]));
        }
    }
}

/// Offset of a `syscall` instruction (0f 05) in the vDSO text. Any occurrence works: the task stops at
/// the syscall exit before it could run whatever follows.
fn find_gadget(mem: &ProcMem, vdso: (u64, u64)) -> Option<u64> {
    let mut text = vec![0u8; (vdso.1 - vdso.0) as usize];
    mem.read(vdso.0, &mut text).ok()?;
    text.windows(2).position(|w| w == [0x0f, 0x05]).map(|p| p as u64)
}
