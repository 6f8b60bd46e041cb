//! Signals: every disposition (handler, flags, restorer, mask), the blocked mask, the alternate signal
//! stack, and the queued signals, process-wide and thread-directed.
//!
//! Dispositions and the alternate stack are only known to the task, so they are read and set with
//! injected `rt_sigaction` / `sigaltstack`. Queued signals are read with `PTRACE_PEEKSIGINFO` and queued
//! again by the task itself (`rt_sigqueueinfo` to itself may carry any `si_code`). The blocked mask is
//! set last, with the registers, so that nothing is delivered while the task is being rebuilt.

use crate::error::{Error, Result};
use crate::scratch::{read_u64s, write_u64s};
use stasis_image::model::{AltStack, PendingSignal, SigAction};
use stasis_sys::inject::Injector;
use stasis_sys::ptrace::{self, PEEKSIGINFO_SHARED};
use stasis_sys::Pid;

const NSIG: u32 = 64;
/// `SS_ONSTACK`: reported while running on the alternate stack; never passed back.
const SS_ONSTACK: i32 = 1;

fn settable(sig: u32) -> bool {
    sig != libc::SIGKILL as u32 && sig != libc::SIGSTOP as u32
}

/// Every signal's disposition. Only those `/proc` shows as caught or ignored (`busy`, bit `n-1` for
/// signal `n`), and SIGCHLD (whose flags matter even by default), are asked of the task: the others
/// are the default with no flags.
pub fn dump_actions(inj: &mut Injector, busy: u64) -> Result<Vec<SigAction>> {
    let data = inj.data();
    let busy = busy | 1 << (libc::SIGCHLD - 1);
    let mut out = Vec::new();
    for signo in (1..=NSIG).filter(|&s| settable(s)) {
        if busy & (1 << (signo - 1)) == 0 {
            out.push(SigAction { signo, ..Default::default() });
            continue;
        }
        inj.call("rt_sigaction", libc::SYS_rt_sigaction, [signo as u64, 0, data, 8, 0, 0])?;
        let w = read_u64s(inj, data, 4)?;
        out.push(SigAction { signo, handler: w[0], flags: w[1], restorer: w[2], mask: w[3] });
    }
    Ok(out)
}

/// Set every disposition, but those `inherited` already has (a child forked from its restored
/// parent has the parent's).
pub fn restore_actions(inj: &mut Injector, actions: &[SigAction], inherited: Option<&[SigAction]>) -> Result<()> {
    let data = inj.data();
    let same = |a: &SigAction| inherited.is_some_and(|i| i.contains(a));
    for a in actions.iter().filter(|a| settable(a.signo) && a.signo <= NSIG && !same(a)) {
        write_u64s(inj, data, &[a.handler, a.flags, a.restorer, a.mask])?;
        inj.call("rt_sigaction", libc::SYS_rt_sigaction, [a.signo as u64, data, 0, 8, 0, 0])?;
    }
    Ok(())
}

pub fn dump_altstack(inj: &mut Injector) -> Result<AltStack> {
    let data = inj.data();
    inj.call("sigaltstack", libc::SYS_sigaltstack, [0, data, 0, 0, 0, 0])?;
    let w = read_u64s(inj, data, 3)?;
    Ok(AltStack { sp: w[0], flags: w[1] as u32 as i32, size: w[2] })
}

pub fn restore_altstack(inj: &mut Injector, ss: &AltStack) -> Result<()> {
    let data = inj.data();
    let flags = (ss.flags & !SS_ONSTACK) as u32 as u64;
    write_u64s(inj, data, &[ss.sp, flags, ss.size])?;
    inj.call("sigaltstack", libc::SYS_sigaltstack, [data, 0, 0, 0, 0, 0])?;
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
pub fn restore_pending(inj: &mut Injector, tgid: Pid, tid: Pid, pending: &[PendingSignal]) -> Result<()> {
    let data = inj.data();
    for p in pending {
        if p.siginfo.len() != ptrace::SIGINFO_SIZE || !(1..=NSIG as i32).contains(&p.signo) {
            return Err(Error::Failed { pid: tid.0, what: format!("queued signal {} has a bad siginfo", p.signo) });
        }
        inj.write(data, &p.siginfo)?;
        let (tg, t, s) = (tgid.0 as u64, tid.0 as u64, p.signo as u64);
        if p.shared {
            inj.call("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo, [tg, s, data, 0, 0, 0])?;
        } else {
            inj.call("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo, [tg, t, s, data, 0, 0])?;
        }
    }
    Ok(())
}
