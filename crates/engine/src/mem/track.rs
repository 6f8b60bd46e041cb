//! Write tracking between the rounds of an incremental dump, without soft-dirty bits: a userfaultfd
//! of the process's mm in asynchronous write-protect mode (`UFFD_FEATURE_WP_ASYNC`, with
//! `WP_UNPOPULATED` so that absent pages are protected too), registered over its private anonymous
//! areas, read back and armed again in one walk by `PAGEMAP_SCAN` (`PAGE_IS_WRITTEN`,
//! `PM_SCAN_WP_MATCHING`; see `stasis_sys::uffd`).
//!
//! The pte markers that protect absent pages read in `/proc/PID/pagemap` as swapped pages; page
//! selection skips them (`stasis_sys::mem::is_pte_marker`). Without CAP_SYS_ADMIN they cannot be
//! told from swapped pages and are saved as the zeros they read as: costly but never wrong, since
//! such a page was absent at the round before and so is never taken from the parent.
//!
//! The process is made to create the userfaultfd (an injected `userfaultfd(2)`); we take it with
//! `pidfd_getfd` and close it in the process at once, so the program never sees it in its fd table.
//! Between rounds the [`crate::holder`] process keeps it open (closing it would end the tracking).
//!
//! Invariant: a page is "in parent" (not saved again) only if (1) it lies in an area the kernel
//! still shows as write-protect registered (`uw`) by our userfaultfd, (2) `PAGEMAP_SCAN` does not
//! report it written since the previous round, and (3) the previous round's image has its bytes
//! (saved there, or in parent there). Everything else a dump selects is saved. Areas new since the
//! previous round, moved by `mremap` (the kernel drops their registration), or of a process forked
//! since (a child gets no registration) are therefore saved in full.
//!
//! Not tracked, saved in full every round: shared memory (a write through another process's
//! mapping, or through the file, clears no bit in this one's page table), and any area the kernel
//! refuses to register (named in a warning). A process with a userfaultfd of its own is not tracked
//! at all (its registrations could not be told from ours).

use super::pages::Selected;
use super::{is_special, kind};
use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::{PageRun, Vma, VmaKind};
use stasis_sys::inject::{InjectError, Injector};
use stasis_sys::remote::Remote;
use stasis_sys::{uffd, Pid};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

const PAGE: u64 = 4096;

/// Sorted, disjoint `[start, end)` address ranges.
pub type Ranges = Vec<(u64, u64)>;

/// The write tracking of one process: its userfaultfd and a pidfd (which tells a later round that
/// the process with this PID is still the same one).
#[derive(Debug)]
pub struct Tracker {
    pub pid: Pid,
    pub uffd: OwnedFd,
    pub pidfd: OwnedFd,
}

/// Areas whose writes are tracked: private anonymous ones, not the kernel's special areas nor
/// `MAP_DROPPABLE` or hugetlb ones (saved in full every round). The copied-on-write pages of private file mappings are saved in full
/// every round: without CAP_SYS_ADMIN a marker left where such a page was dropped
/// (`MADV_DONTNEED`) would read as an unwritten page, and the old copy would come back.
pub fn trackable(v: &Vma) -> bool {
    v.flags & libc::MAP_PRIVATE as u32 != 0
        && kind(v) == VmaKind::Anon
        && !is_special(v)
        && !v.droppable
        && v.hugetlb_page_size == 0
}

/// The fd of a userfaultfd the process holds itself, if any.
pub fn own_userfaultfd(root: &ProcRoot, pid: Pid) -> Result<Option<i32>> {
    let fds = proc::fds(root, pid.0)?;
    Ok(fds.into_iter().find(|(_, p)| p.as_os_str() == "anon_inode:[userfaultfd]").map(|(fd, _)| fd))
}

/// The areas of `pid` the kernel shows as write-protect registered with a userfaultfd (`uw`).
pub fn registered(root: &ProcRoot, pid: Pid) -> Result<Ranges> {
    let maps = proc::smaps(root, pid.0)?;
    Ok(maps.iter().filter(|e| e.vm_flags.has("uw")).map(|e| (e.start, e.end)).collect())
}

/// Make the frozen process create a userfaultfd, take it, close it in the process, and enable
/// asynchronous write-protection on it. A clear error when the kernel cannot.
pub fn create(inj: &mut Injector, pid: Pid) -> Result<Tracker> {
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u32;
    // Without privilege (vm.unprivileged_userfaultfd=0) only a user-mode-only one is allowed; the
    // kernel's own writes to the process's memory are tracked either way (WP_ASYNC resolves them
    // without a fault message).
    let refused = |e: InjectError| match e {
        // The call failed in the process (EPERM, ENOSYS under seccomp...): tracking is refused.
        InjectError::Failed { .. } => Error::Step {
            pid,
            what: "write tracking: userfaultfd(2) in the process".into(),
            source: Box::new(e.into()),
        },
        other => other.into(),
    };
    let fd = match inj.userfaultfd(flags) {
        Ok(fd) => fd,
        Err(InjectError::Failed { .. }) => inj.userfaultfd(flags | uffd::USER_MODE_ONLY).map_err(refused)?,
        Err(e) => return Err(e.into()),
    };
    let pidfd = stasis_sys::fd::pidfd_open(pid).map_err(Error::sys(pid.0, "opening a pidfd"))?;
    let taken = stasis_sys::fd::pidfd_getfd(pidfd.as_fd(), fd);
    inj.close(fd)?;
    let uffd = taken.map_err(Error::sys(pid.0, "taking the userfaultfd"))?;
    let features = uffd::FEATURE_WP_ASYNC | uffd::FEATURE_WP_UNPOPULATED;
    uffd::api(uffd.as_fd(), features).map_err(|source| Error::Sys {
        pid,
        what: "write tracking cannot be armed: the kernel lacks asynchronous userfaultfd write-protect (Linux 6.7)",
        source,
    })?;
    Ok(Tracker { pid, uffd, pidfd })
}

/// Register every trackable area of `vmas` not in `already` and write-protect it: from now on
/// its writes are seen. An area the kernel refuses is named in a warning and left untracked (its
/// pages are saved in full by the next round). Returns the ranges now tracked (old and new).
pub fn register(t: &Tracker, vmas: &[Vma], already: &[(u64, u64)]) -> Ranges {
    let mut out: Ranges = already.to_vec();
    for v in vmas.iter().filter(|v| trackable(v)) {
        if already.iter().any(|&(s, e)| s <= v.start && v.end <= e) {
            continue;
        }
        let len = v.end - v.start;
        let done = uffd::register_wp(t.uffd.as_fd(), v.start, len)
            .and_then(|()| uffd::write_protect(t.uffd.as_fd(), v.start, len));
        match done {
            Ok(()) => out.push((v.start, v.end)),
            Err(e) => log::warn!(
                "pid {}: mapping {:#x}-{:#x} {}: writes not tracked ({e}: {}): the next dump saves its pages in full",
                t.pid,
                v.start,
                v.end,
                v.name,
                e.source
            ),
        }
    }
    out.sort_unstable();
    out
}

/// The pages of `ranges` (of the frozen process) written since the last round; with `rearm`,
/// protected again by the same walk.
pub fn written(t: &Tracker, ranges: &[(u64, u64)], rearm: bool) -> Result<Ranges> {
    let path = format!("/proc/{}/pagemap", t.pid);
    let pagemap = File::open(&path).map_err(Error::io(&path))?;
    let mut out = Vec::new();
    for &(s, e) in ranges {
        out.extend(uffd::written(&pagemap, s, e, rearm).map_err(Error::sys(t.pid.0, "PAGEMAP_SCAN of written pages"))?);
    }
    Ok(out)
}

/// Split the pages a dump selected into those it saves and those it leaves in the parent image: in
/// parent are the pages inside `trusted` (still registered by us), not `written`, and `resolvable`
/// in the parent image. See the module doc.
pub fn split(
    selected: &[Selected],
    trusted: &[(u64, u64)],
    written: &[(u64, u64)],
    resolvable: &[(u64, u64)],
) -> (Vec<Selected>, Vec<PageRun>) {
    let sel: Ranges = selected.iter().map(|s| (s.run.0, s.run.0 + s.run.1 * PAGE)).collect();
    let in_parent = subtract(&intersect(&intersect(&sel, trusted), resolvable), written);
    let mut saved = Vec::new();
    for s in selected {
        let r = (s.run.0, s.run.0 + s.run.1 * PAGE);
        for (a, b) in subtract(&[r], &in_parent) {
            saved.push(Selected { run: (a, (b - a) / PAGE), readable: s.readable });
        }
    }
    let runs = in_parent.iter().map(|&(a, b)| PageRun { vaddr: a, nr_pages: (b - a) / PAGE }).collect();
    (saved, runs)
}

/// The ranges of a page map's runs.
pub fn ranges_of(runs: &[PageRun]) -> Ranges {
    runs.iter().map(|r| (r.vaddr, r.vaddr + r.nr_pages * PAGE)).collect()
}

/// The union of two sorted lists of ranges, merged.
pub fn union(a: &[(u64, u64)], b: &[(u64, u64)]) -> Ranges {
    let mut all: Ranges = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Ranges = Vec::new();
    for (s, e) in all {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The parts common to two sorted, disjoint lists of ranges.
pub fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Ranges {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (s, e) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if s < e {
            out.push((s, e));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The parts of the sorted, disjoint ranges `a` outside every range of `holes` (sorted, disjoint).
pub fn subtract(a: &[(u64, u64)], holes: &[(u64, u64)]) -> Ranges {
    let mut out = Vec::new();
    let mut j = 0;
    for &(s, e) in a {
        let mut at = s;
        while j < holes.len() && holes[j].1 <= at {
            j += 1;
        }
        let mut k = j;
        while k < holes.len() && holes[k].0 < e {
            if holes[k].0 > at {
                out.push((at, holes[k].0));
            }
            at = at.max(holes[k].1);
            k += 1;
        }
        if at < e {
            out.push((at, e));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_algebra() {
        assert_eq!(intersect(&[(0, 10), (20, 30)], &[(5, 25)]), vec![(5, 10), (20, 25)]);
        assert_eq!(subtract(&[(0, 10), (20, 30)], &[(5, 22), (28, 40)]), vec![(0, 5), (22, 28)]);
        assert_eq!(subtract(&[(0, 10)], &[]), vec![(0, 10)]);
        assert_eq!(union(&[(0, 10)], &[(10, 20), (30, 40)]), vec![(0, 20), (30, 40)]);
    }

    #[test]
    fn only_unwritten_tracked_pages_known_to_the_parent_stay_there() {
        let p = PAGE;
        let selected = [Selected { run: (0, 8), readable: true }, Selected { run: (16 * p, 2), readable: false }];
        // Tracked: pages 0-7 and 16-17; written: page 2; the parent has pages 0-5 and 16.
        let (saved, in_parent) =
            split(&selected, &[(0, 8 * p), (16 * p, 18 * p)], &[(2 * p, 3 * p)], &[(0, 6 * p), (16 * p, 17 * p)]);
        let runs: Vec<_> = saved.iter().map(|s| (s.run, s.readable)).collect();
        assert_eq!(runs, vec![((2 * p, 1), true), ((6 * p, 2), true), ((17 * p, 1), false)]);
        let parent: Vec<_> = in_parent.iter().map(|r| (r.vaddr, r.nr_pages)).collect();
        assert_eq!(parent, vec![(0, 2), (3 * p, 3), (16 * p, 1)]);
    }
}
