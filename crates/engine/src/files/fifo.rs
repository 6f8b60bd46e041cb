//! FIFOs (named pipes) opened by path: read, write and read-write ends, with the bytes queued in the
//! FIFO, its capacity, and `O_NONBLOCK`.
//!
//! Dump saves the path and, once per FIFO (with its first description), its capacity and the bytes
//! queued: copied with `tee()` through a read end of our own (the FIFO opened again through our copy's
//! `/proc/self/fd` link, non-blocking), so nothing is consumed and any end can be dumped. A FIFO whose
//! path was removed, or now names another file, is refused.
//!
//! Restore opens each FIFO read-write first (an "anchor", which never blocks and is both a reader and
//! a writer), sizes it and writes its bytes back through the anchor once, then opens each description
//! with `O_NONBLOCK` (so a write end does not wait for a reader: the anchor is one) and sets its own
//! flags. The anchors are closed when every description is open.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{FifoFile, FileKind};
use stasis_sys::fd::{pipe, pipe_size, set_pipe_size, set_status_flags, tee};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

/// Status flags restored on each description.
const SETTABLE: u32 = libc::O_NONBLOCK as u32;

/// `saved`: FIFOs (device, inode) whose bytes are in the image already.
pub fn dump(p: &Probe, saved: &mut Vec<(u64, u64)>) -> Result<FileKind> {
    let path = p.link.to_string_lossy().into_owned();
    if path.ends_with(" (deleted)") {
        return Err(p.unsupported(format!("FIFO {path} whose path was removed")));
    }
    let now = std::fs::metadata(&path);
    if !now.as_ref().is_ok_and(|m| m.file_type().is_fifo() && m.ino() == p.meta.ino() && m.dev() == p.meta.dev()) {
        return Err(p.unsupported(format!("FIFO {path} whose path now names another file")));
    }
    let key = (p.meta.dev(), p.meta.ino());
    let mut fifo = FifoFile { path, fifo_id: p.meta.ino(), ..Default::default() };
    // An O_PATH fd does not open the FIFO: there is nothing to read through it, nor to restore.
    if p.flags & libc::O_PATH as u32 == 0 && !saved.contains(&key) {
        fifo.capacity = pipe_size(p.file).map_err(Error::sys(p.pid.0, "reading a FIFO's size"))? as u32;
        fifo.data = peek(p, fifo.capacity as usize)?;
        saved.push(key);
    }
    Ok(FileKind::Fifo(fifo))
}

/// The bytes queued in the FIFO of the probed fd, left in place.
fn peek(p: &Probe, capacity: usize) -> Result<Vec<u8>> {
    let again = format!("/proc/self/fd/{}", p.file.as_raw_fd());
    let reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&again)
        .map_err(Error::io(p.link))?;
    let (r, w) = pipe().map_err(Error::sys(p.pid.0, "making a pipe"))?;
    set_pipe_size(w.as_fd(), capacity).map_err(Error::sys(p.pid.0, "sizing a pipe"))?;
    let n = tee(reader.as_fd(), w.as_fd(), capacity).map_err(Error::sys(p.pid.0, "copying a FIFO's data"))?;
    drop(w);
    let mut data = Vec::with_capacity(n);
    File::from(r).read_to_end(&mut data).map_err(Error::io(p.link))?;
    Ok(data)
}

/// FIFOs opened at restore: an anchor (read-write) for each, by `fifo_id`.
#[derive(Default)]
pub struct Fifos {
    anchors: HashMap<u64, File>,
    filled: HashSet<u64>,
}

impl Fifos {
    /// A new description of FIFO `f` with open flags `flags`.
    pub fn open(&mut self, f: &FifoFile, flags: u32) -> Result<OwnedFd> {
        if flags & libc::O_PATH as u32 != 0 {
            return super::regular::open_path(&f.path, flags);
        }
        let anchor = match self.anchors.entry(f.fifo_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(anchor(f)?),
        };
        let io = |e: stasis_sys::SysError| Error::Io { path: f.path.clone().into(), source: e.source };
        if f.capacity != 0 && self.filled.insert(f.fifo_id) {
            if f.capacity as usize != pipe_size(anchor.as_fd()).map_err(io)? {
                set_pipe_size(anchor.as_fd(), f.capacity as usize).map_err(io)?;
            }
            anchor.write_all(&f.data).map_err(Error::io(&f.path))?;
        }
        let acc = flags as i32 & libc::O_ACCMODE;
        let file = OpenOptions::new()
            .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
            .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&f.path)
            .map_err(Error::io(&f.path))?;
        set_status_flags(file.as_fd(), (flags & SETTABLE) as i32).map_err(io)?;
        Ok(file.into())
    }
}

/// FIFO `f` opened read-write (which never blocks), checked to be a FIFO still.
fn anchor(f: &FifoFile) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&f.path)
        .map_err(Error::io(&f.path))?;
    let meta = file.metadata().map_err(Error::io(&f.path))?;
    if !meta.file_type().is_fifo() {
        return Err(Error::Incompatible { file: "files.img".into(), what: format!("{} is no longer a FIFO", f.path) });
    }
    if meta.ino() != f.fifo_id {
        log::warn!("{}: a different FIFO than at dump (inode {} -> {})", f.path, f.fifo_id, meta.ino());
    }
    Ok(file)
}
