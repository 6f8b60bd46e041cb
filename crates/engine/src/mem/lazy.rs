//! Lazy restore, the restoring side (`restore --lazy-pages`): which pages of a process wait for the
//! lazy-pages daemon ([`crate::lazy`]), and the hand-off of the process's userfaultfd to it.
//!
//! The pages served lazily are the saved pages of private anonymous areas (the only private areas
//! userfaultfd's MISSING mode takes). A process is restored lazily only if it has no children in
//! the image and no guard regions: its children are forks of it and must find its memory in place,
//! and guard regions are not mixed with registered areas. Every other page is read at once, as
//! without `--lazy-pages`.
//!
//! The userfaultfd is made by the task itself (an injected `userfaultfd(2)`), taken with
//! `pidfd_getfd`, registered from here over the lazy areas, and sent with `SCM_RIGHTS` over the
//! daemon's unix socket (`lazy-pages.socket` in the image directory); the restore goes on once the
//! daemon has said it serves it, so any fault from then on (the restore's own included) is served.

use crate::error::{Error, Result};
use crate::mem::{is_special, kind};
use stasis_image::model::{MmImage, PageMap, ProcessEntry, VmaKind};
use stasis_image::PAGE_DATA_OFFSET;
use stasis_sys::remote::Remote;
use stasis_sys::uffd_missing as uffd;
use stasis_sys::Pid;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const PAGE: u64 = 4096;
/// The name of the daemon's socket in the image directory.
pub const SOCKET: &str = "lazy-pages.socket";
/// The features every lazily restored userfaultfd is made with: the daemon follows forks,
/// mremap, munmap and madvise(DONTNEED) of the restored tree.
pub const FEATURES: u64 =
    uffd::FEATURE_EVENT_FORK | uffd::FEATURE_EVENT_REMAP | uffd::FEATURE_EVENT_REMOVE | uffd::FEATURE_EVENT_UNMAP;
/// Messages on the socket: `[pid: i32 LE, kind: u32 LE]`.
pub const MSG_UFFD: u32 = 1;
pub const MSG_DONE: u32 = 2;

/// A saved run of pages and where its bytes are in the page file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub vaddr: u64,
    pub pages: u64,
    /// Offset in the page file.
    pub offset: u64,
}

/// The areas (start, end) of `mm` whose saved pages are served lazily: private anonymous ones but
/// hugetlb areas (filled at once).
pub fn lazy_areas(mm: &MmImage) -> Vec<(u64, u64)> {
    mm.vmas
        .iter()
        .filter(|v| {
            !is_special(v)
                && kind(v) == VmaKind::Anon
                && v.flags & libc::MAP_PRIVATE as u32 != 0
                && v.hugetlb_page_size == 0
        })
        .map(|v| (v.start, v.end))
        .collect()
}

/// The runs of `map` with their page-file offsets, split into those read at once and those in
/// `areas` (served lazily). A run never straddles two areas.
pub fn split(map: &PageMap, areas: &[(u64, u64)]) -> (Vec<Run>, Vec<Run>) {
    let (mut eager, mut lazy) = (Vec::new(), Vec::new());
    let mut offset = PAGE_DATA_OFFSET;
    for r in &map.runs {
        let run = Run { vaddr: r.vaddr, pages: r.nr_pages, offset };
        offset += r.nr_pages * PAGE;
        match areas.iter().any(|&(s, e)| s <= r.vaddr && r.vaddr < e) {
            true => lazy.push(run),
            false => eager.push(run),
        }
    }
    (eager, lazy)
}

/// Whether `p` is restored lazily: it has lazy pages, no guard regions, an address space of its
/// own and no children among `procs` (the processes of the image restored with memory: every one
/// but the zombies).
pub fn lazily_restored(p: &ProcessEntry, procs: &[&ProcessEntry], mm: &MmImage, map: &PageMap) -> bool {
    let has_children = procs.iter().any(|c| c.ppid == p.pid && c.pid != p.pid);
    p.shares & stasis_image::model::SHARES_VM == 0
        && !has_children
        && mm.guards.is_empty()
        && !split(map, &lazy_areas(mm)).1.is_empty()
}

/// The processes of a process tree restored with memory: every one but the zombies (the root is
/// never taken for one).
pub fn with_memory(tree: &[ProcessEntry]) -> Vec<&ProcessEntry> {
    tree.iter().enumerate().filter(|(i, p)| !(p.zombie && *i > 0)).map(|(_, p)| p).collect()
}

/// The restore's connection to the lazy-pages daemon.
#[derive(Debug)]
pub struct Handoff {
    sock: Mutex<OwnedFd>,
    path: PathBuf,
}

impl Handoff {
    /// Connect to the daemon serving the image in `dir`.
    pub fn connect(dir: &Path) -> Result<Handoff> {
        let path = dir.join(SOCKET);
        let offered = uffd::offered_features().map_err(|e| Error::LazyDaemon {
            path: path.clone(),
            what: "lazy restore needs userfaultfd(2), which failed here".into(),
            source: Some(e.source),
        })?;
        if offered & FEATURES != FEATURES {
            let what = format!(
                "lazy restore needs userfaultfd's fork, mremap, madvise and munmap events \
                 ({FEATURES:#x}); this kernel offers {offered:#x}"
            );
            return Err(Error::LazyDaemon { path, what, source: None });
        }
        let failed = |e: stasis_sys::SysError| Error::Io { path: path.clone(), source: e.source };
        let sock = stasis_sys::socket::unix_socket(libc::SOCK_SEQPACKET).map_err(failed)?;
        let name = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
        stasis_sys::socket::connect(sock.as_fd(), &name).map_err(|e| Error::LazyDaemon {
            path: path.clone(),
            what: "--lazy-pages: no lazy-pages daemon listens (start `stasis lazy-pages -D DIR` first)".into(),
            source: Some(e.source),
        })?;
        Ok(Handoff { sock: Mutex::new(sock), path })
    }

    /// Hand `uffd`, the userfaultfd of `pid`, to the daemon; returns once it serves it.
    pub fn send(&self, pid: Pid, uffd: BorrowedFd<'_>) -> Result<()> {
        self.request(pid, MSG_UFFD, &[uffd])
    }

    /// Every lazy process is handed over: the daemon may exit once their pages are in.
    pub fn finish(&self) -> Result<()> {
        self.request(Pid(0), MSG_DONE, &[])
    }

    fn request(&self, pid: Pid, kind: u32, fds: &[BorrowedFd<'_>]) -> Result<()> {
        let sock = self.sock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let failed = |what: &str, e: Option<std::io::Error>| Error::LazyDaemon {
            path: self.path.clone(),
            what: format!("pid {pid}: {what}"),
            source: e,
        };
        let mut msg = pid.0.to_le_bytes().to_vec();
        msg.extend(kind.to_le_bytes());
        stasis_sys::socket::send(sock.as_fd(), &msg, &[], fds, None)
            .map_err(|e| failed("handing over the userfaultfd", Some(e.source)))?;
        let mut answer = [0u8; 512];
        let (n, _) = stasis_sys::socket::recv_with_fds(sock.as_fd(), &mut answer)
            .map_err(|e| failed("waiting for the daemon", Some(e.source)))?;
        match n {
            0 => Err(failed("the daemon closed its socket", None)),
            1 if answer[0] == 0 => Ok(()),
            _ => Err(failed(&String::from_utf8_lossy(&answer[..n]), None)),
        }
    }
}

/// Restore the pages of a lazy process: read the `eager` runs from the page file (open in the task
/// as `task_fd`), drop what a forked child holds of its parent's in the `lazy` runs, register the
/// lazy `areas` on a userfaultfd of the task and hand it to the daemon.
pub fn restore(
    inj: &mut dyn Remote,
    task_fd: i32,
    (eager, lazy, areas): (&[Run], &[Run], &[(u64, u64)]),
    forked: bool,
    handoff: &Handoff,
) -> Result<()> {
    let pid = inj.pid();
    for r in eager {
        read_run(inj, task_fd, r)?;
    }
    if forked {
        for r in lazy {
            inj.madvise(r.vaddr, r.pages * PAGE, libc::MADV_DONTNEED)?;
        }
    }
    let n = inj.userfaultfd((libc::O_CLOEXEC | libc::O_NONBLOCK) as u32)?;
    let pidfd = stasis_sys::fd::pidfd_open(pid).map_err(Error::sys(pid.0, "opening a pidfd"))?;
    let ours = stasis_sys::fd::pidfd_getfd(pidfd.as_fd(), n).map_err(Error::sys(pid.0, "taking its userfaultfd"));
    inj.close(n)?;
    let ours = ours?;
    uffd::api(ours.as_fd(), FEATURES).map_err(Error::sys(pid.0, "userfaultfd handshake (UFFDIO_API)"))?;
    for &(start, end) in areas {
        if lazy.iter().any(|r| start <= r.vaddr && r.vaddr < end) {
            uffd::register_missing(ours.as_fd(), start, end - start)
                .map_err(Error::sys(pid.0, "registering an area for lazy pages (UFFDIO_REGISTER)"))?;
        }
    }
    handoff.send(pid, ours.as_fd())?;
    log::info!("pid {pid}: {} lazy runs handed to the lazy-pages daemon", lazy.len());
    Ok(())
}

/// Make the task read one run from the page file.
fn read_run(inj: &mut dyn Remote, task_fd: i32, r: &Run) -> Result<()> {
    let (mut addr, mut left, mut off) = (r.vaddr, r.pages * PAGE, r.offset);
    while left > 0 {
        let n = inj.preadv(task_fd, &[(addr, left)], off)?;
        if n == 0 {
            return Err(Error::Failed { pid: inj.pid(), what: format!("page file ends early at offset {off}") });
        }
        addr += n;
        off += n;
        left -= n;
    }
    Ok(())
}
