//! Probes of the process interfaces: `PTRACE_SEIZE`/`PTRACE_INTERRUPT` and
//! `PTRACE_GET_RSEQ_CONFIGURATION` on a forked child, `pidfd_getfd`, `clone3` with `set_tid`,
//! `kcmp`, `prctl(PR_SET_MM)` and `rseq`. The forked child is killed and reaped by pid before the
//! probe returns.

use crate::process::CloneArgs;
use std::mem::size_of;
use std::os::fd::AsRawFd;

use super::{errno, own, sys, Probed};

/// `PTRACE_GET_RSEQ_CONFIGURATION` (include/uapi/linux/ptrace.h, Linux 5.13).
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
/// `PR_SET_MM` and its `PR_SET_MM_MAP_SIZE` sub-option (include/uapi/linux/prctl.h).
const PR_SET_MM: libc::c_int = 35;
const PR_SET_MM_MAP_SIZE: libc::c_ulong = 15;
/// `KCMP_VM` (include/uapi/linux/kcmp.h).
const KCMP_VM: libc::c_int = 1;
/// `AT_RSEQ_FEATURE_SIZE` and `AT_RSEQ_ALIGN` (include/uapi/linux/auxvec.h, Linux 6.3).
const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;
const AT_RSEQ_ALIGN: libc::c_ulong = 28;

/// `struct ptrace_rseq_configuration` (include/uapi/linux/ptrace.h).
#[repr(C)]
#[derive(Default)]
struct RseqConfiguration {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

/// A forked child that only sleeps; killed with SIGKILL and reaped by its pid on drop.
struct Sleeper(libc::pid_t);

impl Sleeper {
    fn spawn() -> Result<Sleeper, i32> {
        // SAFETY: the child runs only raw system calls (async-signal-safe), so it is sound even
        // though the other threads of this process do not exist in it.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            sleep_forever();
        }
        sys(pid.into()).map(|p| Sleeper(p as libc::pid_t))
    }
}

/// The child side of [`Sleeper::spawn`]: die with the parent, else pause until killed.
fn sleep_forever() -> ! {
    // SAFETY: raw system calls with integer arguments only; no memory or lock is touched.
    unsafe {
        libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        loop {
            libc::syscall(libc::SYS_pause);
        }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        // SAFETY: `self.0` is our own unreaped child, so the pid cannot have been reused.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
        wait_exit(self.0);
    }
}

/// Reaps `pid` (our child), skipping stops, until it has exited.
fn wait_exit(pid: libc::pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer; we wait for one specific child of ours.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if (ret < 0 && errno() != libc::EINTR) || (ret == pid && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)))
        {
            return;
        }
    }
}

fn ptrace(req: libc::c_uint, pid: libc::pid_t, addr: u64, data: u64) -> Result<libc::c_long, i32> {
    // SAFETY: every request made here either takes no pointer or gets in `data` a pointer to a live
    // buffer of the size given in `addr`.
    sys(unsafe { libc::ptrace(req, pid, addr, data) })
}

/// Seizes and interrupts a forked child; on success also asks for its rseq configuration.
pub(super) fn probe_ptrace() -> (Probed, Probed) {
    let untested = || Probed::no("not probed: no seized child");
    let child = match Sleeper::spawn() {
        Ok(c) => c,
        Err(e) => return (Probed::failed("fork", e), untested()),
    };
    if let Err(e) = ptrace(libc::PTRACE_SEIZE, child.0, 0, 0) {
        return (Probed::failed("PTRACE_SEIZE", e), untested());
    }
    if let Err(e) = ptrace(libc::PTRACE_INTERRUPT, child.0, 0, 0) {
        return (Probed::failed("PTRACE_INTERRUPT", e), untested());
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out pointer; we wait for our own child.
    if unsafe { libc::waitpid(child.0, &mut status, libc::__WALL) } != child.0 {
        return (Probed::failed("waitpid", errno()), untested());
    }
    if !libc::WIFSTOPPED(status) || status >> 16 != libc::PTRACE_EVENT_STOP {
        let seen = Probed::no(format!("child did not reach PTRACE_EVENT_STOP (status {status:#x})"));
        return (seen, untested());
    }
    let seize = Probed::yes("seized and interrupted a child");
    (seize, rseq_configuration(child.0))
}

fn rseq_configuration(pid: libc::pid_t) -> Probed {
    let mut conf = RseqConfiguration::default();
    let size = size_of::<RseqConfiguration>() as u64;
    let addr = &mut conf as *mut RseqConfiguration as u64;
    match ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, size, addr) {
        Ok(_) if conf.rseq_abi_pointer == 0 => Probed::yes("works; the child had no rseq area"),
        Ok(_) => Probed::yes(format!(
            "works; the child's rseq area is {} bytes, signature {:#x}",
            conf.rseq_abi_size, conf.signature
        )),
        Err(e) => Probed::failed("PTRACE_GET_RSEQ_CONFIGURATION", e),
    }
}

/// `pidfd_open` on ourselves, then `pidfd_getfd` of that very pidfd.
pub(super) fn probe_pidfd_getfd() -> Probed {
    // SAFETY: integer arguments only.
    let pidfd = match sys(unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) }) {
        Ok(fd) => own(fd),
        Err(e) => return Probed::failed("pidfd_open", e),
    };
    let raw = pidfd.as_raw_fd();
    // SAFETY: integer arguments only; the result is a new fd that we take ownership of.
    match sys(unsafe { libc::syscall(libc::SYS_pidfd_getfd, raw, raw, 0) }) {
        Ok(fd) => {
            drop(own(fd));
            Probed::yes("copied an fd out of a process through its pidfd")
        }
        Err(e) => Probed::failed("pidfd_getfd", e),
    }
}

/// `clone3` asking for our own pid, which is surely taken: `EEXIST` proves that set_tid works and
/// that we may use it, and creates nothing.
pub(super) fn probe_clone3_set_tid() -> Probed {
    // SAFETY: no arguments.
    let set_tid = [unsafe { libc::getpid() }];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: `args` and `set_tid` outlive the call. Should a child be created after all (fork
    // semantics, no CLONE_VM), it exits at once with a raw system call.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size_of::<CloneArgs>()) };
    match ret {
        0 => {
            // SAFETY: we are the unexpected child; exit without running any destructor.
            unsafe { libc::syscall(libc::SYS_exit_group, 0) };
            unreachable!("exit returned");
        }
        pid if pid > 0 => {
            wait_exit(pid as libc::pid_t);
            Probed::no(format!("clone3 created pid {pid} instead of failing with EEXIST"))
        }
        _ => match errno() {
            libc::EEXIST => Probed::yes("clone3 refused a pid in use with EEXIST, as expected"),
            libc::EPERM => Probed::no("clone3 set_tid: needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN"),
            e => Probed::failed("clone3 with set_tid", e),
        },
    }
}

pub(super) fn probe_kcmp() -> Probed {
    // SAFETY: integer arguments only.
    let ret = unsafe {
        let pid = libc::getpid();
        libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_VM, 0, 0)
    };
    match sys(ret) {
        Ok(0) => Probed::yes("kcmp(KCMP_VM) of ourselves is equal"),
        Ok(r) => Probed::no(format!("kcmp(KCMP_VM) of ourselves returned {r}")),
        Err(e) => Probed::failed("kcmp", e),
    }
}

pub(super) fn probe_mm_map() -> Probed {
    let mut size: libc::c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one unsigned int to the pointer we pass.
    let ret = unsafe { libc::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &mut size as *mut libc::c_uint, 0, 0) };
    match sys(ret.into()) {
        Ok(_) => Probed::yes(format!("struct prctl_mm_map is {size} bytes")),
        Err(e) => Probed::failed("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", e),
    }
}

/// `rseq` with an unknown flag: `EINVAL` if the call exists, `ENOSYS` if not.
pub(super) fn probe_rseq() -> Probed {
    // SAFETY: a null area with a flag the kernel rejects before looking at any pointer.
    let ret = unsafe { libc::syscall(libc::SYS_rseq, 0usize, 0u32, 2, 0u32) };
    match sys(ret) {
        Err(libc::EINVAL) => {
            // SAFETY: getauxval reads the process's own auxiliary vector.
            let (size, align) = unsafe { (libc::getauxval(AT_RSEQ_FEATURE_SIZE), libc::getauxval(AT_RSEQ_ALIGN)) };
            Probed::yes(format!("feature size {size}, alignment {align}"))
        }
        Err(e) => Probed::failed("rseq", e),
        Ok(_) => Probed::no("rseq accepted an invalid flag"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone3_probe_creates_nothing() {
        let p = probe_clone3_set_tid();
        assert!(!p.detail.contains("created"), "{}", p.detail);
        if p.available {
            assert!(p.detail.contains("EEXIST"), "{}", p.detail);
        } else {
            println!("SKIP: clone3 set_tid unavailable here: {}", p.detail);
        }
    }
}
