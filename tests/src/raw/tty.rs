//! Terminal wrappers for the pty workloads: a new pty pair, termios, window size, packet mode,
//! foreground groups, and a command started on a pty as its controlling terminal.

use super::cvt;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// A new pty master (`posix_openpt(O_RDWR | O_NOCTTY)`, granted and unlocked) and its slave's path.
pub fn open_pty() -> io::Result<(OwnedFd, String)> {
    // SAFETY: plain flags; the returned fd is owned by nobody else.
    let m = unsafe { OwnedFd::from_raw_fd(cvt(libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?) };
    // SAFETY: plain fd arguments on an open master.
    cvt(unsafe { libc::grantpt(m.as_raw_fd()) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::unlockpt(m.as_raw_fd()) })?;
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: `buf` is live and its length is passed.
    let r = unsafe { libc::ptsname_r(m.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: ptsname_r wrote a NUL-terminated string into `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned();
    Ok((m, name))
}

/// `n` new ptys ([`open_pty`]) with indices above `below` others: `below + n` are opened together
/// and the `n` with the highest indices kept. The kernel gives each new pty the lowest free index,
/// so the ptys of tests running meanwhile (while these are dumped, killed and restored) leave these
/// indices free for the restore.
pub fn high_ptys(below: usize, n: usize) -> io::Result<Vec<(OwnedFd, String)>> {
    let mut all: Vec<(OwnedFd, String)> = (0..below + n).map(|_| open_pty()).collect::<io::Result<_>>()?;
    all.sort_by_key(|(m, _)| pty_index(m.as_fd()).unwrap_or(-1));
    Ok(all.split_off(below))
}

/// One pty of [`high_ptys`].
pub fn high_pty(below: usize) -> io::Result<(OwnedFd, String)> {
    high_ptys(below, 1).map(|mut v| v.remove(0))
}

/// `ioctl(TIOCSPTLCK)`: lock or unlock the slave of `master`.
pub fn set_pty_locked(master: BorrowedFd<'_>, locked: bool) -> io::Result<()> {
    let v: libc::c_int = locked.into();
    // SAFETY: `v` is a live int.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &v) }).map(drop)
}

/// `ioctl(TIOCGPTLCK)`.
pub fn pty_locked(master: BorrowedFd<'_>) -> io::Result<bool> {
    get_int(master, 0x8004_5439).map(|v| v != 0)
}

/// Opens the terminal `path` read-write; it becomes the caller's controlling terminal if the caller
/// leads a session without one (no `O_NOCTTY`).
pub fn open_terminal(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a live NUL-terminated string; the fd returned is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(cvt(libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC))?) })
}

/// Opens the terminal `path` read-write, never as the controlling terminal (`O_NOCTTY`).
pub fn open_terminal_noctty(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a live NUL-terminated string; the fd returned is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(cvt(libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?) })
}

/// `tcgetattr(3)`.
pub fn tcgetattr(fd: BorrowedFd<'_>) -> io::Result<libc::termios> {
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a live termios.
    cvt(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    Ok(t)
}

/// `tcsetattr(3)` with `TCSANOW`.
pub fn tcsetattr(fd: BorrowedFd<'_>, t: &libc::termios) -> io::Result<()> {
    // SAFETY: `t` is a live termios.
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, t) }).map(drop)
}

/// `cfsetspeed(3)` on `t`, then the input and output speeds it reads back.
pub fn set_speed(t: &mut libc::termios, speed: libc::speed_t) -> (libc::speed_t, libc::speed_t) {
    // SAFETY: `t` is a live termios.
    unsafe {
        libc::cfsetspeed(t, speed);
        (libc::cfgetispeed(t), libc::cfgetospeed(t))
    }
}

/// `ioctl(TIOCGWINSZ)`: (rows, columns).
pub fn winsize(fd: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    let mut w = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: `w` is a live winsize.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut w) })?;
    Ok((w.ws_row, w.ws_col))
}

/// `ioctl(TIOCSWINSZ)`.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let w = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: `w` is a live winsize.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &w) }).map(drop)
}

/// `ioctl(TIOCPKT)`.
pub fn set_packet_mode(master: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let v: libc::c_int = on.into();
    // SAFETY: `v` is a live int.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCPKT, &v) }).map(drop)
}

fn get_int(fd: BorrowedFd<'_>, req: libc::c_ulong) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    // SAFETY: `v` is a live int the request writes.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v) })?;
    Ok(v)
}

/// `ioctl(TIOCGPKT)`.
pub fn packet_mode(master: BorrowedFd<'_>) -> io::Result<bool> {
    get_int(master, 0x8004_5438).map(|v| v != 0)
}

/// `ioctl(TIOCGPTN)`: the index of the master's slave.
pub fn pty_index(master: BorrowedFd<'_>) -> io::Result<i32> {
    get_int(master, libc::TIOCGPTN)
}

/// `ioctl(TIOCGPGRP)`: the terminal's foreground group (on a master: its slave's).
pub fn foreground(fd: BorrowedFd<'_>) -> io::Result<i32> {
    get_int(fd, libc::TIOCGPGRP)
}

/// `tcsetpgrp(3)`.
pub fn set_foreground(fd: BorrowedFd<'_>, pgrp: i32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    cvt(unsafe { libc::tcsetpgrp(fd.as_raw_fd(), pgrp) }).map(drop)
}

/// `ttyname(3)` of `fd`.
pub fn ttyname(fd: BorrowedFd<'_>) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: `buf` is live and its length is passed.
    let r = unsafe { libc::ttyname_r(fd.as_raw_fd(), buf.as_mut_ptr(), buf.len()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    // SAFETY: ttyname_r wrote a NUL-terminated string into `buf`.
    Ok(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// Makes the child of `cmd` lead a new session whose controlling terminal is the pty slave
/// `slave`, on its stdin, stdout and stderr.
pub fn session_on_terminal(cmd: &mut Command, slave: &str) -> io::Result<()> {
    let c = CString::new(slave).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: between fork and exec only async-signal-safe calls are made (setsid, open, dup2,
    // ioctl, close) on the live string `c`, moved into the closure.
    unsafe {
        cmd.pre_exec(move || {
            cvt(libc::setsid())?;
            let fd = cvt(libc::open(c.as_ptr(), libc::O_RDWR))?;
            cvt(libc::ioctl(fd, libc::TIOCSCTTY, 0))?;
            for target in 0..3 {
                cvt(libc::dup2(fd, target))?;
            }
            if fd > 2 {
                libc::close(fd);
            }
            Ok(())
        });
    }
    Ok(())
}

/// `ioctl(TIOCGEXCL)`: whether the terminal is in exclusive mode (EIO once it was hung up).
pub fn exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    // SAFETY: `v` is a live int the kernel writes.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), 0x8004_5440, &mut v) })?;
    Ok(v != 0)
}
