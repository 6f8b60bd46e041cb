//! The bytes queued in a pseudo-terminal pair, both ways.
//!
//! The kernel lets them be read only destructively, so a dump reads them and pushes them straight
//! back; restore pushes them into the new pair the same way. Pushing is `TIOCSTI`, which hands one
//! byte to the line discipline at once (no flip buffer in between): the slave's bytes pass it
//! under settings that store them as they are (no echo, no signals, no input mapping, no editing
//! characters), keeping canonical mode as it was so that complete lines stay lines.
//!
//! - To the master (the slave's output not read yet): the master's line discipline is raw; a read
//!   in packet mode starts with a status byte, dropped here (a pending status is refused at dump).
//! - To the slave (input not read yet): in canonical mode, the complete lines one `read` at a time
//!   (each ends with its newline, EOL or EOL2 character; a line ended by EOF is kept with the EOF
//!   character, which ends it again when pushed back), then the line being edited, read with
//!   canonical mode off for a moment; in non-canonical mode, every byte.

use stasis_sys::fd::set_status_flags;
use stasis_sys::tty::{self, Termios2};
use stasis_sys::SysError;
use std::os::fd::BorrowedFd;

const BUF: usize = 8192;
/// A line discipline's buffer is full at this many bytes (`N_TTY_BUF_SIZE` - 1).
pub const FULL: usize = 4095;
/// More reads than any queue (4 KiB per direction) needs.
const MAX_READS: usize = 8192;

/// Read everything queued on a master (flags: its status flags, put back after).
pub fn take_master(m: BorrowedFd<'_>, flags: u32, packet: bool) -> Result<Vec<u8>, SysError> {
    let skip = usize::from(packet);
    drain(m, flags, false, |chunk, out| out.extend_from_slice(chunk.get(skip..).unwrap_or_default()))
}

/// Push `data` back into the queue a master reads.
pub fn give_master(m: BorrowedFd<'_>, data: &[u8]) -> Result<(), SysError> {
    data.iter().try_for_each(|&b| tty::push_input(m, b))
}

/// Read everything queued on the slave of master `m` through `slave` (its status flags: `flags`),
/// whose settings are `t`: (complete lines, the rest).
pub fn take_slave(
    m: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    flags: u32,
    t: &Termios2,
) -> Result<(Vec<Vec<u8>>, Vec<u8>), SysError> {
    let mut lines = Vec::new();
    if t.lflag & libc::ICANON != 0 {
        let eof = t.cc[libc::VEOF];
        let ends = [b'\n', t.cc[libc::VEOL], t.cc[libc::VEOL2]];
        drain(slave, flags, true, |chunk, _| {
            let mut line = chunk.to_vec();
            // A read of 0 bytes is an empty line ended by EOF.
            if !line.last().is_some_and(|c| *c != 0 && ends.contains(c)) {
                line.push(eof);
            }
            lines.push(line);
        })?;
        let mut raw = *t;
        raw.lflag &= !libc::ICANON;
        raw.cc[libc::VMIN] = 0;
        raw.cc[libc::VTIME] = 0;
        tty::set_termios(m, &raw)?;
    }
    let rest = drain(slave, flags, false, |chunk, out| out.extend_from_slice(chunk));
    tty::set_termios(m, t)?;
    Ok((lines, rest?))
}

/// Push `lines` then `rest` into the input queue of `slave` (master `m`), whose settings are `t`.
pub fn give_slave(
    m: BorrowedFd<'_>,
    slave: BorrowedFd<'_>,
    t: &Termios2,
    lines: &[Vec<u8>],
    rest: &[u8],
) -> Result<(), SysError> {
    if lines.is_empty() && rest.is_empty() {
        return Ok(());
    }
    tty::set_termios(m, &storing(t))?;
    let pushed = lines.iter().flatten().chain(rest).try_for_each(|&b| tty::push_input(slave, b));
    let back = tty::set_termios(m, t);
    pushed.and(back)
}

/// `t` with what would change the bytes pushed turned off: echo, signals, input mapping and flow
/// control, and the editing characters (canonical mode, EOF, EOL and EOL2 stay).
fn storing(t: &Termios2) -> Termios2 {
    let mut s = *t;
    s.iflag = 0;
    s.lflag &= !(libc::ECHO
        | libc::ECHOE
        | libc::ECHOK
        | libc::ECHONL
        | libc::ECHOCTL
        | libc::ECHOKE
        | libc::ECHOPRT
        | libc::ISIG
        | libc::IEXTEN);
    for c in [libc::VERASE, libc::VKILL, libc::VWERASE, libc::VREPRINT, libc::VLNEXT, libc::VDISCARD] {
        s.cc[c] = 0;
    }
    s
}

/// Non-blocking reads of `fd` until nothing is left, each chunk handed to `each` (a read of 0
/// bytes too if `lines`: in canonical mode it is an empty line); the status flags are `flags`
/// again after.
fn drain(
    fd: BorrowedFd<'_>,
    flags: u32,
    lines: bool,
    mut each: impl FnMut(&[u8], &mut Vec<u8>),
) -> Result<Vec<u8>, SysError> {
    set_status_flags(fd, (flags as i32) | libc::O_NONBLOCK)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; BUF];
    let mut result = Ok(());
    for _ in 0..MAX_READS {
        match tty::read_some(fd, &mut buf) {
            Ok(Some(0)) if !lines => break,
            Ok(Some(n)) => each(&buf[..n], &mut out),
            Ok(None) => break,
            // EIO: the other end is closed and nothing is left.
            Err(e) if e.errno() == libc::EIO => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let back = set_status_flags(fd, flags as i32);
    result.and(back).map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_bytes_pass_unchanged() {
        let mut t = Termios2 {
            iflag: libc::ICRNL | libc::IXON,
            lflag: libc::ICANON | libc::ECHO | libc::ISIG,
            ..Default::default()
        };
        t.cc[libc::VEOF] = 4;
        t.cc[libc::VERASE] = 0x7f;
        let s = storing(&t);
        assert_eq!(s.iflag, 0);
        assert_eq!(s.lflag, libc::ICANON);
        assert_eq!((s.cc[libc::VEOF], s.cc[libc::VERASE]), (4, 0));
    }
}
