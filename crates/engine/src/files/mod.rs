//! File descriptors: the fd table of a process and the open file descriptions behind it.
//!
//! Dump takes every fd with `pidfd_getfd`, classifies it, and gives each open file description one
//! entry in `files.img` (fds that share one, found with `kcmp`, point to the same entry). Restore opens
//! each description in the controller, then the task takes it with an injected `pidfd_getfd` on the
//! controller and moves it to its number with `dup3` ([`FdImporter`]).
//!
//! One module per kind: [`regular`] (files and directories), [`ghost`] (unlinked files, memfds and
//! device nodes), [`chardev`] (device nodes and terminals),
//! [`pipe`] (pipes with both ends in the process), [`fifo`] (named pipes), [`epoll`], [`inotify`]
//! and [`fanotify`] instances, [`anon`] (eventfd, signalfd, timerfd), [`pidfd`], [`mqueue`] (POSIX
//! message queues), [`unix`] (UNIX domain sockets), [`inet`] (TCP, UDP and UDP-Lite sockets), [`netlink`], [`packet`], [`tty`]
//! (pseudo-terminals and controlling terminals); [`locks`] keeps the file locks held on them.
//!
//! Each kind declares itself once in [`kinds::KINDS`]: the stages here ([`dump`], [`finish_tree`],
//! [`open_all`], [`Unfinished::finish`]) go through that table, and the dump and restore
//! orchestrators call only them. fdinfo helpers several kinds share are in
//! [`crate::proc::fdinfo_fields`].

pub mod anon;
pub mod chardev;
pub mod epoll;
pub mod external;
pub mod fanotify;
pub mod fifo;
pub mod ghost;
pub mod inet;
pub mod inotify;
pub mod kinds;
pub mod locks;
pub mod mqueue;
pub mod netlink;
pub mod owner;
pub mod packet;
pub mod pidfd;
pub mod pipe;
pub mod procfs;
pub mod regular;
pub mod sockopt;
pub mod tty;
pub mod unix;

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::{FdEntry, FdTable, FileEntry, FileKind};
use stasis_sys::fd::{kcmp, pidfd_getfd, pidfd_open, KCMP_FILE};
use stasis_sys::remote::Remote;
use stasis_sys::Pid;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;

/// What a dump learns about one fd before it is classified.
pub struct Probe<'a> {
    /// Where to read `/proc/PID/fdinfo/FD` again, for the kinds whose state it shows.
    pub root: &'a ProcRoot,
    pub pid: Pid,
    pub fd: i32,
    /// The id the description gets in `files.img` (0 for a mapped file no fd holds).
    pub id: u32,
    pub link: &'a Path,
    pub meta: &'a std::fs::Metadata,
    /// Our copy of the fd (same open file description).
    pub file: BorrowedFd<'a>,
    /// Open flags, without O_CLOEXEC.
    pub flags: u32,
    pub pos: u64,
    pub shell_job: bool,
    /// Largest unlinked file whose bytes are saved.
    pub ghost_limit: u64,
}

impl Probe<'_> {
    /// The fdinfo of the description, read through our copy of it: the same as through any fd of it,
    /// and there is no other for a file in flight in a socket's queue.
    pub fn fdinfo(&self) -> Result<proc::FdInfo> {
        Ok(proc::fdinfo(&ProcRoot::system(), std::process::id() as i32, self.file.as_raw_fd())?)
    }

    /// `NAME` of an `anon_inode:[NAME]` link.
    pub fn anon_inode(&self) -> Option<String> {
        let link = self.link.to_string_lossy();
        link.strip_prefix("anon_inode:[").and_then(|l| l.strip_suffix(']')).map(str::to_string)
    }

    fn unsupported(&self, what: impl Into<String>) -> Error {
        Error::UnsupportedFd { pid: self.pid, fd: self.fd, what: what.into() }
    }
}

/// What the files of a dump hold until the tree is resumed or killed (see [`FileIds::take_held`]).
pub type Held = inet::Held;

/// An fd seen by a dump: (process, fd, id of its description).
type SeenFd = (Pid, i32, u32);

/// The open file descriptions a dump has seen so far, in every process of the tree, so that one
/// shared by several fds or processes gets one id; and what each kind keeps over the whole tree.
pub struct FileIds {
    next: u32,
    /// (process, fd, id, device, inode)
    seen: Vec<(Pid, i32, u32, u64, u64)>,
    /// One fd of each description seen, per (device, inode), in the kernel's order of open file
    /// descriptions (`kcmp` orders them), for a binary search: a tree of many processes each with
    /// its own `/dev/null` would otherwise cost a `kcmp` per pair.
    by_inode: HashMap<(u64, u64), Vec<SeenFd>>,
    /// Largest unlinked file whose bytes are saved.
    pub ghost_limit: u64,
    /// The root of the dump.
    pub root: Pid,
    /// Entries for files in flight (`SCM_RIGHTS`), found while dumping a socket.
    pending: Vec<FileEntry>,
    /// Our copies of the files in flight, kept open so that `kcmp` can compare them.
    held: Vec<OwnedFd>,
    /// What each kind (and the file locks) keeps over the tree, by type.
    states: kinds::States,
}

impl FileIds {
    /// The ids of a dump of the tree below `root` with `opts`; each kind sets itself up from them.
    pub fn new(opts: &crate::DumpOptions, root: Pid) -> FileIds {
        let mut ids = FileIds {
            next: 0,
            seen: Vec::new(),
            by_inode: HashMap::new(),
            ghost_limit: opts.ghost_limit,
            root,
            pending: Vec::new(),
            held: Vec::new(),
            states: kinds::States::default(),
        };
        for configure in kinds::KINDS.iter().filter_map(|k| k.configure) {
            configure(opts, &mut ids);
        }
        ids.state::<locks::DumpState>().enabled = opts.file_locks;
        ids
    }

    /// What a kind keeps over the whole dump: the state of type `T`, made on first use.
    pub fn state<T: Default + 'static>(&mut self) -> &mut T {
        self.states.get()
    }

    /// What the files of the dump hold until the tree is resumed or killed (the network lock,
    /// the sockets in repair mode).
    pub fn take_held(&mut self) -> Held {
        self.states.get::<inet::DumpState>().take()
    }

    /// The id of the description behind fd `fd` of `pid` if one seen already is the same, else where
    /// to insert it among the descriptions of its inode.
    fn find(&self, pid: Pid, fd: i32, inode: (u64, u64)) -> std::result::Result<u32, usize> {
        let Some(known) = self.by_inode.get(&inode) else { return Err(0) };
        let order = |s: &SeenFd| kcmp(pid, s.0, KCMP_FILE, fd as u64, s.1 as u64).ok();
        // kcmp: 0 same, 1 ours first, 2 theirs first, 3 different without an order (then: one by one).
        let unordered = std::cell::Cell::new(false);
        let found = known.binary_search_by(|s| match order(s) {
            Some(0) => std::cmp::Ordering::Equal,
            Some(1) => std::cmp::Ordering::Greater,
            Some(2) => std::cmp::Ordering::Less,
            _ => {
                unordered.set(true);
                std::cmp::Ordering::Less
            }
        });
        if !unordered.get() {
            return found.map(|i| known[i].2);
        }
        known.iter().find(|s| order(s) == Some(0)).map(|s| s.2).ok_or(known.len())
    }

    fn insert(&mut self, at: usize, pid: Pid, fd: i32, id: u32, inode: (u64, u64)) {
        let known = self.by_inode.entry(inode).or_default();
        known.insert(at.min(known.len()), (pid, fd, id));
    }

    /// Every fd of the tree seen so far: (process, fd, device, inode).
    pub fn tree_fds(&self) -> Vec<(Pid, i32, u64, u64)> {
        self.seen.iter().map(|&(pid, fd, _, dev, ino)| (pid, fd, dev, ino)).collect()
    }

    /// A new id for the description behind `fd` of `pid`, found at `at` among those of its inode
    /// (see [`FileIds::find`]).
    fn register(&mut self, pid: Pid, fd: i32, meta: &std::fs::Metadata, at: usize) -> u32 {
        self.next += 1;
        self.seen.push((pid, fd, self.next, meta.dev(), meta.ino()));
        self.insert(at, pid, fd, self.next, (meta.dev(), meta.ino()));
        self.next
    }
}

/// The fd table of `pid` and the descriptions behind it that `ids` has not seen yet.
pub fn dump(root: &ProcRoot, pid: Pid, shell_job: bool, ids: &mut FileIds) -> Result<(FdTable, Vec<FileEntry>)> {
    let pidfd = pidfd_open(pid).map_err(Error::sys(pid.0, "opening a pidfd"))?;
    let mut table = FdTable::default();
    let mut files: Vec<FileEntry> = Vec::new();
    for (fd, link) in proc::fds(root, pid.0)? {
        let info = proc::fdinfo(root, pid.0, fd)?;
        let taken: OwnedFd = pidfd_getfd(pidfd.as_fd(), fd).map_err(Error::sys(pid.0, "taking an fd"))?;
        let file = File::from(taken);
        let meta = file.metadata().map_err(Error::io(&link))?;
        let cloexec = info.flags & O_CLOEXEC != 0;
        let inode = (meta.dev(), meta.ino());
        let id = match ids.find(pid, fd, inode) {
            Ok(id) => {
                ids.seen.push((pid, fd, id, meta.dev(), meta.ino()));
                id
            }
            Err(at) => {
                let flags = info.flags & !O_CLOEXEC;
                // Registered before it is classified: a socket may carry itself in its own queue.
                let id = ids.register(pid, fd, &meta, at);
                let probe = Probe {
                    root,
                    pid,
                    fd,
                    id,
                    link: &link,
                    meta: &meta,
                    file: file.as_fd(),
                    flags,
                    pos: info.pos,
                    shell_job,
                    ghost_limit: ids.ghost_limit,
                };
                let kind = classify(&probe, ids)?;
                let owner = owner::dump(pid, fd, file.as_fd(), &kind, flags)?;
                files.push(FileEntry { id, flags, kind: Some(kind), owner });
                files.append(&mut ids.pending);
                id
            }
        };
        let lock_lines: Vec<&str> = info.extra.iter().filter(|(k, _)| k == "lock").map(|(_, v)| v.as_str()).collect();
        locks::note(ids.state::<locks::DumpState>(), pid, fd, id, &lock_lines, &mut table)?;
        table.fds.push(FdEntry { fd, file_id: id, cloexec });
    }
    Ok((table, files))
}

/// File entries (referenced by no fd) for the unlinked files and memfds `pid` maps but that no fd
/// seen so far holds: their bytes are read through `/proc/PID/map_files`.
pub fn ghost_mappings(pid: Pid, vmas: &[stasis_image::model::Vma], ids: &mut FileIds) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    for v in vmas.iter().filter(|v| v.ghost) {
        let path = format!("/proc/{pid}/map_files/{:x}-{:x}", v.start, v.end);
        let file = File::open(&path).map_err(Error::io(&path))?;
        let meta = file.metadata().map_err(Error::io(&path))?;
        if ids.state::<ghost::Saved>().0.contains(&(meta.dev(), meta.ino())) {
            continue;
        }
        let link = std::path::PathBuf::from(format!("{} (deleted)", v.name));
        let root = ProcRoot::system();
        let probe = Probe {
            root: &root,
            pid,
            fd: -1,
            id: 0,
            link: &link,
            meta: &meta,
            file: file.as_fd(),
            flags: libc::O_RDONLY as u32,
            pos: 0,
            shell_job: false,
            ghost_limit: ids.ghost_limit,
        };
        let kind = regular::dump(&probe, &mut ids.state::<ghost::Saved>().0)?;
        ids.next += 1;
        out.push(FileEntry { id: ids.next, flags: libc::O_RDONLY as u32, kind: Some(kind), owner: None });
    }
    Ok(out)
}

/// The id of a file in flight in a socket's queue (`fd`, our copy), dumping it on first sight like
/// an fd of a process (`owner` holds the socket, for messages).
pub fn adopt(ids: &mut FileIds, owner: Pid, fd: OwnedFd) -> Result<u32> {
    let me = Pid::this();
    let raw = fd.as_raw_fd();
    let link = std::fs::read_link(format!("/proc/self/fd/{raw}")).map_err(Error::io(format!("/proc/self/fd/{raw}")))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(Error::io(&link))?;
    let at = match ids.find(me, raw, (meta.dev(), meta.ino())) {
        Ok(id) => return Ok(id),
        Err(at) => at,
    };
    let info = proc::fdinfo(&ProcRoot::system(), me.0, raw)?;
    let flags = info.flags & !O_CLOEXEC;
    let id = ids.register(me, raw, &meta, at);
    let root = ProcRoot::system();
    let probe = Probe {
        root: &root,
        pid: owner,
        fd: -1,
        id,
        link: &link,
        meta: &meta,
        file: file.as_fd(),
        flags,
        pos: info.pos,
        shell_job: false,
        ghost_limit: ids.ghost_limit,
    };
    let kind = classify(&probe, ids).map_err(|e| match e {
        Error::UnsupportedFd { pid, fd: -1, what } => {
            Error::Unsupported { pid, what: format!("a file in flight: {what}") }
        }
        e => e,
    })?;
    let owner = owner::dump(owner, -1, file.as_fd(), &kind, flags)?;
    ids.pending.push(FileEntry { id, flags, kind: Some(kind), owner });
    ids.held.push(file.into());
    Ok(id)
}

/// The kind of `p`: the first of the table that claims it dumps it (see [`kinds`]).
fn classify(p: &Probe, ids: &mut FileIds) -> Result<FileKind> {
    match kinds::KINDS.iter().filter_map(|k| k.dump.as_ref()).find(|d| (d.claims)(p)) {
        Some(d) => (d.dump)(p, ids),
        None => Err(p.unsupported(describe(p.link, &p.meta.file_type()))),
    }
}

/// The file locks of the tree (`tables`, the processes `pids`): each description's given to a
/// holder, none held from outside.
pub fn finish_locks(ids: &mut FileIds, tables: &mut [(Pid, &mut FdTable)], pids: &[i32]) -> Result<()> {
    let fds = ids.tree_fds();
    let state = ids.state::<locks::DumpState>();
    locks::finish(state, tables);
    locks::check_outside(state, &fds, pids)
}

/// The dump's files stage once every process of the tree is seen: each kind's tree-wide step (see
/// [`kinds::Kind::finish_dump`]), in table order.
pub fn finish_tree(tree: &mut kinds::DumpTree) -> Result<()> {
    kinds::KINDS.iter().filter_map(|k| k.finish_dump).try_for_each(|finish| finish(tree))
}

/// A name for an fd kind stasis does not handle, from its /proc link.
fn describe(link: &Path, ft: &std::fs::FileType) -> String {
    let l = link.to_string_lossy();
    if let Some(inner) = l.strip_prefix("anon_inode:") {
        return format!("{} ({l})", inner.trim_matches(|c| c == '[' || c == ']'));
    }
    if l.starts_with("socket:") {
        return format!("socket {l}");
    }
    if l.starts_with("pipe:") {
        return format!("pipe {l}");
    }
    if ft.is_fifo() {
        return format!("FIFO {l}");
    }
    if ft.is_block_device() {
        return format!("block device {l}");
    }
    format!("file {l}")
}

/// What [`open_all`] made: our fd of every description by id, and what the kinds left for the
/// processes being built (the unlinked files and memfds by their inode at dump time, the terminals
/// session leaders take).
pub struct Opened {
    pub fds: HashMap<u32, OwnedFd>,
    shared: kinds::Typed,
}

impl Opened {
    /// The unlinked files and memfds made again (see [`ghost`]), for the mappings of them.
    pub fn ghosts(&self) -> &ghost::Objects {
        self.shared.get().expect("left by the ghost opener")
    }

    /// The terminals session leaders take (see [`tty`]).
    pub fn terminals(&self) -> &tty::Terminals {
        self.shared.get().expect("left by the pty opener")
    }

    /// The tree runs: let go of what only its restore needed.
    pub fn release(&mut self) {
        if let Some(t) = self.shared.get_mut::<tty::Terminals>() {
            t.clear();
        }
    }
}

/// The work [`open_all`] leaves for when every process exists (the queues of UNIX sockets, the
/// TCP connections in repair mode): see [`Unfinished::finish`].
pub struct Unfinished(kinds::Typed);

impl Unfinished {
    /// The files stage once every process exists, before any runs: each kind's tree-wide step (see
    /// [`kinds::Kind::finish_restore`]), then the owners of the descriptions (`tables`).
    pub fn finish(mut self, opened: &Opened, files: &[FileEntry], tables: &[(i32, &FdTable)]) -> Result<()> {
        for finish in kinds::KINDS.iter().filter_map(|k| k.finish_restore) {
            finish(&mut self.0, files, &opened.fds)?;
        }
        owner::restore_all(files, &opened.fds, tables)
    }
}

/// Open every description of the image in the controller, before the task exists; those `inherit`
/// names are the descriptors handed in instead. Each description is opened by the opener of its kind
/// (see [`kinds`]).
pub fn open_all(
    files: &[FileEntry],
    settings: kinds::Settings,
    inherit: &[external::InheritFd],
) -> Result<(Opened, Unfinished)> {
    let mut openers = Vec::new();
    for make in kinds::KINDS.iter().filter_map(|k| k.opener) {
        openers.push(make(files, settings)?);
    }
    let mut out = HashMap::new();
    let inherited = external::Inherited(inherit);
    for f in files {
        if let Some(fd) = inherited.take(f)? {
            openers.iter_mut().for_each(|o| o.inherited(f));
            out.insert(f.id, fd);
            continue;
        }
        let Some(fd) = openers.iter_mut().find_map(|o| o.open(f)) else {
            let what = format!("file {}: no kind", f.id);
            return Err(Error::Incompatible { file: "files.img".into(), what });
        };
        out.insert(f.id, fd?);
    }
    let mut later = kinds::Later::default();
    for opener in openers {
        opener.opened(files, &out, &mut later)?;
    }
    Ok((Opened { fds: out, shared: later.shared }, Unfinished(later.unfinished)))
}

/// Install the fd table into the task.
pub fn install(
    inj: &mut dyn Remote,
    imp: &mut FdImporter,
    pid: Pid,
    table: &FdTable,
    opened: &HashMap<u32, OwnedFd>,
) -> Result<()> {
    for e in &table.fds {
        let file = opened.get(&e.file_id).ok_or_else(|| Error::Incompatible {
            file: format!("fds-{pid}.img"),
            what: format!("fd {}: file id {} is not in files.img", e.fd, e.file_id),
        })?;
        imp.install(inj, file.as_fd(), e.fd, e.cloexec).map_err(|err| Error::Step {
            pid,
            what: format!("fd {}", e.fd),
            source: Box::new(err),
        })?;
    }
    Ok(())
}

/// Moves fds from the controller into a task being restored: the task holds a pidfd of the
/// controller (kept above every fd number it will need) and takes fds with `pidfd_getfd`.
pub struct FdImporter {
    task_pidfd: i32,
}

impl FdImporter {
    /// Give the task a pidfd of the controller at a number of at least `min_fd`.
    pub fn new(inj: &mut dyn Remote, min_fd: i32) -> Result<FdImporter> {
        FdImporter::new_in(inj, min_fd, None)
    }

    /// [`FdImporter::new`]; with `inherited`, the task copies the controller's pidfd it inherited
    /// at that number (a task in a nested PID namespace cannot name the controller to open one:
    /// see `crate::ns`), which stays open.
    pub fn new_in(inj: &mut dyn Remote, min_fd: i32, inherited: Option<i32>) -> Result<FdImporter> {
        if let Some(fd) = inherited {
            return Ok(FdImporter { task_pidfd: inj.fcntl_dupfd_cloexec(fd, min_fd)? });
        }
        let pidfd = inj.pidfd_open(Pid::this(), 0)?;
        let high = inj.fcntl_dupfd_cloexec(pidfd, min_fd)?;
        inj.close(pidfd)?;
        Ok(FdImporter { task_pidfd: high })
    }

    /// A copy of our `fd` in the task (close-on-exec); returns its number there.
    pub fn import(&mut self, inj: &mut dyn Remote, fd: BorrowedFd<'_>) -> Result<i32> {
        Ok(inj.pidfd_getfd(self.task_pidfd, fd.as_raw_fd(), 0)?)
    }

    /// Our `fd` as fd `target` of the task.
    pub fn install(&mut self, inj: &mut dyn Remote, fd: BorrowedFd<'_>, target: i32, cloexec: bool) -> Result<()> {
        let got = self.import(inj, fd)?;
        if got == target {
            inj.fcntl_setfd(got, if cloexec { libc::FD_CLOEXEC } else { 0 })?;
            return Ok(());
        }
        inj.dup3(got, target, if cloexec { libc::O_CLOEXEC } else { 0 })?;
        inj.close(got)?;
        Ok(())
    }

    pub fn close(self, inj: &mut dyn Remote) -> Result<()> {
        inj.close(self.task_pidfd)?;
        Ok(())
    }
}

#[cfg(test)]
mod importer_tests {
    use super::FdImporter;
    use stasis_sys::remote::fake::FakeTask;
    use stasis_sys::Pid;
    use std::os::fd::AsFd;

    /// The controller's pidfd is moved above every fd of the image; an fd that lands on its number
    /// only gets its flag, any other is moved there with `dup3` and its first copy closed.
    #[test]
    fn fds_are_installed_at_their_numbers_with_their_flags() {
        let mut t = FakeTask::new(Pid(300));
        t.reply("pidfd_open", 3).reply("fcntl", 64).reply("pidfd_getfd", 5).reply("pidfd_getfd", 4);
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        let mut imp = FdImporter::new(&mut t, 64).expect("fake");
        imp.install(&mut t, file.as_fd(), 5, true).expect("lands on 5");
        imp.install(&mut t, file.as_fd(), 9, false).expect("moved to 9");
        imp.close(&mut t).expect("fake");
        let ours = std::process::id();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        assert_eq!(
            t.log(),
            [
                format!("pidfd_open({ours}, 0)"),
                "fcntl(3, F_DUPFD_CLOEXEC, 64)".into(),
                "close(3)".into(),
                format!("pidfd_getfd(64, {fd}, 0)"),
                "fcntl(5, F_SETFD, 1)".into(),
                format!("pidfd_getfd(64, {fd}, 0)"),
                "dup3(4, 9, 0)".into(),
                "close(4)".into(),
                "close(64)".into(),
            ]
        );
    }
}
