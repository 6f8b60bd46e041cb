//! Event fds, signal fds, timer fds, pidfds and POSIX message queues, made and inspected in the
//! calling process.

use crate::{check, Pid, SysError};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `TFD_IOC_SET_TICKS` (`linux/timerfd.h`): `_IOW('T', 0, __u64)`.
const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
/// `MQUEUE_MAGIC` (`linux/magic.h`): `statfs.f_type` of the mqueue filesystem.
pub const MQUEUE_MAGIC: i64 = 0x1980_0202;
/// `PIDFD_THREAD` (`linux/pidfd.h`): the pidfd names a thread (it is `O_EXCL`).
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// A time as `struct timespec` holds it: (seconds, nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

impl Timespec {
    fn to_c(self) -> libc::timespec {
        libc::timespec { tv_sec: self.sec, tv_nsec: self.nsec }
    }

    fn from_c(t: libc::timespec) -> Timespec {
        Timespec { sec: t.tv_sec, nsec: t.tv_nsec }
    }

    pub fn is_zero(self) -> bool {
        self.sec == 0 && self.nsec == 0
    }

    /// `self + other`, normalised.
    pub fn plus(self, other: Timespec) -> Timespec {
        let mut t = Timespec { sec: self.sec + other.sec, nsec: self.nsec + other.nsec };
        if t.nsec >= 1_000_000_000 {
            t.sec += 1;
            t.nsec -= 1_000_000_000;
        }
        t
    }
}

fn owned(call: &'static str, ret: libc::c_long) -> Result<OwnedFd, SysError> {
    let fd = check(call, ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `eventfd2(2)` with a counter of 0 and `flags` (`EFD_*`, close-on-exec added).
pub fn eventfd(flags: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::eventfd(0, flags | libc::EFD_CLOEXEC) };
    owned("eventfd2", ret as libc::c_long)
}

/// `write(2)` of one 8-byte value to an eventfd (adds it to the counter), see `eventfd(2)`.
pub fn eventfd_add(fd: BorrowedFd<'_>, value: u64) -> Result<(), SysError> {
    let bytes = value.to_ne_bytes();
    // SAFETY: `bytes` is a live 8-byte buffer; the fd is borrowed and open.
    let ret = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), 8) };
    check("write(eventfd)", ret as libc::c_long).map(drop)
}

/// `signalfd4(2)`: a new signal fd for the signals of `mask` (bit `n-1` for signal `n`).
pub fn signalfd(mask: u64, flags: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: `mask` is a live 8-byte kernel sigset; the size passed is 8.
    let ret = unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, flags | libc::SFD_CLOEXEC) };
    owned("signalfd4", ret)
}

/// `timerfd_create(2)` on `clockid` (close-on-exec added).
pub fn timerfd_create(clockid: i32, flags: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::timerfd_create(clockid, flags | libc::TFD_CLOEXEC) };
    owned("timerfd_create", ret as libc::c_long)
}

/// `timerfd_gettime(2)`: (time to the next expiry, interval).
pub fn timerfd_gettime(fd: BorrowedFd<'_>) -> Result<(Timespec, Timespec), SysError> {
    // SAFETY: an all-zero itimerspec is a valid value for the kernel to overwrite.
    let mut its: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: `its` is a live itimerspec; the fd is borrowed and open.
    let ret = unsafe { libc::timerfd_gettime(fd.as_raw_fd(), &mut its) };
    check("timerfd_gettime", ret as libc::c_long)?;
    Ok((Timespec::from_c(its.it_value), Timespec::from_c(its.it_interval)))
}

/// `timerfd_settime(2)`.
pub fn timerfd_settime(fd: BorrowedFd<'_>, flags: i32, value: Timespec, interval: Timespec) -> Result<(), SysError> {
    let its = libc::itimerspec { it_interval: interval.to_c(), it_value: value.to_c() };
    // SAFETY: `its` is a live itimerspec; the old value is not asked for; the fd is borrowed and open.
    let ret = unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &its, std::ptr::null_mut()) };
    check("timerfd_settime", ret as libc::c_long).map(drop)
}

/// `ioctl(TFD_IOC_SET_TICKS)` (`timerfd_create(2)`, needs CONFIG_CHECKPOINT_RESTORE): set the count
/// of expirations not yet read.
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<(), SysError> {
    // SAFETY: the ioctl reads one u64 from the live `ticks`; the fd is borrowed and open.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) };
    check("ioctl(TFD_IOC_SET_TICKS)", ret as libc::c_long).map(drop)
}

/// `clock_gettime(2)`.
pub fn clock_gettime(clockid: i32) -> Result<Timespec, SysError> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a live timespec.
    let ret = unsafe { libc::clock_gettime(clockid, &mut t) };
    check("clock_gettime", ret as libc::c_long)?;
    Ok(Timespec::from_c(t))
}

/// `pidfd_open(2)` with `flags` (`PIDFD_NONBLOCK`, `PIDFD_THREAD`).
pub fn pidfd_open_flags(pid: Pid, flags: u32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.0, flags) };
    owned("pidfd_open", ret)
}

/// A pidfd (with `flags`) of a process that has exited and been reaped: a child forked for this,
/// which exits at once, is opened, then waited for.
pub fn dead_pidfd(flags: u32) -> Result<OwnedFd, SysError> {
    let mut fds = dead_pidfds(&[flags])?;
    Ok(fds.remove(0))
}

/// One pidfd per entry of `flags`, each its own open file description, all of one process that
/// has exited and been reaped (so they share its pidfs inode): a child forked for this, which
/// exits at once, is opened (a zombie can be) once per entry, then waited for.
pub fn dead_pidfds(flags: &[u32]) -> Result<Vec<OwnedFd>, SysError> {
    // SAFETY: the child only calls `_exit`, which is async-signal-safe, so forking a process that
    // may have other threads is sound.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    check("fork", child as libc::c_long)?;
    let fds: Result<Vec<OwnedFd>, SysError> =
        flags.iter().map(|&f| pidfd_open_flags(Pid(child), f & !PIDFD_THREAD)).collect();
    let mut status = 0;
    // SAFETY: waits for our own child, named by pid; `status` is a live int.
    let ret = unsafe { libc::waitpid(child, &mut status, 0) };
    check("waitpid", ret as libc::c_long)?;
    fds
}

/// `fstatfs(2)`: the filesystem type (`f_type`) of the file behind `fd`.
pub fn fs_type(fd: BorrowedFd<'_>) -> Result<i64, SysError> {
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live statfs; the fd is borrowed and open.
    let ret = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) };
    check("fstatfs", ret as libc::c_long)?;
    Ok(st.f_type)
}

/// Attributes of a message queue (`struct mq_attr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MqAttr {
    pub flags: i64,
    pub maxmsg: i64,
    pub msgsize: i64,
    pub curmsgs: i64,
}

fn mq_name(name: &str) -> Result<std::ffi::CString, SysError> {
    // The system call takes the name without the leading slash mq_open(3) shows.
    let bare = name.strip_prefix('/').unwrap_or(name);
    std::ffi::CString::new(bare).map_err(|_| SysError::from_errno("mq_open", libc::EINVAL))
}

/// `mq_open(2)` (the system call, `mq_overview(7)`): `name` as `/NAME`; with `O_CREAT`, `mode` and
/// `attr` (maxmsg, msgsize) are used. Close-on-exec is added.
pub fn mq_open(name: &str, flags: i32, mode: u32, attr: Option<MqAttr>) -> Result<OwnedFd, SysError> {
    let cname = mq_name(name)?;
    // SAFETY: an all-zero mq_attr is a valid value.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    let ptr = match attr {
        Some(at) => {
            a.mq_maxmsg = at.maxmsg;
            a.mq_msgsize = at.msgsize;
            &a as *const libc::mq_attr
        }
        None => std::ptr::null(),
    };
    // SAFETY: `cname` is a live NUL-terminated string; `ptr` is null or points to the live `a`.
    let ret = unsafe { libc::syscall(libc::SYS_mq_open, cname.as_ptr(), flags | libc::O_CLOEXEC, mode, ptr) };
    owned("mq_open", ret)
}

/// `mq_unlink(2)`.
pub fn mq_unlink(name: &str) -> Result<(), SysError> {
    let cname = mq_name(name)?;
    // SAFETY: `cname` is a live NUL-terminated string.
    let ret = unsafe { libc::syscall(libc::SYS_mq_unlink, cname.as_ptr()) };
    check("mq_unlink", ret).map(drop)
}

/// `mq_getsetattr(2)` reading the attributes only.
pub fn mq_getattr(fd: BorrowedFd<'_>) -> Result<MqAttr, SysError> {
    // SAFETY: an all-zero mq_attr is a valid value for the kernel to overwrite.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: no new attributes; `a` is a live mq_attr for the old ones; the fd is borrowed and open.
    let ret =
        unsafe { libc::syscall(libc::SYS_mq_getsetattr, fd.as_raw_fd(), std::ptr::null::<libc::mq_attr>(), &mut a) };
    check("mq_getsetattr", ret)?;
    Ok(MqAttr { flags: a.mq_flags, maxmsg: a.mq_maxmsg, msgsize: a.mq_msgsize, curmsgs: a.mq_curmsgs })
}

/// The epoch as an absolute timeout: the call never blocks.
const NO_WAIT: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 0 };

/// `mq_timedreceive(2)` without waiting: the oldest message of the highest priority, with its
/// priority, into a buffer of `msgsize` bytes; `None` if the queue is empty.
pub fn mq_receive_now(fd: BorrowedFd<'_>, msgsize: usize) -> Result<Option<(Vec<u8>, u32)>, SysError> {
    let mut buf = vec![0u8; msgsize];
    let mut prio: libc::c_uint = 0;
    // SAFETY: `buf` is live with `msgsize` bytes; `prio` and `NO_WAIT` are live; the fd is borrowed.
    let ret = unsafe {
        libc::syscall(libc::SYS_mq_timedreceive, fd.as_raw_fd(), buf.as_mut_ptr(), msgsize, &mut prio, &NO_WAIT)
    };
    match check("mq_timedreceive", ret) {
        Err(e) if e.errno() == libc::ETIMEDOUT || e.errno() == libc::EAGAIN => Ok(None),
        Err(e) => Err(e),
        Ok(n) => {
            buf.truncate(n as usize);
            Ok(Some((buf, prio)))
        }
    }
}

/// `mq_timedsend(2)` without waiting (fails with ETIMEDOUT or EAGAIN if the queue is full).
pub fn mq_send_now(fd: BorrowedFd<'_>, data: &[u8], prio: u32) -> Result<(), SysError> {
    // SAFETY: `data` is live for its length; `NO_WAIT` is live; the fd is borrowed and open.
    let ret = unsafe {
        libc::syscall(libc::SYS_mq_timedsend, fd.as_raw_fd(), data.as_ptr(), data.len(), prio as libc::c_uint, &NO_WAIT)
    };
    check("mq_timedsend", ret).map(drop)
}
