//! Pipes whose both ends are held by the checkpointed process, with the bytes queued in them, their
//! capacity, and each end's flags (O_NONBLOCK, O_DIRECT).
//!
//! The queued bytes are copied at dump with `tee()` from our copy of the read end into a pipe of ours,
//! so the process's pipe keeps them. Restore makes a new pipe in the controller, sizes it, writes the
//! bytes back, and hands each end to the task(s) holding it. A pipe with an end outside the dumped
//! processes is refused.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{FileEntry, FileKind, PipeEnd};
use stasis_sys::fd::{pipe, pipe_size, set_pipe_size, set_status_flags, tee};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Flags of an end that are set after the pipe is made.
const SETTABLE: u32 = (libc::O_NONBLOCK | libc::O_DIRECT) as u32;

pub fn dump(p: &Probe, fd: BorrowedFd<'_>, flags: u32) -> Result<FileKind> {
    let read_end = flags & libc::O_ACCMODE as u32 == libc::O_RDONLY as u32;
    let capacity = pipe_size(fd).map_err(Error::sys(p.pid.0, "reading a pipe's size"))? as u32;
    let data = if read_end { peek(p, fd, capacity as usize)? } else { Vec::new() };
    let name = p.link.to_string_lossy().into_owned();
    Ok(FileKind::Pipe(PipeEnd { pipe_id: p.meta.ino(), read_end, capacity, data, name }))
}

/// The bytes queued in the pipe behind read end `fd`, left in place.
fn peek(p: &Probe, fd: BorrowedFd<'_>, capacity: usize) -> Result<Vec<u8>> {
    let (r, w) = pipe().map_err(Error::sys(p.pid.0, "making a pipe"))?;
    set_pipe_size(w.as_fd(), capacity).map_err(Error::sys(p.pid.0, "sizing a pipe"))?;
    let n = tee(fd, w.as_fd(), capacity).map_err(Error::sys(p.pid.0, "copying a pipe's data"))?;
    drop(w);
    let mut data = Vec::with_capacity(n);
    std::fs::File::from(r).read_to_end(&mut data).map_err(Error::io(p.link))?;
    Ok(data)
}

/// Refuse pipes of which the checkpointed processes hold only one end (`pid` is the root, for the
/// message).
pub fn check_pairs(pid: i32, files: &[FileEntry]) -> Result<()> {
    let mut ends: HashMap<u64, (bool, bool, &str)> = HashMap::new();
    for f in files {
        if let Some(FileKind::Pipe(p)) = &f.kind {
            let e = ends.entry(p.pipe_id).or_insert((false, false, &p.name));
            if p.read_end {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
    }
    match ends.values().find(|(r, w, _)| !(r & w)) {
        Some((r, _, name)) => {
            let held = if *r { "read" } else { "write" };
            let what = format!(
                "{name} of which the dumped processes hold only the {held} end (its other end is outside the dump)"
            );
            Err(Error::Unsupported { pid, what })
        }
        None => Ok(()),
    }
}

/// Pipes made again at restore, by `pipe_id`: (read end, write end).
#[derive(Default)]
pub struct Pipes {
    made: HashMap<u64, (OwnedFd, OwnedFd)>,
    filled: std::collections::HashSet<u64>,
}

impl Pipes {
    /// Our fd for one end, making the pipe (size and data) on first use.
    pub fn open(&mut self, end: &PipeEnd, flags: u32) -> Result<OwnedFd> {
        let (r, w) = match self.made.entry(end.pipe_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(make(end)?),
        };
        if end.read_end && !end.data.is_empty() && self.filled.insert(end.pipe_id) {
            std::fs::File::from(w.try_clone().map_err(Error::io(&end.name))?)
                .write_all(&end.data)
                .map_err(Error::io(&end.name))?;
        }
        let ours = if end.read_end { r } else { w };
        let fd = ours.try_clone().map_err(Error::io(&end.name))?;
        let access = if end.read_end { libc::O_RDONLY } else { libc::O_WRONLY } as u32;
        set_status_flags(fd.as_fd(), (access | (flags & SETTABLE)) as i32)
            .map_err(|e| Error::Io { path: end.name.clone().into(), source: e.source })?;
        Ok(fd)
    }
}

fn make(end: &PipeEnd) -> Result<(OwnedFd, OwnedFd)> {
    let io = |e: stasis_sys::SysError| Error::Io { path: end.name.clone().into(), source: e.source };
    let (r, w) = pipe().map_err(io)?;
    if end.capacity as usize != pipe_size(w.as_fd()).map_err(io)? {
        set_pipe_size(w.as_fd(), end.capacity as usize).map_err(io)?;
    }
    Ok((r, w))
}
