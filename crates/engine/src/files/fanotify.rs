//! fanotify groups and their marks.
//!
//! Dump reads the group's `fanotify_init` flags and event flags and each mark from fdinfo (numbers in
//! hex): inode marks (`fanotify ino:.. sdev:.. mflags:.. mask:.. ignored_mask:.. f_handle..`, path
//! found from the handle as for inotify), mount marks (`fanotify mnt_id:..`, the mount point from
//! mountinfo) and filesystem marks (`fanotify sdev:..`, a mount point of that filesystem). A group
//! with events not read yet (permission events waiting for an answer among them) is refused.
//!
//! Restore makes the group in the controller with the same flags and adds each mark by path: the
//! mask with `FAN_MARK_ADD`, the ignored mask with a second call (`FAN_MARK_IGNORE` or
//! `FAN_MARK_IGNORED_MASK`, as the mark had).

use super::inotify::{check_empty, fields, handle_path, hex, mounts};
use super::Probe;
use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::{
    FanotifyFile, FanotifyMark, FileKind, FANOTIFY_MARK_FILESYSTEM, FANOTIFY_MARK_INODE, FANOTIFY_MARK_MOUNT,
};
use stasis_sys::watch::{fanotify_init, fanotify_mark};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

// fanotify_mark(2) flags.
const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_FILESYSTEM: u32 = 0x100;
const FAN_MARK_EVICTABLE: u32 = 0x200;
const FAN_MARK_IGNORE: u32 = 0x400;

pub fn dump(p: &Probe) -> Result<FileKind> {
    check_empty(p, "fanotify group")?;
    let info = proc::fdinfo(&ProcRoot::system(), p.pid.0, p.fd)?;
    let mut group = FanotifyFile::default();
    for (key, value) in info.extra.iter().filter(|(k, _)| k.starts_with("fanotify ")) {
        let line = format!("{key}:{value}");
        let f = fields(&line);
        let bad = || p.unsupported(format!("fanotify line the kernel shows as '{line}'"));
        if f.contains_key("flags") {
            group.flags = hex(&f, "flags").ok_or_else(bad)? as u32;
            group.event_flags = hex(&f, "event-flags").ok_or_else(bad)? as u32;
            continue;
        }
        let (Some(mflags), Some(mask), Some(ignored_mask)) =
            (hex(&f, "mflags"), hex(&f, "mask"), hex(&f, "ignored_mask"))
        else {
            return Err(bad());
        };
        let (kind, path) = if f.contains_key("ino") {
            let path = handle_path(&f)?;
            let path = path.ok_or_else(|| {
                p.unsupported(format!("fanotify mark on inode {} whose path cannot be found", f["ino"]))
            })?;
            (FANOTIFY_MARK_INODE, path)
        } else if let Some(mnt) = hex(&f, "mnt_id") {
            let point = mounts()?.into_iter().find(|m| m.0 == mnt).map(|m| m.3);
            (
                FANOTIFY_MARK_MOUNT,
                point.ok_or_else(|| {
                    p.unsupported(format!("fanotify mark on mount {mnt}, not in this mount namespace"))
                })?,
            )
        } else if let Some(sdev) = hex(&f, "sdev") {
            let mut all: Vec<_> = mounts()?.into_iter().filter(|m| m.1 == sdev).collect();
            all.sort_by_key(|m| m.2 != "/");
            let point = all.into_iter().next().map(|m| m.3);
            (
                FANOTIFY_MARK_FILESYSTEM,
                point.ok_or_else(|| {
                    p.unsupported(format!("fanotify mark on filesystem {sdev:#x}, mounted nowhere here"))
                })?,
            )
        } else {
            return Err(bad());
        };
        group.marks.push(FanotifyMark { kind, mflags: mflags as u32, mask, ignored_mask, path });
    }
    Ok(FileKind::Fanotify(group))
}

/// A new fanotify group like `g`, with its marks.
pub fn open(g: &FanotifyFile) -> Result<OwnedFd> {
    let io = |path: &str| {
        let path = path.to_string();
        move |e: stasis_sys::SysError| Error::Io { path: path.into(), source: e.source }
    };
    // The flags as they were, FAN_CLOEXEC included or not (fdinfo shows it): the task's fd gets its
    // own close-on-exec flag when installed.
    let fd = fanotify_init(g.flags, g.event_flags).map_err(io("anon_inode:[fanotify]"))?;
    for m in &g.marks {
        let kind = match m.kind {
            FANOTIFY_MARK_MOUNT => FAN_MARK_MOUNT,
            FANOTIFY_MARK_FILESYSTEM => FAN_MARK_FILESYSTEM,
            _ => 0,
        };
        let base = FAN_MARK_ADD | kind | (m.mflags & FAN_MARK_EVICTABLE);
        let path = Path::new(&m.path);
        if m.mask != 0 {
            fanotify_mark(fd.as_fd(), base, m.mask, path).map_err(io(&m.path))?;
        }
        if m.ignored_mask != 0 || m.mflags & FAN_MARK_IGNORE != 0 {
            let how = if m.mflags & FAN_MARK_IGNORE != 0 { FAN_MARK_IGNORE } else { FAN_MARK_IGNORED_MASK };
            let flags = base | how | (m.mflags & FAN_MARK_IGNORED_SURV_MODIFY);
            fanotify_mark(fd.as_fd(), flags, m.ignored_mask, path).map_err(io(&m.path))?;
        }
    }
    Ok(fd)
}
