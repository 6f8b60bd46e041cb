//! Pipes, with the bytes queued in them, their capacity, and the flags (O_NONBLOCK, O_DIRECT) of
//! each open file description of an end (an end reopened through `/proc/PID/fd/N` is a second
//! description of it, with flags of its own).
//!
//! The queued bytes are copied at dump with `tee()` from our copy of the read end into a pipe of ours,
//! so the process's pipe keeps them. `tee` keeps each buffer's packet flag (a pipe written through an
//! O_DIRECT end): reading our copy returns one packet per read, whose sizes are saved, and restore
//! writes them back one write each through an O_DIRECT end. Restore makes a new pipe in the controller, sizes it, writes the
//! bytes back, and hands each end to the task(s) holding it; a second description of an end is
//! opened through `/proc/self/fd/N` of the first.
//!
//! A pipe of which the tree holds one end only is dumped too: its other end is either closed
//! everywhere (`peer_closed`, seen with `poll`: POLLHUP on a read end without writers, POLLERR on a
//! write end without readers) or open outside the tree (`external`, listed in the dump report). Both
//! restore as a fresh pipe whose other end nobody holds, with the queued bytes of a read end: a
//! read gives EOF after them, a write gives EPIPE (SIGPIPE). An external end is replaced by the
//! descriptor `--inherit-fd fd[N]:pipe:[INODE]` hands in, as CRIU does.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{FileEntry, FileKind, PipeEnd};
use stasis_sys::fd::{pipe, pipe_size, set_pipe_size, set_status_flags, tee};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Flags of an end that are set after the pipe is made.
const SETTABLE: u32 = (libc::O_NONBLOCK | libc::O_DIRECT) as u32;

pub fn dump(p: &Probe, fd: BorrowedFd<'_>, flags: u32) -> Result<FileKind> {
    let read_end = flags & libc::O_ACCMODE as u32 == libc::O_RDONLY as u32;
    let capacity = pipe_size(fd).map_err(Error::sys(p.pid.0, "reading a pipe's size"))? as u32;
    let (data, packets) = if read_end { copy_queue(p, fd, capacity as usize)? } else { Default::default() };
    let name = p.link.to_string_lossy().into_owned();
    // No writer left: POLLHUP on a read end; no reader left: POLLERR on a write end.
    let gone = if read_end { libc::POLLHUP } else { libc::POLLERR };
    let events = stasis_sys::tty::poll_now(fd, 0).map_err(Error::sys(p.pid.0, "polling a pipe"))?;
    let peer_closed = events & gone != 0;
    let pipe_id = p.meta.ino();
    Ok(FileKind::Pipe(PipeEnd { pipe_id, read_end, capacity, data, name, peer_closed, external: false, packets }))
}

/// The bytes queued behind `fd`, a read end of a pipe or FIFO, copied with `tee` (nothing is
/// consumed), and the sizes of its packets when there is more than one: `tee` keeps each buffer's
/// packet flag, and a read of a packet-mode buffer stops at its end.
pub(super) fn copy_queue(p: &Probe, fd: BorrowedFd<'_>, capacity: usize) -> Result<(Vec<u8>, Vec<u32>)> {
    let (r, w) = pipe().map_err(Error::sys(p.pid.0, "making a pipe"))?;
    set_pipe_size(w.as_fd(), capacity).map_err(Error::sys(p.pid.0, "sizing a pipe"))?;
    let n = tee(fd, w.as_fd(), capacity).map_err(Error::sys(p.pid.0, "copying the queued bytes"))?;
    drop(w);
    let mut data = vec![0u8; n];
    let mut reader = std::fs::File::from(r);
    let (mut at, mut reads) = (0, Vec::new());
    while at < n {
        let got = reader.read(&mut data[at..]).map_err(Error::io(p.link))?;
        if got == 0 {
            break;
        }
        reads.push(got as u32);
        at += got;
    }
    data.truncate(at);
    let packets = if reads.len() > 1 { reads } else { Vec::new() };
    Ok((data, packets))
}

/// Mark the pipe ends whose other end is not in the image but open outside the tree (`external`),
/// once every process is dumped.
pub fn mark_external(files: &mut [FileEntry]) {
    let mut ends: HashMap<u64, (bool, bool)> = HashMap::new();
    for f in files.iter() {
        if let Some(FileKind::Pipe(p)) = &f.kind {
            let e = ends.entry(p.pipe_id).or_default();
            if p.read_end {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
    }
    for f in files.iter_mut() {
        if let Some(FileKind::Pipe(p)) = &mut f.kind {
            p.external = !p.peer_closed && ends.get(&p.pipe_id).is_some_and(|(r, w)| !(r & w));
        }
    }
}

/// Pipes made again at restore, by `pipe_id`: (read end, write end).
#[derive(Default)]
pub struct Pipes {
    made: HashMap<u64, (OwnedFd, OwnedFd)>,
    filled: HashSet<u64>,
    /// The ends (`pipe_id`, read end) whose first description is handed out already.
    handed: HashSet<(u64, bool)>,
}

impl Pipes {
    /// Our fd for one description of an end, making the pipe (size and data) on first use.
    pub fn open(&mut self, end: &PipeEnd, flags: u32) -> Result<OwnedFd> {
        let (r, w) = match self.made.entry(end.pipe_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(make(end)?),
        };
        if end.read_end && !end.data.is_empty() && self.filled.insert(end.pipe_id) {
            fill(w.as_fd(), end)?;
        }
        let ours = if end.read_end { r } else { w };
        let access = if end.read_end { libc::O_RDONLY } else { libc::O_WRONLY };
        let fd = if self.handed.insert((end.pipe_id, end.read_end)) {
            ours.try_clone().map_err(Error::io(&end.name))?
        } else {
            reopen(ours.as_fd(), access, &end.name)?
        };
        set_status_flags(fd.as_fd(), access | (flags & SETTABLE) as i32)
            .map_err(|e| Error::Io { path: end.name.clone().into(), source: e.source })?;
        Ok(fd)
    }
}

/// Write the queued bytes of `end` into the new pipe through write end `w`.
fn fill(w: BorrowedFd<'_>, end: &PipeEnd) -> Result<()> {
    write_queue(w, libc::O_WRONLY, (&end.data, &end.packets), &end.name)
}

/// Write `data` into a pipe or FIFO through `w` (opened with access `access`): one write, or one
/// per packet of `packets` with O_DIRECT set for them (each write of a packet-mode end is one
/// packet); `name` for errors.
pub(super) fn write_queue(w: BorrowedFd<'_>, access: i32, (data, packets): (&[u8], &[u32]), name: &str) -> Result<()> {
    let mut file = std::fs::File::from(w.try_clone_to_owned().map_err(Error::io(name))?);
    if packets.is_empty() {
        return file.write_all(data).map_err(Error::io(name));
    }
    let flags_err = |e: stasis_sys::SysError| Error::Io { path: name.into(), source: e.source };
    let before = stasis_sys::fd::status_flags(w).map_err(flags_err)?;
    set_status_flags(w, access | libc::O_DIRECT).map_err(flags_err)?;
    let mut at = 0usize;
    for &size in packets {
        let packet = data.get(at..at + size as usize).ok_or_else(|| Error::Incompatible {
            file: "files.img".into(),
            what: format!("{name}: field packets: more than the {} bytes of data", data.len()),
        })?;
        file.write_all(packet).map_err(Error::io(name))?;
        at += size as usize;
    }
    set_status_flags(w, before).map_err(flags_err)
}

/// A new open file description of the pipe end `fd`, with access mode `access`.
fn reopen(fd: BorrowedFd<'_>, access: i32, name: &str) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let file = std::fs::OpenOptions::new()
        .read(access == libc::O_RDONLY)
        .write(access == libc::O_WRONLY)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(Error::io(format!("{name} (reopened through {path})")))?;
    Ok(file.into())
}

fn make(end: &PipeEnd) -> Result<(OwnedFd, OwnedFd)> {
    let io = |e: stasis_sys::SysError| Error::Io { path: end.name.clone().into(), source: e.source };
    let (r, w) = pipe().map_err(io)?;
    if end.capacity as usize != pipe_size(w.as_fd()).map_err(io)? {
        set_pipe_size(w.as_fd(), end.capacity as usize).map_err(io)?;
    }
    Ok((r, w))
}

/// Pipes, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "pipe",
    dump: Some(super::kinds::Dumper {
        claims: |p| {
            std::os::unix::fs::FileTypeExt::is_fifo(&p.meta.file_type())
                && p.link.to_string_lossy().starts_with("pipe:")
        },
        dump: |p, _| dump(p, p.file, p.flags),
    }),
    configure: None,
    finish_dump: Some(|t| {
        mark_external(t.files);
        Ok(())
    }),
    opener: Some(|_, _| Ok(Box::new(Pipes::default()))),
    finish_restore: None,
};

impl super::kinds::Opener for Pipes {
    fn open(&mut self, f: &FileEntry) -> Option<Result<OwnedFd>> {
        match &f.kind {
            Some(FileKind::Pipe(p)) => Some(self.open(p, f.flags)),
            _ => None,
        }
    }

    fn inherited(&mut self, _: &FileEntry) {}

    fn opened(self: Box<Self>, _: &[FileEntry], _: &HashMap<u32, OwnedFd>, _: &mut super::kinds::Later) -> Result<()> {
        Ok(())
    }
}
