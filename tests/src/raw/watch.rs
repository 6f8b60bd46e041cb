//! epoll, inotify, fanotify and FIFOs for the watch workloads, plus fd-number operations (`dup2`,
//! `close` on a number) the epoll workload needs to reach items by their number.

use super::cvt;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn owned(ret: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(ret)?;
    // SAFETY: the kernel just returned this fd; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `epoll_create1(0)`.
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: plain integer argument.
    owned(unsafe { libc::epoll_create1(0) })
}

/// `epoll_ctl(2)` on fd number `fd` (which may be any number: the test reaches items by number).
pub fn epoll_ctl(ep: BorrowedFd<'_>, op: i32, fd: i32, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is valid for the call; fds are plain integers to the kernel.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), op, fd, &mut ev) }).map(drop)
}

/// `epoll_wait(2)`: up to 16 (events, data) pairs.
pub fn epoll_wait(ep: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<Vec<(u32, u64)>> {
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
    // SAFETY: `evs` has room for 16 events.
    let n = cvt(unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), 16, timeout_ms) })?;
    Ok(evs[..n as usize].iter().map(|e| (e.events, e.u64)).collect())
}

/// `inotify_init1(2)`.
pub fn inotify_init(flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer argument.
    owned(unsafe { libc::inotify_init1(flags) })
}

/// `inotify_add_watch(2)`.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &Path, mask: u32) -> io::Result<i32> {
    let c = cpath(path)?;
    // SAFETY: `c` is a live C string.
    cvt(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) })
}

/// `inotify_rm_watch(2)`.
pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) }).map(drop)
}

/// `fanotify_init(2)`.
pub fn fanotify_init(flags: u32, event_f_flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::fanotify_init(flags, event_f_flags) })
}

/// `fanotify_mark(2)` on `path`.
pub fn fanotify_mark(fd: BorrowedFd<'_>, flags: u32, mask: u64, path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a live C string.
    cvt(unsafe { libc::fanotify_mark(fd.as_raw_fd(), flags, mask, libc::AT_FDCWD, c.as_ptr()) }).map(drop)
}

/// `mkfifo(3)`.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a live C string.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), mode) }).map(drop)
}

/// `dup2(2)` from number `old` to number `new`.
pub fn dup2_number(old: i32, new: i32) -> io::Result<()> {
    // SAFETY: plain integers; the test owns the numbers it passes and gives up ownership of `new`.
    cvt(unsafe { libc::dup2(old, new) }).map(drop)
}

/// `close(2)` of number `fd`, which the caller no longer owns through any `OwnedFd`.
pub fn close_number(fd: i32) -> io::Result<()> {
    // SAFETY: plain integer; the caller gave up ownership of `fd`.
    cvt(unsafe { libc::close(fd) }).map(drop)
}

/// `fcntl(F_GETFL)`.
pub fn status_flags(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })
}

/// `fcntl(F_GETPIPE_SZ)`.
pub fn pipe_capacity(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) })
}

/// `fcntl(F_SETPIPE_SZ)`.
pub fn set_pipe_capacity(fd: BorrowedFd<'_>, size: i32) -> io::Result<i32> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) })
}

/// `ioctl(FIONREAD)`.
pub fn bytes_ready(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is a valid int to fill.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(n)
}

/// Takes ownership of `fd`, an fd the kernel handed over in data (a fanotify event's `fd`).
pub fn own_fd(fd: i32) -> OwnedFd {
    // SAFETY: the kernel opened `fd` for this process in the event just read; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
