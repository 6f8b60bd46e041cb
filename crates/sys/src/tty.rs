//! Terminal ioctls on pseudo-terminals: the pty index, termios, window size, lock, packet and
//! exclusive modes, and pushing bytes into a terminal's input queue.
//!
//! # References
//! ioctl_tty(2) (`TCGETS2`, `TIOCGWINSZ`, `TIOCSTI`, `TIOCEXCL`, `TIOCGDEV`, `TIOCPKT`), pty(7),
//! and the kernel's `drivers/tty/pty.c` for `TIOCGPTN`, `TIOCSPTLCK`, `TIOCGPTLCK`, `TIOCGPKT`.

use crate::{check, SysError};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// `struct termios2` of `asm-generic/termbits.h` (x86-64): the settings with explicit speeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Termios2 {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; 19],
    pub ispeed: u32,
    pub ospeed: u32,
}

/// `struct winsize`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct WinSize {
    pub row: u16,
    pub col: u16,
    pub xpixel: u16,
    pub ypixel: u16,
}

const TCGETS2: libc::c_ulong = 0x802c_542a;
const TCSETS2: libc::c_ulong = 0x402c_542b;
const TIOCGPTN: libc::c_ulong = 0x8004_5430;
const TIOCSPTLCK: libc::c_ulong = 0x4004_5431;
const TIOCGPTLCK: libc::c_ulong = 0x8004_5439;
const TIOCGPKT: libc::c_ulong = 0x8004_5438;
const TIOCGEXCL: libc::c_ulong = 0x8004_5440;
const TIOCGDEV: libc::c_ulong = 0x8004_5432;
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// `ioctl(2)` with a pointer argument.
fn ioctl_ptr<T>(fd: BorrowedFd<'_>, req: libc::c_ulong, call: &'static str, arg: *mut T) -> Result<(), SysError> {
    // SAFETY: `arg` points to a live value of the type the request `req` reads or writes; the fd
    // is borrowed and open.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) };
    check(call, ret as libc::c_long).map(drop)
}

fn get_int(fd: BorrowedFd<'_>, req: libc::c_ulong, call: &'static str) -> Result<i32, SysError> {
    let mut v: libc::c_int = 0;
    ioctl_ptr(fd, req, call, &mut v)?;
    Ok(v)
}

fn set_int(fd: BorrowedFd<'_>, req: libc::c_ulong, call: &'static str, v: i32) -> Result<(), SysError> {
    let mut v: libc::c_int = v;
    ioctl_ptr(fd, req, call, &mut v)
}

/// `ioctl(TCGETS2)`: the terminal's settings (on a pty master: the slave's).
pub fn get_termios(fd: BorrowedFd<'_>) -> Result<Termios2, SysError> {
    let mut t = Termios2::default();
    ioctl_ptr(fd, TCGETS2, "ioctl(TCGETS2)", &mut t)?;
    Ok(t)
}

/// `ioctl(TCSETS2)`: set the settings now (no drain, no flush).
pub fn set_termios(fd: BorrowedFd<'_>, t: &Termios2) -> Result<(), SysError> {
    let mut t = *t;
    ioctl_ptr(fd, TCSETS2, "ioctl(TCSETS2)", &mut t)
}

/// `ioctl(TIOCGWINSZ)`.
pub fn get_winsize(fd: BorrowedFd<'_>) -> Result<WinSize, SysError> {
    let mut w = WinSize::default();
    ioctl_ptr(fd, libc::TIOCGWINSZ, "ioctl(TIOCGWINSZ)", &mut w)?;
    Ok(w)
}

/// `ioctl(TIOCSWINSZ)`.
pub fn set_winsize(fd: BorrowedFd<'_>, w: &WinSize) -> Result<(), SysError> {
    let mut w = *w;
    ioctl_ptr(fd, libc::TIOCSWINSZ, "ioctl(TIOCSWINSZ)", &mut w)
}

/// `ioctl(TIOCGPTN)` on a pty master: the index N of its slave `/dev/pts/N`.
pub fn pty_index(master: BorrowedFd<'_>) -> Result<u32, SysError> {
    get_int(master, TIOCGPTN, "ioctl(TIOCGPTN)").map(|n| n as u32)
}

/// `ioctl(TIOCGPTLCK)`: whether the slave is locked (cannot be opened).
pub fn pty_locked(master: BorrowedFd<'_>) -> Result<bool, SysError> {
    get_int(master, TIOCGPTLCK, "ioctl(TIOCGPTLCK)").map(|v| v != 0)
}

/// `ioctl(TIOCSPTLCK)`: lock or unlock the slave (`unlockpt(3)`).
pub fn set_pty_locked(master: BorrowedFd<'_>, locked: bool) -> Result<(), SysError> {
    set_int(master, TIOCSPTLCK, "ioctl(TIOCSPTLCK)", locked as i32)
}

/// `ioctl(TIOCGPKT)`: whether the master is in packet mode.
pub fn packet_mode(master: BorrowedFd<'_>) -> Result<bool, SysError> {
    get_int(master, TIOCGPKT, "ioctl(TIOCGPKT)").map(|v| v != 0)
}

/// `ioctl(TIOCPKT)`: enable or disable packet mode.
pub fn set_packet_mode(master: BorrowedFd<'_>, on: bool) -> Result<(), SysError> {
    set_int(master, libc::TIOCPKT, "ioctl(TIOCPKT)", on as i32)
}

/// `ioctl(TIOCGEXCL)`: whether this end is in exclusive mode.
pub fn exclusive(fd: BorrowedFd<'_>) -> Result<bool, SysError> {
    get_int(fd, TIOCGEXCL, "ioctl(TIOCGEXCL)").map(|v| v != 0)
}

/// `ioctl(TIOCEXCL)`: put this end in exclusive mode.
pub fn set_exclusive(fd: BorrowedFd<'_>) -> Result<(), SysError> {
    // SAFETY: TIOCEXCL takes no argument; the fd is borrowed and open.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCEXCL) };
    check("ioctl(TIOCEXCL)", ret as libc::c_long).map(drop)
}

/// `ioctl(TIOCGDEV)`: the device number (`new_encode_dev` form) of the terminal behind `fd`, also
/// for an fd opened as `/dev/tty`.
pub fn tty_device(fd: BorrowedFd<'_>) -> Result<u32, SysError> {
    get_int(fd, TIOCGDEV, "ioctl(TIOCGDEV)").map(|v| v as u32)
}

/// `ioctl(FIONREAD)`: the bytes a read would find in the line discipline's buffer (in canonical
/// mode: in complete lines).
pub fn queued(fd: BorrowedFd<'_>) -> Result<usize, SysError> {
    get_int(fd, libc::FIONREAD, "ioctl(FIONREAD)").map(|n| n as usize)
}

/// `ioctl(TIOCSTI)`: push one byte into the input queue of the terminal `fd` is open on, through
/// its line discipline, at once (needs CAP_SYS_ADMIN unless it is the caller's controlling
/// terminal).
pub fn push_input(fd: BorrowedFd<'_>, byte: u8) -> Result<(), SysError> {
    let mut b = byte;
    ioctl_ptr(fd, libc::TIOCSTI, "ioctl(TIOCSTI)", &mut b)
}

/// `ioctl(TIOCGPTPEER)`: a new open file description of the slave of `master`, with `flags`.
pub fn open_peer(master: BorrowedFd<'_>, flags: i32) -> Result<std::os::fd::OwnedFd, SysError> {
    // SAFETY: TIOCGPTPEER takes its open flags by value; the fd is borrowed and open.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), TIOCGPTPEER, flags) };
    let fd = check("ioctl(TIOCGPTPEER)", ret as libc::c_long)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// `read(2)` into `buf`: the bytes read, or `None` when a non-blocking read finds nothing.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<usize>, SysError> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writing.
    let ret = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
        return Ok(None);
    }
    check("read", ret as libc::c_long).map(|n| Some(n as usize))
}

/// `poll(2)` once, without waiting: the `revents` of `fd` for `events`.
pub fn poll_now(fd: BorrowedFd<'_>, events: i16) -> Result<i16, SysError> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: `p` is one valid pollfd.
    let ret = unsafe { libc::poll(&mut p, 1, 0) };
    check("poll", ret as libc::c_long)?;
    Ok(p.revents)
}

/// `tcsetpgrp(3)` on the caller's controlling terminal `fd`, with SIGTTOU blocked in the calling
/// thread (a background caller would otherwise be stopped).
pub fn set_foreground(fd: BorrowedFd<'_>, pgrp: i32) -> Result<(), SysError> {
    // SAFETY: sigset_t values are initialised by sigemptyset before use; pthread_sigmask only
    // touches the calling thread's mask, restored below.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let ret = libc::tcsetpgrp(fd.as_raw_fd(), pgrp);
        let err = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if ret < 0 {
            return Err(SysError { call: "tcsetpgrp", source: err });
        }
    }
    Ok(())
}

/// A new description of `/dev/tty` on the terminal `slave` is open on, with open `flags`: a
/// short-lived child leads a new session, takes `slave`'s terminal as its controlling terminal
/// (`TIOCSCTTY`; the terminal must be no session's), opens `/dev/tty`, and the caller takes that fd
/// with `pidfd_getfd`; the child is then killed and reaped, which leaves the terminal to no session
/// again (a pty gets no hangup). See tty(4) for `/dev/tty`.
pub fn open_dev_tty(slave: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd, SysError> {
    let (r, w) = crate::fd::pipe()?;
    // SAFETY: the child makes raw system calls only (async-signal-safe, even though the caller's
    // other threads do not exist in it) on values prepared before the fork, and never returns.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: as above; `fd` is a live local, the path a static NUL-terminated string.
        unsafe {
            let mut fd = -1;
            if libc::setsid() >= 0 && libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) >= 0 {
                fd = libc::open(c"/dev/tty".as_ptr(), flags | libc::O_NOCTTY);
            }
            if fd < 0 {
                fd = -*libc::__errno_location();
            }
            libc::write(w.as_raw_fd(), (&raw const fd).cast(), 4);
            loop {
                libc::pause();
            }
        }
    }
    check("fork", child as libc::c_long)?;
    drop(w);
    let child = crate::Pid(child);
    let got = take_child_fd(child, &r);
    // SAFETY: plain integer arguments; the child is ours and waited for by its pid only.
    unsafe {
        libc::kill(child.0, libc::SIGKILL);
        libc::waitpid(child.0, std::ptr::null_mut(), 0);
    }
    got
}

/// The fd whose number `child` writes to `pipe` (a negative errno if it failed), taken with
/// `pidfd_getfd`.
fn take_child_fd(child: crate::Pid, pipe: &OwnedFd) -> Result<OwnedFd, SysError> {
    let mut num = [0u8; 4];
    // SAFETY: `num` is valid for 4 bytes of writing.
    let n = unsafe { libc::read(pipe.as_raw_fd(), num.as_mut_ptr().cast(), 4) };
    check("read", n as libc::c_long)?;
    let fd = i32::from_ne_bytes(num);
    if n != 4 || fd < 0 {
        return Err(SysError::from_errno(
            "open(/dev/tty) in a session of its own",
            if n == 4 { -fd } else { libc::EIO },
        ));
    }
    let pidfd = crate::fd::pidfd_open(child)?;
    crate::fd::pidfd_getfd(pidfd.as_fd(), fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termios2_is_the_kernel_size() {
        assert_eq!(std::mem::size_of::<Termios2>(), 44);
        assert_eq!(std::mem::size_of::<WinSize>(), 8);
    }
}
