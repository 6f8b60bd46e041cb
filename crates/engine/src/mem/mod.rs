//! Memory: the address space layout (every VMA with its protection, backing and madvise state) and
//! its pages.
//!
//! Dump: VMAs come from `/proc/PID/smaps`; [`pages`] picks the pages that must be saved (private anonymous
//! pages, including the copied-on-write pages of private file mappings) and writes them zero-copy.
//! Restore, in a task that starts as a copy of the controller: unmap everything but the scratch area and
//! the vDSO/vvar areas, move those to their saved addresses, map every saved VMA (files again by path,
//! writable for the fill where pages are to be written), fill the pages, then set the final protection
//! and madvise state.

pub mod aio;
pub mod chain;
pub mod dedup;
pub mod flags;
pub mod gadget;
pub mod guards;
pub mod hugetlb;
pub mod lazy;
pub mod mm_wide;
pub mod pages;
pub mod runs;
pub mod sink;
pub mod track;
pub mod uprobes;

use crate::error::{Error, Result};
use crate::files::FdImporter;
use crate::proc::{self, MapEntry, ProcRoot};
use stasis_image::model::{self, MmImage, Vma, VmaKind};
use stasis_sys::inject::Injector;
use stasis_sys::remote::{Prctl, Remote};
use stasis_sys::Pid;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// Highest user address on x86_64 with 4-level page tables.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const PAGE: u64 = 4096;
/// `MAP_DROPPABLE` (Linux 6.11): a mapping type of its own, neither shared nor private.
const MAP_DROPPABLE: u32 = 0x08;

/// Build the VMA list of `pid` from its smaps, refusing what is not supported yet.
pub fn dump_vmas(root: &ProcRoot, pid: Pid) -> Result<Vec<Vma>> {
    dump_vmas_with(root, pid, false)
}

/// [`dump_vmas`] of a process whose write tracking is ours (see [`track`]): areas write-protect
/// registered (`uw`) by our userfaultfd are taken as they are.
pub fn dump_vmas_with(root: &ProcRoot, pid: Pid, tracked_by_us: bool) -> Result<Vec<Vma>> {
    proc::smaps(root, pid.0)?.iter().map(|e| classify(pid, e, tracked_by_us)).collect()
}

fn classify(pid: Pid, e: &MapEntry, tracked_by_us: bool) -> Result<Vma> {
    let unsupported = |what: String| Error::Unsupported { pid, what };
    let range = format!("{:#x}-{:#x}", e.start, e.end);
    let huge = e.vm_flags.has("ht").then(|| hugetlb::classify(pid, e)).transpose()?;
    let kind = match e.name.as_str() {
        _ if huge.is_some() => huge.map_or(VmaKind::Anon, |h| h.0),
        "[vdso]" => VmaKind::Vdso,
        "[vvar]" => VmaKind::Vvar,
        "[vvar_vclock]" => VmaKind::VvarVclock,
        "[vsyscall]" => VmaKind::Vsyscall,
        "[uprobes]" => VmaKind::Uprobes,
        // MAP_SHARED | MAP_ANONYMOUS: a shmem object named after /dev/zero.
        "/dev/zero" if e.deleted && e.shared => VmaKind::SharedAnon,
        // The ring of an AIO context: an anonymous-filesystem file (see `aio`).
        "/[aio]" if e.deleted && e.shared && e.inode != 0 && e.dev_major == 0 => VmaKind::AioRing,
        // A SysV segment: the inode is its id; its contents are saved with the IPC objects.
        n if e.deleted && n.starts_with("/SYSV") => VmaKind::SysvShm,
        _ if e.deleted && e.inode == 0 => return Err(unsupported(format!("mapping {range} of {}", e.name))),
        _ if e.inode != 0 => VmaKind::File,
        _ if e.shared => return Err(unsupported(format!("shared anonymous mapping {range}"))),
        n if n.starts_with('[') && !matches!(n, "[heap]" | "[stack]") && !n.starts_with("[anon:") => {
            return Err(unsupported(format!("special mapping {range} {n}")))
        }
        _ => VmaKind::Anon,
    };
    let special =
        matches!(kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall | VmaKind::Uprobes);
    // Ours: write tracking by our userfaultfd; hugetlbfs sets VM_DONTEXPAND on every mapping.
    // An AIO ring cannot grow either; it is made again by `io_setup`.
    let cannot_grow = huge.is_some() || kind == VmaKind::AioRing;
    let ours = |flag: &str| (tracked_by_us && flag == "uw") || (cannot_grow && flag == "de");
    if let Some((flag, why)) = flags::refused(e, ours).filter(|_| !special) {
        return Err(unsupported(format!("mapping {range} {}: {why} (VmFlags {flag})", e.name)));
    }
    // A MAP_DROPPABLE area is private anonymous memory but for `droppable`.
    let sharing = if e.shared { libc::MAP_SHARED } else { libc::MAP_PRIVATE } as u32;
    let huge_size = huge.map_or(0, |h| h.1);
    // A hugetlbfs file is mapped as it is, without MAP_HUGETLB.
    let anon_huge = huge_size != 0 && kind != VmaKind::File;
    let flags = sharing | flags::map_flags(e) | if anon_huge { hugetlb::map_flags(huge_size) } else { 0 };
    Ok(Vma {
        start: e.start,
        end: e.end,
        prot: e.prot,
        flags,
        kind: kind as i32,
        name: e.name.clone(),
        offset: e.offset,
        dev: ((e.dev_major as u64) << 32) | e.dev_minor as u64,
        inode: e.inode,
        madvise: flags::madvise_bits(e),
        locked: e.vm_flags.has("lo"),
        lock_on_fault: e.vm_flags.has("lf"),
        may: flags::may_prot(e),
        droppable: e.vm_flags.has("dp"),
        maybe_guard: e.vm_flags.has("gu"),
        hugetlb_page_size: huge_size,
        sealed: e.vm_flags.has("sl"),
        // An unlinked file or a memfd (MFD_HUGETLB ones too): its bytes are saved with the files
        // (see files::ghost_mappings).
        ghost: e.deleted && kind == VmaKind::File,
        // Seen by `ipc` for which segments to save.
    })
}

/// The same area: range, protection, flags and backing.
pub fn same_vma(a: &Vma, b: &Vma) -> bool {
    (a.start, a.end, a.prot, a.flags, a.kind, a.offset, a.inode)
        == (b.start, b.end, b.prot, b.flags, b.kind, b.offset, b.inode)
        && a.name == b.name
}

pub fn kind(v: &Vma) -> VmaKind {
    VmaKind::try_from(v.kind).unwrap_or(VmaKind::Anon)
}

pub(crate) fn is_special(v: &Vma) -> bool {
    matches!(kind(v), VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall | VmaKind::Uprobes)
}

/// The `[vdso]` range of a VMA list.
pub fn vdso_range(vmas: &[Vma]) -> Option<(u64, u64)> {
    vmas.iter().find(|v| kind(v) == VmaKind::Vdso).map(|v| (v.start, v.end))
}

/// Checksum of the vDSO text of a task, to make sure restore runs on the same vDSO.
pub fn vdso_checksum(inj: &Injector, vdso: (u64, u64)) -> Result<u64> {
    let mut text = vec![0u8; (vdso.1 - vdso.0) as usize];
    inj.read(vdso.0, &mut text)?;
    Ok(xxhash_rust::xxh3::xxh3_64(&text))
}

/// A free range of `len` bytes that overlaps none of `busy` (with a margin), searching down from the
/// top of the address space.
pub fn find_free(busy: &[(u64, u64)], len: u64) -> Option<u64> {
    const MARGIN: u64 = 2 << 20;
    const BOTTOM: u64 = 0x1000_0000;
    let mut ranges: Vec<(u64, u64)> = busy.iter().map(|&(s, e)| (s.saturating_sub(MARGIN), e + MARGIN)).collect();
    ranges.sort_unstable();
    // Merge overlapping ranges so every gap between them is really free.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut top = 0x7f00_0000_0000u64;
    for &(s, e) in merged.iter().rev() {
        if e < top && top - e >= len {
            return Some((top - len) & !(PAGE - 1));
        }
        top = top.min(s);
    }
    (top >= len + BOTTOM).then(|| (top - len) & !(PAGE - 1))
}

/// Start addresses of the VMAs that have saved pages.
pub fn with_pages(mm: &MmImage, map: &model::PageMap) -> HashSet<u64> {
    let mut out = HashSet::new();
    for runs in [&map.runs, &map.in_parent] {
        for v in &mm.vmas {
            let i = runs.partition_point(|r| r.vaddr < v.start);
            if runs.get(i).is_some_and(|r| r.vaddr < v.end) {
                out.insert(v.start);
            }
        }
    }
    out
}

/// Rebuild the saved layout in the restored task `pid`; `filled` are the VMAs pages will go into.
///
/// `kept` are the VMAs (by start) the task already has as they must be: a child forked from its
/// restored parent keeps those it inherits, and the pages it shares in them (see [`drop_absent`]).
pub fn restore_layout(
    inj: &mut Injector,
    imp: &mut FdImporter,
    pid: Pid,
    mm: &MmImage,
    filled: &HashSet<u64>,
    kept: &HashSet<u64>,
    ghosts: &crate::files::ghost::Objects,
) -> Result<()> {
    let current = proc::maps(&ProcRoot::system(), pid.0)?;
    let kept_ranges: Vec<(u64, u64)> =
        mm.vmas.iter().filter(|v| kept.contains(&v.start)).map(|v| (v.start, v.end)).collect();
    unmap_foreign(inj, &current, &kept_ranges)?;
    move_specials(inj, pid, &current, mm)?;
    let mut files = OpenFiles { ghosts, by_path: HashMap::new() };
    let vmas: Vec<&Vma> = mm.vmas.iter().filter(|v| !is_special(v)).collect();
    for s in runs::stretches(&vmas, filled, kept) {
        let v = match s {
            Ok(stretch) => {
                map_stretch(inj, pid, &stretch)?;
                continue;
            }
            Err(v) => v,
        };
        let filled = filled.contains(&v.start);
        if kept.contains(&v.start) {
            if fill_prot(v, filled) != v.prot {
                inj.mprotect(v.start, v.end - v.start, fill_prot(v, filled))?;
            }
            continue;
        }
        // A context's ring is made again by `aio::restore`.
        if kind(v) != VmaKind::AioRing {
            map_vma(inj, imp, &mut files, pid, v, filled)?;
        }
    }
    files.close(inj)
}

/// Map a stretch of private anonymous areas with one `mmap(PROT_NONE)`, then give each area its
/// fill protection (see [`runs`]).
fn map_stretch(inj: &mut dyn Remote, pid: Pid, s: &runs::Stretch) -> Result<()> {
    let flags = s.flags | (libc::MAP_FIXED | libc::MAP_ANONYMOUS) as u32;
    let step =
        |what: String| move |e: stasis_sys::inject::InjectError| Error::Step { pid, what, source: Box::new(e.into()) };
    inj.mmap(s.start, s.end - s.start, libc::PROT_NONE as u32, flags, -1, 0)
        .map_err(step(format!("memory areas {:#x}-{:#x}", s.start, s.end)))?;
    for &(start, end, prot) in &s.prots {
        inj.mprotect(start, end - start, prot).map_err(step(format!("memory area {start:#x}-{end:#x}")))?;
    }
    Ok(())
}

/// In the VMAs a child kept from its parent, drop the pages the child did not have (neither its own
/// nor shared with the parent): they read as zero (or as the file) again, as in the child.
pub fn drop_absent(inj: &mut dyn Remote, mm: &MmImage, map: &model::PageMap, kept: &HashSet<u64>) -> Result<()> {
    let mut present: Vec<(u64, u64)> = map
        .runs
        .iter()
        .chain(&map.inherited)
        .chain(&map.in_parent)
        .map(|r| (r.vaddr, r.vaddr + r.nr_pages * PAGE))
        .collect();
    present.sort_unstable();
    // Shared memory is one object for all who map it: nothing of it is dropped.
    let shared = |v: &Vma| matches!(kind(v), VmaKind::SharedAnon | VmaKind::SysvShm | VmaKind::AioRing);
    for v in mm.vmas.iter().filter(|v| kept.contains(&v.start) && !shared(v)) {
        for (start, end) in subtract((v.start, v.end), &present) {
            inj.madvise(start, end - start, libc::MADV_DONTNEED).map_err(|e| Error::Step {
                pid: inj.pid(),
                what: format!("dropping pages {start:#x}-{end:#x} of {} {:#x}-{:#x}", v.name, v.start, v.end),
                source: Box::new(e.into()),
            })?;
        }
    }
    Ok(())
}

/// Unmap every area of the new task except the scratch area, the kernel's special mappings, and the
/// `kept` ranges: one `munmap` per stretch between two areas that stay (holes in it are fine).
fn unmap_foreign(inj: &mut Injector, current: &[MapEntry], kept: &[(u64, u64)]) -> Result<()> {
    let (s0, s1) = inj.scratch();
    let keep = |e: &MapEntry| {
        (e.start >= s0 && e.end <= s1) || e.name == "[vdso]" || e.name == "[vvar]" || e.name == "[vvar_vclock]"
    };
    let mut stay: Vec<(u64, u64)> = current.iter().filter(|e| keep(e)).map(|e| (e.start, e.end)).collect();
    stay.extend_from_slice(kept);
    let foreign: Vec<(u64, u64)> =
        current.iter().filter(|e| !keep(e) && e.end <= TASK_SIZE).map(|e| (e.start, e.end)).collect();
    for (start, end) in subtract((0, TASK_SIZE), &stay) {
        // The mapped part of the stretch, if any.
        let inside = foreign.iter().filter(|f| f.0 < end && f.1 > start);
        let lo = inside.clone().map(|f| f.0.max(start)).min();
        let hi = inside.map(|f| f.1.min(end)).max();
        if let (Some(lo), Some(hi)) = (lo, hi) {
            inj.munmap(lo, hi - lo)?;
        }
    }
    Ok(())
}

/// The parts of `range` outside every range of `holes`.
fn subtract(range: (u64, u64), holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = holes.iter().copied().filter(|h| h.0 < range.1 && h.1 > range.0).collect();
    sorted.sort_unstable();
    let (mut out, mut at) = (Vec::new(), range.0);
    for (s, e) in sorted {
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < range.1 {
        out.push((at, range.1));
    }
    out
}

/// Move `[vvar]`, `[vvar_vclock]` and `[vdso]` to their saved addresses: straight there when no
/// destination overlaps a mapping still to move, else through a temporary place.
fn move_specials(inj: &mut Injector, pid: Pid, current: &[MapEntry], mm: &MmImage) -> Result<()> {
    let names = [("[vvar]", VmaKind::Vvar), ("[vvar_vclock]", VmaKind::VvarVclock), ("[vdso]", VmaKind::Vdso)];
    let mut moves = Vec::new();
    for (name, k) in names {
        let now = current.iter().find(|e| e.name == name);
        let want = mm.vmas.iter().find(|v| kind(v) == k);
        match (now, want) {
            (Some(n), Some(w)) if n.end - n.start != w.end - w.start => {
                return Err(Error::Failed {
                    pid,
                    what: format!(
                        "{name} is {} bytes on this kernel but {} in the image: restore on the kernel the image was made on",
                        n.end - n.start,
                        w.end - w.start
                    ),
                })
            }
            (Some(n), Some(w)) => moves.push((name, n.start, w.start, n.end - n.start)),
            (Some(n), None) => {
                inj.munmap(n.start, n.end - n.start)?;
            }
            (None, Some(_)) => {
                return Err(Error::Failed { pid, what: format!("this kernel has no {name} mapping") })
            }
            (None, None) => {}
        }
    }
    let mut busy: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    busy.extend(current.iter().map(|e| (e.start, e.end)));
    busy.push(inj.scratch());
    let total: u64 = moves.iter().map(|m| m.3).sum();
    let mut tmp = find_free(&busy, total)
        .ok_or_else(|| Error::Failed { pid, what: "no free address range to move the vDSO through".into() })?;
    // Already in place (a child forked from its restored parent): nothing to move.
    moves.retain(|&(_, from, to, _)| from != to);
    // No destination over a mapping still to move: each moves straight to its place.
    let clear = |to: u64, len: u64| moves.iter().all(|&(_, f, _, l)| to + len <= f || to >= f + l);
    if moves.iter().all(|&(_, _, to, len)| clear(to, len)) {
        for &(name, from, to, len) in &moves {
            remap(inj, from, len, to)?;
            if name == "[vdso]" {
                inj.vdso_moved(to);
            }
        }
        return Ok(());
    }
    let mut staged = Vec::new();
    for (name, from, to, len) in moves {
        remap(inj, from, len, tmp)?;
        if name == "[vdso]" {
            inj.vdso_moved(tmp);
        }
        staged.push((name, tmp, to, len));
        tmp += len;
    }
    for (name, from, to, len) in staged {
        remap(inj, from, len, to)?;
        if name == "[vdso]" {
            inj.vdso_moved(to);
        }
    }
    Ok(())
}

fn remap(inj: &mut dyn Remote, from: u64, len: u64, to: u64) -> Result<()> {
    inj.mremap_to(from, len, to)?;
    Ok(())
}

/// Files mapped during the layout restore, opened once each and imported into the task.
struct OpenFiles<'a> {
    /// Unlinked files and memfds made again, by (device, inode) at dump time.
    ghosts: &'a crate::files::ghost::Objects,
    by_path: HashMap<(String, bool), (Option<File>, i32)>,
}

impl OpenFiles<'_> {
    fn get(&mut self, inj: &mut dyn Remote, imp: &mut FdImporter, pid: Pid, v: &Vma) -> Result<i32> {
        // The file's open mode sets how far mprotect may go later: `mw` comes from a writable file.
        let may = if v.may == 0 { v.prot } else { v.may };
        let writable = v.flags & libc::MAP_SHARED as u32 != 0 && may & libc::PROT_WRITE as u32 != 0;
        // Unlinked files are told apart by device and inode: two of them may have had the same name.
        let key = if v.ghost { format!("{} #{}:{}", v.name, v.dev, v.inode) } else { v.name.clone() };
        if let Some((_, fd)) = self.by_path.get(&(key.clone(), writable)) {
            return Ok(*fd);
        }
        if v.ghost {
            let dev = libc::makedev((v.dev >> 32) as u32, v.dev as u32);
            let obj = self.ghosts.get(&(dev, v.inode)).ok_or_else(|| Error::Incompatible {
                file: "files.img".into(),
                what: format!(
                    "no unlinked file with device {}:{} inode {} for the mapping {:#x}-{:#x} of {}",
                    v.dev >> 32,
                    v.dev as u32,
                    v.inode,
                    v.start,
                    v.end,
                    v.name
                ),
            })?;
            let fd = imp.import(inj, obj.as_fd())?;
            self.by_path.insert((key, writable), (None, fd));
            return Ok(fd);
        }
        let path = crate::mnt::seen_by(pid, &v.name);
        let file = std::fs::OpenOptions::new().read(true).write(writable).open(path).map_err(Error::io(&v.name))?;
        let meta = file.metadata().map_err(Error::io(&v.name))?;
        if meta.ino() != v.inode {
            return Err(Error::Failed {
                pid,
                what: format!(
                    "mapped file {} was replaced since the dump (inode {} is now {})",
                    v.name,
                    v.inode,
                    meta.ino()
                ),
            });
        }
        let fd = imp.import(inj, file.as_fd())?;
        self.by_path.insert((key, writable), (Some(file), fd));
        Ok(fd)
    }

    fn close(self, inj: &mut dyn Remote) -> Result<()> {
        for (_, (_, fd)) in self.by_path {
            inj.close(fd)?;
        }
        Ok(())
    }
}

/// Map one saved VMA at its address, writable if pages will be written into it.
fn map_vma(
    inj: &mut dyn Remote,
    imp: &mut FdImporter,
    files: &mut OpenFiles,
    pid: Pid,
    v: &Vma,
    filled: bool,
) -> Result<()> {
    if kind(v) == VmaKind::SysvShm {
        return attach_shm(inj, pid, v);
    }
    let mut flags = v.flags | libc::MAP_FIXED as u32;
    if v.droppable {
        flags = flags & !(libc::MAP_PRIVATE as u32) | MAP_DROPPABLE;
    }
    let prot = fill_prot(v, filled);
    let (fd, offset) = match kind(v) {
        VmaKind::File => (files.get(inj, imp, pid, v)?, v.offset),
        _ => {
            flags |= libc::MAP_ANONYMOUS as u32;
            (-1, 0)
        }
    };
    let len = v.end - v.start;
    // A code area with saved pages is mapped with its own protection, then made writable for the
    // fill: mapped writable, it would get no uprobe breakpoints from the kernel (`uprobe_mmap`
    // skips writable areas) and the task no uprobe handling at all, so a breakpoint saved with
    // its pages would kill it with SIGTRAP (see `uprobes`).
    let code = kind(v) == VmaKind::File && v.prot & libc::PROT_EXEC as u32 != 0 && prot != v.prot;
    let first = if code { v.prot } else { prot };
    let step = |e: stasis_sys::inject::InjectError| Error::Step {
        pid,
        what: format!("memory area {:#x}-{:#x} {}", v.start, v.end, v.name),
        source: Box::new(e.into()),
    };
    inj.mmap(v.start, len, first, flags, fd, offset).map_err(step)?;
    if first != prot {
        inj.mprotect(v.start, len, prot).map_err(step)?;
    }
    if let Some(name) = v.name.strip_prefix("[anon:").and_then(|n| n.strip_suffix(']')) {
        inj.prctl(Prctl::SetVmaAnonName { start: v.start, len, name })?;
    }
    Ok(())
}

/// Attach SysV segment `v.inode` (made again by `ipc` with its id) at its address.
fn attach_shm(inj: &mut dyn Remote, pid: Pid, v: &Vma) -> Result<()> {
    let mut flags = 0;
    if v.prot & libc::PROT_WRITE as u32 == 0 {
        flags |= libc::SHM_RDONLY;
    }
    if v.prot & libc::PROT_EXEC as u32 != 0 {
        flags |= libc::SHM_EXEC;
    }
    inj.shmat(v.inode as i32, v.start, flags).map_err(|e| Error::Step {
        pid,
        what: format!("SysV segment {} at {:#x}", v.inode, v.start),
        source: Box::new(e.into()),
    })?;
    Ok(())
}

/// Protection while pages are written: private areas and shared anonymous ones that get pages are
/// writable for the fill.
pub(crate) fn fill_prot(v: &Vma, filled: bool) -> u32 {
    if filled && (v.flags & libc::MAP_PRIVATE as u32 != 0 || kind(v) == VmaKind::SharedAnon) {
        v.prot | libc::PROT_WRITE as u32
    } else {
        v.prot
    }
}

/// After the fill: final protection, madvise state and locks.
/// Contiguous areas that get the same protection or advice get it in one call (see [`runs`]).
pub fn finish_layout(inj: &mut dyn Remote, mm: &MmImage, filled: &HashSet<u64>) -> Result<()> {
    let vmas: Vec<&Vma> = mm.vmas.iter().filter(|v| !is_special(v)).collect();
    let prots = vmas.iter().filter(|v| fill_prot(v, filled.contains(&v.start)) != v.prot);
    for (start, end, prot) in runs::coalesce(prots.map(|v| (v.start, v.end, v.prot)).collect()) {
        inj.mprotect(start, end - start, prot)?;
    }
    flags::restore_all(inj, &vmas)
}

/// Seal again (`mseal`) the areas that were sealed, each stretch of contiguous ones in one call:
/// the last change to the task's memory (nothing may unmap, move or re-protect them after).
pub fn seal(inj: &mut dyn Remote, mm: &MmImage) -> Result<()> {
    let sealed = mm.vmas.iter().filter(|v| v.sealed).map(|v| (v.start, v.end, ()));
    for (start, end, ()) in runs::coalesce(sealed.collect()) {
        inj.mseal(start, end - start)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{find_free, subtract};

    #[test]
    fn subtract_leaves_the_gaps() {
        assert_eq!(subtract((0, 100), &[(10, 20), (50, 60)]), vec![(0, 10), (20, 50), (60, 100)]);
        assert_eq!(subtract((0, 100), &[(0, 100)]), vec![]);
        assert_eq!(subtract((10, 20), &[(0, 15)]), vec![(15, 20)]);
    }

    #[test]
    fn free_range_avoids_overlapping_busy_ranges() {
        let len = 0x10000;
        // A low range that reaches past a higher one must not leave a false gap.
        let busy = [(0x7e00_0000_0000, 0x7f00_0000_0000), (0x7e80_0000_0000, 0x7e90_0000_0000)];
        let at = find_free(&busy, len).unwrap();
        assert!(at + len <= 0x7e00_0000_0000 - (2 << 20), "{at:#x}");
        for (s, e) in busy {
            assert!(at + len <= s || at >= e);
        }
    }

    #[test]
    fn free_range_found_between_ranges() {
        let busy = [(0x1000_0000, 0x2000_0000), (0x7e00_0000_0000, 0x7f00_0000_0000)];
        let at = find_free(&busy, 0x4000).unwrap();
        assert!(at >= 0x2000_0000 && at + 0x4000 <= 0x7e00_0000_0000);
    }
}
