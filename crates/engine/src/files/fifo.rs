//! FIFOs (named pipes) opened by path: read, write and read-write ends, with the bytes queued in the
//! FIFO (with its packet boundaries in packet mode), its capacity, `O_NONBLOCK` and `O_DIRECT`.
//!
//! Dump saves the path and, once per FIFO (with its first description), its capacity and the bytes
//! queued: copied with `tee()` through a read end of our own (the FIFO opened again through our copy's
//! `/proc/self/fd` link, non-blocking), so nothing is consumed and any end can be dumped. A FIFO whose
//! path now names another file is refused; one whose path was removed is made again at restore
//! under its last name (with its mode), opened, and removed again once every description is open.
//!
//! Restore opens each FIFO read-write first (an "anchor", which never blocks and is both a reader and
//! a writer), sizes it and writes its bytes back through the anchor once, then opens each description
//! with `O_NONBLOCK` (so a write end does not wait for a reader: the anchor is one) and sets its own
//! flags. The anchors are closed when every description is open.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{FifoFile, FileKind};
use stasis_sys::fd::{pipe_size, set_pipe_size, set_status_flags};
use stasis_sys::watch::mkfifo;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Status flags restored on each description.
const SETTABLE: u32 = (libc::O_NONBLOCK | libc::O_DIRECT) as u32;

/// `saved`: FIFOs (device, inode) whose bytes are in the image already.
pub fn dump(p: &Probe, saved: &mut Vec<(u64, u64)>) -> Result<FileKind> {
    let link = p.link.to_string_lossy().into_owned();
    let (path, removed) = match link.strip_suffix(" (deleted)") {
        Some(last) => (last.to_string(), true),
        None => (link, false),
    };
    let now = std::fs::metadata(&path);
    let same =
        now.as_ref().is_ok_and(|m| m.file_type().is_fifo() && m.ino() == p.meta.ino() && m.dev() == p.meta.dev());
    if !removed && !same {
        return Err(p.unsupported(format!("FIFO {path} whose path now names another file")));
    }
    let key = (p.meta.dev(), p.meta.ino());
    let mode = p.meta.mode() & 0o7777;
    let mut fifo = FifoFile { path, fifo_id: p.meta.ino(), removed, mode, ..Default::default() };
    // An O_PATH fd does not open the FIFO: there is nothing to read through it, nor to restore.
    if p.flags & libc::O_PATH as u32 == 0 && !saved.contains(&key) {
        fifo.capacity = pipe_size(p.file).map_err(Error::sys(p.pid.0, "reading a FIFO's size"))? as u32;
        (fifo.data, fifo.packets) = peek(p, fifo.capacity as usize)?;
        saved.push(key);
    }
    Ok(FileKind::Fifo(fifo))
}

/// The bytes queued in the FIFO of the probed fd, left in place.
fn peek(p: &Probe, capacity: usize) -> Result<(Vec<u8>, Vec<u32>)> {
    let again = format!("/proc/self/fd/{}", p.file.as_raw_fd());
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&again)
        .map_err(Error::io(p.link))?;
    super::pipe::copy_queue(p, reader.as_fd(), capacity)
}

/// FIFOs opened at restore: an anchor (read-write) for each, by `fifo_id`, and the FIFOs made again
/// for those whose path was removed (removed again on drop).
#[derive(Default)]
pub struct Fifos {
    anchors: HashMap<u64, File>,
    filled: HashSet<u64>,
    made: HashMap<u64, PathBuf>,
}

impl Fifos {
    /// A new description of FIFO `f` with open flags `flags`.
    pub fn open(&mut self, f: &FifoFile, flags: u32) -> Result<OwnedFd> {
        let path = self.path_of(f)?;
        if flags & libc::O_PATH as u32 != 0 {
            return super::regular::open_path(&path.to_string_lossy(), flags);
        }
        let anchor = match self.anchors.entry(f.fifo_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(anchor(f, &path)?),
        };
        let io = |e: stasis_sys::SysError| Error::Io { path: f.path.clone().into(), source: e.source };
        if f.capacity != 0 && self.filled.insert(f.fifo_id) {
            if f.capacity as usize != pipe_size(anchor.as_fd()).map_err(io)? {
                set_pipe_size(anchor.as_fd(), f.capacity as usize).map_err(io)?;
            }
            super::pipe::write_queue(anchor.as_fd(), libc::O_RDWR, (&f.data, &f.packets), &f.path)?;
        }
        let acc = flags as i32 & libc::O_ACCMODE;
        let file = OpenOptions::new()
            .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
            .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(Error::io(&path))?;
        set_status_flags(file.as_fd(), (flags & SETTABLE) as i32).map_err(io)?;
        Ok(file.into())
    }

    /// Where FIFO `f` is now: its path, or, for one whose path was removed, a FIFO made again under
    /// its last name (beside it if that is taken) on first use.
    fn path_of(&mut self, f: &FifoFile) -> Result<PathBuf> {
        if !f.removed {
            return Ok(PathBuf::from(&f.path));
        }
        if let Some(p) = self.made.get(&f.fifo_id) {
            return Ok(p.clone());
        }
        let mut path = PathBuf::from(&f.path);
        if std::fs::symlink_metadata(&path).is_ok() {
            path = format!("{}.stasis-fifo-{}", f.path, f.fifo_id).into();
        }
        mkfifo(&path, f.mode).map_err(|e| Error::Io { path: path.clone(), source: e.source })?;
        self.made.insert(f.fifo_id, path.clone());
        Ok(path)
    }
}

impl Drop for Fifos {
    /// FIFOs made again for removed ones exist only while their descriptions are being opened.
    fn drop(&mut self) {
        for path in self.made.values() {
            if let Err(e) = std::fs::remove_file(path) {
                log::warn!("could not remove FIFO {} again: {e}", path.display());
            }
        }
    }
}

/// FIFO `f`, now at `path`, opened read-write (which never blocks), checked to be a FIFO still.
fn anchor(f: &FifoFile, path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(Error::io(path))?;
    let meta = file.metadata().map_err(Error::io(path))?;
    if !meta.file_type().is_fifo() {
        return Err(Error::Incompatible { file: "files.img".into(), what: format!("{} is no longer a FIFO", f.path) });
    }
    if meta.ino() != f.fifo_id && !f.removed {
        log::warn!("{}: a different FIFO than at dump (inode {} -> {})", f.path, f.fifo_id, meta.ino());
    }
    Ok(file)
}

/// FIFOs (named pipes), in the table of kinds: after the pipes.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "fifo",
    dump: Some(super::kinds::Dumper {
        claims: |p| std::os::unix::fs::FileTypeExt::is_fifo(&p.meta.file_type()),
        dump: |p, ids| dump(p, &mut ids.state::<super::ghost::Saved>().0),
    }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, _| Ok(Box::new(Fifos::default()))),
    finish_restore: None,
};

impl super::kinds::Opener for Fifos {
    fn open(&mut self, f: &stasis_image::model::FileEntry) -> Option<Result<OwnedFd>> {
        match &f.kind {
            Some(FileKind::Fifo(p)) => Some(self.open(p, f.flags)),
            _ => None,
        }
    }

    fn inherited(&mut self, _: &stasis_image::model::FileEntry) {}

    fn opened(
        self: Box<Self>,
        _: &[stasis_image::model::FileEntry],
        _: &HashMap<u32, OwnedFd>,
        _: &mut super::kinds::Later,
    ) -> Result<()> {
        Ok(())
    }
}
