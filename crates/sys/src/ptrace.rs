//! ptrace(2) requests: seize, interrupt, resume, register sets, signal state, rseq configuration,
//! and waiting for a traced task's stops.
//!
//! Every request must come from the thread that attached to the task (a kernel rule), so callers keep
//! one thread per group of traced tasks.

use crate::{check, Pid, SysError};

/// General purpose registers (`struct user_regs_struct`).
pub type Regs = libc::user_regs_struct;

const NT_PRSTATUS: libc::c_int = 1;
const NT_X86_XSTATE: libc::c_int = 0x202;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
const PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG: libc::c_uint = 0x4210;
const PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG: libc::c_uint = 0x4211;
/// `PTRACE_PEEKSIGINFO` flag: read the process-wide (shared) queue.
pub const PEEKSIGINFO_SHARED: u32 = 1;
/// Size of a `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;
/// Largest XSAVE area we accept (AVX-512 needs about 2.7 KiB; AMX about 11 KiB).
const XSTATE_MAX: usize = 16 * 1024;

/// `PTRACE_O_TRACESYSGOOD`: syscall stops report `SIGTRAP | 0x80`.
pub const OPT_TRACESYSGOOD: u32 = libc::PTRACE_O_TRACESYSGOOD as u32;
/// `PTRACE_O_EXITKILL`: the task is killed if the tracer exits.
pub const OPT_EXITKILL: u32 = libc::PTRACE_O_EXITKILL as u32;
/// `PTRACE_O_TRACECLONE`: a thread or process the task clones is traced too, and starts stopped.
pub const OPT_TRACECLONE: u32 = libc::PTRACE_O_TRACECLONE as u32;
/// `PTRACE_O_TRACEFORK`: a process the task forks is traced too, and starts stopped.
pub const OPT_TRACEFORK: u32 = libc::PTRACE_O_TRACEFORK as u32;
/// `PTRACE_O_SUSPEND_SECCOMP`: the task's seccomp mode and filters are not applied while it is
/// traced with this option (needs CAP_SYS_ADMIN and CONFIG_CHECKPOINT_RESTORE; the tracer must not
/// be under seccomp itself). Tasks it clones while traced inherit the option.
pub const OPT_SUSPEND_SECCOMP: u32 = 1 << 21;
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
/// `SECCOMP_FILTER_FLAG_LOG`, as `PTRACE_SECCOMP_GET_METADATA` reports it.
pub const SECCOMP_FILTER_FLAG_LOG: u64 = 2;
/// Size of a classic BPF instruction (`struct sock_filter`).
pub const BPF_INSN_SIZE: usize = 8;
/// Most instructions a seccomp filter may have (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

fn request(
    call: &'static str,
    req: libc::c_uint,
    pid: Pid,
    addr: usize,
    data: usize,
) -> Result<libc::c_long, SysError> {
    // SAFETY: every caller passes an `addr`/`data` pair that is either a plain integer or points to
    // memory of the size the request writes or reads, alive for the duration of the call.
    let ret = unsafe { libc::ptrace(req, pid.0, addr as *mut libc::c_void, data as *mut libc::c_void) };
    check(call, ret)
}

/// `PTRACE_SEIZE`: attach without stopping the task (ptrace(2)).
pub fn seize(pid: Pid, options: u32) -> Result<(), SysError> {
    request("ptrace(PTRACE_SEIZE)", libc::PTRACE_SEIZE, pid, 0, options as usize).map(drop)
}

/// `PTRACE_ATTACH`: attach and queue a SIGSTOP (ptrace(2)). Unlike a seized one, a tracee attached
/// this way can be resumed by its tracer while its process is in a group stop.
pub fn attach(pid: Pid) -> Result<(), SysError> {
    request("ptrace(PTRACE_ATTACH)", libc::PTRACE_ATTACH, pid, 0, 0).map(drop)
}

/// `PTRACE_INTERRUPT`: stop a seized task; it reports a `PTRACE_EVENT_STOP`.
pub fn interrupt(pid: Pid) -> Result<(), SysError> {
    request("ptrace(PTRACE_INTERRUPT)", libc::PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

/// `PTRACE_SETOPTIONS`.
pub fn set_options(pid: Pid, options: u32) -> Result<(), SysError> {
    request("ptrace(PTRACE_SETOPTIONS)", libc::PTRACE_SETOPTIONS, pid, 0, options as usize).map(drop)
}

/// `PTRACE_CONT`, delivering `sig` (0 for none).
pub fn cont(pid: Pid, sig: i32) -> Result<(), SysError> {
    request("ptrace(PTRACE_CONT)", libc::PTRACE_CONT, pid, 0, sig as usize).map(drop)
}

/// `PTRACE_SYSCALL`: resume until the next syscall entry or exit.
pub fn syscall(pid: Pid) -> Result<(), SysError> {
    request("ptrace(PTRACE_SYSCALL)", libc::PTRACE_SYSCALL, pid, 0, 0).map(drop)
}

/// `PTRACE_DETACH`, delivering `sig` (0 for none).
pub fn detach(pid: Pid, sig: i32) -> Result<(), SysError> {
    request("ptrace(PTRACE_DETACH)", libc::PTRACE_DETACH, pid, 0, sig as usize).map(drop)
}

/// `PTRACE_GETREGSET` with `NT_PRSTATUS`.
pub fn get_regs(pid: Pid) -> Result<Regs, SysError> {
    // SAFETY: `user_regs_struct` is plain integers; all-zero is a valid value.
    let mut regs: Regs = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: (&mut regs as *mut Regs).cast(), iov_len: std::mem::size_of::<Regs>() };
    let iov_ptr = &mut iov as *mut libc::iovec as usize;
    request("ptrace(PTRACE_GETREGSET, NT_PRSTATUS)", libc::PTRACE_GETREGSET, pid, NT_PRSTATUS as usize, iov_ptr)?;
    Ok(regs)
}

/// `PTRACE_SETREGSET` with `NT_PRSTATUS`.
pub fn set_regs(pid: Pid, regs: &Regs) -> Result<(), SysError> {
    let mut iov =
        libc::iovec { iov_base: (regs as *const Regs).cast_mut().cast(), iov_len: std::mem::size_of::<Regs>() };
    let iov_ptr = &mut iov as *mut libc::iovec as usize;
    request("ptrace(PTRACE_SETREGSET, NT_PRSTATUS)", libc::PTRACE_SETREGSET, pid, NT_PRSTATUS as usize, iov_ptr)
        .map(drop)
}

/// `PTRACE_GETREGSET` with `NT_X86_XSTATE`: the task's XSAVE area, as long as the kernel makes it.
pub fn get_xstate(pid: Pid) -> Result<Vec<u8>, SysError> {
    let mut buf = vec![0u8; XSTATE_MAX];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let iov_ptr = &mut iov as *mut libc::iovec as usize;
    request("ptrace(PTRACE_GETREGSET, NT_X86_XSTATE)", libc::PTRACE_GETREGSET, pid, NT_X86_XSTATE as usize, iov_ptr)?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

/// `PTRACE_SETREGSET` with `NT_X86_XSTATE`.
pub fn set_xstate(pid: Pid, xstate: &[u8]) -> Result<(), SysError> {
    let mut iov = libc::iovec { iov_base: xstate.as_ptr().cast_mut().cast(), iov_len: xstate.len() };
    let iov_ptr = &mut iov as *mut libc::iovec as usize;
    request("ptrace(PTRACE_SETREGSET, NT_X86_XSTATE)", libc::PTRACE_SETREGSET, pid, NT_X86_XSTATE as usize, iov_ptr)
        .map(drop)
}

/// `PTRACE_GETSIGMASK`: the blocked signal mask (bit `n-1` for signal `n`).
pub fn get_sigmask(pid: Pid) -> Result<u64, SysError> {
    let mut mask = 0u64;
    request("ptrace(PTRACE_GETSIGMASK)", libc::PTRACE_GETSIGMASK, pid, 8, &mut mask as *mut u64 as usize)?;
    Ok(mask)
}

/// `PTRACE_SETSIGMASK`.
pub fn set_sigmask(pid: Pid, mask: u64) -> Result<(), SysError> {
    request("ptrace(PTRACE_SETSIGMASK)", libc::PTRACE_SETSIGMASK, pid, 8, &mask as *const u64 as usize).map(drop)
}

#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// `PTRACE_PEEKSIGINFO`: every queued signal of the thread's own queue, or of the process-wide one
/// with `PEEKSIGINFO_SHARED`, as raw `siginfo_t` bytes, without dequeuing them.
pub fn peek_siginfo(pid: Pid, flags: u32) -> Result<Vec<[u8; SIGINFO_SIZE]>, SysError> {
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; SIGINFO_SIZE]; 32];
        let args = PeekSiginfoArgs { off: out.len() as u64, flags, nr: buf.len() as i32 };
        let n = request(
            "ptrace(PTRACE_PEEKSIGINFO)",
            libc::PTRACE_PEEKSIGINFO,
            pid,
            &args as *const PeekSiginfoArgs as usize,
            buf.as_mut_ptr() as usize,
        )? as usize;
        out.extend_from_slice(&buf[..n.min(buf.len())]);
        if n < buf.len() {
            return Ok(out);
        }
    }
}

/// The rseq area a task registered (`struct ptrace_rseq_configuration`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// `PTRACE_GET_RSEQ_CONFIGURATION` (Linux 5.13).
pub fn get_rseq_config(pid: Pid) -> Result<RseqConfig, SysError> {
    let mut conf = RseqConfig::default();
    request(
        "ptrace(PTRACE_GET_RSEQ_CONFIGURATION)",
        PTRACE_GET_RSEQ_CONFIGURATION,
        pid,
        std::mem::size_of::<RseqConfig>(),
        &mut conf as *mut RseqConfig as usize,
    )?;
    Ok(conf)
}

/// A task's syscall user dispatch (`struct ptrace_sud_config`, Linux 6.4): `mode` 0 is off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SudConfig {
    pub mode: u64,
    pub selector: u64,
    pub offset: u64,
    pub len: u64,
}

/// `PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG`; off (all zeros) on a kernel without it (EIO).
pub fn get_sud(pid: Pid) -> Result<SudConfig, SysError> {
    let mut conf = SudConfig::default();
    let size = std::mem::size_of::<SudConfig>();
    let got = request(
        "ptrace(PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG)",
        PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG,
        pid,
        size,
        &mut conf as *mut SudConfig as usize,
    );
    match got {
        Err(e) if e.errno() == libc::EIO => Ok(SudConfig::default()),
        other => other.map(|_| conf),
    }
}

/// `PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG`.
pub fn set_sud(pid: Pid, conf: &SudConfig) -> Result<(), SysError> {
    let size = std::mem::size_of::<SudConfig>();
    request(
        "ptrace(PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG)",
        PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG,
        pid,
        size,
        conf as *const SudConfig as usize,
    )
    .map(drop)
}

/// `PTRACE_SECCOMP_GET_FILTER` (ptrace(2)): the classic BPF program of the task's seccomp filter
/// `index` as raw `struct sock_filter` instructions. The kernel counts from the first filter
/// installed (`get_nth_filter`: index 0 is the oldest of the chain). ENOENT past the
/// last filter, EINVAL when the task is not in filter mode; the task must be in a ptrace stop.
pub fn seccomp_filter(pid: Pid, index: u32) -> Result<Vec<u8>, SysError> {
    let call = "ptrace(PTRACE_SECCOMP_GET_FILTER)";
    let count = request(call, PTRACE_SECCOMP_GET_FILTER, pid, index as usize, 0)? as usize;
    if count == 0 || count > BPF_MAXINSNS {
        return Err(SysError::from_errno(call, libc::EOVERFLOW));
    }
    let mut prog = vec![0u8; count * BPF_INSN_SIZE];
    let got = request(call, PTRACE_SECCOMP_GET_FILTER, pid, index as usize, prog.as_mut_ptr() as usize)? as usize;
    if got != count {
        return Err(SysError::from_errno(call, libc::EAGAIN));
    }
    Ok(prog)
}

/// `PTRACE_SECCOMP_GET_METADATA` (Linux 4.16): the flags of seccomp filter `index` (only
/// [`SECCOMP_FILTER_FLAG_LOG`] is reported).
pub fn seccomp_filter_flags(pid: Pid, index: u32) -> Result<u64, SysError> {
    // struct seccomp_metadata { __u64 filter_off; __u64 flags; }
    let mut meta = [index as u64, 0u64];
    request(
        "ptrace(PTRACE_SECCOMP_GET_METADATA)",
        PTRACE_SECCOMP_GET_METADATA,
        pid,
        std::mem::size_of_val(&meta),
        meta.as_mut_ptr() as usize,
    )?;
    Ok(meta[1])
}

/// How a waited-for task changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
    /// A ptrace stop: the signal, and the `PTRACE_EVENT_*` in the high bits (0 for none).
    Stopped {
        sig: i32,
        event: i32,
    },
    /// A syscall-entry or syscall-exit stop (with `PTRACE_O_TRACESYSGOOD`).
    SyscallStop,
}

/// `waitpid(pid, __WALL)`: wait for one specific task's next state change.
pub fn wait(pid: Pid) -> Result<WaitStatus, SysError> {
    wait_flags(pid, libc::__WALL)
}

/// `waitpid(pid, __WALL | WNOHANG)`: `None` if nothing changed.
pub fn try_wait(pid: Pid) -> Result<Option<WaitStatus>, SysError> {
    let mut status = 0;
    // SAFETY: `status` is a valid out pointer for the call.
    let ret = unsafe { libc::waitpid(pid.0, &mut status, libc::__WALL | libc::WNOHANG) };
    match ret {
        0 => Ok(None),
        r if r < 0 => Err(SysError::last("waitpid")),
        _ => Ok(Some(decode(status))),
    }
}

fn wait_flags(pid: Pid, flags: i32) -> Result<WaitStatus, SysError> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer for the call.
        let ret = unsafe { libc::waitpid(pid.0, &mut status, flags) };
        if ret >= 0 {
            return Ok(decode(status));
        }
        let err = SysError::last("waitpid");
        if err.errno() != libc::EINTR {
            return Err(err);
        }
    }
}

fn decode(status: i32) -> WaitStatus {
    if libc::WIFEXITED(status) {
        WaitStatus::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        WaitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        let sig = libc::WSTOPSIG(status);
        if sig == libc::SIGTRAP | 0x80 {
            WaitStatus::SyscallStop
        } else {
            WaitStatus::Stopped { sig, event: status >> 16 }
        }
    }
}
