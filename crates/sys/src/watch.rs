//! Watching files: epoll, inotify and fanotify instances, file handles, `FIONREAD`, and `kcmp` on an
//! epoll's watched files.

use crate::{check, Pid, SysError};
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn owned(call: &'static str, ret: libc::c_long) -> Result<OwnedFd, SysError> {
    let fd = check(call, ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn cpath(call: &'static str, path: &Path) -> Result<CString, SysError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SysError::from_errno(call, libc::EINVAL))
}

/// `epoll_create1(2)` with `EPOLL_CLOEXEC`.
pub fn epoll_create() -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer argument.
    let ret = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    owned("epoll_create1", ret as libc::c_long)
}

/// One registration for [`epoll_add_at`]: `target` is watched by `epoll` under fd number `number`.
pub struct EpollAdd<'a> {
    pub epoll: BorrowedFd<'a>,
    pub target: BorrowedFd<'a>,
    pub number: i32,
    pub events: u32,
    pub data: u64,
}

/// `epoll_ctl(2)` `EPOLL_CTL_ADD` of each of `adds`, keyed by its fd `number` rather than by the
/// number our fd has: an epoll item is keyed by (file, fd number), and a later `EPOLL_CTL_MOD` or
/// `EPOLL_CTL_DEL` in the process that owns the numbers must find it.
///
/// A short-lived thread unshares its fd table (`unshare(2)` `CLONE_FILES`), so the numbers it
/// overwrites are its own copies: it moves every fd it needs above the largest number, puts each
/// target at its number with `dup3(2)`, and adds it. The caller's fd table is not touched.
/// On error returns the index of the failed registration.
pub fn epoll_add_at(adds: &[EpollAdd<'_>]) -> Result<(), (usize, SysError)> {
    let high = adds.iter().map(|a| a.number).max().unwrap_or(0) + 1;
    let raw: Vec<(i32, i32, i32, u32, u64)> =
        adds.iter().map(|a| (a.epoll.as_raw_fd(), a.target.as_raw_fd(), a.number, a.events, a.data)).collect();
    std::thread::scope(|s| s.spawn(move || add_unshared(&raw, high)).join().unwrap_or(Err((0, fail("thread")))))
}

fn fail(call: &'static str) -> SysError {
    SysError::from_errno(call, libc::EINVAL)
}

/// The body of [`epoll_add_at`]'s thread: every fd it names is a live fd of the caller, which
/// waits for this thread to end.
fn add_unshared(adds: &[(i32, i32, i32, u32, u64)], high: i32) -> Result<(), (usize, SysError)> {
    // SAFETY: CLONE_FILES only gives this thread a private copy of the fd table.
    let ret = unsafe { libc::unshare(libc::CLONE_FILES) };
    check("unshare(CLONE_FILES)", ret as libc::c_long).map_err(|e| (0, e))?;
    let mut moved: Vec<(i32, i32)> = Vec::new();
    let mut high_of = |fd: i32| -> Result<i32, SysError> {
        if let Some(&(_, h)) = moved.iter().find(|(f, _)| *f == fd) {
            return Ok(h);
        }
        // SAFETY: `fd` is open in the caller's table, copied into ours; the copy is ours to use.
        let h = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, high) };
        let h = check("fcntl(F_DUPFD_CLOEXEC)", h as libc::c_long)? as i32;
        moved.push((fd, h));
        Ok(h)
    };
    let mut plan = Vec::with_capacity(adds.len());
    for (i, &(ep, target, number, events, data)) in adds.iter().enumerate() {
        plan.push((high_of(ep).map_err(|e| (i, e))?, high_of(target).map_err(|e| (i, e))?, number, events, data));
    }
    for (i, &(ep, target, number, events, data)) in plan.iter().enumerate() {
        // SAFETY: both fds are in this thread's private table; `number` is below every fd we use,
        // so replacing it closes only a private copy.
        let ret = unsafe { libc::dup3(target, number, libc::O_CLOEXEC) };
        check("dup3", ret as libc::c_long).map_err(|e| (i, e))?;
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let ret = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, number, &mut ev) };
        check("epoll_ctl(EPOLL_CTL_ADD)", ret as libc::c_long).map_err(|e| (i, e))?;
    }
    Ok(())
}

/// `kcmp(2)` type `KCMP_EPOLL_TFD`.
pub const KCMP_EPOLL_TFD: i32 = 7;

/// `kcmp(2)` `KCMP_EPOLL_TFD`: 0 if fd `fd1` of `pid1` is the file that epoll fd `efd` of `pid2`
/// watches under number `tfd` (the `toff`-th such item).
pub fn kcmp_epoll_tfd(pid1: Pid, fd1: i32, pid2: Pid, efd: i32, tfd: i32, toff: u32) -> Result<i32, SysError> {
    #[repr(C)]
    struct Slot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    let slot = Slot { efd: efd as u32, tfd: tfd as u32, toff };
    // SAFETY: `slot` is a valid kcmp_epoll_slot the kernel reads during the call.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid1.0, pid2.0, KCMP_EPOLL_TFD, fd1, &slot as *const Slot) };
    check("kcmp(KCMP_EPOLL_TFD)", ret).map(|n| n as i32)
}

/// `ioctl(FIONREAD)`: the bytes ready to be read (queued events of inotify and fanotify).
pub fn bytes_queued(fd: BorrowedFd<'_>) -> Result<i32, SysError> {
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is a valid int for the kernel to fill.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    check("ioctl(FIONREAD)", ret as libc::c_long).map(|_| n)
}

/// `inotify_init1(2)` with `flags` (`IN_NONBLOCK`, `IN_CLOEXEC`).
pub fn inotify_init(flags: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer argument.
    let ret = unsafe { libc::inotify_init1(flags) };
    owned("inotify_init1", ret as libc::c_long)
}

/// `inotify_add_watch(2)`: returns the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &Path, mask: u32) -> Result<i32, SysError> {
    let c = cpath("inotify_add_watch", path)?;
    // SAFETY: `c` is a live NUL-terminated string; the fd is borrowed and open.
    let ret = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) };
    check("inotify_add_watch", ret as libc::c_long).map(|n| n as i32)
}

/// `inotify_rm_watch(2)`.
pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> Result<(), SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) };
    check("inotify_rm_watch", ret as libc::c_long).map(drop)
}

/// `fanotify_init(2)`.
pub fn fanotify_init(flags: u32, event_f_flags: u32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fanotify_init(flags, event_f_flags) };
    owned("fanotify_init", ret as libc::c_long)
}

/// `fanotify_mark(2)` on `path` (relative to the current directory).
pub fn fanotify_mark(fd: BorrowedFd<'_>, flags: u32, mask: u64, path: &Path) -> Result<(), SysError> {
    let c = cpath("fanotify_mark", path)?;
    // SAFETY: `c` is a live NUL-terminated string; the fd is borrowed and open.
    let ret = unsafe { libc::fanotify_mark(fd.as_raw_fd(), flags, mask, libc::AT_FDCWD, c.as_ptr()) };
    check("fanotify_mark", ret as libc::c_long).map(drop)
}

/// Largest file handle (`MAX_HANDLE_SZ`).
pub const MAX_HANDLE_SZ: usize = 128;

/// `open_by_handle_at(2)`: open the file a handle (`handle_type`, `bytes`) names on the filesystem
/// of `mount`, with `flags` (`O_PATH` is enough to learn its path).
pub fn open_by_handle_at(
    mount: BorrowedFd<'_>,
    handle_type: i32,
    bytes: &[u8],
    flags: i32,
) -> Result<OwnedFd, SysError> {
    #[repr(C)]
    struct Handle {
        handle_bytes: u32,
        handle_type: i32,
        f_handle: [u8; MAX_HANDLE_SZ],
    }
    if bytes.len() > MAX_HANDLE_SZ {
        return Err(SysError::from_errno("open_by_handle_at", libc::EINVAL));
    }
    let mut h = Handle { handle_bytes: bytes.len() as u32, handle_type, f_handle: [0; MAX_HANDLE_SZ] };
    h.f_handle[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `h` has the layout of struct file_handle with room for `handle_bytes` bytes.
    let ret = unsafe { libc::syscall(libc::SYS_open_by_handle_at, mount.as_raw_fd(), &mut h as *mut Handle, flags) };
    owned("open_by_handle_at", ret)
}

/// `mkfifo(3)` (`mknodat(2)` with `S_IFIFO`).
pub fn mkfifo(path: &Path, mode: u32) -> Result<(), SysError> {
    let c = cpath("mkfifo", path)?;
    // SAFETY: `c` is a live NUL-terminated string.
    let ret = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    check("mkfifo", ret as libc::c_long).map(drop)
}
