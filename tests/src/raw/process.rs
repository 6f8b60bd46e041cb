//! Process attributes (ids, limits, prctl flags, credentials, capabilities, segment bases, rseq),
//! file descriptor helpers, and the process-control calls the harness needs (waitpid, subreaper,
//! setsid before exec, ptys, poll).

use super::{cvt, cvt_long};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::os::unix::thread::JoinHandleExt;
use std::process::Command;
use std::sync::atomic::AtomicU32;
use std::thread::JoinHandle;

/// `getpid(2)` as a raw system call (no C library cache).
pub fn raw_getpid() -> i32 {
    // SAFETY: getpid takes no arguments.
    unsafe { libc::syscall(libc::SYS_getpid) as i32 }
}

/// `gettid(2)` as a raw system call.
pub fn raw_gettid() -> i32 {
    // SAFETY: gettid takes no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Soft and hard limit of `resource` (`getrlimit(2)`).
pub fn getrlimit(resource: u32) -> io::Result<(u64, u64)> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a live local.
    cvt(unsafe { libc::getrlimit(resource as _, &mut rl) })?;
    Ok((rl.rlim_cur, rl.rlim_max))
}

/// Sets the soft and hard limit of `resource` (`setrlimit(2)`).
pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let rl = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `rl` is a live local.
    cvt(unsafe { libc::setrlimit(resource as _, &rl) }).map(drop)
}

/// Sets the file mode creation mask; returns the old one (`umask(2)`).
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask takes a plain integer and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// prctl options whose arguments are all plain integers (no pointers), so any value is sound.
const INTEGER_PRCTLS: &[libc::c_int] = &[
    libc::PR_SET_PDEATHSIG,
    libc::PR_GET_DUMPABLE,
    libc::PR_SET_DUMPABLE,
    libc::PR_GET_KEEPCAPS,
    libc::PR_SET_KEEPCAPS,
    libc::PR_GET_TIMERSLACK,
    libc::PR_SET_TIMERSLACK,
    libc::PR_GET_NO_NEW_PRIVS,
    libc::PR_SET_NO_NEW_PRIVS,
    libc::PR_CAP_AMBIENT,
    libc::PR_CAPBSET_READ,
    libc::PR_CAPBSET_DROP,
    libc::PR_MCE_KILL,
    libc::PR_MCE_KILL_GET,
    libc::PR_SET_TSC,
    PR_SET_MDWE,
    PR_GET_MDWE,
    libc::PR_SET_CHILD_SUBREAPER,
    // PR_SET_MEMORY_MERGE, PR_GET_MEMORY_MERGE (Linux 6.4).
    67,
    68,
];

/// `prctl` options of Linux 6.3 (memory-deny-write-execute) the libc crate may lack.
pub const PR_SET_MDWE: libc::c_int = 65;
pub const PR_GET_MDWE: libc::c_int = 66;

/// `PR_GET_TSC`: 1 (`PR_TSC_ENABLE`) or 2 (`PR_TSC_SIGSEGV`).
pub fn get_tsc() -> io::Result<i32> {
    let mut mode: libc::c_int = 0;
    // SAFETY: PR_GET_TSC writes one int to the pointer, which is valid.
    cvt(unsafe { libc::prctl(libc::PR_GET_TSC, &mut mode as *mut libc::c_int, 0u64, 0u64, 0u64) })?;
    Ok(mode)
}

/// The I/O priority of thread `tid` (0: the caller), `ioprio_get(IOPRIO_WHO_PROCESS, tid)`.
pub fn ioprio_get(tid: i32) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_get, 1, tid) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as i32)
}

/// Set the calling thread's I/O priority (`ioprio_set(IOPRIO_WHO_PROCESS, 0, prio)`).
pub fn ioprio_set(prio: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `prctl(2)` for the options of `INTEGER_PRCTLS`.
pub fn prctl(option: libc::c_int, arg2: u64, arg3: u64) -> io::Result<i32> {
    assert!(INTEGER_PRCTLS.contains(&option), "prctl {option} takes pointers");
    // SAFETY: the option is one whose arguments are integers (checked above).
    cvt(unsafe { libc::prctl(option, arg2, arg3, 0u64, 0u64) })
}

/// The parent-death signal (`PR_GET_PDEATHSIG`).
pub fn get_pdeathsig() -> io::Result<i32> {
    let mut sig: libc::c_int = 0;
    // SAFETY: PR_GET_PDEATHSIG writes one int to the live local `sig`.
    cvt(unsafe { libc::prctl(libc::PR_GET_PDEATHSIG, &mut sig as *mut libc::c_int, 0, 0, 0) })?;
    Ok(sig)
}

/// Whether this process is a child subreaper (`PR_GET_CHILD_SUBREAPER`).
pub fn is_child_subreaper() -> io::Result<bool> {
    let mut on: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int to the live local `on`.
    cvt(unsafe { libc::prctl(libc::PR_GET_CHILD_SUBREAPER, &mut on as *mut libc::c_int, 0, 0, 0) })?;
    Ok(on != 0)
}

/// Sets the thread name (`PR_SET_NAME`, at most 15 bytes are kept).
pub fn set_comm(name: &str) -> io::Result<()> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    cvt(unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr(), 0, 0, 0) }).map(drop)
}

/// The thread name (`PR_GET_NAME`).
pub fn get_comm() -> io::Result<String> {
    let mut buf = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes into the 17-byte live buffer.
    cvt(unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr(), 0, 0, 0) })?;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(16);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Sets the execution domain flags; returns the previous persona (`personality(2)`).
pub fn set_personality(persona: u64) -> io::Result<u64> {
    // SAFETY: personality takes a plain integer.
    cvt(unsafe { libc::personality(persona as libc::c_ulong) }).map(|p| p as u64)
}

/// The current persona.
pub fn get_personality() -> io::Result<u64> {
    set_personality(0xffff_ffff)
}

/// Replaces the supplementary groups (`setgroups(2)`).
pub fn setgroups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe the live slice.
    cvt(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }).map(drop)
}

/// The supplementary groups (`getgroups(2)`).
pub fn getgroups() -> io::Result<Vec<u32>> {
    let mut buf = vec![0u32; 256];
    // SAFETY: the buffer holds 256 entries, the size passed.
    let n = cvt(unsafe { libc::getgroups(256, buf.as_mut_ptr()) })?;
    buf.truncate(n as usize);
    Ok(buf)
}

/// `setresuid(2)`.
pub fn setresuid(r: u32, e: u32, s: u32) -> io::Result<()> {
    // SAFETY: plain integers; the C library applies it to every thread.
    cvt(unsafe { libc::setresuid(r, e, s) }).map(drop)
}

/// `setresgid(2)`.
pub fn setresgid(r: u32, e: u32, s: u32) -> io::Result<()> {
    // SAFETY: plain integers.
    cvt(unsafe { libc::setresgid(r, e, s) }).map(drop)
}

/// Real, effective and saved user ids (`getresuid(2)`).
pub fn getresuid() -> io::Result<(u32, u32, u32)> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three live locals.
    cvt(unsafe { libc::getresuid(&mut r, &mut e, &mut s) })?;
    Ok((r, e, s))
}

/// Real, effective and saved group ids (`getresgid(2)`).
pub fn getresgid() -> io::Result<(u32, u32, u32)> {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three live locals.
    cvt(unsafe { libc::getresgid(&mut r, &mut e, &mut s) })?;
    Ok((r, e, s))
}

/// The filesystem uid and gid (queried with `setfsuid(-1)` / `setfsgid(-1)`, which change nothing).
pub fn fs_ids() -> (u32, u32) {
    // SAFETY: an invalid id only queries the current value.
    unsafe { (libc::setfsuid(u32::MAX) as u32, libc::setfsgid(u32::MAX) as u32) }
}

/// The three capability sets as 64-bit masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// This thread's capability sets (`capget(2)`).
pub fn capget() -> io::Result<Caps> {
    let mut hdr = CapHeader { version: CAP_V3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 uses two CapData entries; both live locals.
    cvt_long(unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) })?;
    let join = |f: fn(&CapData) -> u32| f(&data[0]) as u64 | (f(&data[1]) as u64) << 32;
    Ok(Caps {
        effective: join(|d| d.effective),
        permitted: join(|d| d.permitted),
        inheritable: join(|d| d.inheritable),
    })
}

/// Sets this thread's capability sets (`capset(2)`).
pub fn capset(caps: Caps) -> io::Result<()> {
    let mut hdr = CapHeader { version: CAP_V3, pid: 0 };
    let split = |v: u64, i: usize| (v >> (32 * i)) as u32;
    let data: [CapData; 2] = std::array::from_fn(|i| CapData {
        effective: split(caps.effective, i),
        permitted: split(caps.permitted, i),
        inheritable: split(caps.inheritable, i),
    });
    // SAFETY: version 3 reads two CapData entries; both live locals.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) }).map(drop)
}

const ARCH_SET_GS: i32 = 0x1001;
const ARCH_GET_FS: i32 = 0x1003;
const ARCH_GET_GS: i32 = 0x1004;

fn arch_get(code: i32) -> io::Result<u64> {
    let mut v: u64 = 0;
    // SAFETY: the GET codes write one u64 to the live local.
    cvt_long(unsafe { libc::syscall(libc::SYS_arch_prctl, code, &mut v) })?;
    Ok(v)
}

/// The fs segment base (the thread pointer), from `arch_prctl(ARCH_GET_FS)`.
pub fn fs_base() -> io::Result<u64> {
    arch_get(ARCH_GET_FS)
}

/// The gs segment base (`arch_prctl(ARCH_GET_GS)`).
pub fn gs_base() -> io::Result<u64> {
    arch_get(ARCH_GET_GS)
}

/// Sets the gs segment base (`arch_prctl(ARCH_SET_GS)`); neither Rust nor glibc use gs on x86_64.
pub fn set_gs_base(base: u64) -> io::Result<()> {
    // SAFETY: nothing in this process addresses memory through gs.
    cvt_long(unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, base) }).map(drop)
}

/// The thread pointer read from `fs:0` (glibc stores the TCB's own address there).
pub fn thread_pointer() -> u64 {
    let tp: u64;
    // SAFETY: on x86_64 glibc the TCB's first word holds its own address; the read has no side
    // effects.
    unsafe { std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags)) };
    tp
}

extern "C" {
    static __rseq_offset: isize;
    static __rseq_size: u32;
}

/// The signature glibc registers its rseq area with on x86_64.
pub const RSEQ_SIG: u32 = 0x5305_3053;

/// Address and registered size of glibc's rseq area of this thread, or `None` when glibc did not
/// register one (`__rseq_size` is 0).
pub fn glibc_rseq_area() -> Option<(u64, u32)> {
    // SAFETY: both are constant after startup, exported by glibc >= 2.35.
    let (off, size) = unsafe { (__rseq_offset, __rseq_size) };
    (size != 0).then(|| ((thread_pointer() as i64 + off as i64) as u64, size.max(32)))
}

/// Calls `rseq(2)` with exactly the arguments glibc registered its area with. Returns EBUSY when
/// that registration is in place; if none is, this registers glibc's own area (which is what it
/// exists for) and returns Ok.
pub fn rseq_probe_glibc() -> io::Result<()> {
    let (addr, len) = glibc_rseq_area().ok_or_else(|| io::Error::from_raw_os_error(libc::ENOSYS))?;
    // SAFETY: the area is glibc's per-thread rseq area, alive as long as the thread.
    cvt_long(unsafe { libc::syscall(libc::SYS_rseq, addr, len, 0, RSEQ_SIG) }).map(drop)
}

/// The `cpu_id` field of glibc's rseq area (u32 at offset 4), as the kernel last wrote it.
pub fn rseq_cpu_id() -> Option<u32> {
    let (addr, _) = glibc_rseq_area()?;
    // SAFETY: the area is glibc's live rseq area; the field is 4-aligned; the kernel writes it
    // concurrently only between our instructions, hence the volatile read.
    Some(unsafe { std::ptr::read_volatile((addr + 4) as *const u32) })
}

/// The CPUs this thread may run on (`sched_getaffinity(2)`).
pub fn get_affinity() -> io::Result<Vec<usize>> {
    // SAFETY: all-zero cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size matches the live local.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) })?;
    // SAFETY: CPU_ISSET reads the live set.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect())
}

/// Restricts this thread to `cpus` (`sched_setaffinity(2)`).
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: all-zero cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET writes into the live set; c < CPU_SETSIZE is the caller's business,
        // checked by the macro's bounds in libc.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: the size matches the live local.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) }).map(drop)
}

/// Compares two fds of two processes with `kcmp(KCMP_FILE)`: 0 when they are the same file.
pub fn kcmp_files(pid1: i32, pid2: i32, fd1: RawFd, fd2: RawFd) -> io::Result<i64> {
    const KCMP_FILE: i32 = 0;
    // SAFETY: kcmp takes plain integers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1 as u64, fd2 as u64) };
    cvt_long(r)
}

/// A new eventfd with counter `init` (`eventfd(2)`).
pub fn eventfd(init: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    let fd = cvt(unsafe { libc::eventfd(init, 0) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Duplicates `fd` onto the number `target`, which must be free (never closes anything).
pub fn dup_to(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD on any number is harmless.
    if unsafe { libc::fcntl(target, libc::F_GETFD) } != -1 {
        return Err(io::Error::from_raw_os_error(libc::EEXIST));
    }
    // SAFETY: `target` is not open (checked), so dup2 closes nothing someone else owns.
    let new = cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) })?;
    // SAFETY: the new fd is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `fcntl(F_GETFL)`: file status flags.
pub fn get_fl(fd: impl AsFd) -> io::Result<i32> {
    // SAFETY: `fd` is a valid borrowed fd.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFL) })
}

/// `fcntl(F_SETFL)`: status flags (O_NONBLOCK, O_APPEND, ...).
pub fn set_fl(fd: impl AsFd, flags: i32) -> io::Result<()> {
    // SAFETY: `fd` is a valid borrowed fd; F_SETFL takes an integer.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_SETFL, flags) }).map(drop)
}

/// `fcntl(F_GETFD)`: descriptor flags (FD_CLOEXEC).
pub fn get_fd_flags(fd: impl AsFd) -> io::Result<i32> {
    // SAFETY: `fd` is a valid borrowed fd.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFD) })
}

/// How a waited-for process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// `waitpid(pid, WNOHANG)`: `Some` once `pid` ended and was reaped.
pub fn try_waitpid(pid: i32) -> io::Result<Option<Exit>> {
    let mut status = 0;
    // SAFETY: `status` is a live local; WNOHANG never blocks.
    let r = cvt(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) })?;
    if r == 0 {
        return Ok(None);
    }
    if libc::WIFEXITED(status) {
        Ok(Some(Exit::Code(libc::WEXITSTATUS(status))))
    } else {
        Ok(Some(Exit::Signal(libc::WTERMSIG(status))))
    }
}

/// `waitpid(pid, 0)`: wait until `pid` ends and reap it.
pub fn waitpid(pid: i32) -> io::Result<Exit> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live local.
        match cvt(unsafe { libc::waitpid(pid, &mut status, libc::__WALL) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) if libc::WIFEXITED(status) => return Ok(Exit::Code(libc::WEXITSTATUS(status))),
            Ok(_) if libc::WIFSIGNALED(status) => return Ok(Exit::Signal(libc::WTERMSIG(status))),
            Ok(_) => continue,
        }
    }
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`).
pub fn set_child_subreaper() -> io::Result<()> {
    prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0).map(drop)
}

/// Makes the child of `cmd` start a new session (`setsid()` between fork and exec).
pub fn setsid_on_spawn(cmd: &mut Command) {
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| cvt(libc::setsid()).map(drop));
    }
}

/// Makes the child of `cmd` inherit only its stdio: every fd from 3 up is marked close-on-exec
/// between fork and exec (`close_range(2)` with CLOSE_RANGE_CLOEXEC), so descriptors the test
/// process inherited (such as cargo's jobserver pipe) do not leak into it.
pub fn stdio_only_on_spawn(cmd: &mut Command) {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range is a raw system call, async-signal-safe, touching no memory; marking
    // fds close-on-exec keeps std's own exec-error pipe working.
    unsafe {
        cmd.pre_exec(|| cvt_long(libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC)).map(drop));
    }
}

/// A new pseudo-terminal pair `(master, slave)` (`openpty(3)`).
pub fn openpty() -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut m, mut s) = (-1, -1);
    let null = std::ptr::null_mut();
    // SAFETY: the out pointers are live locals; name, termios and winsize are not requested.
    cvt(unsafe { libc::openpty(&mut m, &mut s, null, null as *const _, null as *const _) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) })
}

/// Waits up to `timeout_ms` for `fd` to become readable (or hung up); true if it did.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one live pollfd.
    let n = cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(n > 0)
}

/// Changes the root directory (`chroot(2)`).
pub fn chroot(dir: &std::path::Path) -> io::Result<()> {
    let c =
        CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a live NUL-terminated string.
    cvt(unsafe { libc::chroot(c.as_ptr()) }).map(drop)
}

/// This process's nice value (`getpriority(2)`); errno is cleared first since -1 is a valid value.
pub fn get_nice() -> io::Result<i32> {
    // SAFETY: __errno_location points to this thread's errno.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain integer arguments.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let err = io::Error::last_os_error();
    if n == -1 && err.raw_os_error() != Some(0) {
        return Err(err);
    }
    Ok(n)
}

/// Sets this process's nice value (`setpriority(2)`).
pub fn set_nice(nice: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) }).map(drop)
}

/// Waits with `futex(2)` FUTEX_WAIT (no timeout) while `word` holds `expected`. Returns Ok when
/// woken, EAGAIN when the word already differed, EINTR when a handler ran.
pub fn futex_wait(word: &AtomicU32, expected: u32) -> io::Result<()> {
    let null = std::ptr::null::<libc::timespec>();
    // SAFETY: `word` is a live, 4-aligned u32 for the call; no timeout is passed.
    let ret = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, null) };
    cvt_long(ret).map(drop)
}

/// Wakes up to `count` waiters of `word` (`futex(2)` FUTEX_WAKE); returns how many woke.
pub fn futex_wake(word: &AtomicU32, count: i32) -> io::Result<i32> {
    // SAFETY: `word` is a live u32; FUTEX_WAKE only uses its address as a key.
    cvt_long(unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) }).map(|n| n as i32)
}

/// This thread's robust futex list head and its length (`get_robust_list(2)` for tid 0).
pub fn get_robust_list() -> io::Result<(u64, usize)> {
    let (mut head, mut len): (usize, usize) = (0, 0);
    // SAFETY: both out pointers are live locals of pointer size.
    cvt_long(unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &mut head, &mut len) })?;
    Ok((head as u64, len))
}

const PR_GET_TID_ADDRESS: libc::c_int = 40;

/// This thread's clear-child-tid address (`prctl(PR_GET_TID_ADDRESS)`, needs
/// CONFIG_CHECKPOINT_RESTORE; EINVAL otherwise).
pub fn get_tid_address() -> io::Result<u64> {
    let mut addr: usize = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer-sized value into the live local.
    cvt(unsafe { libc::prctl(PR_GET_TID_ADDRESS, &mut addr as *mut usize, 0, 0, 0) })?;
    Ok(addr as u64)
}

/// Joins `handle` with `pthread_timedjoin_np(3)`, waiting at most `timeout`: the join returns
/// once the kernel cleared the thread's tid word at exit (CLONE_CHILD_CLEARTID). On ETIMEDOUT the
/// thread is left unjoined (detached, so it is not joined twice).
pub fn timed_join(handle: JoinHandle<()>, timeout: std::time::Duration) -> io::Result<()> {
    let now = super::clock_gettime(libc::CLOCK_REALTIME)? + timeout;
    let ts = libc::timespec { tv_sec: now.as_secs() as libc::time_t, tv_nsec: now.subsec_nanos() as libc::c_long };
    let thread = handle.into_pthread_t() as libc::pthread_t;
    // SAFETY: `thread` was handed over by `into_pthread_t`, so this is its only join; `ts` is a
    // live local and the thread's return value is not requested.
    let err = unsafe { libc::pthread_timedjoin_np(thread, std::ptr::null_mut(), &ts) };
    if err == 0 {
        return Ok(());
    }
    // SAFETY: the thread was not joined, so detaching it once is allowed.
    unsafe { libc::pthread_detach(thread) };
    Err(io::Error::from_raw_os_error(err))
}

/// A process-private robust pthread mutex (`pthread_mutexattr_setrobust(3)`): when its owner
/// exits holding it, the kernel marks it (walking the owner's robust list) and the next lock
/// returns EOWNERDEAD. Never moved after initialisation (boxed).
pub struct RobustMutex(Box<std::cell::UnsafeCell<libc::pthread_mutex_t>>);

// SAFETY: a pthread mutex is made to be shared between threads; all access goes through
// pthread calls.
unsafe impl Sync for RobustMutex {}
// SAFETY: as above; the box keeps its address fixed.
unsafe impl Send for RobustMutex {}

impl RobustMutex {
    /// A new, unlocked robust mutex.
    pub fn new() -> io::Result<RobustMutex> {
        // SAFETY: the all-zero value is a valid output buffer for pthread_mutexattr_init.
        let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
        let m = RobustMutex(Box::new(std::cell::UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER)));
        // SAFETY: `attr` is a live local, initialised before use and destroyed after; the mutex
        // is boxed, so it is initialised at its final address.
        let err = unsafe {
            let mut err = libc::pthread_mutexattr_init(&mut attr);
            if err == 0 {
                err = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            }
            if err == 0 {
                err = libc::pthread_mutex_init(m.0.get(), &attr);
            }
            libc::pthread_mutexattr_destroy(&mut attr);
            err
        };
        match err {
            0 => Ok(m),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Locks, waiting at most `timeout` (`pthread_mutex_timedlock(3)`). `Ok(true)` means the
    /// previous owner died holding it (EOWNERDEAD: the caller now owns it).
    pub fn lock_within(&self, timeout: std::time::Duration) -> io::Result<bool> {
        let now = super::clock_gettime(libc::CLOCK_REALTIME)? + timeout;
        let ts = libc::timespec { tv_sec: now.as_secs() as libc::time_t, tv_nsec: now.subsec_nanos() as libc::c_long };
        // SAFETY: the mutex was initialised at this address and lives as long as `self`.
        match unsafe { libc::pthread_mutex_timedlock(self.0.get(), &ts) } {
            0 => Ok(false),
            libc::EOWNERDEAD => Ok(true),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Marks a mutex recovered after EOWNERDEAD consistent (`pthread_mutex_consistent(3)`).
    pub fn make_consistent(&self) -> io::Result<()> {
        // SAFETY: as in `lock_within`; the caller holds the mutex.
        match unsafe { libc::pthread_mutex_consistent(self.0.get()) } {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Unlocks (`pthread_mutex_unlock(3)`; EPERM if this thread does not own it).
    pub fn unlock(&self) -> io::Result<()> {
        // SAFETY: as in `lock_within`; glibc checks ownership for robust mutexes.
        match unsafe { libc::pthread_mutex_unlock(self.0.get()) } {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// This thread's scheduling policy (`sched_getscheduler(2)` for the calling thread).
pub fn get_sched_policy() -> io::Result<i32> {
    // SAFETY: plain integer argument; 0 names the calling thread.
    cvt(unsafe { libc::sched_getscheduler(0) })
}

/// Sets this thread's scheduling policy with priority 0 (SCHED_OTHER, SCHED_BATCH or
/// SCHED_IDLE; the nice value is kept) with `sched_setscheduler(2)`.
pub fn set_sched_policy(policy: i32) -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a live local; 0 names the calling thread.
    cvt(unsafe { libc::sched_setscheduler(0, policy, &param) }).map(drop)
}

/// Where [`fork`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forked {
    /// In the new child process.
    Child,
    /// In the parent; the child's pid.
    Parent(i32),
}

/// `fork(2)`, refused with an error unless this process has exactly one thread, so that no lock
/// another thread holds is copied into the child, held forever.
pub fn fork() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::other(format!("fork needs a single-threaded process, this one has {threads}")));
    }
    // SAFETY: the process has one thread (checked above), so the child's copy of every lock and
    // allocator state is consistent; the child continues in ordinary Rust code.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// The parent's pid (`getppid(2)` as a raw system call).
pub fn raw_getppid() -> i32 {
    // SAFETY: getppid takes no arguments.
    unsafe { libc::syscall(libc::SYS_getppid) as i32 }
}

/// The process group of `pid` (0: this process) (`getpgid(2)`).
pub fn getpgid(pid: i32) -> io::Result<i32> {
    // SAFETY: plain integer argument.
    cvt(unsafe { libc::getpgid(pid) })
}

/// The session of `pid` (0: this process) (`getsid(2)`).
pub fn getsid(pid: i32) -> io::Result<i32> {
    // SAFETY: plain integer argument.
    cvt(unsafe { libc::getsid(pid) })
}

/// Starts a new session led by this process (`setsid(2)`); returns its id.
pub fn setsid() -> io::Result<i32> {
    // SAFETY: setsid takes no arguments.
    cvt(unsafe { libc::setsid() })
}

/// Moves `pid` (0: this process) into the process group `pgid` (0: a new group led by it)
/// (`setpgid(2)`).
pub fn setpgid(pid: i32, pgid: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::setpgid(pid, pgid) }).map(drop)
}

/// Waits (blocking) until the child `pid` stops (`waitpid(2)` with WUNTRACED); returns the
/// stop signal, or an error if it ended instead.
pub fn wait_stopped(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: `status` is a live local.
    cvt(unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) })?;
    if libc::WIFSTOPPED(status) {
        Ok(libc::WSTOPSIG(status))
    } else {
        Err(io::Error::other(format!("pid {pid} ended (wait status {status:#x}) instead of stopping")))
    }
}

/// The signal that stopped the child `pid`, if a stop of it is waiting to be reported, without
/// taking the report: `waitid(P_PID, pid, WSTOPPED | WNOHANG | WNOWAIT)`.
pub fn peek_stop(pid: i32) -> io::Result<Option<i32>> {
    // SAFETY: all-zero is a valid siginfo_t; waitid leaves si_pid 0 when no child changed state.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a live local.
    cvt(unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) })?;
    // SAFETY: waitid filled the SIGCHLD fields of `info` (or left them zero).
    let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
    Ok((child != 0 && info.si_code == libc::CLD_STOPPED).then_some(status))
}

/// How the child `pid` ended, if it did, without reaping it: `waitid(P_PID, pid, WEXITED |
/// WNOHANG | WNOWAIT)`; `None` while it still runs.
pub fn peek_exit(pid: i32) -> io::Result<Option<Exit>> {
    // SAFETY: all-zero is a valid siginfo_t; waitid leaves si_pid 0 when no child changed state.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: `info` is a live local.
    cvt(unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) })?;
    // SAFETY: waitid filled the SIGCHLD fields of `info` (or left them zero).
    let (child, status) = unsafe { (info.si_pid(), info.si_status()) };
    Ok((child != 0).then_some(if info.si_code == libc::CLD_EXITED { Exit::Code(status) } else { Exit::Signal(status) }))
}

/// `F_SETSIG`, `F_GETSIG`, `F_SETOWN_EX`, `F_GETOWN_EX` of `fcntl(2)` (x86_64 values).
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;

/// `fcntl(F_SETOWN_EX)`: `kind` is F_OWNER_TID (0), F_OWNER_PID (1) or F_OWNER_PGRP (2).
pub fn set_owner(fd: impl AsFd, kind: i32, pid: i32) -> io::Result<()> {
    let o = [kind, pid];
    // SAFETY: `o` has the layout of struct f_owner_ex and outlives the call.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_SETOWN_EX, o.as_ptr()) }).map(drop)
}

/// `fcntl(F_GETOWN_EX)`: (kind, pid).
pub fn get_owner(fd: impl AsFd) -> io::Result<(i32, i32)> {
    let mut o = [0i32; 2];
    // SAFETY: `o` has the layout of struct f_owner_ex for the kernel to fill.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_GETOWN_EX, o.as_mut_ptr()) })?;
    Ok((o[0], o[1]))
}

/// `fcntl(F_SETSIG)`.
pub fn set_io_signal(fd: impl AsFd, sig: i32) -> io::Result<()> {
    // SAFETY: plain integers on a valid borrowed fd.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_SETSIG, sig) }).map(drop)
}

/// `fcntl(F_GETSIG)`.
pub fn get_io_signal(fd: impl AsFd) -> io::Result<i32> {
    // SAFETY: plain integers on a valid borrowed fd.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), F_GETSIG) })
}

/// Makes the child of `cmd` get a copy of `fd` as fd `target` (not close-on-exec), after the
/// fds [`stdio_only_on_spawn`] marks; `fd` must stay open until the spawn.
pub fn pass_fd_on_spawn(cmd: &mut Command, fd: BorrowedFd<'_>, target: RawFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: dup2 and fcntl are raw system calls, async-signal-safe, touching no memory.
    unsafe {
        cmd.pre_exec(move || {
            if raw == target {
                return cvt(libc::fcntl(raw, libc::F_SETFD, 0)).map(drop);
            }
            cvt(libc::dup2(raw, target)).map(drop)
        });
    }
}

/// `unshare(2)`.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

/// `setns(2)` into the namespace open at `fd`.
pub fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor; setns touches no memory of ours.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

/// Makes the child of `cmd` block SIGTRAP and be traced by its parent (`PTRACE_TRACEME`) between
/// fork and exec: its exec then queues a SIGTRAP (a tracee not seized gets one), which stays pending.
pub fn traced_with_sigtrap_blocked_on_spawn(cmd: &mut Command) {
    // SAFETY: sigprocmask and ptrace are async-signal-safe system calls; the set is a local.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTRAP);
            cvt(libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))?;
            cvt_long(libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0)).map(drop)
        });
    }
}

/// Waits for our traced child `pid` to stop (a signal-delivery stop) and detaches from it, the
/// signal that stopped it suppressed (`PTRACE_DETACH` with signal 0); the stop signal.
pub fn wait_stopped_and_detach(pid: i32) -> io::Result<i32> {
    let mut status = 0;
    // SAFETY: `status` is a live local.
    cvt(unsafe { libc::waitpid(pid, &mut status, libc::__WALL) })?;
    if !libc::WIFSTOPPED(status) {
        return Err(io::Error::other(format!("pid {pid} did not stop: wait status {status:#x}")));
    }
    // SAFETY: detaching a tracee of ours in a ptrace stop; no memory is passed.
    cvt_long(unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0) })?;
    Ok(libc::WSTOPSIG(status))
}
