//! Event fds, signal fds, timer fds, pidfds, POSIX timers, message queues and a userfaultfd, for
//! the `ev_*` workloads and the unsupported-fd workload.

use super::{cvt, cvt_long, SigSet};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = cvt_long(ret)?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn ts(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
}

fn dur(t: libc::timespec) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `eventfd(2)` with `flags` (EFD_SEMAPHORE, EFD_NONBLOCK).
pub fn eventfd_with(init: u32, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    owned(unsafe { libc::eventfd(init, flags) } as libc::c_long)
}

/// `read(2)` of one 8-byte value (eventfd counter, timerfd expirations).
pub fn read_u64(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut b = [0u8; 8];
    // SAFETY: `b` is a live 8-byte buffer.
    let n = cvt_long(unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 8) } as libc::c_long)?;
    if n != 8 {
        return Err(io::Error::other(format!("short read of {n} bytes")));
    }
    Ok(u64::from_ne_bytes(b))
}

/// `write(2)` of one 8-byte value (adds to an eventfd counter).
pub fn write_u64(fd: BorrowedFd<'_>, v: u64) -> io::Result<()> {
    let b = v.to_ne_bytes();
    // SAFETY: `b` is a live 8-byte buffer.
    cvt_long(unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), 8) } as libc::c_long).map(drop)
}

/// `read(2)` of up to `len` bytes (a signalfd's `struct signalfd_siginfo` is 128).
pub fn read_bytes(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    // SAFETY: `b` is live with `len` bytes.
    let n = cvt_long(unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), len) } as libc::c_long)?;
    b.truncate(n as usize);
    Ok(b)
}

/// `signalfd(2)` for the signals of `mask`, with `flags` (SFD_NONBLOCK).
pub fn signalfd(mask: SigSet, flags: i32) -> io::Result<OwnedFd> {
    let set = mask.to_libc();
    // SAFETY: `set` is a live sigset_t.
    owned(unsafe { libc::signalfd(-1, &set, flags) } as libc::c_long)
}

/// `timerfd_create(2)`.
pub fn timerfd_create(clock: i32, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    owned(unsafe { libc::timerfd_create(clock, flags) } as libc::c_long)
}

/// `timerfd_settime(2)` with `flags`; `value` absolute with TFD_TIMER_ABSTIME.
pub fn timerfd_settime(fd: BorrowedFd<'_>, flags: i32, value: Duration, interval: Duration) -> io::Result<()> {
    let its = libc::itimerspec { it_interval: ts(interval), it_value: ts(value) };
    // SAFETY: `its` is live; no old value asked for.
    cvt(unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &its, std::ptr::null_mut()) }).map(drop)
}

/// `timerfd_gettime(2)`: (time left, interval).
pub fn timerfd_gettime(fd: BorrowedFd<'_>) -> io::Result<(Duration, Duration)> {
    // SAFETY: all-zero itimerspec is valid.
    let mut its: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: `its` is a live local.
    cvt(unsafe { libc::timerfd_gettime(fd.as_raw_fd(), &mut its) })?;
    Ok((dur(its.it_value), dur(its.it_interval)))
}

/// `pidfd_open(2)` with `flags` (PIDFD_NONBLOCK).
pub fn pidfd_open(pid: i32, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain integers.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) })
}

/// `pidfd_send_signal(2)` without a siginfo.
pub fn pidfd_send_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: plain integers; no siginfo.
    cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, 0usize, 0) }).map(drop)
}

/// `timer_create(2)` (the system call): notify SIGEV_SIGNAL (0), SIGEV_NONE (1) or SIGEV_THREAD_ID
/// (4, to `tid`); returns the timer id.
pub fn timer_create(clock: i32, notify: i32, sig: i32, value: u64, tid: i32) -> io::Result<i32> {
    let mut sev = [0u64; 8];
    sev[0] = value;
    sev[1] = (sig as u32 as u64) | ((notify as u32 as u64) << 32);
    sev[2] = tid as u32 as u64;
    let mut id: i32 = 0;
    // SAFETY: `sev` is a live 64-byte struct sigevent (value, signo, notify, tid); `id` is live.
    cvt_long(unsafe { libc::syscall(libc::SYS_timer_create, clock, sev.as_ptr(), &mut id) })?;
    Ok(id)
}

/// `timer_settime(2)`, relative.
pub fn timer_settime(id: i32, value: Duration, interval: Duration) -> io::Result<()> {
    let its = libc::itimerspec { it_interval: ts(interval), it_value: ts(value) };
    // SAFETY: `its` is live; no old value asked for.
    cvt_long(unsafe { libc::syscall(libc::SYS_timer_settime, id, 0, &its, 0usize) }).map(drop)
}

/// `timer_gettime(2)`: (time left, interval).
pub fn timer_gettime(id: i32) -> io::Result<(Duration, Duration)> {
    // SAFETY: all-zero itimerspec is valid.
    let mut its: libc::itimerspec = unsafe { std::mem::zeroed() };
    // SAFETY: `its` is a live local.
    cvt_long(unsafe { libc::syscall(libc::SYS_timer_gettime, id, &mut its) })?;
    Ok((dur(its.it_value), dur(its.it_interval)))
}

/// `timer_delete(2)`.
pub fn timer_delete(id: i32) -> io::Result<()> {
    // SAFETY: plain integer.
    cvt_long(unsafe { libc::syscall(libc::SYS_timer_delete, id) }).map(drop)
}

fn mq_name(name: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name.trim_start_matches('/')).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `mq_open(2)` (the system call) of `/NAME`; with O_CREAT, `maxmsg` and `msgsize`.
pub fn mq_open(name: &str, flags: i32, mode: u32, maxmsg: i64, msgsize: i64) -> io::Result<OwnedFd> {
    let cname = mq_name(name)?;
    // SAFETY: all-zero mq_attr is valid.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    a.mq_maxmsg = maxmsg;
    a.mq_msgsize = msgsize;
    let attr = if flags & libc::O_CREAT != 0 { &a as *const libc::mq_attr } else { std::ptr::null() };
    // SAFETY: `cname` and `a` are live.
    owned(unsafe { libc::syscall(libc::SYS_mq_open, cname.as_ptr(), flags, mode, attr) })
}

/// `mq_unlink(2)`.
pub fn mq_unlink(name: &str) -> io::Result<()> {
    let cname = mq_name(name)?;
    // SAFETY: `cname` is live.
    cvt_long(unsafe { libc::syscall(libc::SYS_mq_unlink, cname.as_ptr()) }).map(drop)
}

/// `mq_getsetattr(2)`: (flags, maxmsg, msgsize, curmsgs).
pub fn mq_getattr(fd: BorrowedFd<'_>) -> io::Result<(i64, i64, i64, i64)> {
    // SAFETY: all-zero mq_attr is valid.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: `a` is live; no new attributes.
    cvt_long(unsafe {
        libc::syscall(libc::SYS_mq_getsetattr, fd.as_raw_fd(), std::ptr::null::<libc::mq_attr>(), &mut a)
    })?;
    Ok((a.mq_flags, a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs))
}

/// `mq_timedsend(2)` without a timeout (blocks when full unless O_NONBLOCK).
pub fn mq_send(fd: BorrowedFd<'_>, data: &[u8], prio: u32) -> io::Result<()> {
    // SAFETY: `data` is live for its length.
    cvt_long(unsafe { libc::syscall(libc::SYS_mq_timedsend, fd.as_raw_fd(), data.as_ptr(), data.len(), prio, 0usize) })
        .map(drop)
}

/// `mq_timedreceive(2)` without a timeout into a buffer of `len` bytes: (message, priority).
pub fn mq_receive(fd: BorrowedFd<'_>, len: usize) -> io::Result<(Vec<u8>, u32)> {
    let mut b = vec![0u8; len];
    let mut prio: libc::c_uint = 0;
    // SAFETY: `b` is live with `len` bytes, `prio` is live.
    let n = cvt_long(unsafe {
        libc::syscall(libc::SYS_mq_timedreceive, fd.as_raw_fd(), b.as_mut_ptr(), len, &mut prio, 0usize)
    })?;
    b.truncate(n as usize);
    Ok((b, prio))
}

/// `mq_notify(2)` asking for `sig` when a message arrives in the empty queue.
pub fn mq_notify_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let mut sev = [0u64; 8];
    sev[1] = sig as u32 as u64; // SIGEV_SIGNAL is 0
                                // SAFETY: `sev` is a live 64-byte struct sigevent.
    cvt_long(unsafe { libc::syscall(libc::SYS_mq_notify, fd.as_raw_fd(), sev.as_ptr()) }).map(drop)
}

/// `userfaultfd(2)` with O_CLOEXEC.
pub fn userfaultfd() -> io::Result<OwnedFd> {
    // SAFETY: plain integer.
    owned(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) })
}

/// The `UFFDIO_API` handshake (`ioctl_userfaultfd(2)`), which a userfaultfd accepts once.
pub fn uffdio_api(fd: BorrowedFd<'_>) -> io::Result<()> {
    /// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
    const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
    let mut api = [0xAAu64, 0, 0]; // UFFD_API, features, ioctls
                                   // SAFETY: `api` is a live 24-byte struct uffdio_api.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, api.as_mut_ptr()) }).map(drop)
}
