//! inotify instances and their watches.
//!
//! Dump reads each watch from fdinfo (`inotify wd:.. ino:.. sdev:.. mask:.. ... f_handle:..`, numbers
//! in hex) and finds the watched file's path from its file handle (`open_by_handle_at` on a mount of
//! its filesystem, then the `/proc/self/fd` link), checked against its inode number. Events queued and
//! not read yet are refused (reading them would take them from the process).
//!
//! Restore makes the instance in the controller and adds the watches by path, in the order of their
//! watch descriptors. The kernel hands descriptors out in sequence, so a watch that comes out with a
//! smaller descriptor than it had is removed and added again until it has its own; the `IN_IGNORED`
//! events these removals queue are read off before the next watch.

use super::Probe;
use crate::error::{Error, Result};
use crate::proc::fdinfo_fields::{fields, handle_path, hex};
use crate::proc::FdInfo;
use stasis_image::model::{FileKind, InotifyFile, InotifyWatch};
use stasis_sys::watch::{bytes_queued, inotify_add_watch, inotify_init, inotify_rm_watch};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bits of a watch's mask `inotify_add_watch` takes back.
const MASK_BITS: u32 = libc::IN_ALL_EVENTS | libc::IN_ONLYDIR | libc::IN_EXCL_UNLINK | libc::IN_ONESHOT;

/// Refuse an instance with events not read yet.
pub(super) fn check_empty(p: &Probe, what: &str) -> Result<()> {
    let n = bytes_queued(p.file).map_err(Error::sys(p.pid.0, "reading the bytes queued"))?;
    if n > 0 {
        return Err(p.unsupported(format!("{what} with {n} bytes of events not read yet")));
    }
    Ok(())
}

pub fn dump(p: &Probe) -> Result<FileKind> {
    check_empty(p, "inotify instance")?;
    let info = p.fdinfo()?;
    let mut watches = Vec::new();
    for line in watch_lines(&info) {
        let f = fields(&line);
        let (Some(wd), Some(ino), Some(mask)) = (hex(&f, "wd"), hex(&f, "ino"), hex(&f, "mask")) else {
            return Err(p.unsupported(format!("inotify watch the kernel shows as '{line}'")));
        };
        let Some(path) = handle_path(&f)? else {
            return Err(p.unsupported(format!("inotify watch {wd} on inode {ino} whose path cannot be found")));
        };
        watches.push(InotifyWatch { wd: wd as i32, mask: mask as u32, path, ino });
    }
    watches.sort_by_key(|w| w.wd);
    Ok(FileKind::Inotify(InotifyFile { watches }))
}

/// The watch lines of an inotify instance's fdinfo, whole again (`inotify wd:1 ino:...`).
fn watch_lines(info: &FdInfo) -> Vec<String> {
    info.extra.iter().filter(|(k, _)| k == "inotify wd").map(|(k, v)| format!("{k}:{v}")).collect()
}

/// A new inotify instance with the watches of `i`, each with its descriptor.
pub fn open(i: &InotifyFile, flags: u32) -> Result<OwnedFd> {
    let io = |path: &str| {
        let path = path.to_string();
        move |e: stasis_sys::SysError| Error::Io { path: path.into(), source: e.source }
    };
    let fd = inotify_init(libc::IN_CLOEXEC | libc::IN_NONBLOCK).map_err(io("anon_inode:inotify"))?;
    let mut sorted: Vec<&InotifyWatch> = i.watches.iter().collect();
    sorted.sort_by_key(|w| w.wd);
    for w in sorted {
        let path = Path::new(&w.path);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.ino() != w.ino => {
                log::warn!(
                    "inotify watch {}: {} is another file than at dump (inode {} -> {})",
                    w.wd,
                    w.path,
                    w.ino,
                    m.ino()
                )
            }
            _ => {}
        }
        loop {
            let got = inotify_add_watch(fd.as_fd(), path, (w.mask & MASK_BITS) | libc::IN_DONT_FOLLOW)
                .map_err(io(&w.path))?;
            if got == w.wd {
                break;
            }
            if got > w.wd {
                return Err(Error::Incompatible {
                    file: "files.img".into(),
                    what: format!("inotify watch on {}: descriptor {got} given, {} wanted", w.path, w.wd),
                });
            }
            inotify_rm_watch(fd.as_fd(), got).map_err(io(&w.path))?;
            drain(fd.as_fd());
        }
    }
    if flags & libc::O_NONBLOCK as u32 == 0 {
        stasis_sys::fd::set_status_flags(fd.as_fd(), libc::O_RDONLY).map_err(io("anon_inode:inotify"))?;
    }
    Ok(fd)
}

/// Read off (non-blocking) the events queued in our instance: those of the watches we removed.
fn drain(fd: BorrowedFd<'_>) {
    let Ok(dup) = fd.try_clone_to_owned() else { return };
    let mut f = std::fs::File::from(dup);
    let mut buf = [0u8; 4096];
    while f.read(&mut buf).is_ok_and(|n| n > 0) {}
}

/// inotify instances, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "inotify",
    dump: Some(super::kinds::Dumper { claims: |p| p.link == Path::new("anon_inode:inotify"), dump: |p, _| dump(p) }),
    configure: None,
    finish_dump: None,
    opener: Some(|_, settings| Ok(super::kinds::Stateless::boxed(open_kind, settings))),
    finish_restore: None,
};

fn open_kind(f: &stasis_image::model::FileEntry, _: &super::kinds::Settings) -> Option<Result<OwnedFd>> {
    match &f.kind {
        Some(FileKind::Inotify(i)) => Some(open(i, f.flags)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch line of an inotify fdinfo on Linux 6.18 (the watch_inotify workload).
    const WATCH: &str = "inotify wd:4 ino:99c178 sdev:fe00000 mask:4 ignored_mask:0 fhandle-bytes:8 \
fhandle-type:1 f_handle:78c199006335fb19";

    #[test]
    fn fields_of_a_watch_line() {
        let info = FdInfo { pos: 0, flags: 0, mnt_id: 1, extra: vec![("inotify wd".into(), WATCH[11..].into())] };
        let lines = watch_lines(&info);
        assert_eq!(lines, [WATCH]);
        let f = fields(&lines[0]);
        assert_eq!(
            (hex(&f, "wd"), hex(&f, "ino"), hex(&f, "sdev"), hex(&f, "mask")),
            (Some(4), Some(0x99c178), Some(0xfe00000), Some(4))
        );
        assert_eq!(f.get("f_handle"), Some(&"78c199006335fb19"));
        assert!(f.contains_key("inotify"));
    }
}
