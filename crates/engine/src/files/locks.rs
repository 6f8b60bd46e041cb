//! File locks, kept with `--file-locks`: `flock` locks, POSIX record locks (`F_SETLK`), OFD record
//! locks (`F_OFD_SETLK`) and leases (`F_SETLEASE`), with their type and range.
//!
//! Dump reads the `lock:` lines of each fd's fdinfo, which list the locks of the fd's process on
//! its file (POSIX: owned by the fd table) and those of its open file description (flock, OFD,
//! lease). A POSIX lock is recorded in its process's `fds` image; a description's lock once, in
//! the process that took it (the pid the kernel shows) if it holds the description, else in the
//! first process found holding it. Without `--file-locks` a lock fails the dump, naming the fd and
//! the option. With it, `/proc/locks` is read once the whole tree is seen, and a lock on a file of
//! the tree that is not one of the tree's (held by a process outside it) fails the dump, named: the
//! tree shares that lock state with the outside, which a restore cannot make again. A lease being
//! broken, a delegation or a mandatory lock is refused.
//!
//! Restore takes each lock again in its process, once its fds are installed (closing any fd of a
//! file drops the process's POSIX locks on it, so nothing is closed after), with injected
//! non-blocking calls: `flock(LOCK_NB)`, `fcntl(F_SETLK)`, `fcntl(F_OFD_SETLK)`, `fcntl(F_SETLEASE)`.
//! POSIX locks are taken before the process forks its children, which do not inherit them.

use crate::error::{Error, Result};
use stasis_image::model::{FdTable, FileLock, LockKind};
use stasis_sys::inject::Injector;
use stasis_sys::remote::Remote;
use stasis_sys::Pid;

/// One lock line of fdinfo or `/proc/locks`.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub lock: FileLock,
    /// Device (major, minor) and inode of the locked file.
    pub dev: (u64, u64),
    pub ino: u64,
}

/// Parses `1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (fdinfo's value or a `/proc/locks`
/// line): None for a waiter (`->`) or a passing `ACCESS` entry, an error naming what cannot be
/// taken again.
pub fn parse(text: &str) -> Option<std::result::Result<Line, String>> {
    let t: Vec<&str> = text.split_whitespace().collect();
    if t.get(1) == Some(&"->") {
        return None;
    }
    let (kind, mode) = (*t.get(1)?, *t.get(2)?);
    let kind = match (kind, mode) {
        ("POSIX", "ADVISORY") => LockKind::Posix,
        ("OFDLCK", "ADVISORY") => LockKind::Ofd,
        ("FLOCK", "ADVISORY") => LockKind::Flock,
        ("LEASE", "ACTIVE") => LockKind::Lease,
        ("ACCESS", _) => return None,
        _ => return Some(Err(format!("a {kind} {mode} lock ({})", text.trim()))),
    };
    let write = match *t.get(3)? {
        "WRITE" => true,
        "READ" => false,
        other => return Some(Err(format!("a lock of type {other} ({})", text.trim()))),
    };
    let pid = t.get(4)?.parse().ok()?;
    let mut id = t.get(5)?.split(':');
    let hex = |s: Option<&str>| s.and_then(|v| u64::from_str_radix(v, 16).ok());
    let dev = (hex(id.next())?, hex(id.next())?);
    let ino = id.next()?.parse().ok()?;
    let start: u64 = t.get(6)?.parse().ok()?;
    let len = match *t.get(7)? {
        "EOF" => 0,
        end => end.parse::<u64>().ok()?.checked_sub(start)? + 1,
    };
    let lock = FileLock { kind: kind as i32, fd: -1, write, start, len, pid };
    Some(Ok(Line { lock, dev, ino }))
}

/// A lock of the tree: the file's (device, inode) and the lock.
type Recorded = ((u64, u64), u64, FileLock);

/// A description's lock waiting for its taker: file id, first holder, lock (with that holder's fd),
/// the file's device and inode.
type Pending = (u32, Pid, FileLock, (u64, u64), u64);

/// What the dump knows of the tree's locks so far.
#[derive(Default)]
pub struct DumpState {
    /// `--file-locks` was given.
    pub enabled: bool,
    /// Every lock recorded (for the check against `/proc/locks`).
    recorded: Vec<Recorded>,
    /// POSIX locks recorded already: (process, file, lock with fd -1).
    posix: Vec<(Pid, (u64, u64), u64, FileLock)>,
    /// Description locks recorded already: (file id, lock with fd -1).
    claimed: Vec<(u32, FileLock)>,
    /// Description locks seen in a process that did not take them: file id, the first holder, the
    /// lock (with that holder's fd), the file.
    pending: Vec<Pending>,
}

/// A lock without its fd, to compare locks of one description or file.
fn bare(l: &FileLock) -> FileLock {
    FileLock { fd: -1, ..l.clone() }
}

/// The lock lines of fd `fd` of `pid` (description `id`), into its table or, for a description's
/// lock taken by another process, pending until that process is seen.
pub fn note(st: &mut DumpState, pid: Pid, fd: i32, id: u32, lines: &[&str], table: &mut FdTable) -> Result<()> {
    for text in lines {
        let line = match parse(text) {
            None => continue,
            Some(Ok(l)) => l,
            Some(Err(what)) => return Err(Error::UnsupportedFd { pid, fd, what }),
        };
        if !st.enabled {
            let what = format!("a file lock ({}; dump with --file-locks to keep it)", text.trim());
            return Err(Error::UnsupportedFd { pid, fd, what });
        }
        let lock = FileLock { fd, ..line.lock.clone() };
        if line.lock.kind == LockKind::Posix as i32 {
            // Every fd of the process on the file shows the process's POSIX locks on it.
            let seen = (pid, line.dev, line.ino, bare(&lock));
            if !st.posix.contains(&seen) {
                st.posix.push(seen);
                st.recorded.push((line.dev, line.ino, lock.clone()));
                table.locks.push(lock);
            }
            continue;
        }
        let key = (id, bare(&lock));
        if st.claimed.contains(&key) {
            continue;
        }
        // An OFD lock does not show its taker (-1): its first holder takes it again.
        if lock.pid == pid.0 || lock.kind == LockKind::Ofd as i32 {
            st.pending.retain(|(i, _, l, _, _)| (*i, bare(l)) != key);
            st.claimed.push(key);
            st.recorded.push((line.dev, line.ino, lock.clone()));
            table.locks.push(lock);
        } else if !st.pending.iter().any(|(i, _, l, _, _)| (*i, bare(l)) == key) {
            st.pending.push((id, pid, lock, line.dev, line.ino));
        }
    }
    Ok(())
}

/// Once every process is seen: the description locks whose taker is not in the tree go to their
/// first holder (`tables` by pid).
pub fn finish(st: &mut DumpState, tables: &mut [(Pid, &mut FdTable)]) {
    for (_, holder, lock, dev, ino) in std::mem::take(&mut st.pending) {
        if let Some((_, t)) = tables.iter_mut().find(|(p, _)| *p == holder) {
            st.recorded.push((dev, ino, lock.clone()));
            t.locks.push(lock);
        }
    }
}

/// Refuses a lock on a file of the tree held outside it: `files` are the tree's fds as (pid, fd,
/// device as `st_dev`, inode); `pids` the tree's processes.
pub fn check_outside(st: &DumpState, files: &[(Pid, i32, u64, u64)], pids: &[i32]) -> Result<()> {
    if !st.enabled {
        return Ok(());
    }
    const LOCKS: &str = "/proc/locks";
    let text = std::fs::read_to_string(LOCKS).map_err(Error::io(LOCKS))?;
    let mut ours: Vec<&Recorded> = st.recorded.iter().collect();
    for raw in text.lines() {
        let Some(Ok(line)) = parse(raw) else { continue };
        let dev = |d: u64| (crate::proc::fdinfo_fields::major(d), crate::proc::fdinfo_fields::minor(d));
        let Some(&(pid, fd, _, _)) = files.iter().find(|(_, _, d, i)| dev(*d) == line.dev && *i == line.ino) else {
            continue;
        };
        let l = &line.lock;
        let same =
            |r: &&Recorded| r.0 == line.dev && r.1 == line.ino && FileLock { pid: l.pid, ..bare(&r.2) } == bare(l);
        if let Some(i) = ours.iter().position(same) {
            ours.swap_remove(i);
            continue;
        }
        // A lock of the tree's own not recorded (a second fd of a description); OFD locks show no pid.
        if l.kind != LockKind::Ofd as i32 && pids.contains(&l.pid) {
            continue;
        }
        let holder = if l.pid > 0 { format!("pid {}", l.pid) } else { "an open file description".into() };
        let what = format!("a file lock held outside the tree by {holder} on this file ({})", raw.trim());
        return Err(Error::UnsupportedFd { pid, fd, what });
    }
    Ok(())
}

/// Take the locks of `table` again in the process `inj` drives.
pub fn restore(inj: &mut Injector, pid: Pid, table: &FdTable) -> Result<()> {
    for l in &table.locks {
        take(inj, l).map_err(|e| Error::Step { pid, what: describe(l), source: Box::new(e) })?;
    }
    Ok(())
}

/// `fd 5: POSIX write lock 0+100`, for messages.
pub fn describe(l: &FileLock) -> String {
    let kind = LockKind::try_from(l.kind).map(|k| format!("{k:?}")).unwrap_or_else(|_| format!("kind {}", l.kind));
    let rw = if l.write { "write" } else { "read" };
    let range = if l.len == 0 { format!("{}-EOF", l.start) } else { format!("{}+{}", l.start, l.len) };
    format!("fd {}: {kind} {rw} lock {range} (pid {} at dump)", l.fd, l.pid)
}

fn take(inj: &mut Injector, l: &FileLock) -> Result<()> {
    let kind = if l.write { libc::F_WRLCK } else { libc::F_RDLCK };
    match LockKind::try_from(l.kind) {
        Ok(LockKind::Flock) => {
            let op = if l.write { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
            inj.flock(l.fd, op)?;
        }
        Ok(LockKind::Lease) => inj.fcntl_setlease(l.fd, kind)?,
        Ok(k @ (LockKind::Posix | LockKind::Ofd)) => {
            inj.fcntl_setlk(l.fd, k == LockKind::Ofd, kind as i16, l.start, l.len)?;
        }
        Err(_) => {
            return Err(Error::Incompatible {
                file: "fds.img".into(),
                what: format!("{}: unknown lock kind", describe(l)),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kinds() {
        let l = parse("1: POSIX  ADVISORY  WRITE 4242 fd:01:1234 0 99").unwrap().unwrap();
        assert_eq!((l.lock.kind, l.lock.write, l.lock.start, l.lock.len, l.lock.pid), (1, true, 0, 100, 4242));
        assert_eq!((l.dev, l.ino), ((0xfd, 1), 1234));
        let l = parse("2: OFDLCK ADVISORY  READ -1 00:2a:77 100 EOF").unwrap().unwrap();
        assert_eq!((l.lock.kind, l.lock.write, l.lock.start, l.lock.len, l.lock.pid), (2, false, 100, 0, -1));
        let l = parse("3: FLOCK  ADVISORY  WRITE 7 08:01:5 0 EOF").unwrap().unwrap();
        assert_eq!((l.lock.kind, l.lock.write), (0, true));
        let l = parse("4: LEASE  ACTIVE    READ 7 08:01:5 0 EOF").unwrap().unwrap();
        assert_eq!(l.lock.kind, 3);
        assert!(parse("1: -> POSIX  ADVISORY  WRITE 9 08:01:5 0 EOF").is_none());
        assert!(parse("5: LEASE  BREAKING  READ 7 08:01:5 0 EOF").unwrap().is_err());
        assert!(parse("6: DELEG  ACTIVE    READ 7 08:01:5 0 EOF").unwrap().is_err());
    }
}
