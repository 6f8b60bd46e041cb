//! Files: extents (`lseek(2)` `SEEK_DATA`/`SEEK_HOLE`), device nodes (`mknod(2)`), running a file
//! by its fd (`execveat(2)` with `AT_EMPTY_PATH`), and file locks (`flock(2)`, `fcntl(2)` POSIX
//! and OFD record locks).

use super::{cvt, Exit, Forked};
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `lseek(fd, offset, SEEK_DATA)` (`data`) or `SEEK_HOLE`: where the next data or hole starts;
/// `None` past the last data (`ENXIO`). The fd's offset moves there.
pub fn seek_extent(fd: impl AsFd, offset: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
    // SAFETY: plain integer arguments on a borrowed, open fd.
    let r = unsafe { libc::lseek(fd.as_fd().as_raw_fd(), offset as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(e)
    }
}

/// The (start, end) data extents of `fd` below `size`.
pub fn data_extents(fd: impl AsFd, size: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = fd.as_fd();
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let Some(start) = seek_extent(fd, at, true)? else { break };
        let end = seek_extent(fd, start, false)?.unwrap_or(size).min(size);
        out.push((start, end));
        at = end;
    }
    Ok(out)
}

/// `mknod(2)`: a device node at `path` of type and permissions `mode` and number `rdev`.
pub fn mknod(path: &std::path::Path, mode: u32, rdev: u64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a live NUL-terminated string; the rest are plain integers.
    cvt(unsafe { libc::mknod(c.as_ptr(), mode, rdev) }).map(drop)
}

/// Runs the program open at `fd` in a child (`execveat(fd, "", [name], [], AT_EMPTY_PATH)`) and
/// waits for it: its exit, or the errno of a failed `execveat` as `Exit::Code(200 + errno)`.
pub fn run_fd(fd: impl AsFd, name: &str) -> io::Result<Exit> {
    let argv0 = std::ffi::CString::new(name).map_err(io::Error::other)?;
    let raw = fd.as_fd().as_raw_fd();
    match super::fork()? {
        Forked::Child => {
            let argv = [argv0.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null::<libc::c_char>()];
            // SAFETY: argv and envp are NULL-terminated arrays of live strings; "" with
            // AT_EMPTY_PATH runs the file of `raw`. On failure the child only calls _exit.
            unsafe {
                libc::syscall(libc::SYS_execveat, raw, c"".as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH);
                libc::_exit(200 + io::Error::last_os_error().raw_os_error().unwrap_or(0).min(55));
            }
        }
        Forked::Parent(pid) => loop {
            if let Some(exit) = super::try_waitpid(pid)? {
                return Ok(exit);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        },
    }
}

/// `flock(fd, op)` (`LOCK_SH`, `LOCK_EX`, `LOCK_UN`, with `LOCK_NB`).
pub fn flock(fd: impl AsFd, op: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments on a borrowed, open fd.
    cvt(unsafe { libc::flock(fd.as_fd().as_raw_fd(), op) }).map(drop)
}

/// A record lock as `fcntl(2)` sets and reports it: type (`F_RDLCK`, `F_WRLCK`, `F_UNLCK`), start,
/// length (0: to the end), and the owner's pid (`F_GETLK`; -1 for an OFD lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLock {
    pub kind: i32,
    pub start: i64,
    pub len: i64,
    pub pid: i32,
}

/// `fcntl(fd, cmd, &flock)` for `F_SETLK`, `F_OFD_SETLK` (set `lock`) or `F_GETLK`,
/// `F_OFD_GETLK` (what conflicts with `lock`, `kind` `F_UNLCK` if nothing does).
pub fn record_lock(fd: impl AsFd, cmd: i32, lock: RecordLock) -> io::Result<RecordLock> {
    // SAFETY: an all-zero flock is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = lock.kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = lock.start;
    fl.l_len = lock.len;
    // SAFETY: `fl` is a live local of the type these commands read and write.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), cmd, &mut fl) })?;
    Ok(RecordLock { kind: fl.l_type as i32, start: fl.l_start, len: fl.l_len, pid: fl.l_pid })
}

/// `fcntl(fd, cmd, arg)` with an integer argument (`F_SETLEASE`, `F_GETLEASE`, ...): its result.
pub fn fcntl_int(fd: impl AsFd, cmd: i32, arg: i32) -> io::Result<i32> {
    // SAFETY: commands with an integer argument read no memory of ours.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), cmd, arg) })
}
