//! Registers: general purpose registers (with fs/gs bases) and the full XSAVE area (FPU, SSE, AVX,
//! AVX-512, PKRU), plus the syscall-restart fix-ups applied when a task stopped inside a system call
//! is resumed from a syscall-exit stop (where the kernel's own restart logic does not run).

use crate::error::{Error, Result};
use stasis_image::model::GpRegs;
use stasis_sys::ptrace::{self, Regs};
use stasis_sys::Pid;

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// Read both register sets of a stopped task.
pub fn dump(pid: Pid) -> Result<(Regs, Vec<u8>)> {
    let regs = ptrace::get_regs(pid).map_err(Error::sys(pid.0, "reading registers"))?;
    let xstate = ptrace::get_xstate(pid).map_err(Error::sys(pid.0, "reading the XSAVE area"))?;
    Ok((regs, xstate))
}

/// How to treat an interrupted `restart_syscall`-style call when fixing up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RestartBlock {
    /// The task's kernel restart block is intact (same task, after a dump): restart through it.
    Keep,
    /// The restart block is lost (a restored task): a relative sleep is made again for the time left
    /// (see [`sleep_again`]); other calls return `EINTR`, as a signal would make them.
    Lost,
}

/// Apply what the kernel would have done on the way back to user space for a task that stopped in a
/// system call with a `-ERESTART*` result.
pub fn restart_fixup(regs: &mut Regs, block: RestartBlock) {
    if (regs.orig_rax as i64) < 0 {
        return;
    }
    match -(regs.rax as i64) {
        ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
            regs.rax = regs.orig_rax;
            regs.rip -= 2;
        }
        ERESTART_RESTARTBLOCK if block == RestartBlock::Keep => {
            regs.rax = libc::SYS_restart_syscall as u64;
            regs.rip -= 2;
        }
        ERESTART_RESTARTBLOCK => {
            let again = sleep_again(regs);
            regs.rax = if again { regs.orig_rax } else { (-libc::EINTR) as u64 };
        }
        _ => {}
    }
}

/// A relative sleep interrupted by the checkpoint: the kernel wrote the time left into the caller's
/// `rmtp` when it stopped, so the call is made again asking for just that (the restart block that
/// held the deadline is gone): the argument and the instruction pointer are set here, the call number
/// by the caller. Other calls with a restart block (poll, futex waits with a timeout) return `EINTR`,
/// as after a signal. Returns whether the call was set up again.
fn sleep_again(regs: &mut Regs) -> bool {
    const TIMER_ABSTIME: u64 = 1;
    let nr = regs.orig_rax as i64;
    let rewound = if nr == libc::SYS_nanosleep && regs.rsi != 0 {
        regs.rdi = regs.rsi; // nanosleep(rqtp = rmtp, rmtp)
        true
    } else if nr == libc::SYS_clock_nanosleep && regs.r10 != 0 && regs.rsi & TIMER_ABSTIME == 0 {
        regs.rdx = regs.r10; // clock_nanosleep(clock, flags, rqtp = rmtp, rmtp)
        true
    } else {
        false
    };
    if rewound {
        regs.rip -= 2;
    }
    rewound
}

/// Set the final registers of a restored task, after the last injected call.
pub fn restore(pid: Pid, gp: &GpRegs, xstate: &[u8]) -> Result<()> {
    let mut regs = from_image(gp);
    restart_fixup(&mut regs, RestartBlock::Lost);
    ptrace::set_xstate(pid, xstate).map_err(Error::sys(pid.0, "setting the XSAVE area"))?;
    ptrace::set_regs(pid, &regs).map_err(Error::sys(pid.0, "setting registers"))
}

/// XSAVE feature mask the image's area uses (XSTATE_BV at byte 512 of the XSAVE header).
pub fn xstate_features(xstate: &[u8]) -> u64 {
    xstate.get(512..520).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

pub fn to_image(r: &Regs) -> GpRegs {
    GpRegs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        orig_rax: r.orig_rax,
        rip: r.rip,
        cs: r.cs,
        eflags: r.eflags,
        rsp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
    }
}

pub fn from_image(g: &GpRegs) -> Regs {
    Regs {
        r15: g.r15,
        r14: g.r14,
        r13: g.r13,
        r12: g.r12,
        rbp: g.rbp,
        rbx: g.rbx,
        r11: g.r11,
        r10: g.r10,
        r9: g.r9,
        r8: g.r8,
        rax: g.rax,
        rcx: g.rcx,
        rdx: g.rdx,
        rsi: g.rsi,
        rdi: g.rdi,
        orig_rax: g.orig_rax,
        rip: g.rip,
        cs: g.cs,
        eflags: g.eflags,
        rsp: g.rsp,
        ss: g.ss,
        fs_base: g.fs_base,
        gs_base: g.gs_base,
        ds: g.ds,
        es: g.es,
        fs: g.fs,
        gs: g.gs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_syscall(nr: u64, ret: i64) -> Regs {
        let mut r = from_image(&GpRegs::default());
        r.orig_rax = nr;
        r.rax = ret as u64;
        r.rip = 0x1002;
        r
    }

    #[test]
    fn restartable_calls_are_rewound() {
        let mut r = in_syscall(0, -ERESTARTSYS);
        restart_fixup(&mut r, RestartBlock::Lost);
        assert_eq!((r.rax, r.rip), (0, 0x1000));
    }

    #[test]
    fn restart_block_becomes_eintr_when_lost_and_restart_syscall_when_kept() {
        let mut lost = in_syscall(libc::SYS_poll as u64, -ERESTART_RESTARTBLOCK);
        restart_fixup(&mut lost, RestartBlock::Lost);
        assert_eq!((lost.rax as i64, lost.rip), (-(libc::EINTR as i64), 0x1002));
        let mut kept = in_syscall(35, -ERESTART_RESTARTBLOCK);
        restart_fixup(&mut kept, RestartBlock::Keep);
        assert_eq!((kept.rax, kept.rip), (libc::SYS_restart_syscall as u64, 0x1000));
    }

    #[test]
    fn lost_relative_sleeps_sleep_again_for_the_time_left() {
        let mut ns = in_syscall(libc::SYS_nanosleep as u64, -ERESTART_RESTARTBLOCK);
        (ns.rdi, ns.rsi) = (0x7000, 0x7010);
        restart_fixup(&mut ns, RestartBlock::Lost);
        assert_eq!((ns.rax, ns.rip, ns.rdi, ns.rsi), (libc::SYS_nanosleep as u64, 0x1000, 0x7010, 0x7010));

        let mut cns = in_syscall(libc::SYS_clock_nanosleep as u64, -ERESTART_RESTARTBLOCK);
        (cns.rdi, cns.rsi, cns.rdx, cns.r10) = (1, 0, 0x7000, 0x7010);
        restart_fixup(&mut cns, RestartBlock::Lost);
        assert_eq!((cns.rax, cns.rip, cns.rdx), (libc::SYS_clock_nanosleep as u64, 0x1000, 0x7010));

        // Without a place holding the time left, the sleep ends with EINTR.
        let mut no_rem = in_syscall(libc::SYS_nanosleep as u64, -ERESTART_RESTARTBLOCK);
        no_rem.rdi = 0x7000;
        restart_fixup(&mut no_rem, RestartBlock::Lost);
        assert_eq!(no_rem.rax as i64, -(libc::EINTR as i64));
    }

    #[test]
    fn user_mode_and_finished_calls_are_left_alone() {
        let mut user = in_syscall(u64::MAX, -ERESTARTSYS);
        restart_fixup(&mut user, RestartBlock::Lost);
        assert_eq!(user.rip, 0x1002);
        let mut done = in_syscall(0, 5);
        restart_fixup(&mut done, RestartBlock::Lost);
        assert_eq!((done.rax, done.rip), (5, 0x1002));
    }
}
