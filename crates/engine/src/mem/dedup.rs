//! Deduplication of a chain of images, as CRIU's `dedup` command and `--auto-dedup` option: every
//! page an image saved itself is punched out of the nearest parent image that also saved it
//! (`fallocate(FALLOC_FL_PUNCH_HOLE)`), walking up through the parents' own in-parent pages, so the
//! chain keeps one copy of each page, the newest.
//!
//! The parent stays consistent: its page map lists the holes (`PageMap.punched`, field 620), its
//! chunk checksums are of the chunk with those pages as zeros, and its inventory is written again
//! with the new digests. Restore of the newest image never reads a punched page (it has its own
//! copy); a restore that would need one (of the parent itself, or of another child of it) is
//! refused, naming the page map and the range (see [`check_whole`] and `chain::resolve`).
//!
//! Order: the new page map and inventory are written first, then the holes are punched. If the
//! dedup stops between the two, the parent's chunk checksums no longer match its data and every
//! restore reading it refuses by name (never a wrong page).

use super::chain::{self, locate};
use super::track::{intersect, ranges_of, subtract, union, Ranges};
use crate::error::{Error, Result};
use stasis_image::model::{PageMap, PageRun, PsTree};
use stasis_image::{ImageDir, ImageKind, PAGE_DATA_OFFSET};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

const PAGE: u64 = 4096;

/// What a dedup did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Deduped {
    /// Pages punched out of parent images.
    pub pages: u64,
    /// Parent images changed.
    pub images: u64,
}

/// Punch out of the parents of the image in `dir` every page it holds itself (see the module doc).
pub fn dedup(dir: &Path) -> Result<Deduped> {
    let image = ImageDir::open(dir)?;
    let parents = chain::parents(&image)?;
    let mut done = Deduped::default();
    if parents.is_empty() {
        return Ok(done);
    }
    let tree: PsTree = image.read_one(ImageKind::PsTree, None)?;
    // Per parent: (pid, its page map there, the ranges to punch).
    let mut plans: Vec<Vec<(i32, PageMap, Ranges)>> = parents.iter().map(|_| Vec::new()).collect();
    for p in tree.processes.iter().filter(|p| !p.zombie) {
        let map: PageMap = image.read_one(ImageKind::PageMap, Some(p.pid))?;
        let mut pending = ranges_of(&map.runs);
        for (i, parent) in parents.iter().enumerate() {
            if pending.is_empty() {
                break;
            }
            let name = ImageKind::PageMap.file_name(Some(p.pid));
            // A process new since that parent has no page map there.
            if !parent.inventory().is_some_and(|inv| inv.files.iter().any(|d| d.name == name)) {
                break;
            }
            let pmap: PageMap = parent.read_one(ImageKind::PageMap, Some(p.pid))?;
            if stasis_image::compress::is_compressed(&pmap) {
                let what = "a compressed page file: its pages cannot be punched out of its zstd frames (deduplicate uncompressed images)";
                return Err(Error::Incompatible {
                    file: parent.path().join(name).display().to_string(),
                    what: what.into(),
                });
            }
            let runs = ranges_of(&pmap.runs);
            let hit = subtract(&intersect(&pending, &runs), &ranges_of(&pmap.punched));
            pending = intersect(&subtract(&pending, &runs), &ranges_of(&pmap.in_parent));
            if !hit.is_empty() {
                plans[i].push((p.pid, pmap, hit));
            }
        }
    }
    for (parent, plan) in parents.iter().zip(plans) {
        if plan.is_empty() {
            continue;
        }
        let mut maps = Vec::new();
        let mut holes = Vec::new();
        let mut pages = 0;
        for (pid, mut pmap, hit) in plan {
            let name = ImageKind::Pages.file_name(Some(pid));
            let path = parent.path().join(&name);
            let checked = parent.open_pages(pid, &pmap)?;
            stasis_image::verify_pages(&checked, &name, &pmap)?;
            let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(Error::io(&path))?;
            let punched = union(&ranges_of(&pmap.punched), &hit);
            pmap.punched = punched.iter().map(|&(s, e)| PageRun { vaddr: s, nr_pages: (e - s) / PAGE }).collect();
            let all: Vec<(u64, u64)> = locate(&punched, &pmap).0.iter().map(|p| (p.2, p.1)).collect();
            let new: Vec<(u64, u64)> = locate(&hit, &pmap).0.iter().map(|p| (p.2, p.1)).collect();
            rehash(&file, &name, &mut pmap, &all, &new)?;
            pages += hit.iter().map(|&(s, e)| (e - s) / PAGE).sum::<u64>();
            holes.push((file, name, new));
            maps.push((pid, pmap));
        }
        parent.replace_pagemaps(&maps)?;
        for (file, name, pieces) in holes {
            for (off, len) in pieces {
                stasis_sys::fd::punch_hole(file.as_fd(), off, len)
                    .map_err(|e| Error::Io { path: parent.path().join(&name), source: e.source })?;
            }
        }
        log::info!("{}: {pages} pages held by a newer image punched out", parent.path().display());
        done.pages += pages;
        done.images += 1;
    }
    Ok(done)
}

/// The chunk checksums of `map` again for the chunks holding any piece of `new` (file offset,
/// length), with every punched piece of `all` read as zeros.
fn rehash(file: &File, name: &str, map: &mut PageMap, all: &[(u64, u64)], new: &[(u64, u64)]) -> Result<()> {
    let cs = map.chunk_size;
    let data_len = map.total_pages * PAGE;
    let mut chunks: Vec<u64> = new
        .iter()
        .flat_map(|&(off, len)| (off - PAGE_DATA_OFFSET) / cs..=(off + len - 1 - PAGE_DATA_OFFSET) / cs)
        .collect();
    chunks.sort_unstable();
    chunks.dedup();
    let mut buf = Vec::new();
    for k in chunks {
        let start = k * cs;
        let end = (start + cs).min(data_len);
        buf.resize((end - start) as usize, 0);
        file.read_exact_at(&mut buf, PAGE_DATA_OFFSET + start).map_err(Error::io(name))?;
        for &(off, len) in all {
            let (s, e) = (off - PAGE_DATA_OFFSET, off - PAGE_DATA_OFFSET + len);
            let (s, e) = (s.max(start), e.min(end));
            if s < e {
                buf[(s - start) as usize..(e - start) as usize].fill(0);
            }
        }
        map.chunk_checksums[k as usize] = xxhash_rust::xxh3::xxh3_64(&buf);
    }
    Ok(())
}

/// Refuse to restore from the page map of `pid` itself (not as a parent) when pages of it were
/// punched out for a newer image.
pub fn check_whole(pid: i32, map: &PageMap) -> Result<()> {
    match map.punched.first() {
        None => Ok(()),
        Some(r) => Err(Error::Incompatible {
            file: ImageKind::PageMap.file_name(Some(pid)),
            what: format!(
                "{} pages of pid {pid} (the first at {:#x}) were punched out by --auto-dedup or stasis dedup of a newer image: restore that one",
                map.punched.iter().map(|r| r.nr_pages).sum::<u64>(),
                r.vaddr
            ),
        }),
    }
}
