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

use super::inotify::check_empty;
use super::Probe;
use crate::error::{Error, Result};
use crate::proc::fdinfo_fields::{fields, handle_path, hex, mounts};
use crate::proc::FdInfo;
use stasis_image::model::{
    FanotifyFile, FanotifyMark, FileKind, FANOTIFY_MARK_FILESYSTEM, FANOTIFY_MARK_INODE, FANOTIFY_MARK_MOUNT,
};
use stasis_sys::watch::{fanotify_init, fanotify_mark};
use std::collections::HashMap;
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
    let info = p.fdinfo()?;
    let mut group = FanotifyFile::default();
    for line in lines(&info) {
        let f = fields(&line);
        let bad = || p.unsupported(format!("fanotify line the kernel shows as '{line}'"));
        match parse(&f).ok_or_else(bad)? {
            Line::Group { flags, event_flags } => (group.flags, group.event_flags) = (flags, event_flags),
            Line::Mark(mut mark) => {
                mark.path = mark_path(mark.kind, &f)?.ok_or_else(|| {
                    p.unsupported(format!("fanotify mark whose path cannot be found here ('{line}')"))
                })?;
                group.marks.push(mark);
            }
        }
    }
    Ok(FileKind::Fanotify(group))
}

/// The `fanotify ...` lines of a group's fdinfo, whole again.
fn lines(info: &FdInfo) -> Vec<String> {
    info.extra.iter().filter(|(k, _)| k.starts_with("fanotify ")).map(|(k, v)| format!("{k}:{v}")).collect()
}

/// What one fdinfo line says.
#[derive(Debug, PartialEq)]
enum Line {
    Group {
        flags: u32,
        event_flags: u32,
    },
    /// A mark, its path not found yet.
    Mark(FanotifyMark),
}

fn parse(f: &HashMap<&str, &str>) -> Option<Line> {
    if f.contains_key("flags") {
        return Some(Line::Group { flags: hex(f, "flags")? as u32, event_flags: hex(f, "event-flags")? as u32 });
    }
    let kind = if f.contains_key("ino") {
        FANOTIFY_MARK_INODE
    } else if f.contains_key("mnt_id") {
        FANOTIFY_MARK_MOUNT
    } else if f.contains_key("sdev") {
        FANOTIFY_MARK_FILESYSTEM
    } else {
        return None;
    };
    let (mflags, mask, ignored_mask) = (hex(f, "mflags")? as u32, hex(f, "mask")?, hex(f, "ignored_mask")?);
    Some(Line::Mark(FanotifyMark { kind, mflags, mask, ignored_mask, path: String::new() }))
}

/// The marked inode's path (from its handle), the mount's mount point, or a mount point of the
/// filesystem (a whole-filesystem mount first).
fn mark_path(kind: u32, f: &HashMap<&str, &str>) -> Result<Option<String>> {
    match kind {
        FANOTIFY_MARK_INODE => handle_path(f),
        FANOTIFY_MARK_MOUNT => {
            let mnt = hex(f, "mnt_id");
            Ok(mounts()?.into_iter().find(|m| Some(m.0) == mnt).map(|m| m.3))
        }
        _ => {
            let sdev = hex(f, "sdev");
            let mut all: Vec<_> = mounts()?.into_iter().filter(|m| Some(m.1) == sdev).collect();
            all.sort_by_key(|m| m.2 != "/");
            Ok(all.into_iter().next().map(|m| m.3))
        }
    }
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

/// fanotify groups, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "fanotify",
    dump: Some(super::kinds::Dumper {
        claims: |p| p.link == std::path::Path::new("anon_inode:[fanotify]"),
        dump: |p, _| dump(p),
    }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, settings| Ok(super::kinds::Stateless::boxed(open_kind, settings))),
    finish_restore: None,
};

fn open_kind(f: &stasis_image::model::FileEntry, _: &super::kinds::Settings) -> Option<Result<OwnedFd>> {
    match &f.kind {
        Some(FileKind::Fanotify(g)) => Some(open(g)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fanotify lines of a group's fdinfo on Linux 6.18 (the watch_fanotify workload).
    const LINES: [&str; 5] = [
        "fanotify flags:2 event-flags:8000",
        "fanotify ino:3 sdev:27 mflags:40 mask:0 ignored_mask:20 fhandle-bytes:c fhandle-type:1 f_handle:5f9e106f0300000000000000",
        "fanotify sdev:27 mflags:0 mask:20 ignored_mask:0",
        "fanotify mnt_id:2c mflags:0 mask:8 ignored_mask:0",
        "fanotify ino:2 sdev:27 mflags:0 mask:2 ignored_mask:0 fhandle-bytes:c fhandle-type:1 f_handle:bfdf22220200000000000000",
    ];

    fn mark(kind: u32, mflags: u32, mask: u64, ignored_mask: u64) -> Option<Line> {
        Some(Line::Mark(FanotifyMark { kind, mflags, mask, ignored_mask, path: String::new() }))
    }

    #[test]
    fn group_and_marks() {
        let info = FdInfo {
            pos: 0,
            flags: 0o4002,
            mnt_id: 17,
            extra: LINES.iter().map(|l| l.split_once(':').map(|(k, v)| (k.into(), v.into())).expect("colon")).collect(),
        };
        let got: Vec<Option<Line>> = lines(&info).iter().map(|l| parse(&fields(l))).collect();
        let want = vec![
            Some(Line::Group { flags: 2, event_flags: 0x8000 }),
            mark(FANOTIFY_MARK_INODE, 0x40, 0, 0x20),
            mark(FANOTIFY_MARK_FILESYSTEM, 0, 0x20, 0),
            mark(FANOTIFY_MARK_MOUNT, 0, 0x8, 0),
            mark(FANOTIFY_MARK_INODE, 0, 0x2, 0),
        ];
        assert_eq!(got, want);
        assert_eq!(parse(&fields("fanotify something:1")), None);
    }
}
