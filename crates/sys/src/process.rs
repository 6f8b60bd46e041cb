//! Creating, signalling and inspecting processes: `clone3(2)` with a chosen PID, kill, robust lists.

use crate::ptrace::{self, WaitStatus};
use crate::{check, Pid, SysError};
use std::os::fd::AsRawFd;

/// `struct clone_args` (include/uapi/linux/sched.h, size version 2).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

/// Why a traced child could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("clone3 with set_tid {pid}")]
    Clone {
        pid: Pid,
        #[source]
        source: SysError,
    },
    #[error("new task {pid} did not stop as expected: {status:?}")]
    NoStop { pid: Pid, status: WaitStatus },
    #[error("new task {pid}")]
    Wait {
        pid: Pid,
        #[source]
        source: SysError,
    },
}

/// Create a child of the calling thread with exactly the PID `pid` (`clone3(2)` with `set_tid`), traced
/// by the calling thread and stopped.
///
/// The child is a copy of the caller (fork semantics) that runs no code of ours beyond four raw system
/// calls: `PTRACE_TRACEME`, `getpid`, `kill(pid, SIGSTOP)`, and `exit_group` should it ever be resumed
/// as is.
/// On return it is in a signal-delivery stop for SIGSTOP with `PTRACE_O_TRACESYSGOOD | EXITKILL` set, so
/// it dies if the caller exits. Fails with `EEXIST` when `pid` is taken.
pub fn spawn_traced(pid: Pid) -> Result<Pid, SpawnError> {
    spawn_traced_in(pid, 0, &[])
}

/// [`spawn_traced`] with whatever PID the kernel gives (a helper's).
pub fn spawn_traced_any() -> Result<Pid, SpawnError> {
    spawn_traced_in(Pid(0), 0, &[])
}

/// [`spawn_traced`] with `flags` (`CLONE_NEW*` namespace flags) and the ids the child must get in
/// the PID namespaces nested below ours (`inner`, innermost first; with `CLONE_NEWPID`, the first
/// is 1: the child is the init of its new namespace).
pub fn spawn_traced_in(pid: Pid, flags: u64, inner: &[i32]) -> Result<Pid, SpawnError> {
    let set_tid: Vec<i32> = inner.iter().copied().chain(std::iter::once(pid.0)).filter(|&p| p != 0).collect();
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: if set_tid.is_empty() { 0 } else { set_tid.as_ptr() as u64 },
        set_tid_size: set_tid.len() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` and `set_tid` outlive the call. Without CLONE_VM the child gets a copy of our
    // memory and continues on a copy of this stack (fork semantics); in the child we only make raw
    // system calls, which are async-signal-safe even though other threads of ours did not survive.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if ret == 0 {
        child_stop_for_tracer();
    }
    let child = Pid(check("clone3", ret).map_err(|source| SpawnError::Clone { pid, source })? as i32);
    match ptrace::wait(child).map_err(|source| SpawnError::Wait { pid: child, source })? {
        WaitStatus::Stopped { sig: libc::SIGSTOP, .. } => {}
        status => return Err(SpawnError::NoStop { pid: child, status }),
    }
    ptrace::set_options(child, ptrace::OPT_TRACESYSGOOD | ptrace::OPT_EXITKILL)
        .map_err(|source| SpawnError::Wait { pid: child, source })?;
    Ok(child)
}

/// [`spawn_traced`], but the child is a child of our parent (`CLONE_PARENT`): our sibling, which
/// our parent waits for (CRIU's `--restore-sibling`). As `PTRACE_TRACEME` would make our parent
/// its tracer, the child waits on a pipe until we have seized it (`PTRACE_SEIZE` with
/// `TRACESYSGOOD | EXITKILL`), then stops itself; on return it is in its signal-delivery stop for
/// SIGSTOP, as with [`spawn_traced`].
pub fn spawn_traced_sibling(pid: Pid) -> Result<Pid, SpawnError> {
    spawn_traced_sibling_in(pid, 0, &[])
}

/// [`spawn_traced_sibling`] with `flags` and `inner` ids as [`spawn_traced_in`] takes them.
pub fn spawn_traced_sibling_in(pid: Pid, flags: u64, inner: &[i32]) -> Result<Pid, SpawnError> {
    let (gate_r, gate_w) = crate::fd::pipe().map_err(|source| SpawnError::Clone { pid, source })?;
    let set_tid: Vec<i32> = inner.iter().copied().chain(std::iter::once(pid.0)).collect();
    // clone3 takes no exit signal with CLONE_PARENT: the child gets ours, as our parent expects.
    let args = CloneArgs {
        flags: flags | libc::CLONE_PARENT as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: set_tid.len() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: as in `spawn_traced`: fork semantics, and the child makes raw system calls only.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if ret == 0 {
        child_stop_when_seized(gate_r.as_raw_fd(), gate_w.as_raw_fd());
    }
    drop(gate_r);
    let child = Pid(check("clone3", ret).map_err(|source| SpawnError::Clone { pid, source })? as i32);
    let wait_err = |source| SpawnError::Wait { pid: child, source };
    if let Err(e) = ptrace::seize(child, ptrace::OPT_TRACESYSGOOD | ptrace::OPT_EXITKILL) {
        let _ = kill(child, libc::SIGKILL);
        return Err(wait_err(e));
    }
    // Closing our end lets the child's read return: it stops itself, traced by us.
    drop(gate_w);
    match ptrace::wait(child).map_err(wait_err)? {
        WaitStatus::Stopped { sig: libc::SIGSTOP, .. } => Ok(child),
        status => {
            let _ = kill(child, libc::SIGKILL);
            Err(SpawnError::NoStop { pid: child, status })
        }
    }
}

/// The child side of [`spawn_traced_sibling`]: close its copy of the gate's write end, wait for
/// the gate to close (EOF), then stop; raw system calls only.
fn child_stop_when_seized(gate_r: i32, gate_w: i32) -> ! {
    let mut byte = 0u8;
    // SAFETY: raw system calls; `byte` is a live local the read may fill.
    unsafe {
        libc::syscall(libc::SYS_close, gate_w);
        libc::syscall(libc::SYS_read, gate_r, &mut byte as *mut u8, 1);
        let me = libc::syscall(libc::SYS_getpid);
        libc::syscall(libc::SYS_kill, me, libc::SIGSTOP);
        libc::syscall(libc::SYS_exit_group, 127);
    }
    unreachable!("exit_group returned")
}

/// The child side of [`spawn_traced`]: raw system calls only (glibc's cached pid is the parent's).
fn child_stop_for_tracer() -> ! {
    // SAFETY: raw system calls with integer arguments; no memory is touched and no lock is taken.
    unsafe {
        libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
        let me = libc::syscall(libc::SYS_getpid);
        libc::syscall(libc::SYS_kill, me, libc::SIGSTOP);
        libc::syscall(libc::SYS_exit_group, 127);
    }
    unreachable!("exit_group returned")
}

/// `pidfd_send_signal(2)`: `sig` (0: only check that it lives) to the process behind `pidfd`, which
/// cannot be a later process that reused its pid.
pub fn pidfd_send_signal(pidfd: std::os::fd::BorrowedFd<'_>, sig: i32) -> Result<(), SysError> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain integer arguments; a null siginfo means "as kill(2) sends it".
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), sig, 0usize, 0u32) };
    crate::check("pidfd_send_signal", ret).map(drop)
}

/// The I/O priority of thread `tid` (`ioprio_get(IOPRIO_WHO_PROCESS, tid)`); 0 when it has none
/// of its own.
pub fn ioprio(tid: Pid) -> Result<i32, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, tid.0) };
    check("ioprio_get", ret).map(|v| v as i32)
}

/// The nice value of thread `tid` (`getpriority(PRIO_PROCESS, tid)`, whose raw result is 20 - nice).
pub fn nice(tid: Pid) -> Result<i32, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, tid.0) };
    check("getpriority", ret).map(|v| 20 - v as i32)
}

/// The scheduling policy of thread `tid`, with `SCHED_RESET_ON_FORK` (`sched_getscheduler`), and
/// its static priority (`sched_getparam`).
pub fn sched(tid: Pid) -> Result<(i32, i32), SysError> {
    // SAFETY: a plain integer argument.
    let policy = unsafe { libc::syscall(libc::SYS_sched_getscheduler, tid.0) };
    let policy = check("sched_getscheduler", policy)? as i32;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable sched_param for the call.
    let ret = unsafe { libc::syscall(libc::SYS_sched_getparam, tid.0, &mut param as *mut libc::sched_param) };
    check("sched_getparam", ret)?;
    Ok((policy, param.sched_priority))
}

/// The CPU affinity mask of thread `tid` (`sched_getaffinity`), at most `max` bytes, as long as
/// the kernel's mask.
pub fn affinity(tid: Pid, max: usize) -> Result<Vec<u8>, SysError> {
    let mut mask = vec![0u8; max];
    // SAFETY: `mask` is `max` writable bytes.
    let ret = unsafe { libc::syscall(libc::SYS_sched_getaffinity, tid.0, max, mask.as_mut_ptr()) };
    let n = check("sched_getaffinity", ret)? as usize;
    mask.truncate(n.min(max));
    Ok(mask)
}

/// `kill(2)`.
pub fn kill(pid: Pid, sig: i32) -> Result<(), SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::kill(pid.0, sig) };
    check("kill", ret as libc::c_long).map(drop)
}

/// Whether orphans below the caller become its children (`prctl(PR_GET_CHILD_SUBREAPER)`,
/// PR_SET_CHILD_SUBREAPER(2const)).
pub fn child_subreaper() -> Result<bool, SysError> {
    let mut on: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int to the live local `on`.
    let ret = unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut on as *mut libc::c_int, 0, 0, 0) };
    check("prctl(PR_GET_CHILD_SUBREAPER)", ret as libc::c_long).map(|_| on != 0)
}

/// Make orphans below the caller become its children, or stop (`prctl(PR_SET_CHILD_SUBREAPER)`).
pub fn set_child_subreaper(on: bool) -> Result<(), SysError> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer and no pointer.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, on as libc::c_ulong, 0, 0, 0) };
    check("prctl(PR_SET_CHILD_SUBREAPER)", ret as libc::c_long).map(drop)
}

/// The securebits of the calling thread (`prctl(PR_GET_SECUREBITS)`).
pub fn own_securebits() -> Result<u32, SysError> {
    // SAFETY: PR_GET_SECUREBITS takes no pointer; the other arguments are ignored.
    let ret = unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) };
    check("prctl(PR_GET_SECUREBITS)", ret as libc::c_long).map(|v| v as u32)
}

/// `get_robust_list(2)` of another task: (head address, length).
pub fn get_robust_list(tid: Pid) -> Result<(u64, u64), SysError> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: `head` and `len` are valid out pointers of the sizes the kernel writes.
    let ret = unsafe { libc::syscall(libc::SYS_get_robust_list, tid.0, &mut head as *mut u64, &mut len as *mut usize) };
    check("get_robust_list", ret)?;
    Ok((head, len as u64))
}
