//! epoll instances and the files they watch.
//!
//! Dump reads the items from the epoll fd's fdinfo (`tfd: N events: X data: Y ...`, one line each)
//! and finds each watched file among the files of the dumped tree with `kcmp(KCMP_EPOLL_TFD)`: the
//! item's fd number `tfd` may since have been closed, or reused for another file, so the number
//! alone does not name the file. This runs once every process of the tree is seen (the file may be
//! held by a child only); a watched file that no fd of the tree holds is refused.
//!
//! An item is keyed by (file, fd number), and the process will later `EPOLL_CTL_MOD` or
//! `EPOLL_CTL_DEL` it by its number. Restore makes the epoll in the controller and adds every item
//! under its original number once every description of the image is open
//! ([`stasis_sys::watch::epoll_add_at`]: a thread with a private fd table puts each file at its
//! number and adds it), so no fd of the task has to be moved for it. Items are added in the order
//! of the image, after every file: an epoll watching another epoll works too.

use super::{FileIds, Probe};
use crate::error::{Error, Result};
use crate::proc::fdinfo_fields::fields;
use crate::proc::FdInfo;
use stasis_image::model::{EpollFile, EpollWatch, FileEntry, FileKind};
use stasis_sys::watch::{epoll_add_at, epoll_create, kcmp_epoll_tfd, EpollAdd};
use stasis_sys::Pid;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

pub fn dump(p: &Probe) -> Result<FileKind> {
    let info = p.fdinfo()?;
    let watches = items(&info).map_err(|line| p.unsupported(format!("epoll item the kernel shows as '{line}'")))?;
    Ok(FileKind::Epoll(EpollFile { watches }))
}

/// The items of an epoll's fdinfo (`tfd: N events: X data: Y ...`), with no file named yet; the
/// line that does not parse as the error.
pub(super) fn items(info: &FdInfo) -> Result<Vec<EpollWatch>, String> {
    let mut watches = Vec::new();
    for (key, value) in info.extra.iter().filter(|(k, _)| k == "tfd") {
        let line = format!("{key}: {value}");
        let f = fields(&line);
        let num = |k: &str, radix| f.get(k).and_then(|v| u64::from_str_radix(v, radix).ok());
        match (num("tfd", 10), num("events", 16), num("data", 16)) {
            (Some(tfd), Some(events), Some(data)) => {
                watches.push(EpollWatch { tfd: tfd as i32, events: events as u32, data, file_id: 0 })
            }
            _ => return Err(line),
        }
    }
    Ok(watches)
}

/// Name the file each item of every epoll of the dump watches: the id of a description of the
/// tree, found with `kcmp(KCMP_EPOLL_TFD)`. Runs once every process is seen (and still frozen).
pub fn resolve(files: &mut [FileEntry], ids: &mut FileIds) -> Result<()> {
    let epolls = std::mem::take(&mut ids.state::<Seen>().0);
    for &(id, pid, efd) in &epolls {
        let Some(FileKind::Epoll(ep)) = files.iter_mut().find(|f| f.id == id).and_then(|f| f.kind.as_mut()) else {
            continue;
        };
        for i in 0..ep.watches.len() {
            let tfd = ep.watches[i].tfd;
            // The kernel counts items with one number in the order fdinfo lists them.
            let toff = ep.watches[..i].iter().filter(|w| w.tfd == tfd).count() as u32;
            let same = |s: &&(Pid, i32, u32, u64, u64)| kcmp_epoll_tfd(s.0, s.1, pid, efd, tfd, toff).ok() == Some(0);
            // The fd with the item's number in the process first: most items are still open there.
            let here = ids.seen.iter().filter(|s| s.0 == pid && s.1 == tfd).find(same);
            match here.or_else(|| ids.seen.iter().find(same)) {
                Some(s) => ep.watches[i].file_id = s.2,
                None => {
                    let what =
                        format!("epoll watching a file (added as fd {tfd}) that no fd of the dumped processes holds");
                    return Err(Error::UnsupportedFd { pid, fd: efd, what });
                }
            }
        }
    }
    Ok(())
}

/// A new, empty epoll instance with the status flags of `flags` (`O_NONBLOCK`).
pub fn open(flags: u32) -> Result<OwnedFd> {
    let io = |e: stasis_sys::SysError| Error::Io { path: "anon_inode:[eventpoll]".into(), source: e.source };
    let fd = epoll_create().map_err(io)?;
    if flags & libc::O_NONBLOCK as u32 != 0 {
        stasis_sys::fd::add_status_flags(fd.as_fd(), libc::O_NONBLOCK).map_err(io)?;
    }
    Ok(fd)
}

/// Add the items of every epoll of `files`, now that every description is open (`opened`).
pub fn register_all(files: &[FileEntry], opened: &HashMap<u32, OwnedFd>) -> Result<()> {
    let mut adds = Vec::new();
    let mut names = Vec::new();
    for f in files {
        let Some(FileKind::Epoll(ep)) = &f.kind else { continue };
        let epoll = opened.get(&f.id).expect("every file is open").as_fd();
        for w in &ep.watches {
            let target = opened.get(&w.file_id).ok_or_else(|| Error::Incompatible {
                file: "files.img".into(),
                what: format!("epoll file {}: watched file id {} is not in files.img", f.id, w.file_id),
            })?;
            adds.push(EpollAdd { epoll, target: target.as_fd(), number: w.tfd, events: w.events, data: w.data });
            names.push(format!("epoll file {}: item fd {} (file id {})", f.id, w.tfd, w.file_id));
        }
    }
    if adds.is_empty() {
        return Ok(());
    }
    epoll_add_at(&adds).map_err(|(i, e)| Error::Io { path: names[i].clone().into(), source: e.source })
}

/// epoll instances, in the table of kinds.
pub const KIND: super::kinds::Kind = super::kinds::Kind {
    name: "epoll",
    dump: Some(super::kinds::Dumper {
        claims: |p| p.link == std::path::Path::new("anon_inode:[eventpoll]"),
        dump: dump_and_note,
    }),
    configure: None,
    finish_dump: Some(|t| resolve(t.files, t.ids)),
    opener: Some(|_, _| Ok(Box::new(Epolls))),
    finish_restore: None,
};

/// The epolls seen by a dump: (id, process, fd), for [`resolve`] once every process is seen.
#[derive(Default)]
pub struct Seen(Vec<(u32, Pid, i32)>);

/// [`dump`], noting where an epoll held by an fd lives, for [`resolve`].
fn dump_and_note(p: &Probe, ids: &mut FileIds) -> Result<FileKind> {
    let kind = dump(p)?;
    if p.fd >= 0 {
        ids.state::<Seen>().0.push((p.id, p.pid, p.fd));
    }
    Ok(kind)
}

/// The opener of the epolls: each is made empty; the items are added once every file is open.
struct Epolls;

impl super::kinds::Opener for Epolls {
    fn open(&mut self, f: &FileEntry) -> Option<Result<OwnedFd>> {
        match &f.kind {
            Some(FileKind::Epoll(_)) => Some(open(f.flags)),
            _ => None,
        }
    }

    fn inherited(&mut self, _: &FileEntry) {}

    fn opened(
        self: Box<Self>,
        files: &[FileEntry],
        fds: &HashMap<u32, OwnedFd>,
        _: &mut super::kinds::Later,
    ) -> Result<()> {
        register_all(files, fds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::{self, ProcRoot};

    /// fdinfo of an epoll on Linux 6.18 (the watch_epoll workload): two items share number 9.
    const FDINFO: &str = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n\
tfd:        7 events: 8000001c data:               b2  pos:0 ino:e2a78 sdev:f\n\
tfd:        9 events: 10000019 data:               d5  pos:0 ino:e2a7a sdev:f\n\
tfd:        9 events:       19 data:               c4  pos:0 ino:e2a79 sdev:f\n\
tfd:        8 events: 40000000 data:               f3  pos:0 ino:99c0d8 sdev:fe00000\n";

    #[test]
    fn items_from_fdinfo() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("1/fdinfo")).expect("mkdir");
        std::fs::write(dir.path().join("1/fdinfo/3"), FDINFO).expect("write");
        let info = proc::fdinfo(&ProcRoot::new(dir.path()), 1, 3).expect("fdinfo");
        let got: Vec<(i32, u32, u64)> =
            items(&info).expect("items").iter().map(|w| (w.tfd, w.events, w.data)).collect();
        assert_eq!(got, [(7, 0x8000001c, 0xb2), (9, 0x10000019, 0xd5), (9, 0x19, 0xc4), (8, 0x40000000, 0xf3)]);
    }

    #[test]
    fn a_line_that_does_not_parse_is_named() {
        let info = FdInfo { pos: 0, flags: 2, mnt_id: 1, extra: vec![("tfd".into(), "x events: 1 data: 2".into())] };
        assert_eq!(items(&info).unwrap_err(), "tfd: x events: 1 data: 2");
    }
}
