//! Files of a process's `/proc/PID/` directory (`/proc/self/status` shows as `/proc/PID/status`),
//! and namespace fds (nsfs: what opening `/proc/PID/ns/NAME` gives, shown as `TYPE:[INODE]`).
//!
//! Dump records the process and the path below its directory. A namespace fd is resolved once the
//! whole tree is known ([`resolve`]) to a process of the tree whose `ns/NAME` link (or
//! `NAME_for_children`) is that namespace; one no process of the tree is in is refused by name.
//! Restore opens `/proc/PID/REST` again, with the flags and offset it had, once that process
//! exists: like a pidfd of a process of the tree, its fd number is held by a placeholder until
//! then (see [`super::pidfd::install_late`]), so the file is the restored process's. Its I/O
//! signal owner and signal are set once every process exists ([`super::pidfd::restore_owners`]).

use super::Probe;
use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::{FdTable, FileEntry, FileKind, ProcFile};
use stasis_sys::anon;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;

/// `f_type` of procfs.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// `f_type` of nsfs.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Namespace types whose `/proc/PID/ns/` directory also has a `TYPE_for_children` link.
const FOR_CHILDREN: [&str; 2] = ["pid", "time"];

/// Whether `p` is a namespace fd, or a file of some `/proc/PID/` directory.
pub fn handles(p: &Probe) -> bool {
    match anon::fs_type(p.file) {
        Ok(NSFS_MAGIC) => true,
        Ok(PROC_SUPER_MAGIC) => proc_path(&p.link.to_string_lossy()).is_some(),
        _ => false,
    }
}

/// `(PID, REST)` of a path `/proc/PID/REST` (REST empty or starting with `/`).
fn proc_path(path: &str) -> Option<(i32, &str)> {
    let after = path.strip_prefix("/proc/")?;
    let (num, rest) = after.split_at(after.find('/').unwrap_or(after.len()));
    Some((num.parse().ok()?, rest))
}

/// `(TYPE, INODE)` of a namespace fd's link `TYPE:[INODE]`.
fn ns_link(link: &str) -> Option<(&str, u64)> {
    let (kind, rest) = link.split_once(":[")?;
    Some((kind, rest.strip_suffix(']')?.parse().ok()?))
}

pub fn dump(p: &Probe) -> Result<FileKind> {
    let link = p.link.to_string_lossy();
    if let Some((kind, ns_ino)) = ns_link(&link) {
        // The process is found once the tree is known (`resolve`).
        return Ok(FileKind::ProcFile(ProcFile { pid: 0, rest: format!("/ns/{kind}"), pos: 0, ns_ino }));
    }
    match proc_path(&link) {
        Some((pid, rest)) if !rest.ends_with(" (deleted)") => {
            Ok(FileKind::ProcFile(ProcFile { pid, rest: rest.to_string(), pos: p.pos, ns_ino: 0 }))
        }
        _ => Err(p.unsupported(format!("{link}, a file of a /proc directory that is gone,"))),
    }
}

/// Give each namespace fd of `files` a process of the tree (`pids`) in that namespace, or refuse
/// it naming a process and fd that hold it (`tables`).
pub fn resolve(root: &ProcRoot, files: &mut [FileEntry], pids: &[i32], tables: &[(i32, &FdTable)]) -> Result<()> {
    for f in files.iter_mut() {
        let Some(FileKind::ProcFile(p)) = &mut f.kind else { continue };
        if p.ns_ino == 0 {
            continue;
        }
        let kind = p.rest.trim_start_matches("/ns/").to_string();
        let mut names = vec![kind.clone()];
        if FOR_CHILDREN.contains(&kind.as_str()) {
            names.push(format!("{kind}_for_children"));
        }
        let found = pids.iter().find_map(|&pid| {
            names.iter().find(|n| proc::ns_inode(root, pid, n).ok() == Some(p.ns_ino)).map(|n| (pid, n.clone()))
        });
        if let Some((pid, name)) = found {
            (p.pid, p.rest) = (pid, format!("/ns/{name}"));
            continue;
        }
        let what = format!("an fd of the {kind} namespace {kind}:[{}], which no process of the tree is in,", p.ns_ino);
        let holder = tables.iter().find_map(|(pid, t)| t.fds.iter().find(|e| e.file_id == f.id).map(|e| (*pid, e.fd)));
        return Err(match holder {
            Some((pid, fd)) => Error::UnsupportedFd { pid: pid.into(), fd, what },
            None => Error::Unsupported { pid: pids.first().copied().unwrap_or(0).into(), what },
        });
    }
    Ok(())
}

/// The path a proc file is opened again by.
pub fn path(p: &ProcFile) -> String {
    format!("/proc/{}{}", p.pid, p.rest)
}

/// Our fd of `/proc/PID/REST` with `flags` (as fdinfo showed them) at its offset; an error whose
/// errno is ENOENT or ESRCH while the process does not exist yet.
pub fn open(p: &ProcFile, flags: u32) -> std::io::Result<OwnedFd> {
    let flags = flags as i32 & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_CLOEXEC);
    let acc = flags & libc::O_ACCMODE;
    let file = std::fs::OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(flags & !libc::O_ACCMODE)
        .open(path(p))?;
    if p.pos != 0 {
        use std::io::Seek;
        if let Err(e) = (&file).seek(std::io::SeekFrom::Start(p.pos)) {
            log::warn!("{}: could not seek back to offset {}: {e}", path(p), p.pos);
        }
    }
    Ok(file.into())
}

/// Whether `err` (of [`open`]) says the process does not exist (yet).
pub fn not_yet(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// Files of `/proc/PID/` and namespace fds, in the table of kinds (before regular files, which
/// would claim them).
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "proc file",
    dump: Some(super::kinds::Dumper { claims: handles, dump: |p, _| dump(p) }),
    configure: None,
    finish_dump: Some(|t| {
        let pids = t.pids();
        resolve(&ProcRoot::system(), t.files, &pids, t.tables)
    }),
    opener: Some(|_, settings| Ok(super::kinds::Stateless::boxed(open_kind, settings))),
    finish_restore: None,
};

/// A placeholder until the process exists (see [`super::pidfd::install_late`]).
fn open_kind(f: &FileEntry, _: &super::kinds::Settings) -> Option<Result<OwnedFd>> {
    match &f.kind {
        Some(FileKind::ProcFile(_)) => Some(super::pidfd::placeholder()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_paths_and_namespace_links_are_split() {
        assert_eq!(proc_path("/proc/42/status"), Some((42, "/status")));
        assert_eq!(proc_path("/proc/42"), Some((42, "")));
        assert_eq!(proc_path("/proc/meminfo"), None);
        assert_eq!(proc_path("/tmp/proc/42"), None);
        assert_eq!(ns_link("net:[4026531840]"), Some(("net", 4026531840)));
        assert_eq!(ns_link("/proc/42/status"), None);
    }
}
