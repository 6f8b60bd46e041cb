//! File descriptor system calls: pidfds, taking another process's fds, pipes and splice, kcmp.

use crate::{check, Pid, SysError};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.0, 0) };
    let fd = check("pidfd_open", ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_getfd(2)`: a duplicate of fd `target_fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    let fd = check("pidfd_getfd", ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pipe2(2)` with `O_CLOEXEC`: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), SysError> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check("pipe2", ret as libc::c_long)?;
    // SAFETY: the kernel just returned these fds to us; nobody else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `fcntl(F_SETPIPE_SZ)`: returns the size the kernel chose.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> Result<usize, SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
    check("fcntl(F_SETPIPE_SZ)", ret as libc::c_long).map(|n| n as usize)
}

/// `fcntl(F_GETPIPE_SZ)`.
pub fn pipe_size(fd: BorrowedFd<'_>) -> Result<usize, SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    check("fcntl(F_GETPIPE_SZ)", ret as libc::c_long).map(|n| n as usize)
}

/// `splice(2)` from a pipe to `out` at file offset `*off` (advanced by the kernel); returns the bytes
/// moved (0 at end of data).
pub fn splice_to_file(pipe: BorrowedFd<'_>, out: BorrowedFd<'_>, off: &mut i64, len: usize) -> Result<usize, SysError> {
    // SAFETY: `off` is a valid in/out offset; the fds are borrowed and open.
    let ret =
        unsafe { libc::splice(pipe.as_raw_fd(), std::ptr::null_mut(), out.as_raw_fd(), off, len, libc::SPLICE_F_MOVE) };
    check("splice", ret as libc::c_long).map(|n| n as usize)
}

/// `kcmp(2)` types.
pub const KCMP_FILE: i32 = 0;

/// `kcmp(2)`: 0 if the two objects are the same, otherwise an ordering value (1, 2 or 3).
pub fn kcmp(pid1: Pid, pid2: Pid, kind: i32, idx1: u64, idx2: u64) -> Result<i32, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid1.0, pid2.0, kind, idx1, idx2) };
    check("kcmp", ret).map(|n| n as i32)
}

/// `isatty(3)`.
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: plain integer argument on a borrowed, open fd.
    unsafe { libc::isatty(fd.as_raw_fd()) == 1 }
}

/// `fcntl(F_SETFL)` adding `flags` to the file status flags of our fd.
pub fn add_status_flags(fd: BorrowedFd<'_>, flags: i32) -> Result<(), SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let cur = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    check("fcntl(F_GETFL)", cur as libc::c_long)?;
    // SAFETY: as above.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, cur | flags) };
    check("fcntl(F_SETFL)", ret as libc::c_long).map(drop)
}

/// `tee(2)` with `SPLICE_F_NONBLOCK`: duplicate up to `len` bytes queued in pipe `from` into pipe `to`
/// without consuming them; returns the bytes duplicated (0 when `from` is empty).
pub fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> Result<usize, SysError> {
    // SAFETY: plain integer arguments on borrowed, open fds.
    let ret = unsafe { libc::tee(from.as_raw_fd(), to.as_raw_fd(), len, libc::SPLICE_F_NONBLOCK) };
    match check("tee", ret as libc::c_long) {
        Err(e) if e.errno() == libc::EAGAIN => Ok(0),
        r => r.map(|n| n as usize),
    }
}

/// `fcntl(F_SETFL)`: set the file status flags of our fd.
pub fn set_status_flags(fd: BorrowedFd<'_>, flags: i32) -> Result<(), SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) };
    check("fcntl(F_SETFL)", ret as libc::c_long).map(drop)
}

/// `memfd_create(2)` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`.
pub fn memfd_create(name: &str) -> Result<OwnedFd, SysError> {
    let name = std::ffi::CString::new(name).map_err(|_| SysError::from_errno("memfd_create", libc::EINVAL))?;
    // SAFETY: `name` is a live NUL-terminated string; flags are plain integers.
    let ret = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    let fd = check("memfd_create", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `memfd_create(2)` with `MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB` and the huge page size
/// `page_size` (a power of two: its log2 at `MFD_HUGE_SHIFT`, see `memfd_create(2)`).
pub fn memfd_create_hugetlb(name: &str, page_size: u64) -> Result<OwnedFd, SysError> {
    const MFD_HUGE_SHIFT: u32 = 26;
    // log2 of a power of two of a u64 fits the 6 bits of MFD_HUGE_MASK.
    if !page_size.is_power_of_two() {
        return Err(SysError::from_errno("memfd_create", libc::EINVAL));
    }
    let name = std::ffi::CString::new(name).map_err(|_| SysError::from_errno("memfd_create", libc::EINVAL))?;
    let flags = libc::MFD_CLOEXEC
        | libc::MFD_ALLOW_SEALING
        | libc::MFD_HUGETLB
        | (page_size.trailing_zeros() << MFD_HUGE_SHIFT);
    // SAFETY: `name` is a live NUL-terminated string; flags are plain integers.
    let ret = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    let fd = check("memfd_create", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `HUGETLBFS_MAGIC` (`linux/magic.h`): `statfs.f_type` of hugetlbfs (and of `MFD_HUGETLB` memfds).
pub const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// Writes `data` at `offset` of the file behind `fd` through a shared mapping of `map_len` bytes
/// of it from `offset` (for files without `write(2)`, as on hugetlbfs): `mmap(2)` with
/// `MAP_SHARED`, a copy, `munmap(2)`. `offset` and `map_len` must suit the file's page size and
/// `data` must fit in `map_len`. Without `MAP_NORESERVE` a hugetlbfs mapping reserves its huge
/// pages at `mmap`, which fails with ENOMEM when the pool is short (no SIGBUS at the copy).
pub fn write_mapped(fd: BorrowedFd<'_>, offset: u64, data: &[u8], map_len: u64) -> Result<(), SysError> {
    if data.len() as u64 > map_len || map_len == 0 {
        return Err(SysError::from_errno("mmap", libc::EINVAL));
    }
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a new mapping anywhere the kernel picks (no MAP_FIXED); the fd is borrowed and open.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len as usize,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(SysError::last("mmap"));
    }
    // SAFETY: `at` is a fresh writable mapping of `map_len >= data.len()` bytes that nothing else
    // refers to; the source is a live slice that cannot overlap it.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at.cast::<u8>(), data.len()) };
    // SAFETY: unmaps exactly the mapping made above, which no reference outlives.
    let ret = unsafe { libc::munmap(at, map_len as usize) };
    check("munmap", ret as libc::c_long).map(drop)
}

/// `fcntl(F_GET_SEALS)` on a memfd.
pub fn get_seals(fd: BorrowedFd<'_>) -> Result<i32, SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    check("fcntl(F_GET_SEALS)", ret as libc::c_long).map(|n| n as i32)
}

/// `fcntl(F_ADD_SEALS)` on a memfd.
pub fn add_seals(fd: BorrowedFd<'_>, seals: i32) -> Result<(), SysError> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    check("fcntl(F_ADD_SEALS)", ret as libc::c_long).map(drop)
}

/// `lseek(2)` with `SEEK_DATA` (`data` true) or `SEEK_HOLE` from `offset`: where the next data (or
/// hole) starts; None past the last data (`ENXIO`).
pub fn seek_extent(fd: BorrowedFd<'_>, offset: u64, data: bool) -> Result<Option<u64>, SysError> {
    let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::lseek(fd.as_raw_fd(), offset as libc::off_t, whence) };
    match check("lseek(SEEK_DATA/SEEK_HOLE)", ret as libc::c_long) {
        Ok(at) => Ok(Some(at as u64)),
        Err(e) if e.errno() == libc::ENXIO => Ok(None),
        Err(e) => Err(e),
    }
}

/// `mknod(2)`: a device node at `path` (`mode` holds the file type and permission bits).
pub fn mknod(path: &std::path::Path, mode: u32, rdev: u64) -> Result<(), SysError> {
    use std::os::unix::ffi::OsStrExt;
    let path =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| SysError::from_errno("mknod", libc::EINVAL))?;
    // SAFETY: `path` is a live NUL-terminated string; the rest are plain integers.
    let ret = unsafe { libc::mknod(path.as_ptr(), mode, rdev) };
    check("mknod", ret as libc::c_long).map(drop)
}

/// `fcntl(F_GETOWN_EX)`, `F_SETOWN_EX`, `F_GETSIG`, `F_SETSIG` (`fcntl(2)`, "Managing signals"):
/// the constants glibc's headers define for x86_64.
const F_SETSIG: i32 = 10;
const F_GETSIG: i32 = 11;
const F_SETOWN_EX: i32 = 15;
const F_GETOWN_EX: i32 = 16;

/// `struct f_owner_ex` of `fcntl(2)`.
#[repr(C)]
struct OwnerEx {
    kind: i32,
    pid: i32,
}

/// `fcntl(F_GETOWN_EX)`: (`F_OWNER_TID`/`F_OWNER_PID`/`F_OWNER_PGRP`, id) of the open file description
/// behind `fd`; the id is 0 when no owner is set.
pub fn owner(fd: BorrowedFd<'_>) -> Result<(i32, i32), SysError> {
    let mut o = OwnerEx { kind: 0, pid: 0 };
    // SAFETY: `o` is a valid f_owner_ex for the kernel to fill.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut o as *mut OwnerEx) };
    check("fcntl(F_GETOWN_EX)", ret as libc::c_long)?;
    Ok((o.kind, o.pid))
}

/// `fcntl(F_SETOWN_EX)` on the open file description behind `fd`.
pub fn set_owner(fd: BorrowedFd<'_>, kind: i32, pid: i32) -> Result<(), SysError> {
    let o = OwnerEx { kind, pid };
    // SAFETY: `o` is a valid f_owner_ex the kernel only reads.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_SETOWN_EX, &o as *const OwnerEx) };
    check("fcntl(F_SETOWN_EX)", ret as libc::c_long).map(drop)
}

/// `fcntl(F_GETSIG)`: the signal sent when I/O is possible on `fd` (0: SIGIO).
pub fn io_signal(fd: BorrowedFd<'_>) -> Result<i32, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    check("fcntl(F_GETSIG)", ret as libc::c_long).map(|n| n as i32)
}

/// `fcntl(F_SETSIG)`.
pub fn set_io_signal(fd: BorrowedFd<'_>, signal: i32) -> Result<(), SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_SETSIG, signal) };
    check("fcntl(F_SETSIG)", ret as libc::c_long).map(drop)
}

/// `fcntl(F_GETFL)`: the file status flags of the open file description behind `fd`.
pub fn status_flags(fd: BorrowedFd<'_>) -> Result<i32, SysError> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    check("fcntl(F_GETFL)", ret as libc::c_long).map(|n| n as i32)
}

/// `fcntl(F_DUPFD_CLOEXEC)` on our own fd number `fd`, as a caller names it on the command line
/// (`--inherit-fd fd[N]:...`): a duplicate we own; `fd` itself is neither taken nor closed. Fails
/// with `EBADF` if `fd` is not open.
pub fn dup_own_fd(fd: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: F_DUPFD_CLOEXEC only reads the fd table; an fd number that is not open gives EBADF.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    let new = check("fcntl(F_DUPFD_CLOEXEC)", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new as i32) })
}

/// `fcntl(F_DUPFD_CLOEXEC)` of `fd` to the lowest free number of at least `min` (the original is
/// closed when dropped).
pub fn dup_above(fd: BorrowedFd<'_>, min: i32) -> Result<OwnedFd, SysError> {
    // SAFETY: F_DUPFD_CLOEXEC only reads the fd table; `fd` is open for the call.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    let new = check("fcntl(F_DUPFD_CLOEXEC)", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new as i32) })
}

/// `close(2)` of fd number `fd`, for CRIU's `--close FD`: an fd the program inherited and holds no
/// handle of. Only for the start of `main`, before anything of the program's own is open: closing
/// a number an `OwnedFd` holds would leave that handle dangling. An fd that is not open is
/// ignored, as CRIU ignores it.
///
/// # References
/// close(2)
pub fn close_inherited(fd: i32) {
    // SAFETY: called before the program opened anything but stdio, so `fd` is no handle of ours
    // (the caller's contract); closing an unused number is harmless (EBADF).
    unsafe { libc::close(fd) };
}

/// `poll(2)` on `fds`, each for `events`, waiting up to `timeout_ms` (-1: forever): the returned
/// events of each, in order. EINTR is retried.
pub fn poll(fds: &[BorrowedFd<'_>], events: i16, timeout_ms: i32) -> Result<Vec<i16>, SysError> {
    let mut set: Vec<libc::pollfd> =
        fds.iter().map(|f| libc::pollfd { fd: f.as_raw_fd(), events, revents: 0 }).collect();
    loop {
        // SAFETY: `set` is a live array of `set.len()` pollfd structs the kernel fills in.
        let ret = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, timeout_ms) };
        match check("poll", ret as libc::c_long) {
            Err(e) if e.errno() == libc::EINTR => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(set.iter().map(|p| p.revents).collect()),
        }
    }
}

/// `linkat(2)` of the file behind `fd` (an `O_TMPFILE` file, still nameless) to `dest`, through
/// `/proc/self/fd/N` with `AT_SYMLINK_FOLLOW` (which, unlike `AT_EMPTY_PATH`, needs no
/// CAP_DAC_READ_SEARCH). Fails with `EEXIST` if `dest` exists.
///
/// # References
/// linkat(2), open(2) "O_TMPFILE"
pub fn link_tmpfile(fd: BorrowedFd<'_>, dest: &std::path::Path) -> Result<(), SysError> {
    use std::os::unix::ffi::OsStrExt;
    let inval = |_| SysError::from_errno("linkat", libc::EINVAL);
    let src = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(inval)?;
    let dest = std::ffi::CString::new(dest.as_os_str().as_bytes()).map_err(inval)?;
    // SAFETY: both paths are live NUL-terminated strings; `fd` stays open (borrowed) for the call.
    let ret =
        unsafe { libc::linkat(libc::AT_FDCWD, src.as_ptr(), libc::AT_FDCWD, dest.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
    check("linkat", ret as libc::c_long).map(drop)
}

/// `fallocate(2)` with `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`: the `len` bytes at `offset`
/// of `file` read as zeros from now on and their blocks are given back to the filesystem (for
/// whole blocks); the file size is unchanged.
pub fn punch_hole(file: BorrowedFd<'_>, offset: u64, len: u64) -> Result<(), SysError> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let ret = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t) };
    check("fallocate(FALLOC_FL_PUNCH_HOLE)", ret as libc::c_long).map(drop)
}
