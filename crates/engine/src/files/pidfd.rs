//! Pidfds: the process (or thread, PIDFD_THREAD) each refers to, and PIDFD_NONBLOCK.
//!
//! Dump reads `Pid:` from fdinfo: a process of the dumped tree (refused otherwise, once every
//! process is known: [`check_targets`]), or -1 for one that has exited and been reaped, with its
//! pidfs inode. Restore makes the pidfds of exited processes at once ([`Reaped`]): one child of the
//! controller per inode of the image, opened once per description and then reaped, so pidfds that
//! named one dead process (in one process or in several) still share one inode. A pidfd of a process of the tree can only be opened once that process exists: the fd
//! number is held by a placeholder until its holder has created all its children ([`install_late`]);
//! by then the holder, its ancestors, its descendants and the siblings made before it exist. A pidfd
//! of a process made later (a later sibling's subtree) is installed in a last pass, once every
//! process exists (the holder's credentials are restored by then: it must still be allowed to take
//! an fd of stasis). Each such pidfd is opened once ([`Late`]), so processes that shared its
//! description share it again.

use super::{FdImporter, Probe};
use crate::error::{Error, Result};
use stasis_image::model::{FdTable, FileEntry, FileKind, PidFd, ProcFile};
use stasis_sys::anon::{self, PIDFD_THREAD};
use stasis_sys::remote::Remote;
use stasis_sys::Pid;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// The flags `pidfd_open` takes that a pidfd's description keeps.
const OPEN_FLAGS: u32 = libc::O_NONBLOCK as u32 | PIDFD_THREAD;

pub fn dump(p: &Probe) -> Result<FileKind> {
    let info = p.fdinfo()?;
    let pid = info
        .get("Pid")
        .and_then(|v| v.parse::<i32>().ok())
        .ok_or_else(|| p.unsupported("a pidfd without a 'Pid:' line in its fdinfo"))?;
    if info.get("NSpid").is_some_and(|ns| ns.split_whitespace().count() > 1) {
        return Err(p.unsupported(format!("a pidfd of pid {pid} in a nested pid namespace")));
    }
    // Every pidfd of one process has that process's pidfs inode (kernels since 6.9).
    let reaped_ino = if pid < 0 { p.meta.ino() } else { 0 };
    Ok(FileKind::PidFd(PidFd { pid, reaped_ino }))
}

/// Refuse a pidfd of a live process outside the dump (`pids`: every task of the tree, zombies
/// included), naming a process and fd that hold it (`tables`: each process's fd table).
pub fn check_targets(files: &[FileEntry], pids: &[i32], tables: &[(i32, &FdTable)]) -> Result<()> {
    for f in files {
        let Some(FileKind::PidFd(p)) = &f.kind else { continue };
        if p.pid < 0 || pids.contains(&p.pid) {
            continue;
        }
        let what = format!("a pidfd of pid {}, a process outside the dumped tree,", p.pid);
        let holder = tables.iter().find_map(|(pid, t)| t.fds.iter().find(|e| e.file_id == f.id).map(|e| (*pid, e.fd)));
        return Err(match holder {
            Some((pid, fd)) => Error::UnsupportedFd { pid: Pid(pid), fd, what },
            None => Error::Unsupported { pid: Pid(pids.first().copied().unwrap_or(0)), what },
        });
    }
    Ok(())
}

/// The pidfds of processes of the tree opened so far, by file id, and the holders left with a
/// placeholder for the last pass.
#[derive(Default)]
pub struct LateState {
    opened: HashMap<u32, OwnedFd>,
    pending: HashSet<i32>,
}

pub type Late = std::sync::Mutex<LateState>;

/// Our pidfds of the reaped processes of the image, by file id, made before any other file.
pub struct Reaped {
    fds: HashMap<u32, OwnedFd>,
}

impl Reaped {
    /// One exited process per pidfs inode of `files` (per entry for an image without inodes),
    /// with one pidfd per entry that named it.
    pub fn make(files: &[FileEntry]) -> Result<Reaped> {
        let mut groups: HashMap<(u64, u32), Vec<(u32, u32)>> = HashMap::new();
        for f in files {
            let Some(FileKind::PidFd(p)) = &f.kind else { continue };
            if p.pid >= 0 {
                continue;
            }
            let key = if p.reaped_ino != 0 { (p.reaped_ino, 0) } else { (0, f.id) };
            groups.entry(key).or_default().push((f.id, f.flags & OPEN_FLAGS));
        }
        let mut fds = HashMap::new();
        for members in groups.values() {
            let flags: Vec<u32> = members.iter().map(|&(_, flags)| flags).collect();
            let made = anon::dead_pidfds(&flags)
                .map_err(|e| Error::Io { path: "anon_inode:[pidfd]".into(), source: e.source })?;
            fds.extend(members.iter().map(|&(id, _)| id).zip(made));
        }
        Ok(Reaped { fds })
    }
}

/// Our fd for pidfd entry `id` at the start of the restore: its pidfd of an exited process (made
/// by [`Reaped::make`]), or a placeholder (`/dev/null`) holding the fd number until [`install_late`].
pub fn open_early(p: &PidFd, id: u32, reaped: &mut Reaped) -> Result<OwnedFd> {
    if p.pid < 0 {
        let what = format!("file {id}: no pidfd made for it");
        return reaped.fds.remove(&id).ok_or(Error::Incompatible { file: "files.img".into(), what });
    }
    placeholder()
}

/// A placeholder (`/dev/null`) holding the fd number of a file opened late (see [`install_late`]).
pub fn placeholder() -> Result<OwnedFd> {
    let null = std::fs::File::open("/dev/null").map_err(Error::io("/dev/null"))?;
    Ok(null.into())
}

/// A file installed late: a pidfd of a process of the tree, or a file of its `/proc` directory.
#[derive(Clone, Copy)]
enum Target<'a> {
    Pidfd(&'a PidFd),
    Proc(&'a ProcFile),
}

impl Target<'_> {
    /// Our fd of it with `flags`; `Err((true, _))` while its process does not exist yet.
    fn open(self, flags: u32) -> std::result::Result<OwnedFd, (bool, String)> {
        match self {
            Target::Pidfd(p) => anon::pidfd_open_flags(Pid(p.pid), flags & OPEN_FLAGS).map_err(|err| {
                (err.errno() == libc::ESRCH, format!("opening a pidfd of pid {} ({})", p.pid, err.source))
            }),
            Target::Proc(p) => super::procfs::open(p, flags)
                .map_err(|err| (super::procfs::not_yet(&err), format!("opening {} ({err})", super::procfs::path(p)))),
        }
    }
}

/// Replace the placeholders of process `pid` (fd table `table`) by pidfds of their processes, or
/// by the files of their `/proc` directories (see [`super::procfs`]); each is opened on first use
/// and kept in `late`. In the first pass (`last` false) one of a process that does not exist yet
/// is left for the last pass, made once every process exists.
pub fn install_late(
    inj: &mut dyn Remote,
    pid: Pid,
    table: &FdTable,
    files: &[FileEntry],
    late: &Late,
    last: bool,
) -> Result<()> {
    let targets: HashMap<u32, (Target, u32)> = files
        .iter()
        .filter_map(|f| match &f.kind {
            Some(FileKind::PidFd(p)) if p.pid >= 0 => Some((f.id, (Target::Pidfd(p), f.flags))),
            Some(FileKind::ProcFile(p)) => Some((f.id, (Target::Proc(p), f.flags))),
            _ => None,
        })
        .collect();
    let mine: Vec<_> = table.fds.iter().filter(|e| targets.contains_key(&e.file_id)).collect();
    let mut state = late.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if mine.is_empty() || (last && !state.pending.contains(&pid.0)) {
        return Ok(());
    }
    let max_fd = table.fds.iter().map(|f| f.fd).max().unwrap_or(2);
    let mut imp = FdImporter::new(inj, max_fd + 1)?;
    let LateState { opened, pending } = &mut *state;
    for e in mine {
        let fd = match opened.entry(e.file_id) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                let (target, flags) = targets[&e.file_id];
                match target.open(flags) {
                    Ok(fd) => v.insert(fd),
                    Err((true, _)) if !last => {
                        pending.insert(pid.0);
                        continue;
                    }
                    Err((_, what)) => {
                        return Err(Error::Failed { pid, what: format!("fd {}: {what}", e.fd) });
                    }
                }
            }
        };
        imp.install(inj, fd.as_fd(), e.fd, e.cloexec)?;
    }
    imp.close(inj)
}

/// The I/O signal owners, signals and `O_ASYNC` of the descriptions installed late (`/proc` files;
/// a pidfd with them is refused at dump), on our fds of them, once every process exists.
pub fn restore_owners(late: &Late, files: &[FileEntry], tables: &[(i32, &FdTable)]) -> Result<()> {
    let state = late.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    super::owner::restore_all(files, &state.opened, tables)
}

/// pidfds, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "pidfd",
    dump: Some(super::kinds::Dumper { claims: |p| p.anon_inode().as_deref() == Some("pidfd"), dump: |p, _| dump(p) }),
    configure: None,
    finish_dump: Some(|t| check_targets(t.files, t.tasks, t.tables)),
    opener: Some(|files, _| Ok(Box::new(Reaped::make(files)?))),
    finish_restore: None,
};

impl super::kinds::Opener for Reaped {
    fn open(&mut self, f: &FileEntry) -> Option<Result<OwnedFd>> {
        match &f.kind {
            Some(FileKind::PidFd(p)) => Some(open_early(p, f.id, self)),
            _ => None,
        }
    }

    fn inherited(&mut self, f: &FileEntry) {
        self.fds.remove(&f.id);
    }

    fn opened(self: Box<Self>, _: &[FileEntry], _: &HashMap<u32, OwnedFd>, _: &mut super::kinds::Later) -> Result<()> {
        Ok(())
    }
}
