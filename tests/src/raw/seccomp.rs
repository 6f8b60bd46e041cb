//! Seccomp for the `seccomp` workload: a filter that makes one system call fail with an errno,
//! strict mode, and system calls made as raw numbers (so that no C library wrapper makes others).

use super::cvt_long;
use std::io;

/// `AUDIT_ARCH_X86_64`.
const ARCH_X86_64: u32 = 0xc000_003e;
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_FILTER_FLAG_TSYNC`: every thread of the process gets the filter.
pub const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
/// `SECCOMP_FILTER_FLAG_LOG`.
pub const SECCOMP_FILTER_FLAG_LOG: u32 = 2;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Installs a filter (the caller has no_new_privs or CAP_SYS_ADMIN) under which system call `nr`
/// fails with `errno` and every other is allowed (a foreign architecture kills the process).
/// Returns what `seccomp(2)` returned: 0, or with TSYNC the tid of a thread that could not take it.
pub fn seccomp_errno_filter(nr: i64, errno: u16, flags: u32) -> io::Result<i64> {
    let prog = [
        insn(0x20, 0, 0, 4),                        // ld [arch]
        insn(0x15, 1, 0, ARCH_X86_64),              // jeq x86_64, next, kill
        insn(0x06, 0, 0, SECCOMP_RET_KILL_PROCESS), // ret KILL_PROCESS
        insn(0x20, 0, 0, 0),                        // ld [nr]
        insn(0x15, 0, 1, nr as u32),                // jeq nr, errno, allow
        insn(0x06, 0, 0, SECCOMP_RET_ERRNO | errno as u32),
        insn(0x06, 0, 0, SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `fprog` points to `prog`, both alive for the duration of the call.
    let ret = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags as libc::c_ulong, &fprog) };
    cvt_long(ret)
}

/// Enters strict mode (`prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)`): from now on only `read`,
/// `write`, `exit` and `rt_sigreturn` are allowed; anything else kills the thread's process.
pub fn seccomp_strict() -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt_long(unsafe { libc::syscall(libc::SYS_prctl, libc::PR_SET_SECCOMP, 1, 0, 0, 0) }).map(drop)
}

/// System call `nr` without arguments, as a raw number: its result, or minus the errno.
pub fn raw_syscall0(nr: i64) -> i64 {
    // SAFETY: the callers pass calls that take no arguments or one pointer that may be NULL
    // (`times`); every argument register is 0, so nothing of ours is touched.
    let ret = unsafe { libc::syscall(nr, 0usize, 0usize, 0usize) };
    if ret == -1 {
        -(io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64)
    } else {
        ret
    }
}

/// `read(2)` as a raw system call (allowed in strict mode); minus the errno on failure.
pub fn raw_read(fd: i32, buf: &mut [u8]) -> i64 {
    // SAFETY: `buf` is live and writable for its length.
    unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) }
}

/// `write(2)` as a raw system call (allowed in strict mode).
pub fn raw_write(fd: i32, bytes: &[u8]) -> i64 {
    // SAFETY: `bytes` is live for its length.
    unsafe { libc::syscall(libc::SYS_write, fd, bytes.as_ptr(), bytes.len()) }
}

/// Ends this thread with `exit(2)` (not `exit_group`, which strict mode forbids); in a
/// single-threaded process, the process ends with `code`.
pub fn raw_exit(code: i32) -> ! {
    // SAFETY: exit does not return; nothing of ours runs after it.
    unsafe { libc::syscall(libc::SYS_exit, code) };
    unreachable!("exit returned")
}
