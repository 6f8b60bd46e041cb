//! The I/O signal settings of an open file description, whatever its kind: its owner
//! (`F_SETOWN_EX`: a thread, a process or a process group), the signal sent (`F_SETSIG`) and
//! `O_ASYNC`.
//!
//! Dump reads them with `fcntl` on our copy of the description. Restore sets them, from the
//! controller on its own fd of each description, once every process of the tree exists (an owner is
//! usually a process or group of the tree, and `F_SETOWN_EX` needs it to exist): pids, tids and
//! process group ids are the same as at dump. An owner outside the tree is set again as saved if it
//! exists at restore; if it is gone the restore fails naming it. `O_ASYNC` is set again with a
//! `F_SETFL` that turns it off and on, because the kernel only arms the signal (`->fasync`) on a
//! change of the flag, never at `open`.
//!
//! The controller is root, so the kernel's check that the setter may signal the owner passes for
//! every owner; a tree whose description owner was set by a user not allowed to signal it (which
//! then received no signal) would receive it after restore.

use crate::error::{Error, Result};
use stasis_image::model::{FdTable, FileEntry, FileKind, FileOwner};
use stasis_sys::fd::{io_signal, owner, set_io_signal, set_owner, set_status_flags, status_flags};
use stasis_sys::{Pid, SysError};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const O_ASYNC: u32 = libc::O_ASYNC as u32;
const O_PATH: u32 = libc::O_PATH as u32;

/// The owner and signal of the description behind our copy `file` (of fd `fd` of `pid`); `None`
/// when neither is set.
pub fn dump(pid: Pid, fd: i32, file: BorrowedFd<'_>, kind: &FileKind, flags: u32) -> Result<Option<FileOwner>> {
    if flags & O_PATH != 0 {
        // An O_PATH description has no I/O: fcntl refuses F_GETOWN_EX and F_GETSIG on it (EBADF).
        return Ok(None);
    }
    let (okind, opid) = owner(file).map_err(Error::sys(pid.0, "reading an fd's owner"))?;
    let signal = io_signal(file).map_err(Error::sys(pid.0, "reading an fd's I/O signal"))?;
    let set = opid != 0 || signal != 0;
    if matches!(kind, FileKind::PidFd(_)) && (set || flags & O_ASYNC != 0) {
        // A pidfd of the tree is installed late, on a description the controller never holds.
        let what = "a pidfd with an I/O signal owner, signal or O_ASYNC".into();
        return Err(Error::UnsupportedFd { pid, fd, what });
    }
    Ok(set.then_some(FileOwner { kind: okind, pid: opid, signal }))
}

/// Set the saved owners, signals and `O_ASYNC` on our fds of the descriptions (`opened`, by id),
/// once every process of the tree exists. `tables` (pid, fd table) name a holder in errors.
pub fn restore_all(files: &[FileEntry], opened: &HashMap<u32, OwnedFd>, tables: &[(i32, &FdTable)]) -> Result<()> {
    for f in files {
        let asynchronous = f.flags & O_ASYNC != 0;
        if f.owner.is_none() && !asynchronous {
            continue;
        }
        let Some(fd) = opened.get(&f.id) else { continue };
        restore_one(f, fd.as_fd()).map_err(|(what, source)| {
            let (pid, fd) = holder(f.id, tables);
            let source = Box::new(Error::Sys { pid: Pid(pid), what: "fcntl", source });
            Error::Step { pid: Pid(pid), what: format!("fd {fd}: {what}"), source }
        })?;
    }
    Ok(())
}

fn restore_one(f: &FileEntry, fd: BorrowedFd<'_>) -> std::result::Result<(), (String, SysError)> {
    let why = |what: String| move |e: SysError| (what, e);
    if let Some(o) = &f.owner {
        if o.signal != 0 {
            set_io_signal(fd, o.signal).map_err(why(format!("the I/O signal {}", o.signal)))?;
        }
        if o.pid != 0 {
            let what = format!("the I/O signal owner ({} {})", kind_name(o.kind), o.pid);
            set_owner(fd, o.kind, o.pid).map_err(why(what))?;
        }
    }
    if f.flags & O_ASYNC != 0 {
        let flags = status_flags(fd).map_err(why("O_ASYNC".into()))?;
        set_status_flags(fd, flags & !libc::O_ASYNC).map_err(why("O_ASYNC".into()))?;
        set_status_flags(fd, flags | libc::O_ASYNC).map_err(why("O_ASYNC".into()))?;
    }
    Ok(())
}

/// A process and fd holding description `id`, for messages.
fn holder(id: u32, tables: &[(i32, &FdTable)]) -> (i32, i32) {
    tables
        .iter()
        .find_map(|(pid, t)| t.fds.iter().find(|e| e.file_id == id).map(|e| (*pid, e.fd)))
        .unwrap_or((tables.first().map_or(0, |t| t.0), -1))
}

/// `F_OWNER_TID` and friends, by name.
pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        0 => "thread",
        1 => "process",
        2 => "process group",
        _ => "owner",
    }
}
