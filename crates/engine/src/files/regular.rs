//! Regular files and directories: reopened by path with their flags and offset. A file that is gone,
//! or is no longer a regular file (a directory no longer a directory), stops the restore with its path
//! named; a regular file whose size changed since the dump is restored with a warning in the log.
//!
//! A file unlinked while open (a "ghost") has its bytes saved in the image, up to a limit; restore
//! makes it again under its last name, opens every description of it, and unlinks it.

use super::Probe;
use crate::error::{Error, Result};
use stasis_image::model::{DirectoryFile, FileKind, RegularFile};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
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
    let (size, mode, ino) = (p.meta.size(), p.meta.mode(), p.meta.ino());
    let Some(last_name) = path.strip_suffix(" (deleted)") else {
        return Ok(FileKind::Regular(RegularFile { path, pos: p.pos, size, mode, ..Default::default() }));
    };
    let memfd = last_name.starts_with("/memfd:");
    if p.meta.nlink() != 0 && !memfd {
        return Err(p.unsupported(format!("file {path} that still has other names")));
    }
    let seals =
        if memfd { stasis_sys::fd::get_seals(p.file).map_err(Error::sys(p.pid.0, "reading memfd seals"))? } else { 0 };
    let mut content = Vec::new();
    let key = (p.meta.dev(), ino);
    if !ghosts.contains(&key) {
        if size > p.ghost_limit {
            let what = format!(
                "{}: unlinked file {path} is {size} bytes, over the limit of {} (raise it with --ghost-limit)",
                if p.fd >= 0 { format!("fd {}", p.fd) } else { "a mapping".into() },
                p.ghost_limit
            );
            return Err(Error::Failed { pid: p.pid.0, what });
        }
        content = read_all(p, size)?;
        ghosts.push(key);
    }
    let path = last_name.to_string();
    Ok(FileKind::Regular(RegularFile { path, pos: p.pos, size, mode, ghost: true, content, ino, memfd, seals }))
}

/// The whole of the (unlinked) file behind the probed fd, read at offsets (its own offset is left).
fn read_all(p: &Probe, size: u64) -> Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::from(p.file.try_clone_to_owned().map_err(Error::io(p.link))?);
    let mut content = vec![0u8; size as usize];
    file.read_exact_at(&mut content, 0).map_err(Error::io(p.link))?;
    Ok(content)
}

/// Unlinked files and memfds made again at restore: each created once (a file under its last name,
/// or beside it if that name is taken now; a memfd with its name and seals), every description of it
/// opened, the file unlinked again when done. An fd of each object is kept for its mappings.
#[derive(Default)]
pub struct Ghosts {
    /// Inode at dump time, the object, and the path to unlink (files only).
    made: Vec<(u64, OwnedFd, Option<std::path::PathBuf>)>,
}

impl Ghosts {
    /// A new description of the object `r` stands for, made on first use.
    pub fn open(&mut self, r: &RegularFile, flags: u32) -> Result<OwnedFd> {
        if !self.made.iter().any(|(ino, _, _)| *ino == r.ino) {
            let made = if r.memfd { make_memfd(r)? } else { make_file(r)? };
            self.made.push(made);
        }
        let (_, obj, path) = self.made.iter().find(|(ino, _, _)| *ino == r.ino).expect("made above");
        let path = match path {
            Some(p) => p.to_string_lossy().into_owned(),
            None => format!("/proc/self/fd/{}", obj.as_raw_fd()),
        };
        let plain = RegularFile { path, ghost: false, content: Vec::new(), ..r.clone() };
        open_file(&plain, flags)
    }

    /// The objects by inode at dump time; the files are unlinked now.
    pub fn into_objects(mut self) -> std::collections::HashMap<u64, OwnedFd> {
        std::mem::take(&mut self.made)
            .into_iter()
            .map(|(ino, fd, path)| {
                if let Some(p) = path {
                    unlink(&p);
                }
                (ino, fd)
            })
            .collect()
    }
}

impl Drop for Ghosts {
    /// The files exist only while their descriptions are being opened.
    fn drop(&mut self) {
        for (_, _, path) in &self.made {
            if let Some(p) = path {
                unlink(p);
            }
        }
    }
}

fn unlink(path: &std::path::Path) {
    if let Err(e) = std::fs::remove_file(path) {
        log::warn!("could not unlink {} again: {e}", path.display());
    }
}

fn make_file(r: &RegularFile) -> Result<(u64, OwnedFd, Option<std::path::PathBuf>)> {
    use std::io::Write;
    let mut path = std::path::PathBuf::from(&r.path);
    if path.exists() {
        path = format!("{}.stasis-ghost-{}", r.path, r.ino).into();
    }
    let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&path).map_err(Error::io(&path))?;
    let written = f.write_all(&r.content).and_then(|()| f.set_len(r.size));
    let perms = std::os::unix::fs::PermissionsExt::from_mode(r.mode & 0o7777);
    if let Err(e) = written.and_then(|()| std::fs::set_permissions(&path, perms)) {
        let _ = std::fs::remove_file(&path);
        return Err(Error::Io { path, source: e });
    }
    Ok((r.ino, f.into(), Some(path)))
}

fn make_memfd(r: &RegularFile) -> Result<(u64, OwnedFd, Option<std::path::PathBuf>)> {
    use std::io::Write;
    use std::os::fd::AsFd;
    let name = r.path.strip_prefix("/memfd:").unwrap_or(&r.path);
    let io = |e: stasis_sys::SysError| Error::Io { path: r.path.clone().into(), source: e.source };
    let fd = stasis_sys::fd::memfd_create(name).map_err(io)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(&r.content).and_then(|()| f.set_len(r.size)).map_err(Error::io(&r.path))?;
    let seals = r.seals & !libc::F_SEAL_SEAL;
    if seals != 0 {
        stasis_sys::fd::add_seals(f.as_fd(), seals).map_err(io)?;
    }
    if r.seals & libc::F_SEAL_SEAL != 0 {
        stasis_sys::fd::add_seals(f.as_fd(), libc::F_SEAL_SEAL).map_err(io)?;
    }
    Ok((r.ino, f.into(), None))
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
