//! Guard regions (`madvise(MADV_GUARD_INSTALL)`, Linux 6.13): page-table markers that make an
//! access fault (SIGSEGV in the task, EIO through `/proc/PID/mem`) without a VMA of their own.
//!
//! Dump finds them in `/proc/PID/pagemap` (bit 58, Linux 6.14), saves none of their pages and keeps
//! their runs in `MmImage::guards`. Restore installs them again after the pages are in place and
//! before areas are locked (the kernel refuses guards in locked areas). A child forked from its
//! restored parent inherits the parent's markers in the areas it keeps: those the child did not
//! have are removed before its pages are written. An area that had guards once keeps saying so in
//! its VmFlags (`gu`, Linux 6.18) even when they are all gone: [`mark_once_guarded`].

use super::{kind, subtract};
use crate::error::{Error, Result};
use stasis_image::model::{MmImage, PageRun, Vma, VmaKind};
use stasis_sys::mem::PM_GUARD_REGION;
use stasis_sys::remote::Remote;
use stasis_sys::Pid;
use std::collections::HashSet;

const PAGE: u64 = 4096;
const MADV_GUARD_INSTALL: i32 = 102;
const MADV_GUARD_REMOVE: i32 = 103;

/// Append the guard runs of area `v` (its pagemap `entries`) to `out`. Guards in shared anonymous
/// memory are refused: the object is saved whole, through the mapping the guards block.
pub fn collect(pid: Pid, v: &Vma, entries: &[u64], out: &mut Vec<PageRun>) -> Result<()> {
    let mut i = 0;
    while i < entries.len() {
        if entries[i] & PM_GUARD_REGION == 0 {
            i += 1;
            continue;
        }
        let first = i;
        while i < entries.len() && entries[i] & PM_GUARD_REGION != 0 {
            i += 1;
        }
        let vaddr = v.start + first as u64 * PAGE;
        if matches!(kind(v), VmaKind::SharedAnon | VmaKind::SysvShm) {
            let what = format!("guard region at {vaddr:#x} in shared memory {:#x}-{:#x} {}", v.start, v.end, v.name);
            return Err(Error::Unsupported { pid, what });
        }
        out.push(PageRun { vaddr, nr_pages: (i - first) as u64 });
    }
    Ok(())
}

/// In the areas a child `kept` from its restored parent, remove the parent's guards the child had not.
pub fn drop_inherited(inj: &mut dyn Remote, mm: &MmImage, parent: &MmImage, kept: &HashSet<u64>) -> Result<()> {
    let own: Vec<(u64, u64)> = mm.guards.iter().map(range).collect();
    for v in mm.vmas.iter().filter(|v| kept.contains(&v.start)) {
        for g in parent.guards.iter().map(range).filter(|g| g.0 < v.end && g.1 > v.start) {
            for (start, end) in subtract((g.0.max(v.start), g.1.min(v.end)), &own) {
                advise(inj, start, end, MADV_GUARD_REMOVE)?;
            }
        }
    }
    Ok(())
}

/// Areas that had guard regions once but have none now still say so (`gu`): a guard installed and
/// removed again on their first page, before their pages are written, marks them. An area a child
/// kept from its parent is marked already if the parent's was.
pub fn mark_once_guarded(
    inj: &mut dyn Remote,
    mm: &MmImage,
    parent: Option<&MmImage>,
    kept: &HashSet<u64>,
) -> Result<()> {
    let guarded = |v: &Vma| mm.guards.iter().any(|g| g.vaddr >= v.start && g.vaddr < v.end);
    let marked_in_parent = |v: &Vma| {
        kept.contains(&v.start) && parent.is_some_and(|p| p.vmas.iter().any(|pv| pv.start == v.start && pv.maybe_guard))
    };
    for v in mm.vmas.iter().filter(|v| v.maybe_guard && !guarded(v) && !marked_in_parent(v)) {
        advise(inj, v.start, v.start + PAGE, MADV_GUARD_INSTALL)?;
        advise(inj, v.start, v.start + PAGE, MADV_GUARD_REMOVE)?;
    }
    Ok(())
}

/// Install every guard region of the image.
pub fn install(inj: &mut dyn Remote, mm: &MmImage) -> Result<()> {
    for (start, end) in mm.guards.iter().map(range) {
        advise(inj, start, end, MADV_GUARD_INSTALL)?;
    }
    Ok(())
}

fn advise(inj: &mut dyn Remote, start: u64, end: u64, advice: i32) -> Result<()> {
    inj.madvise(start, end - start, advice).map_err(|e| Error::Step {
        pid: inj.pid(),
        what: format!("guard region {start:#x}-{end:#x}"),
        source: Box::new(e.into()),
    })?;
    Ok(())
}

fn range(r: &PageRun) -> (u64, u64) {
    (r.vaddr, r.vaddr + r.nr_pages * PAGE)
}
