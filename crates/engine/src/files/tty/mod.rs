//! Pseudo-terminals held by the tree, and the controlling terminals of its sessions.
//!
//! Dump: each fd on a pty master (`/dev/ptmx`, `/dev/pts/ptmx`), on a slave (`/dev/pts/N`), or on
//! `/dev/tty` naming a slave, becomes a [`PtyFile`] carrying the index N ([`dump`]); once every
//! process is seen, [`resolve`] pairs the ends: a pair whose master is in the tree gets its state
//! (termios, window size, lock, packet mode, the data queued both ways: see [`queue`]) stored with
//! the master; a slave whose master is outside is the `--shell-job` terminal, or refused. The
//! controlling terminal and foreground group of each process are in its `ProcessEntry`;
//! [`check_sessions`] refuses what restore could not make again.
//!
//! Restore ([`restore`]): every pair is made before any process, with its old index, in the
//! controller; a session leader takes its terminal with `TIOCSCTTY` right after `setsid` (before its
//! children are forked, so they inherit it), and sets the foreground group once every group exists.
//!
//! Invariant: a failed dump loses no queued byte (what is read is pushed back at once).

pub mod queue;
pub mod restore;

use super::{FileIds, Probe};
use crate::error::{Error, Result};
use crate::proc::fdinfo_fields::{major, minor};
use stasis_image::model::{FileEntry, FileKind, ProcessEntry, PtyFile, PtyState, Terminal};
use stasis_sys::tty;
use stasis_sys::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

pub use restore::{open_all, Ptys, Terminals};

/// Majors of the Unix98 pty slaves: the kernel makes `/dev/pts/N` device 136:N (20-bit minors);
/// 137 to 143 are the old split of indices above 255 (N = (major - 136) * 256 + minor).
const PTS_MAJORS: std::ops::RangeInclusive<u64> = 136..=143;
/// `/dev/tty` and `/dev/ptmx` (major 5, minors 0 and 2).
const TTYAUX_MAJOR: u64 = 5;

/// The pty ends a dump has seen (with an fd), for [`resolve`].
#[derive(Default)]
pub struct Seens(pub Vec<Seen>);

/// An end of a pty seen by the dump, kept until [`resolve`].
pub struct Seen {
    pub id: u32,
    pub pid: Pid,
    pub fd: i32,
    pub index: u32,
    pub master: bool,
    /// Our copy of the fd (same open file description) and its status flags.
    pub file: OwnedFd,
    pub flags: u32,
}

/// The `st_rdev` of `/dev/pts/N`.
pub fn pts_rdev(index: u32) -> u64 {
    libc::makedev(136, index)
}

/// N if `rdev` is `/dev/pts/N`.
pub fn pts_index(rdev: u64) -> Option<u32> {
    PTS_MAJORS.contains(&major(rdev)).then(|| ((major(rdev) - 136) * 256 + minor(rdev)) as u32)
}

/// A device number as `/proc/PID/stat` (`tty_nr`) and `TIOCGDEV` give it, as `st_rdev`.
pub fn decode_dev(nr: u32) -> u64 {
    let maj = (nr >> 8) & 0xfff;
    let min = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    libc::makedev(maj, min)
}

/// The pty end behind `p`, if it is one; `None` for other character devices (and for a `/dev/tty`
/// that names another kind of terminal).
pub fn dump(p: &Probe) -> Result<Option<FileKind>> {
    let rdev = p.meta.rdev();
    let path = p.link.to_string_lossy().into_owned();
    let sys = |what| Error::sys(p.pid.0, what);
    let (index, master) = if major(rdev) == TTYAUX_MAJOR && minor(rdev) == 2 {
        (tty::pty_index(p.file).map_err(sys("TIOCGPTN on a pty master"))?, true)
    } else if let Some(n) = pts_index(rdev) {
        (n, false)
    } else if major(rdev) == TTYAUX_MAJOR && minor(rdev) == 0 {
        match tty::tty_device(p.file).ok().map(decode_dev).and_then(pts_index) {
            Some(n) => (n, false),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let (exclusive, hung_up) = match tty::exclusive(p.file) {
        Ok(excl) => (excl, false),
        // A slave whose master was closed is hung up: every ioctl gives EIO.
        Err(e) if e.errno() == libc::EIO && !master => (false, true),
        Err(e) => return Err(sys("TIOCGEXCL")(e)),
    };
    Ok(Some(FileKind::Pty(PtyFile { index, master, path, exclusive, state: None, hung_up })))
}

/// Keep a copy of the fd of a pty end just classified as file `id`.
pub fn note(kind: &FileKind, id: u32, p: &Probe, ptys: &mut Vec<Seen>) -> Result<()> {
    let FileKind::Pty(pty) = kind else { return Ok(()) };
    if pty.hung_up {
        // Of no pair any more (its index may be another pair's now).
        return Ok(());
    }
    let file = p.file.try_clone_to_owned().map_err(Error::io(p.link))?;
    ptys.push(Seen { id, pid: p.pid, fd: p.fd, index: pty.index, master: pty.master, file, flags: p.flags });
    Ok(())
}

/// Pair the pty ends seen in the tree `pids` (see the module doc): the state of each pair goes to
/// its master's entry; a slave whose master is outside the tree becomes the external terminal with
/// `shell_job`, and is refused otherwise, as is a pair whose slave is held outside the tree.
pub fn resolve(files: &mut [FileEntry], ids: &mut FileIds, pids: &[i32], shell_job: bool) -> Result<()> {
    let seen = std::mem::take(&mut ids.state::<Seens>().0);
    let result = pair(files, &seen, pids, shell_job);
    ids.state::<Seens>().0 = seen;
    result
}

fn pair(files: &mut [FileEntry], seen: &[Seen], pids: &[i32], shell_job: bool) -> Result<()> {
    let mut indices: Vec<u32> = seen.iter().map(|s| s.index).collect();
    indices.sort_unstable();
    indices.dedup();
    for index in indices {
        let ends: Vec<&Seen> = seen.iter().filter(|s| s.index == index).collect();
        let Some(master) = ends.iter().find(|s| s.master) else {
            external_slaves(files, &ends, shell_job)?;
            continue;
        };
        if let Some((pid, fd)) = held_outside(index, pids) {
            let what =
                format!("pty /dev/pts/{index} whose slave is also open in pid {pid} (fd {fd}), outside the dump");
            return Err(Error::UnsupportedFd { pid: master.pid, fd: master.fd, what });
        }
        let readable = |s: &&&Seen| !s.master && s.flags & libc::O_ACCMODE as u32 != libc::O_WRONLY as u32;
        let peer;
        let slave = match ends.iter().find(readable) {
            Some(s) => Some((s.file.as_fd(), s.flags)),
            // Slaves open for writing only: a description of our own to read the queue on.
            None if ends.iter().any(|s| !s.master) => {
                let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
                peer = tty::open_peer(master.file.as_fd(), flags).map_err(Error::sys(master.pid.0, "TIOCGPTPEER"))?;
                Some((peer.as_fd(), flags as u32))
            }
            None => None,
        };
        let state = read_state(master, slave)?;
        if let Some(FileKind::Pty(p)) = files.iter_mut().find(|f| f.id == master.id).and_then(|f| f.kind.as_mut()) {
            p.state = Some(state);
        }
    }
    Ok(())
}

/// Slaves of a pty whose master is not in the tree: the terminal of a shell job, or refused.
fn external_slaves(files: &mut [FileEntry], ends: &[&Seen], shell_job: bool) -> Result<()> {
    for s in ends {
        let f = files.iter_mut().find(|f| f.id == s.id).expect("noted with its entry");
        let Some(FileKind::Pty(p)) = &f.kind else { continue };
        if !shell_job {
            let pts = format!("/dev/pts/{}", p.index);
            let name = if p.path == pts { pts } else { format!("{} ({pts})", p.path) };
            let what = format!(
                "terminal {name} whose master is not in the dump (dump with --shell-job to restore it onto the \
                 terminal stasis runs from)"
            );
            return Err(Error::UnsupportedFd { pid: s.pid, fd: s.fd, what });
        }
        let kind = FileKind::Terminal(Terminal { path: p.path.clone(), rdev: pts_rdev(p.index), external: true });
        f.kind = Some(kind);
    }
    Ok(())
}

/// A process outside `pids` with `/dev/pts/N` open: (pid, fd).
fn held_outside(index: u32, pids: &[i32]) -> Option<(i32, i32)> {
    let want = std::path::PathBuf::from(format!("/dev/pts/{index}"));
    let procs = std::fs::read_dir("/proc").ok()?;
    for pid in procs.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
        if pids.contains(&pid) || pid == std::process::id() as i32 {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l == want) {
                return Some((pid, fd.file_name().to_str()?.parse().ok()?));
            }
        }
    }
    None
}

/// The state of the pair of `master`, with the data queued both ways (read, and pushed back).
fn read_state(master: &Seen, slave: Option<(BorrowedFd<'_>, u32)>) -> Result<PtyState> {
    let (pid, m) = (master.pid.0, master.file.as_fd());
    let sys = |what| Error::sys(pid, what);
    let t = tty::get_termios(m).map_err(sys("TCGETS2 on a pty master"))?;
    let w = tty::get_winsize(m).map_err(sys("TIOCGWINSZ on a pty master"))?;
    let mut s = PtyState {
        iflag: t.iflag,
        oflag: t.oflag,
        cflag: t.cflag,
        lflag: t.lflag,
        line: t.line as u32,
        cc: t.cc.to_vec(),
        ispeed: t.ispeed,
        ospeed: t.ospeed,
        rows: w.row as u32,
        cols: w.col as u32,
        xpixel: w.xpixel as u32,
        ypixel: w.ypixel as u32,
        locked: tty::pty_locked(m).map_err(sys("TIOCGPTLCK"))?,
        packet: tty::packet_mode(m).map_err(sys("TIOCGPKT"))?,
        slave_closed: tty::poll_now(m, libc::POLLHUP).map_err(sys("poll on a pty master"))? & libc::POLLHUP != 0,
        ..Default::default()
    };
    if s.packet && tty::poll_now(m, libc::POLLPRI).map_err(sys("poll on a pty master"))? & libc::POLLPRI != 0 {
        let what = "pty master in packet mode with a status byte not read yet".into();
        return Err(Error::UnsupportedFd { pid: Pid(pid), fd: master.fd, what });
    }
    // A full buffer may have more waiting behind it, which could not all be pushed back.
    let queued = tty::queued(m).map_err(sys("FIONREAD on a pty master"))?;
    if queued >= queue::FULL {
        let what = format!("pty master /dev/pts/{} with a full input queue ({queued} bytes not read)", master.index);
        return Err(Error::UnsupportedFd { pid: Pid(pid), fd: master.fd, what });
    }
    s.master_input = queue::take_master(m, master.flags, s.packet).map_err(sys("reading a pty master's queue"))?;
    queue::give_master(m, &s.master_input).map_err(|e| lost(pid, master.fd, s.master_input.len(), e))?;
    if let Some((slave, flags)) = slave {
        let (lines, rest) = queue::take_slave(m, slave, flags, &t).map_err(sys("reading a pty slave's queue"))?;
        let n = lines.iter().map(Vec::len).sum::<usize>() + rest.len();
        queue::give_slave(m, slave, &t, &lines, &rest).map_err(|e| lost(pid, master.fd, n, e))?;
        (s.slave_lines, s.slave_input) = (lines, rest);
    }
    // The slave inode's owner and mode (set by its opener, fchown, fchmod): the tree shares our
    // mount namespace, so its `/dev/pts/N` is ours.
    let path = format!("/dev/pts/{}", master.index);
    let meta = std::fs::metadata(&path).map_err(Error::io(&path))?;
    (s.slave_uid, s.slave_gid, s.slave_mode) = (meta.uid(), meta.gid(), meta.mode());
    Ok(s)
}

fn lost(pid: i32, fd: i32, n: usize, e: stasis_sys::SysError) -> Error {
    Error::FdSys { pid: Pid(pid), fd, what: format!("putting back {n} bytes queued on a pty"), source: e }
}

/// The controlling terminal of a process as its `ProcessEntry` keeps it: (device, foreground group).
pub fn ctty_of(stat: &crate::proc::Stat) -> (u64, i32) {
    if stat.tty_nr == 0 {
        return (0, 0);
    }
    (decode_dev(stat.tty_nr), stat.tpgid.max(0))
}

/// Refuse the controlling terminals restore could not give back: a session leader's that is not a
/// pty of the dump, a pty of the dump whose session leader is not in the dump, a foreground group
/// not in the dump. A process that does not lead its session and whose terminal is not in the dump
/// (a job of a shell) is restored in stasis' session, as before.
pub fn check_sessions(procs: &[&ProcessEntry], files: &[FileEntry]) -> Result<()> {
    let in_dump =
        |index: u32| files.iter().any(|f| matches!(&f.kind, Some(FileKind::Pty(p)) if p.master && p.index == index));
    for p in procs.iter().filter(|p| p.ctty != 0) {
        let (maj, min) = (major(p.ctty), minor(p.ctty));
        match pts_index(p.ctty).filter(|&n| in_dump(n)) {
            Some(n) => {
                if !procs.iter().any(|q| q.pid == p.sid) {
                    let what = format!(
                        "controlling terminal /dev/pts/{n} of session {}, whose leader is not in the dump",
                        p.sid
                    );
                    return Err(Error::Unsupported { pid: Pid(p.pid), what });
                }
                let fg = p.tty_fg_pgrp;
                if fg > 0 && !procs.iter().any(|q| q.pgid == fg && q.sid == p.sid) {
                    let what =
                        format!("foreground process group {fg} of /dev/pts/{n}, which has no process in the dump");
                    return Err(Error::Unsupported { pid: Pid(p.pid), what });
                }
            }
            // Restored in stasis' session, with its terminal (see `session::restore`).
            None if p.sid != p.pid => {}
            None => {
                let what = format!("controlling terminal {maj}:{min} of its session, which is not a pty of the dump");
                return Err(Error::Unsupported { pid: Pid(p.pid), what });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pts_devices_and_indices() {
        assert_eq!(pts_index(pts_rdev(0)), Some(0));
        assert_eq!(pts_index(pts_rdev(300)), Some(300));
        assert_eq!(pts_index(libc::makedev(5, 2)), None);
        assert_eq!(pts_index(libc::makedev(4, 1)), None);
    }

    #[test]
    fn stat_tty_nr_decodes_like_st_rdev() {
        // /proc/PID/stat shows /dev/pts/3 as 34819 (136 << 8 | 3), /dev/pts/300 as minor 300 split.
        assert_eq!(decode_dev(34819), pts_rdev(3));
        assert_eq!(decode_dev((136 << 8) | (300 & 0xff) | ((300 & !0xff) << 12)), pts_rdev(300));
        assert_eq!(decode_dev(0), libc::makedev(0, 0));
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    fn proc(pid: i32, pgid: i32, sid: i32, ctty: u64, fg: i32) -> ProcessEntry {
        ProcessEntry { pid, pgid, sid, ctty, tty_fg_pgrp: fg, ..Default::default() }
    }

    fn master(index: u32) -> FileEntry {
        let kind = FileKind::Pty(PtyFile { index, master: true, ..Default::default() });
        FileEntry { id: 1, flags: 2, kind: Some(kind), owner: None }
    }

    #[test]
    fn a_session_on_a_pty_of_the_dump_passes() {
        let (leader, job) = (proc(10, 10, 10, pts_rdev(3), 11), proc(11, 11, 10, pts_rdev(3), 11));
        assert!(check_sessions(&[&leader, &job], &[master(3)]).is_ok());
    }

    #[test]
    fn refusals_name_the_process() {
        // A leader whose terminal is not in the dump.
        let leader = proc(10, 10, 10, pts_rdev(3), 10);
        let err = check_sessions(&[&leader], &[]).unwrap_err().to_string();
        assert!(err.contains("pid 10") && err.contains("136:3"), "{err}");
        // A foreground group with no process in the dump.
        let leader = proc(10, 10, 10, pts_rdev(3), 99);
        let err = check_sessions(&[&leader], &[master(3)]).unwrap_err().to_string();
        assert!(err.contains("foreground process group 99"), "{err}");
        // A pty of the dump whose session leader is not in it.
        let member = proc(11, 11, 10, pts_rdev(3), 11);
        let err = check_sessions(&[&member], &[master(3)]).unwrap_err().to_string();
        assert!(err.contains("session 10"), "{err}");
    }

    #[test]
    fn a_job_of_an_outside_shell_passes() {
        let job = proc(11, 11, 10, pts_rdev(7), 11);
        assert!(check_sessions(&[&job], &[]).is_ok());
    }
}

/// Ptys, in the table of kinds: dumped by [`super::chardev`], paired once the tree is seen.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "pty",
    dump: None,
    configure: None,
    finish_dump: Some(|t| {
        let pids = t.pids();
        resolve(t.files, t.ids, &pids, t.shell_job)?;
        check_sessions(t.procs, t.files)
    }),
    opener: Some(|files, _| Ok(Box::new(open_all(files)?))),
    finish_restore: None,
};
