//! Regular files and directories: reopened by path with their flags and offset. A file that is gone,
//! or is no longer a regular file (a directory no longer a directory), stops the restore with its path
//! named; a regular file whose size changed since the dump is restored with a warning in the log.
//!
//! A file unlinked while open (a "ghost") is handed to [`super::ghost`].

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{DirectoryFile, FileKind, RegularFile};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// Flags that only mean something at open time, or that we set ourselves.
const OPEN_ONLY: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_CLOEXEC;

pub fn dump(p: &Probe, ghosts: &mut Vec<(u64, u64)>) -> Result<FileKind> {
    let path = p.link.to_string_lossy().into_owned();
    if p.meta.is_dir() {
        if path.ends_with(" (deleted)") {
            return Err(p.unsupported(format!("removed directory {path}")));
        }
        return Ok(FileKind::Directory(DirectoryFile { path, pos: p.pos }));
    }
    if let Some(last_name) = path.strip_suffix(" (deleted)") {
        if p.flags & libc::O_PATH as u32 != 0 {
            return Err(p.unsupported(format!("an O_PATH descriptor of the unlinked file {path}")));
        }
        return super::ghost::dump_file(p, last_name, ghosts);
    }
    let (size, mode) = (p.meta.size(), p.meta.mode());
    Ok(FileKind::Regular(RegularFile { path, pos: p.pos, size, mode, ..Default::default() }))
}

/// An `O_PATH` description of something other than a regular file or directory (a symlink opened
/// with `O_NOFOLLOW`, a socket file, a block device): its path and its file type (in `mode`),
/// opened again by path with the same flags and checked to be of that type.
pub fn dump_path(p: &Probe) -> Result<FileKind> {
    let path = p.link.to_string_lossy().into_owned();
    if path.ends_with(" (deleted)") || !path.starts_with('/') {
        return Err(p.unsupported(format!("an O_PATH descriptor of {path}")));
    }
    Ok(FileKind::Regular(RegularFile { path, size: p.meta.size(), mode: p.meta.mode(), ..Default::default() }))
}

fn open(path: &str, flags: u32, extra: i32) -> Result<std::fs::File> {
    let flags = flags as i32 & !OPEN_ONLY;
    let acc = flags & libc::O_ACCMODE;
    OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags((flags & !libc::O_ACCMODE) | extra)
        .open(path)
        .map_err(Error::io(path))
}

pub fn open_file(r: &RegularFile, flags: u32) -> Result<OwnedFd> {
    if flags & libc::O_PATH as u32 != 0 {
        return open_o_path(r, flags);
    }
    let mut f = open(&r.path, flags & !(libc::O_APPEND as u32), 0)?;
    let meta = f.metadata().map_err(Error::io(&r.path))?;
    if !meta.is_file() {
        return Err(Error::Incompatible {
            file: "files.img".into(),
            what: format!("{} is no longer a regular file", r.path),
        });
    }
    if meta.size() != r.size {
        log::warn!("{}: size changed since the dump ({} -> {} bytes)", r.path, r.size, meta.size());
    }
    f.seek(SeekFrom::Start(r.pos)).map_err(Error::io(&r.path))?;
    if flags & libc::O_APPEND as u32 != 0 {
        // Opened without O_APPEND so the seek above sticks; O_APPEND is set now (fcntl keeps the offset).
        set_append(&f, &r.path)?;
    }
    Ok(f.into())
}

/// An `O_PATH` description (no offset, nothing read through it) of the path, which must still be
/// of the file type it had.
fn open_o_path(r: &RegularFile, flags: u32) -> Result<OwnedFd> {
    let f = open(&r.path, flags, 0)?;
    let meta = f.metadata().map_err(Error::io(&r.path))?;
    let kind = |mode: u32| mode & libc::S_IFMT;
    if kind(meta.mode()) != kind(r.mode) {
        let what = format!("{} is no longer of file type {:o} (O_PATH)", r.path, kind(r.mode));
        return Err(Error::Incompatible { file: "files.img".into(), what });
    }
    Ok(f.into())
}

fn set_append(f: &std::fs::File, path: &str) -> Result<()> {
    use std::os::fd::AsFd;
    stasis_sys::fd::add_status_flags(f.as_fd(), libc::O_APPEND)
        .map_err(|e| Error::Io { path: path.into(), source: e.source })
}

pub fn open_dir(d: &DirectoryFile, flags: u32) -> Result<OwnedFd> {
    let mut f = open(&d.path, flags, 0)?;
    if !f.metadata().map_err(Error::io(&d.path))?.is_dir() {
        return Err(Error::Incompatible {
            file: "files.img".into(),
            what: format!("{} is no longer a directory", d.path),
        });
    }
    if d.pos != 0 {
        f.seek(SeekFrom::Start(d.pos)).map_err(Error::io(&d.path))?;
    }
    Ok(f.into())
}

pub(crate) fn open_path(path: &str, flags: u32) -> Result<OwnedFd> {
    Ok(open(path, flags, 0)?.into())
}

/// Regular files and directories, in the table of kinds (unlinked ones are [`super::ghost`]'s).
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "regular file",
    dump: Some(super::kinds::Dumper {
        claims: |p| p.meta.is_file() || p.meta.is_dir(),
        dump: |p, ids| dump(p, &mut ids.state::<super::ghost::Saved>().0),
    }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, settings| Ok(super::kinds::Stateless::boxed(open_kind, settings))),
    finish_restore: None,
};

/// `O_PATH` fds of what is neither a file nor a directory (nor an anon inode), in the table of
/// kinds: after the UNIX sockets, whose `O_PATH` fds those take.
pub const PATH_KIND: super::kinds::Kind = super::kinds::Kind {
    name: "O_PATH fd",
    dump: Some(super::kinds::Dumper {
        claims: |p| p.flags & libc::O_PATH as u32 != 0 && !p.link.to_string_lossy().starts_with("anon_inode:"),
        dump: |p, _| dump_path(p),
    }),
    configure: None,
    finish_dump: None,
    opener: None,
    finish_restore: None,
};

fn open_kind(f: &stasis_image::model::FileEntry, _: &super::kinds::Settings) -> Option<Result<OwnedFd>> {
    match &f.kind {
        Some(FileKind::Regular(r)) if !r.ghost => Some(open_file(r, f.flags)),
        Some(FileKind::Directory(d)) => Some(open_dir(d, f.flags)),
        _ => None,
    }
}
