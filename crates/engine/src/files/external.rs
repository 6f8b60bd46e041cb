//! Descriptors that lead outside the tree, and the descriptors a caller hands in for them.
//!
//! Dump lists the fds whose object is shared with the outside ([`list`]): a pipe end whose other
//! end is held outside the tree, a UNIX socket connected to a socket outside it. The dump report
//! names each with its key, the name `--inherit-fd fd[N]:KEY` takes at restore.
//!
//! Restore ([`Inherited`]) installs the descriptor the caller handed in (one of stasis' own fds)
//! instead of making the object again, for every description whose key matches: `pipe:[INODE]`,
//! `socket:[INODE]` (inode numbers at dump time, as `/proc/PID/fd` showed them), or the path of a
//! regular file (with or without its leading `/`, as CRIU writes it). The description is the
//! caller's: its offset and flags are left as they are.

use crate::error::{Error, Result};
use stasis_image::model::{FdTable, FileEntry, FileKind};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// An fd of the tree whose object is shared with processes outside it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExternalFd {
    pub pid: i32,
    pub fd: i32,
    /// The key `--inherit-fd fd[N]:KEY` takes (`pipe:[INODE]`, `socket:[INODE]`).
    pub key: String,
    /// What leads outside, in words.
    pub what: String,
}

/// A descriptor handed in for the objects named `key` (`--inherit-fd fd[N]:KEY`).
#[derive(Debug, Clone)]
pub struct InheritFd {
    pub key: String,
    pub fd: Arc<OwnedFd>,
}

/// Every fd of the tree (`tables`: pid and fd table) whose object leads outside it.
pub fn list(files: &[FileEntry], tables: &[(i32, &FdTable)]) -> Vec<ExternalFd> {
    let mut out = Vec::new();
    for f in files {
        let what = match &f.kind {
            Some(FileKind::Pipe(p)) if p.external => {
                let (held, other) = if p.read_end { ("read", "writer") } else { ("write", "reader") };
                format!("the {held} end of {}, whose {other} is outside the tree", p.name)
            }
            Some(FileKind::UnixSocket(u)) if u.external_peer => {
                format!(
                    "a unix socket connected to a socket outside the tree ({})",
                    String::from_utf8_lossy(&u.peer_name)
                )
            }
            _ => continue,
        };
        let Some(key) = key(f) else { continue };
        for (pid, t) in tables {
            for e in t.fds.iter().filter(|e| e.file_id == f.id) {
                out.push(ExternalFd { pid: *pid, fd: e.fd, key: key.clone(), what: what.clone() });
            }
        }
    }
    out
}

/// The `--inherit-fd` key of a description: `pipe:[INODE]`, `socket:[INODE]`, or a regular file's
/// path without its leading `/`.
fn key(f: &FileEntry) -> Option<String> {
    match &f.kind {
        Some(FileKind::Pipe(p)) => Some(p.name.clone()),
        Some(FileKind::UnixSocket(u)) => Some(format!("socket:[{}]", u.ino)),
        Some(FileKind::Regular(r)) if !r.ghost => Some(r.path.trim_start_matches('/').to_string()),
        _ => None,
    }
}

/// The descriptors handed in at restore.
pub struct Inherited<'a>(pub &'a [InheritFd]);

impl Inherited<'_> {
    /// A duplicate of the descriptor handed in for `f`, if one was.
    pub fn take(&self, f: &FileEntry) -> Result<Option<OwnedFd>> {
        let Some(k) = key(f) else { return Ok(None) };
        let Some(given) = self.0.iter().find(|i| i.key.trim_start_matches('/') == k) else { return Ok(None) };
        let fd = given.fd.as_fd().try_clone_to_owned().map_err(Error::io(format!("--inherit-fd for {k}")))?;
        log::info!("file {}: {k} is the descriptor handed in with --inherit-fd", f.id);
        Ok(Some(fd))
    }
}
