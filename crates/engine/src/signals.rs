//! Signals: every disposition (handler, flags, restorer, mask), the blocked mask, the alternate signal
//! stack, and the queued signals, process-wide and thread-directed.
//!
//! Dispositions and the alternate stack are only known to the task, so they are read and set with
//! injected `rt_sigaction` / `sigaltstack`. Queued signals are read with `PTRACE_PEEKSIGINFO` and queued
//! again by the task itself (`rt_sigqueueinfo` to itself may carry any `si_code`). The blocked mask is
//! set last, with the registers, so that nothing is delivered while the task is being rebuilt.

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::{AltStack, PendingSignal, SigAction};
use stasis_sys::ptrace::{self, PEEKSIGINFO_SHARED};
use stasis_sys::remote::{self, Remote};
use stasis_sys::Pid;

const NSIG: u32 = 64;
/// `SS_ONSTACK`: reported while running on the alternate stack; never passed back.
const SS_ONSTACK: i32 = 1;

/// Refuses a frozen thread `tid` with a SIGTRAP pending, on its own queue or its process's (one
/// that is blocked: an unblocked one was delivered while it was being frozen), such as the one a
/// tracer's exec leaves behind. The calls stasis injects stop on a SIGTRAP of their own, which the
/// kernel would merge with it: it would be consumed by the dump and missing after a restore.
pub fn check_no_pending_trap(root: &ProcRoot, tid: Pid) -> Result<()> {
    let status = proc::status(root, tid.0)?;
    if (status.sig_pnd | status.shd_pnd) & (1 << (libc::SIGTRAP - 1)) == 0 {
        return Ok(());
    }
    let what = "a pending SIGTRAP (the calls stasis injects stop with a SIGTRAP of their own)".to_string();
    Err(Error::Unsupported { pid: tid, what })
}

fn settable(sig: u32) -> bool {
    sig != libc::SIGKILL as u32 && sig != libc::SIGSTOP as u32
}

/// Every signal's disposition. Only those `/proc` shows as caught or ignored (`busy`, bit `n-1` for
/// signal `n`), and SIGCHLD (whose flags matter even by default), are asked of the task: the others
/// are the default with no flags.
pub fn dump_actions(inj: &mut dyn Remote, busy: u64) -> Result<Vec<SigAction>> {
    let busy = busy | 1 << (libc::SIGCHLD - 1);
    let mut out = Vec::new();
    for signo in (1..=NSIG).filter(|&s| settable(s)) {
        if busy & (1 << (signo - 1)) == 0 {
            out.push(SigAction { signo, ..Default::default() });
            continue;
        }
        let a = inj.rt_sigaction_get(signo as i32)?;
        out.push(SigAction { signo, handler: a.handler, flags: a.flags, restorer: a.restorer, mask: a.mask });
    }
    Ok(out)
}

/// Set every disposition, but those `inherited` already has (a child forked from its restored
/// parent has the parent's).
pub fn restore_actions(inj: &mut dyn Remote, actions: &[SigAction], inherited: Option<&[SigAction]>) -> Result<()> {
    let same = |a: &SigAction| inherited.is_some_and(|i| i.contains(a));
    for a in actions.iter().filter(|a| settable(a.signo) && a.signo <= NSIG && !same(a)) {
        let act = remote::SigAction { handler: a.handler, flags: a.flags, restorer: a.restorer, mask: a.mask };
        inj.rt_sigaction_set(a.signo as i32, &act)?;
    }
    Ok(())
}

pub fn dump_altstack(inj: &mut dyn Remote) -> Result<AltStack> {
    let ss = inj.sigaltstack_get()?;
    Ok(AltStack { sp: ss.sp, flags: ss.flags, size: ss.size })
}

pub fn restore_altstack(inj: &mut dyn Remote, ss: &AltStack) -> Result<()> {
    let flags = ss.flags & !SS_ONSTACK;
    inj.sigaltstack_set(&remote::AltStack { sp: ss.sp, flags, size: ss.size })?;
    Ok(())
}

/// Queued signals of thread `tid`: its own queue, then (for the main thread) the shared one.
pub fn dump_pending(tid: Pid, shared_too: bool) -> Result<Vec<PendingSignal>> {
    let mut out = Vec::new();
    let mut queues = vec![(0, false)];
    if shared_too {
        queues.push((PEEKSIGINFO_SHARED, true));
    }
    for (flags, shared) in queues {
        let infos = ptrace::peek_siginfo(tid, flags).map_err(Error::sys(tid.0, "reading queued signals"))?;
        for info in infos {
            let signo = i32::from_le_bytes(info[0..4].try_into().expect("4 bytes"));
            out.push(PendingSignal { shared, signo, siginfo: info.to_vec() });
        }
    }
    Ok(out)
}

/// Queue the signals again, from inside the task.
pub fn restore_pending(inj: &mut dyn Remote, tgid: Pid, tid: Pid, pending: &[PendingSignal]) -> Result<()> {
    for p in pending {
        if p.siginfo.len() != ptrace::SIGINFO_SIZE || !(1..=NSIG as i32).contains(&p.signo) {
            return Err(Error::Failed { pid: tid, what: format!("queued signal {} has a bad siginfo", p.signo) });
        }
        if p.shared {
            inj.rt_sigqueueinfo(tgid, p.signo, &p.siginfo)?;
        } else {
            inj.rt_tgsigqueueinfo(tgid, tid, p.signo, &p.siginfo)?;
        }
    }
    Ok(())
}
