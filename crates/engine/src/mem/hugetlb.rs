//! Hugetlb memory (`ht` in VmFlags): areas mapped with `MAP_HUGETLB`, private or shared
//! (`/anon_hugepage (deleted)` in maps).
//!
//! Dump keeps each area's page size (smaps `KernelPageSize`) in `Vma::hugetlb_page_size` and its
//! mmap flags (`MAP_HUGETLB | log2(size) << MAP_HUGE_SHIFT`) in `Vma::flags`; the pagemap shows its
//! present pages per 4 KiB, and [`whole_pages`] widens what is saved to whole huge pages. A shared
//! area is saved whole, once, by the first process that maps it, like other shared anonymous
//! memory (a page of the object no process maps is in no pagemap): reading its holes takes pages
//! of its reservation, so a shared MAP_NORESERVE one is refused.
//! Restore maps each area again with the same flags at the same address and fills it like any
//! other; before any task is made, [`check_reserve`] makes sure the kernel's pool has the huge
//! pages the areas will take, per page size, and fails naming the area and the pool otherwise.
//!
//! Mappings of hugetlbfs files are file mappings (`VmaKind::File`, with the page size too): an
//! `MFD_HUGETLB` memfd is made again with its page size and contents from `files.img` (see
//! `files::ghost`), a file on a hugetlbfs mount, which keeps its pages while it has a name, is
//! mapped again by path; a private mapping's copied-on-write huge pages are saved like those of any
//! private file mapping; an unlinked file of a hugetlbfs mount is made again on it, like a memfd
//! (see `files::ghost`). [`check_reserve`] counts the pages of the memfds and unlinked files, once
//! per object.

use crate::error::{Error, Result};
use crate::proc::MapEntry;
use stasis_image::model::{FileEntry, FileKind, MmImage, PageMap, RegularFile, Vma, VmaKind};
use stasis_sys::Pid;
use std::collections::{BTreeMap, HashSet};

/// `MAP_HUGE_SHIFT`: where mmap takes log2 of the huge page size.
const MAP_HUGE_SHIFT: u32 = 26;
const PAGE: u64 = 4096;

/// What a hugetlb area of the dumped process becomes: its kind and page size, or a refusal.
pub fn classify(pid: Pid, e: &MapEntry) -> Result<(VmaKind, u64)> {
    let range = format!("{:#x}-{:#x}", e.start, e.end);
    let size = e.kernel_page_size;
    if !size.is_power_of_two() || size <= PAGE || !e.start.is_multiple_of(size) || !e.end.is_multiple_of(size) {
        let what = format!("hugetlb mapping {range} {} with a page size of {size} bytes", e.name);
        return Err(Error::Unsupported { pid, what });
    }
    match e.name.as_str() {
        // Saved whole (see `pages::select`): the read would take pool pages not reserved for it.
        "/anon_hugepage" if e.deleted && e.shared && e.vm_flags.has("nr") => {
            let what = format!("shared hugetlb mapping {range} mapped MAP_NORESERVE");
            Err(Error::Unsupported { pid, what })
        }
        "/anon_hugepage" if e.deleted && e.shared => Ok((VmaKind::SharedAnon, size)),
        "/anon_hugepage" if e.deleted => Ok((VmaKind::Anon, size)),
        // An MFD_HUGETLB memfd or an unlinked file of a hugetlbfs mount: made again from
        // files.img (`Vma::ghost`), like other memfds and unlinked files.
        _ if e.deleted && e.inode != 0 => Ok((VmaKind::File, size)),
        // A file on a hugetlbfs mount: it keeps its pages, mapped again by path.
        _ if e.inode != 0 => Ok((VmaKind::File, size)),
        n => {
            let what = format!("hugetlb mapping {range} of {n}");
            Err(Error::Unsupported { pid, what })
        }
    }
}

/// The mmap flags that map an area of `size`-byte huge pages again.
pub fn map_flags(size: u64) -> u32 {
    libc::MAP_HUGETLB as u32 | (size.trailing_zeros() << MAP_HUGE_SHIFT)
}

/// Per-4 KiB classes (`0` nothing, `1` saved, `2` inherited) widened to whole huge pages of
/// `size` bytes: a huge page with a saved piece is saved whole, else one with an inherited piece is
/// inherited whole.
pub fn whole_pages(classes: &mut [u8], size: u64) {
    let per = (size / PAGE) as usize;
    for huge in classes.chunks_mut(per) {
        let c = if huge.contains(&1) { 1 } else { huge.iter().copied().max().unwrap_or(0) };
        huge.fill(c);
    }
}

/// One process of the image, as [`check_reserve`] needs it.
pub struct Proc<'a> {
    pub pid: i32,
    pub mm: &'a MmImage,
    pub pagemap: &'a PageMap,
    /// The areas of its parent in the image (a child is forked from its restored parent).
    pub parent: Option<&'a [Vma]>,
}

/// The huge pages the restore will take, per page size, against each pool's free pages not
/// reserved (`/sys/kernel/mm/hugepages/hugepages-NkB`): an area mapped anew without
/// MAP_NORESERVE reserves all its pages (a shared object once), any other takes the pages filled
/// into it. An `MFD_HUGETLB` memfd of `files` takes, once, the huge pages of its data and of its
/// shared mappings (a file that keeps its name has its pages already). Fails naming the first
/// area or memfd of a size whose pool is short, before any task is made.
pub fn check_reserve(procs: &[Proc], files: &[FileEntry]) -> Result<()> {
    let mut need = Need::default();
    for p in procs {
        for v in p.mm.vmas.iter().filter(|v| v.hugetlb_page_size != 0) {
            need.area(p, v);
        }
    }
    for f in files {
        match &f.kind {
            Some(FileKind::Regular(r)) if r.hugetlb_page_size != 0 && r.ghost => need.memfd(r),
            _ => {}
        }
    }
    for (size, (pages, first)) in need.per_size() {
        check_pool(procs.first().map_or(0, |p| p.pid), size, pages, &first)?;
    }
    Ok(())
}

/// An `MFD_HUGETLB` memfd of the image: its page size, the byte ranges of it that will hold pages
/// (its data, its shared mappings), and what names it in messages.
type Memfd = (u64, Vec<(u64, u64)>, String);

/// What [`check_reserve`] counts.
#[derive(Default)]
struct Need {
    /// Huge pages per page size, and the first area or memfd that takes some, for messages.
    pages: BTreeMap<u64, (u64, String)>,
    /// The shared anonymous objects counted already.
    objects: HashSet<u64>,
    /// The memfds, by (device, inode) at dump time.
    memfds: BTreeMap<(u64, u64), Memfd>,
}

impl Need {
    fn add(&mut self, size: u64, pages: u64, what: impl FnOnce() -> String) {
        self.pages.entry(size).or_insert_with(|| (0, what())).0 += pages;
    }

    /// A hugetlb area of `p`: a shared mapping of a memfd counts with the memfd, of a file that
    /// keeps its name not at all.
    fn area(&mut self, p: &Proc, v: &Vma) {
        let size = v.hugetlb_page_size;
        let what = || format!("pid {} area {:#x}-{:#x} {}", p.pid, v.start, v.end, v.name);
        let inherited = p.parent.is_some_and(|pv| super::pages::inheritable(v, pv));
        let kind = super::kind(v);
        let reserves = v.flags & libc::MAP_NORESERVE as u32 == 0;
        let pages = if kind == VmaKind::File && v.flags & libc::MAP_SHARED as u32 != 0 {
            if v.ghost && reserves {
                let dev = libc::makedev((v.dev >> 32) as u32, v.dev as u32);
                let m = self.memfds.entry((dev, v.inode)).or_insert_with(|| (size, Vec::new(), what()));
                m.1.push((v.offset, v.offset.saturating_add(v.end - v.start)));
            }
            0
        } else if kind == VmaKind::SharedAnon && (!self.objects.insert(v.inode) || inherited) {
            0
        } else if reserves && !inherited {
            (v.end - v.start) / size
        } else {
            filled(p.pagemap, v) * PAGE / size
        };
        self.add(size, pages, what);
    }

    /// The data of a memfd.
    fn memfd(&mut self, r: &RegularFile) {
        let what = || format!("memfd {}", r.path);
        let m = self.memfds.entry((r.dev, r.ino)).or_insert_with(|| (r.hugetlb_page_size, Vec::new(), what()));
        m.1.extend(r.extents.iter().map(|e| (e.offset, e.offset.saturating_add(e.data.len() as u64))));
    }

    /// The pages per page size, each memfd's counted once.
    fn per_size(mut self) -> BTreeMap<u64, (u64, String)> {
        for (size, ranges, what) in std::mem::take(&mut self.memfds).into_values() {
            self.add(size, union_pages(ranges, size), || what);
        }
        self.pages
    }
}

/// The huge pages of `size` bytes that the byte ranges cover, each once.
fn union_pages(mut ranges: Vec<(u64, u64)>, size: u64) -> u64 {
    let mut pages: Vec<(u64, u64)> = ranges.drain(..).map(|(s, e)| (s / size, e.div_ceil(size))).collect();
    pages.sort_unstable();
    let (mut total, mut at) = (0, 0);
    for (s, e) in pages {
        let s = s.max(at);
        if e > s {
            total += e - s;
            at = e;
        }
    }
    total
}

/// The pool of `size`-byte huge pages has `pages` free and not reserved.
fn check_pool(pid: i32, size: u64, pages: u64, first: &str) -> Result<()> {
    let dir = format!("/sys/kernel/mm/hugepages/hugepages-{}kB", size / 1024);
    let read = |name: &str| -> Result<u64> {
        let path = format!("{dir}/{name}");
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        text.trim().parse().map_err(|_| Error::Io {
            path: path.clone().into(),
            source: std::io::Error::other(format!("not a number: {text:?}")),
        })
    };
    if !std::path::Path::new(&dir).exists() {
        return Err(Error::Failed {
            pid: Pid(pid),
            what: format!("{first} is hugetlb memory of {} kB pages, which this kernel has no pool of", size / 1024),
        });
    }
    let available = read("free_hugepages")?.saturating_sub(read("resv_hugepages")?);
    if pages > available {
        return Err(Error::Failed {
            pid: Pid(pid),
            what: format!(
                "the hugetlb areas and memfds need {pages} huge pages of {} kB (the first: {first}) but {available} are \
                 free and not reserved (HugePages_Free; reserve more in {dir}/nr_hugepages)",
                size / 1024
            ),
        });
    }
    Ok(())
}

/// The 4 KiB pages of the page map filled into `v`.
fn filled(map: &PageMap, v: &Vma) -> u64 {
    map.runs
        .iter()
        .map(|r| {
            let (s, e) = (r.vaddr.max(v.start), (r.vaddr + r.nr_pages * PAGE).min(v.end));
            e.saturating_sub(s) / PAGE
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{map_flags, union_pages, whole_pages};

    #[test]
    fn the_pages_of_a_memfd_are_counted_once() {
        let huge = 2 << 20;
        assert_eq!(union_pages(vec![(0, huge), (0, 2 * huge), (4 * huge, 4 * huge + 1)], huge), 3);
        assert_eq!(union_pages(vec![(huge, 3 * huge), (0, 2 * huge)], huge), 3);
        assert_eq!(union_pages(vec![], huge), 0);
    }

    #[test]
    fn whole_huge_pages_are_saved_or_inherited() {
        let mut c = vec![0, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        whole_pages(&mut c, 4 * 4096);
        assert_eq!(c, vec![1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0]);
    }

    #[test]
    fn flags_carry_the_page_size() {
        assert_eq!(map_flags(2 << 20), libc::MAP_HUGETLB as u32 | (21 << 26));
        assert_eq!(map_flags(1 << 30), libc::MAP_HUGETLB as u32 | (30 << 26));
    }
}
