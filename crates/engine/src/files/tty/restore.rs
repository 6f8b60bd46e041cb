//! Restore of pseudo-terminals: the pairs, with their old index and state, made in the controller
//! before any process; the controlling terminal and foreground group of each session, injected in
//! its leader.

use super::queue;
use crate::error::{Error, Result};
use crate::files::FdImporter;
use stasis_image::model::{FdTable, FileEntry, FileKind, ProcessEntry, PtyFile, PtyState};
use stasis_sys::remote::Remote;
use stasis_sys::tty::{self, Termios2, WinSize};
use stasis_sys::Pid;
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};

/// Rounds of [`allocate`], 10 ms longer each: about 2 s in all.
const ATTEMPTS: u32 = 20;

/// One slave description of each pair, by the slave's `st_rdev`: the terminal a session leader takes
/// as its controlling terminal.
#[derive(Default)]
pub struct Terminals(HashMap<u64, OwnedFd>);

impl Terminals {
    /// Give every slave up once the tree runs.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The pairs of an image being restored, by index.
#[derive(Default)]
pub struct Ptys {
    masters: HashMap<u32, OwnedFd>,
    terminals: Terminals,
    /// The masters of the pairs made for hung-up slaves, by old index: closed by [`Ptys::finish`],
    /// once each slave description is open, which hangs them up.
    hung_up: HashMap<u32, OwnedFd>,
}

/// Make every pair of `files` (see the module doc).
pub fn open_all(files: &[FileEntry]) -> Result<Ptys> {
    let ends: Vec<&PtyFile> = files
        .iter()
        .filter_map(|f| match &f.kind {
            Some(FileKind::Pty(p)) => Some(p),
            _ => None,
        })
        .collect();
    let masters: BTreeMap<u32, &PtyFile> = ends.iter().filter(|p| p.master).map(|p| (p.index, *p)).collect();
    if let Some(p) = ends.iter().find(|p| !p.hung_up && !masters.contains_key(&p.index)) {
        let what = format!("pty slave {} (/dev/pts/{}) without its master", p.path, p.index);
        return Err(Error::Incompatible { file: "files.img".into(), what });
    }
    let hung_up = hung_up_pairs(&ends, &masters)?;
    let mut out = Ptys { masters: allocate(&masters)?, terminals: Terminals::default(), hung_up };
    for (index, p) in &masters {
        let state = p.state.clone().unwrap_or_default();
        let master = out.masters[index].as_fd();
        let slaves = ends.iter().any(|e| !e.master && !e.hung_up && e.index == *index);
        set_owner(*index, &state)?;
        if let Some(slave) = set_up(master, *index, &state, p.exclusive, slaves)? {
            if ends.iter().any(|e| !e.master && !e.hung_up && e.index == *index && e.exclusive) {
                tty::set_exclusive(slave.as_fd()).map_err(io(*index))?;
            }
            out.terminals.0.insert(super::pts_rdev(*index), slave);
        }
    }
    Ok(out)
}

impl Ptys {
    /// The description of pty end `p` with status flags `flags`: the master itself, or a new slave.
    pub fn open(&self, p: &PtyFile, flags: u32) -> Result<OwnedFd> {
        let path = format!("/dev/pts/{}", p.index);
        let fd = if p.hung_up {
            hung_up_slave(&self.hung_up[&p.index], flags)?
        } else if p.master {
            let fd = self.masters[&p.index].try_clone().map_err(Error::io(&path))?;
            stasis_sys::fd::set_status_flags(fd.as_fd(), flags as i32).map_err(io(p.index))?;
            fd
        } else if p.path == "/dev/tty" {
            self.open_dev_tty(p, flags)?
        } else {
            open_tty(&path, flags)?
        };
        Ok(fd)
    }

    /// A slave opened as `/dev/tty`: a description of `/dev/tty` again (its link reads `/dev/tty`),
    /// made by a short-lived process that takes the pty as its controlling terminal for the time of
    /// the `open` (see `stasis_sys::tty::open_dev_tty`), with the status flags of `flags`.
    fn open_dev_tty(&self, p: &PtyFile, flags: u32) -> Result<OwnedFd> {
        let slave = self.terminals.0.get(&super::pts_rdev(p.index)).ok_or_else(|| Error::Incompatible {
            file: "files.img".into(),
            what: format!("/dev/tty on /dev/pts/{}: no slave of the pair was kept", p.index),
        })?;
        let fd = tty::open_dev_tty(slave.as_fd(), (flags as i32 & libc::O_ACCMODE) | libc::O_CLOEXEC).map_err(|e| {
            Error::Io { path: format!("/dev/tty on /dev/pts/{} ({})", p.index, e.call).into(), source: e.source }
        })?;
        stasis_sys::fd::set_status_flags(fd.as_fd(), flags as i32).map_err(io(p.index))?;
        Ok(fd)
    }

    /// Lock the slaves that were locked, once every description is open; the slaves to hand to
    /// session leaders.
    pub fn finish(mut self, files: &[FileEntry]) -> Result<Terminals> {
        self.hung_up.clear();
        for f in files {
            if let Some(FileKind::Pty(p)) = &f.kind {
                if p.master && p.state.as_ref().is_some_and(|s| s.locked) {
                    tty::set_pty_locked(self.masters[&p.index].as_fd(), true).map_err(io(p.index))?;
                }
            }
        }
        Ok(self.terminals)
    }
}

/// The slave inode of pair `index` gets the owner, group and mode of `s` (if the image has them).
fn set_owner(index: u32, s: &PtyState) -> Result<()> {
    if s.slave_mode == 0 {
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt;
    let path = format!("/dev/pts/{index}");
    std::os::unix::fs::chown(&path, Some(s.slave_uid), Some(s.slave_gid)).map_err(Error::io(&path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(s.slave_mode & 0o7777)).map_err(Error::io(&path))
}

/// A pair for each old index of the hung-up slaves of `ends`: with that index again when it is
/// free here and no pair of the image has it, else with any (the slave's path is gone either way).
fn hung_up_pairs(ends: &[&PtyFile], masters: &BTreeMap<u32, &PtyFile>) -> Result<HashMap<u32, OwnedFd>> {
    let mut out = HashMap::new();
    for p in ends.iter().filter(|p| p.hung_up) {
        if out.contains_key(&p.index) {
            continue;
        }
        let free = !masters.contains_key(&p.index) && !std::path::Path::new(&format!("/dev/pts/{}", p.index)).exists();
        let mut got = HashMap::new();
        if free {
            climb("/dev/ptmx", &[p.index], &mut got)?;
        }
        let master = match got.remove(&p.index) {
            Some(m) => m,
            None => open_tty("/dev/ptmx", libc::O_RDWR as u32)?,
        };
        tty::set_pty_locked(master.as_fd(), false).map_err(io(p.index))?;
        out.insert(p.index, master);
    }
    Ok(out)
}

/// A description of the slave of `master`, a pair made for a hung-up slave (see [`hung_up_pairs`]),
/// with the access mode and status flags of `flags`.
fn hung_up_slave(master: &OwnedFd, flags: u32) -> Result<OwnedFd> {
    let fail = |e: stasis_sys::SysError| Error::Io { path: format!("/dev/ptmx ({})", e.call).into(), source: e.source };
    let index = tty::pty_index(master.as_fd()).map_err(fail)?;
    // By path, as its process opened it (TIOCGPTPEER would leave out O_LARGEFILE).
    open_tty(&format!("/dev/pts/{index}"), flags)
}

/// Open a terminal with the access mode and status flags of `flags`, never as our controlling
/// terminal (`O_NOCTTY`), close-on-exec.
fn open_tty(path: &str, flags: u32) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let acc = flags as i32 & libc::O_ACCMODE;
    let keep = flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND | libc::O_ASYNC);
    let f = std::fs::OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(keep | libc::O_NOCTTY)
        .open(path)
        .map_err(Error::io(path))?;
    Ok(f.into())
}

fn io(index: u32) -> impl FnOnce(stasis_sys::SysError) -> Error {
    move |e| Error::Io { path: format!("/dev/pts/{index} ({})", e.call).into(), source: e.source }
}

/// Open `/dev/ptmx` until each index of `wanted` comes, keeping the others open meanwhile (the
/// kernel gives the lowest free index), then close those. Another process may hold an index for a
/// moment (one doing the same): this waits for it, up to about 2 s, then fails naming the index.
fn allocate(wanted: &BTreeMap<u32, &PtyFile>) -> Result<HashMap<u32, OwnedFd>> {
    let path = wanted.values().map(|p| p.path.as_str()).find(|p| !p.is_empty()).unwrap_or("/dev/ptmx");
    let in_use = |index: &u32| std::path::Path::new(&format!("/dev/pts/{index}")).exists();
    let mut got = HashMap::new();
    for attempt in 0..ATTEMPTS {
        let missing: Vec<u32> = wanted.keys().copied().filter(|i| !got.contains_key(i)).collect();
        if missing.is_empty() {
            return Ok(got);
        }
        if !missing.iter().any(in_use) {
            climb(path, &missing, &mut got)?;
        }
        if got.len() < wanted.len() {
            std::thread::sleep(std::time::Duration::from_millis(10 * (attempt as u64 + 1)));
        }
    }
    match wanted.iter().find(|(i, _)| !got.contains_key(i)) {
        None => Ok(got),
        Some((index, p)) => {
            let what = if in_use(index) {
                format!("{}: /dev/pts/{index} is in use here: the pty cannot get its index back", p.path)
            } else {
                format!("/dev/pts/{index} was taken each time stasis made its pty again")
            };
            Err(Error::Incompatible { file: "files.img".into(), what })
        }
    }
}

/// Open masters at `path` until each index of `missing` is in `got` or an index above them all
/// comes (each missing one is held by someone else then); the masters of other indices are
/// closed on return.
fn climb(path: &str, missing: &[u32], got: &mut HashMap<u32, OwnedFd>) -> Result<()> {
    let last = missing.iter().max().copied().unwrap_or(0);
    let mut extra = Vec::new();
    while missing.iter().any(|i| !got.contains_key(i)) {
        let fd = open_tty(path, libc::O_RDWR as u32)?;
        let n = tty::pty_index(fd.as_fd()).map_err(|e| Error::Io { path: path.into(), source: e.source })?;
        if missing.contains(&n) {
            got.insert(n, fd);
        } else if n > last {
            break;
        } else {
            extra.push(fd);
        }
    }
    Ok(())
}

/// Give the new pair of `master` its state; returns a slave description if the tree has slaves or
/// every slave had been closed (the session that has it as its controlling terminal may have closed
/// every fd of it): stasis closes it once the tree runs, and the master reads EIO again.
fn set_up(
    master: std::os::fd::BorrowedFd<'_>,
    index: u32,
    s: &PtyState,
    excl: bool,
    slaves: bool,
) -> Result<Option<OwnedFd>> {
    let io = || io(index);
    tty::set_pty_locked(master, false).map_err(io())?;
    let t = termios(s);
    let w = WinSize { row: s.rows as u16, col: s.cols as u16, xpixel: s.xpixel as u16, ypixel: s.ypixel as u16 };
    tty::set_termios(master, &t).map_err(io())?;
    tty::set_winsize(master, &w).map_err(io())?;
    if s.packet {
        tty::set_packet_mode(master, true).map_err(io())?;
    }
    if excl {
        tty::set_exclusive(master).map_err(io())?;
    }
    queue::give_master(master, &s.master_input).map_err(io())?;
    if !slaves && !s.slave_closed {
        return Ok(None);
    }
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    let slave = tty::open_peer(master, flags).map_err(io())?;
    queue::give_slave(master, slave.as_fd(), &t, &s.slave_lines, &s.slave_input).map_err(io())?;
    Ok(Some(slave))
}

fn termios(s: &PtyState) -> Termios2 {
    let mut cc = [0u8; 19];
    let n = s.cc.len().min(cc.len());
    cc[..n].copy_from_slice(&s.cc[..n]);
    Termios2 {
        iflag: s.iflag,
        oflag: s.oflag,
        cflag: s.cflag,
        lflag: s.lflag,
        line: s.line as u8,
        cc,
        ispeed: s.ispeed,
        ospeed: s.ospeed,
    }
}

/// A session leader takes its controlling terminal, if it is a pty of the image (`TIOCSCTTY` on a
/// slave description lent for the call). Called right after its `setsid`, before its children are
/// made.
pub fn take_ctty(inj: &mut dyn Remote, pid: Pid, p: &ProcessEntry, fds: &FdTable, terms: &Terminals) -> Result<()> {
    if p.sid != p.pid || p.ctty == 0 {
        return Ok(());
    }
    let Some(slave) = terms.0.get(&p.ctty) else { return Ok(()) };
    with_slave(inj, fds, slave, |inj, fd| {
        inj.ioctl_tiocsctty(fd, 0)?;
        Ok(())
    })
    .map_err(|e| Error::Step { pid, what: "its controlling terminal".into(), source: Box::new(e) })
}

/// A session leader gives the foreground to the group that had it (`TIOCSPGRP`), once every group
/// exists. Its credentials are restored by then, so it may no longer take an fd of stasis: it opens
/// its controlling terminal itself, as `/dev/tty`, for the call.
pub fn set_foreground(inj: &mut dyn Remote, pid: Pid, p: &ProcessEntry, terms: &Terminals) -> Result<()> {
    if p.sid != p.pid || p.ctty == 0 || p.tty_fg_pgrp <= 0 || !terms.0.contains_key(&p.ctty) {
        return Ok(());
    }
    let give = |inj: &mut dyn Remote| -> Result<()> {
        let fd = inj.openat("/dev/tty", libc::O_RDONLY | libc::O_NOCTTY | libc::O_CLOEXEC)?;
        let done = inj.ioctl_tiocspgrp(fd, p.tty_fg_pgrp);
        inj.close(fd)?;
        done?;
        Ok(())
    };
    give(inj).map_err(|e| Error::Step {
        pid,
        what: format!("the foreground process group {} of its terminal", p.tty_fg_pgrp),
        source: Box::new(e),
    })
}

/// Run `f` in the task with a copy of `slave` (its fd number there), closed after.
fn with_slave(
    inj: &mut dyn Remote,
    fds: &FdTable,
    slave: &OwnedFd,
    f: impl FnOnce(&mut dyn Remote, i32) -> Result<()>,
) -> Result<()> {
    let max_fd = fds.fds.iter().map(|f| f.fd).max().unwrap_or(2);
    let mut imp = FdImporter::new(inj, max_fd + 1)?;
    let fd = imp.import(inj, slave.as_fd())?;
    let done = f(inj, fd);
    inj.close(fd)?;
    imp.close(inj)?;
    done
}

/// `--shell-job`: the job had the foreground of its terminal at dump (its group was the terminal's
/// foreground group): give it the foreground of stasis' terminal, if that terminal allows it.
pub fn shell_job_foreground(root: &ProcessEntry) {
    if root.ctty == 0 || root.tty_fg_pgrp != root.pgid || root.pgid != root.pid {
        return;
    }
    let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let Some(term) = [i.as_fd(), o.as_fd(), e.as_fd()].into_iter().find(|fd| stasis_sys::fd::is_tty(*fd)) else {
        return;
    };
    if let Err(e) = tty::set_foreground(term, root.pgid) {
        log::warn!("pid {}: the foreground of this terminal stays with stasis ({e}: {})", root.pid, e.source);
    }
}

impl crate::files::kinds::Opener for Ptys {
    fn open(&mut self, f: &FileEntry) -> Option<Result<OwnedFd>> {
        match &f.kind {
            Some(FileKind::Pty(p)) => Some(Ptys::open(self, p, f.flags)),
            _ => None,
        }
    }

    fn inherited(&mut self, _: &FileEntry) {}

    fn opened(
        self: Box<Self>,
        files: &[FileEntry],
        _: &HashMap<u32, OwnedFd>,
        later: &mut crate::files::kinds::Later,
    ) -> Result<()> {
        later.shared.put(self.finish(files)?);
        Ok(())
    }
}
