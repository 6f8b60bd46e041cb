//! Pre-dump (CRIU's `pre-dump`), the first rounds of an incremental dump: freeze the tree briefly,
//! choose its pages and arm (or read back and re-arm) write tracking, let the tree run on, then
//! copy the chosen pages out of the running processes. A page written during the copy was written
//! after the tracking was armed, so the next round saves it again: the copy needs no freeze.
//!
//! The image holds the memory only: page maps and page files, the layouts (`mm-PID.img`), the
//! tree, and empty records for the rest (so `stasis show` reads it); its inventory says
//! `pre_dump`. Its userfaultfds are left with a [`crate::holder`] reachable in the directory. A
//! failed pre-dump resumes the tree, removes its files and drops the tracking.
//!
//! [`Prev`] is the round before, for a pre-dump or a dump with `--prev-images-dir`.

use super::{check_target, explain, let_go, Member, Pool, Run, CHUNK};
use crate::error::{Error, Result};
use crate::holder;
use crate::mem::pages::Selected;
use crate::mem::track::{self, Ranges, Tracker};
use crate::mem::{self, chain::PARENT};
use crate::ns::Ours;
use crate::proc::{self, ProcRoot};
use crate::{fault, DumpOptions, DumpReport, Progress};
use stasis_image::model::{
    FdTable, FileTable, Inventory, IpcImage, MmImage, PageMap, PageRun, ProcessEntry, PsTree, TaskCore, Vma,
};
use stasis_image::{ImageDir, ImageKind, PAGE_DATA_OFFSET};
use stasis_sys::Pid;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

const PAGE: u64 = 4096;

/// The round before: its image, how it was named, and the write tracking its holder kept.
pub struct Prev {
    dir: ImageDir,
    /// The `--prev-images-dir` value, which the `parent` link holds.
    given: PathBuf,
    trackers: HashMap<i32, Tracker>,
    linked: std::cell::Cell<bool>,
    /// Processes whose tracking this round used.
    pub used: u64,
}

impl Prev {
    /// The round before `opts`, if it names one; its holder hands over the tracking (and exits).
    pub fn open(opts: &DumpOptions) -> Result<Option<Prev>> {
        let Some(given) = &opts.prev_images_dir else { return Ok(None) };
        let path = if given.is_absolute() { given.clone() } else { opts.dir.join(given) };
        let dir = ImageDir::open(&path)?;
        let mut trackers = HashMap::new();
        for t in holder::take(&path)?.unwrap_or_default() {
            // A pidfd that polls readable: the process exited (a new one may have its PID).
            match stasis_sys::fd::poll(&[t.pidfd.as_fd()], libc::POLLIN, 0) {
                Ok(r) if r[0] == 0 => drop(trackers.insert(t.pid.0, t)),
                _ => log::info!("pid {}: exited since {}: its tracking ends", t.pid, path.display()),
            }
        }
        Ok(Some(Prev { dir, given: given.clone(), trackers, linked: Default::default(), used: 0 }))
    }

    pub fn tracks(&self, pid: Pid) -> bool {
        self.trackers.contains_key(&pid.0)
    }

    pub fn created(&self) -> u64 {
        self.dir.inventory().map_or(0, |i| i.created_unix_ms)
    }

    /// Stop tracking the processes of `pids` that hold a userfaultfd of their own: their
    /// registrations could not be told from ours.
    pub fn drop_self_tracking(&mut self, root: &ProcRoot, pids: impl Iterator<Item = Pid>) -> Result<()> {
        for pid in pids {
            if !self.tracks(pid) {
                continue;
            }
            if let Some(fd) = track::own_userfaultfd(root, pid)? {
                log::warn!("pid {pid}: write tracking refused: the process uses userfaultfd itself (fd {fd}); its pages are saved in full");
                self.trackers.remove(&pid.0);
            }
        }
        Ok(())
    }

    /// The pages of the previous image of `pid`: saved there or in parent there.
    fn resolvable(&self, pid: Pid) -> Ranges {
        match self.dir.read_one::<PageMap>(ImageKind::PageMap, Some(pid.0)) {
            Ok(m) => track::union(&track::ranges_of(&m.runs), &track::ranges_of(&m.in_parent)),
            Err(_) => Vec::new(),
        }
    }

    /// Split the `selected` pages of the frozen process `pid` into those to save and those in
    /// parent (see [`track`]); with `rearm`, its tracking goes on from now.
    pub fn split(
        &mut self,
        root: &ProcRoot,
        pid: Pid,
        selected: &[Selected],
        rearm: bool,
    ) -> Result<(Vec<Selected>, Vec<PageRun>)> {
        let Some(t) = self.trackers.get(&pid.0) else { return Ok((selected.to_vec(), Vec::new())) };
        let registered = track::registered(root, pid)?;
        let written = track::written(t, &registered, rearm)?;
        self.used += 1;
        Ok(track::split(selected, &registered, &written, &self.resolvable(pid)))
    }

    /// The tracker of `pid`, taken for the next round.
    fn take(&mut self, pid: Pid) -> Option<Tracker> {
        self.trackers.remove(&pid.0)
    }

    /// Make the `parent` link of the new image `dir`.
    pub fn link_into(&self, dir: &Path) -> Result<()> {
        let link = dir.join(PARENT);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&self.given, &link).map_err(Error::io(&link))?;
        self.linked.set(true);
        Ok(())
    }

    /// Remove the `parent` link of a failed image.
    pub fn unlink(&self, dir: &Path) {
        if self.linked.get() {
            let _ = std::fs::remove_file(dir.join(PARENT));
        }
    }
}

/// The write tracking a plain dump (no `--prev-images-dir`) finds armed on its tree by an earlier
/// pre-dump (or `dump -R --track-mem`): taken from its holders, so that the tracked areas dump as
/// ours (in full: nothing is left in a parent). Once the dump has written its pages, [`Adopted::end`]
/// lifts the protection and unregisters the areas, so the tree (left running or restored) keeps no
/// tracking; the trackers of processes outside the tree go back to a holder in their directory,
/// and after a failed dump all of them do (see [`Adopted::give_back`]).
#[derive(Default)]
pub struct Adopted {
    held: Vec<(PathBuf, Vec<Tracker>)>,
    ended: std::cell::RefCell<Vec<i32>>,
}

impl Adopted {
    /// Take the tracking of the tree of `root_pid` (its processes now) from every holder that has
    /// some of it.
    pub fn take(root: &ProcRoot, root_pid: Pid) -> Result<Adopted> {
        let mut pids = vec![root_pid.0];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(proc::children(root, pids[i]).unwrap_or_default());
            i += 1;
        }
        let mut held = Vec::new();
        for dir in holder::holding(root, &pids) {
            let trackers = holder::take(&dir)?.unwrap_or_default();
            log::info!(
                "the write tracking of {} processes held for {} ends with this dump",
                trackers.len(),
                dir.display()
            );
            held.push((dir, trackers));
        }
        Ok(Adopted { held, ended: Default::default() })
    }

    pub fn tracks(&self, pid: Pid) -> bool {
        self.tracker(pid).is_some()
    }

    fn tracker(&self, pid: Pid) -> Option<&Tracker> {
        self.held.iter().flat_map(|(_, ts)| ts).find(|t| t.pid == pid)
    }

    /// End the tracking of `pid` (frozen): every area registered with its userfaultfd is
    /// unprotected and unregistered. Once per process.
    pub fn end(&self, root: &ProcRoot, pid: Pid) -> Result<()> {
        let Some(t) = self.tracker(pid) else { return Ok(()) };
        if self.ended.borrow().contains(&pid.0) {
            return Ok(());
        }
        for (s, e) in track::registered(root, pid)? {
            stasis_sys::uffd::unregister(t.uffd.as_fd(), s, e - s)
                .map_err(Error::sys(pid.0, "ending the write tracking of a pre-dump"))?;
        }
        self.ended.borrow_mut().push(pid.0);
        Ok(())
    }

    /// After a successful dump: the trackers it ended are closed; the others (of processes not in
    /// the tree) go back to a holder in their directory.
    pub fn finish(self) {
        let ended = self.ended.into_inner();
        for (dir, trackers) in self.held {
            let rest: Vec<Tracker> = trackers.into_iter().filter(|t| !ended.contains(&t.pid.0)).collect();
            hand_back(&dir, &rest);
        }
    }

    /// After a failed dump: every tracker goes back to a holder in its directory (a tracker
    /// [`Adopted::end`] ended tracks nothing any more: the next round saves that process in full).
    pub fn give_back(self) {
        for (dir, trackers) in self.held {
            hand_back(&dir, &trackers);
        }
    }
}

fn hand_back(dir: &Path, trackers: &[Tracker]) {
    if trackers.is_empty() {
        return;
    }
    match holder::spawn(dir, trackers) {
        Ok(pid) => log::info!("the write tracking of {} processes is held again by pid {pid}", trackers.len()),
        Err(e) => log::warn!("{}: the write tracking could not be held again ({e}): it ends", dir.display()),
    }
}

/// One process of a pre-dump round, chosen while frozen.
struct Round {
    entry: ProcessEntry,
    vmas: Vec<Vma>,
    saved: Vec<Selected>,
    in_parent: Vec<PageRun>,
    tracked: Ranges,
    tracker: Option<Tracker>,
}

/// `stasis pre-dump`: see the module doc.
pub fn pre_dump(opts: &DumpOptions, progress: &mut dyn FnMut(Progress)) -> Result<DumpReport> {
    let start = Instant::now();
    let root = ProcRoot::system();
    let pid = Pid(opts.pid);
    let ours = Ours::read(&root);
    check_target(&root, pid, &ours)?;
    let dir = ImageDir::create(&opts.dir)?;
    // `--prev-images-dir` is relative to the image directory, which exists from here on.
    let mut prev = match Prev::open(opts) {
        Ok(p) => p,
        Err(e) => {
            let _ = dir.discard();
            return Err(e);
        }
    };
    // A holder an earlier round left in this directory, which nothing chained to: its tracking
    // ends now (its registrations would keep ours out).
    if opts.dir.join(holder::SOCKET).exists() {
        drop(holder::take(&opts.dir));
    }
    let threads = Pool::threads_for(proc::children(&root, pid.0)?.len() + 1);
    let result = std::thread::scope(|scope| {
        let pool = Pool::start(scope, threads);
        let run = Run { start, calls: fault::calls("dump-call"), writes: fault::Writes::new() };
        pre_dump_with(&pool, &root, &dir, &ours, opts, progress, &run, prev.as_mut())
    });
    if result.is_err() {
        if let Some(p) = &prev {
            p.unlink(&opts.dir);
        }
        if let Err(e) = dir.discard() {
            log::warn!("the failed pre-dump's files in {} could not all be removed: {e}", opts.dir.display());
        }
        // A holder started before the failure gives its fds up (and exits) this way.
        if opts.dir.join(holder::SOCKET).exists() {
            drop(holder::take(&opts.dir));
        }
        let _ = std::fs::remove_file(opts.dir.join(holder::SOCKET));
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn pre_dump_with<'env>(
    pool: &Pool<'env>,
    root: &'env ProcRoot,
    dir: &ImageDir,
    ours: &'env Ours,
    opts: &DumpOptions,
    progress: &mut dyn FnMut(Progress),
    run: &Run,
    mut prev: Option<&mut Prev>,
) -> Result<DumpReport> {
    let frozen_at = Instant::now();
    let (tree, _zombies) =
        match super::freeze_with_cgroup(pool, root, (Pid(opts.pid), &run.calls), ours, opts, progress) {
            Ok(t) => t,
            Err((tree, e)) => return Err(explain(pool, &tree, e, progress)),
        };
    let rounds = match choose(pool, root, &tree, prev.as_deref_mut(), progress) {
        Ok(r) => r,
        Err(e) => return Err(explain(pool, &tree, e, progress)),
    };
    // The tree runs on from here; its writes are tracked.
    let_go(pool, root, &tree, opts.leave_stopped, progress)?;
    let frozen = frozen_at.elapsed();
    log::info!("tree resumed after {frozen:?}; copying its pages");
    fault::check("pre-dump-fail-after-resume")?;
    let (pages, image_bytes, holder_pid) = write_image(dir, rounds, opts, prev.as_deref_mut())?;
    Ok(DumpReport {
        pid: opts.pid,
        frozen,
        total: run.start.elapsed(),
        pages: pages.0,
        pages_in_parent: pages.1,
        tracked_processes: prev.map_or(0, |p| p.used),
        holder_pid,
        image_bytes,
        pages_deduped: 0,
        left_running: true,
        injected_calls: run.calls.count(),
        image_writes: 0,
        external: Vec::new(),
        // Namespaces are saved by the final dump.
        namespaces: Default::default(),
    })
}

/// While frozen: each process's layout and pages, and its tracking read back and armed again (or
/// armed for the first time, on its tracer thread).
fn choose(
    pool: &Pool,
    root: &ProcRoot,
    tree: &[Member],
    mut prev: Option<&mut Prev>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Round>> {
    if let Some(p) = prev.as_deref_mut() {
        p.drop_self_tracking(root, tree.iter().map(|m| m.pid))?;
    }
    let mut rounds = Vec::new();
    for m in tree {
        let pid = m.pid;
        let tracker = prev.as_deref_mut().and_then(|p| p.take(pid));
        let vmas = mem::dump_vmas_with(root, pid, tracker.is_some())?;
        // Pages a child still shares copy-on-write with its parent are the parent's (not saved,
        // and not taken from this image by the next round either: see `track`).
        let parent =
            rounds.iter().find(|r: &&Round| r.entry.pid == m.stat.ppid).map(|r| (Pid(r.entry.pid), r.vmas.as_slice()));
        let selected = mem::pages::select(pid, &vmas, parent)?.saved;
        let entry = ProcessEntry {
            pid: pid.0,
            ppid: m.stat.ppid,
            pgid: m.stat.pgrp,
            sid: m.stat.session,
            threads: proc::threads(root, pid.0)?,
            ..Default::default()
        };
        let mut round =
            Round { entry, vmas, saved: selected, in_parent: Vec::new(), tracked: Vec::new(), tracker: None };
        let armed = match (tracker, prev.as_deref_mut()) {
            (Some(t), Some(p)) => {
                p.trackers.insert(pid.0, t);
                let (saved, in_parent, armed) = go_on(p, root, pid, &round.vmas, &round.saved)?;
                (round.saved, round.in_parent) = (saved, in_parent);
                Some(armed)
            }
            _ => arm(pool, root, m, &round.vmas, progress)?,
        };
        if let Some((t, tracked)) = armed {
            (round.tracker, round.tracked) = (Some(t), tracked);
        }
        rounds.push(round);
    }
    Ok(rounds)
}

/// The pages to save, those in parent, and the tracking kept with its ranges.
type GoneOn = (Vec<Selected>, Vec<PageRun>, (Tracker, Ranges));

/// The tracking of the frozen process `pid`, tracked since the round before, read back and armed
/// again (with its new areas): the pages to save, those in parent, and the tracking to keep.
pub(super) fn go_on(p: &mut Prev, root: &ProcRoot, pid: Pid, vmas: &[Vma], selected: &[Selected]) -> Result<GoneOn> {
    let (saved, in_parent) = p.split(root, pid, selected, true)?;
    let t = p.take(pid).expect("tracked");
    let registered = track::registered(root, pid)?;
    let tracked = track::register(&t, vmas, &registered);
    Ok((saved, in_parent, (t, tracked)))
}

/// Arm the tracking of a process tracked by no earlier round (on its tracer thread: the process is
/// made to create the userfaultfd). A process with a userfaultfd of its own, or where the kernel
/// cannot track, is left untracked with a warning.
pub(super) fn arm(
    pool: &Pool,
    root: &ProcRoot,
    m: &Member,
    vmas: &[Vma],
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<(Tracker, Ranges)>> {
    let pid = m.pid;
    if let Some(fd) = track::own_userfaultfd(root, pid)? {
        log::warn!("pid {pid}: write tracking refused: the process uses userfaultfd itself (fd {fd}); its pages are saved in full every round");
        return Ok(None);
    }
    let (idx, vmas) = (m.idx, vmas.to_vec());
    let armed = pool.run(idx, move |owned, _| -> Result<(Tracker, Ranges)> {
        let f = owned.get_mut(&idx).expect("frozen by this thread");
        let code = mem::gadget::code_area(pid, &vmas)?;
        let t = track::create(f.main().injector(code)?, pid)?;
        let tracked = track::register(&t, &vmas, &[]);
        Ok((t, tracked))
    });
    match pool.wait(armed, progress) {
        Ok(armed) => Ok(Some(armed)),
        // A failed injected call leaves the process in the tracer's hands: the dump fails.
        Err(e @ Error::Inject(_)) => Err(e),
        Err(e) => {
            log::warn!("pid {pid}: {}: its pages are saved in full by the next dump", error_chain(&e));
            Ok(None)
        }
    }
}

/// After the resume: copy each process's pages, write its files, the tree, the holder and the
/// inventory. Returns (pages saved, pages in parent), the bytes written and the holder's pid.
fn write_image(
    dir: &ImageDir,
    rounds: Vec<Round>,
    opts: &DumpOptions,
    prev: Option<&mut Prev>,
) -> Result<((u64, u64), u64, u32)> {
    let (mut pages, mut in_parent, mut bytes) = (0, 0, 0);
    let mut processes = Vec::new();
    let mut trackers = Vec::new();
    for r in rounds {
        let pid = Some(r.entry.pid);
        let writer = match opts.compress {
            true => mem::pages::stage(dir, Pid(r.entry.pid), CHUNK)?,
            false => dir.create_pages(r.entry.pid, CHUNK)?,
        };
        let staged = writer.file().try_clone().map_err(Error::io("page file"))?;
        let (runs, data) = copy_running(Pid(r.entry.pid), &r.saved, writer.file())?;
        let (checksums, mut digest) = writer.finish(data)?;
        let mut frames = Vec::new();
        if opts.compress {
            (frames, digest) =
                stasis_image::compress::compress_pages(dir, r.entry.pid, &staged, data, CHUNK, &checksums)?;
        }
        let total_pages = data / PAGE;
        let map = PageMap {
            runs,
            total_pages,
            chunk_size: CHUNK,
            chunk_checksums: checksums,
            in_parent: r.in_parent,
            tracked: r.tracked.iter().map(|&(s, e)| PageRun { vaddr: s, nr_pages: (e - s) / PAGE }).collect(),
            compression: if opts.compress { stasis_image::compress::COMPRESSION_ZSTD } else { 0 },
            frame_sizes: frames,
            ..Default::default()
        };
        pages += total_pages;
        in_parent += map.in_parent.iter().map(|r| r.nr_pages).sum::<u64>();
        bytes += digest.size;
        bytes += dir.write_records(ImageKind::PageMap, pid, &[map])?.size;
        bytes += dir.write_records(ImageKind::Mm, pid, &[MmImage { vmas: r.vmas, ..Default::default() }])?.size;
        bytes += dir.write_records::<TaskCore>(ImageKind::Core, pid, &[])?.size;
        bytes += dir.write_records(ImageKind::Fds, pid, &[FdTable::default()])?.size;
        processes.push(r.entry);
        trackers.extend(r.tracker);
    }
    let root_pid = processes.first().map_or(opts.pid, |p| p.pid);
    bytes += dir.write_records(ImageKind::PsTree, None, &[PsTree { processes, ..Default::default() }])?.size;
    bytes += dir.write_records(ImageKind::Files, None, &[FileTable::default()])?.size;
    bytes += dir.write_records(ImageKind::Ipc, None, &[IpcImage::default()])?.size;
    let mut inventory = Inventory {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: super::kernel_release(),
        root_pid,
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        pre_dump: true,
        ..Default::default()
    };
    if let Some(p) = prev {
        inventory.parent_created_unix_ms = p.created();
        p.link_into(dir.path())?;
    }
    fault::check("pre-dump-fail-before-holder")?;
    let holder_pid = holder::spawn(dir.path(), &trackers)?;
    dir.commit_inventory(inventory, opts.fsync)?;
    Ok(((pages, in_parent), bytes, holder_pid))
}

/// Copy the `selected` pages of the running process `pid` through `/proc/PID/mem` into `out`
/// from [`PAGE_DATA_OFFSET`] on. A page that can no longer be read (its area was unmapped since
/// the freeze) is left out. Returns the runs written and the bytes.
fn copy_running(pid: Pid, selected: &[Selected], out: &File) -> Result<(Vec<PageRun>, u64)> {
    let path = format!("/proc/{pid}/mem");
    let mem = File::open(&path).map_err(Error::io(&path))?;
    const PIECE: u64 = 1 << 20;
    let mut buf = vec![0u8; PIECE as usize];
    let mut runs: Vec<PageRun> = Vec::new();
    let mut off = 0u64;
    let keep = |addr: u64, bytes: &[u8], runs: &mut Vec<PageRun>, off: &mut u64| -> Result<()> {
        out.write_all_at(bytes, PAGE_DATA_OFFSET + *off).map_err(Error::io("page file"))?;
        *off += bytes.len() as u64;
        match runs.last_mut() {
            Some(r) if r.vaddr + r.nr_pages * PAGE == addr => r.nr_pages += bytes.len() as u64 / PAGE,
            _ => runs.push(PageRun { vaddr: addr, nr_pages: bytes.len() as u64 / PAGE }),
        }
        Ok(())
    };
    for s in selected {
        let (mut addr, end) = (s.run.0, s.run.0 + s.run.1 * PAGE);
        while addr < end {
            let n = (end - addr).min(PIECE) as usize;
            if mem.read_exact_at(&mut buf[..n], addr).is_ok() {
                keep(addr, &buf[..n], &mut runs, &mut off)?;
            } else {
                // Page by page: keep what is still there.
                for p in (0..n as u64).step_by(PAGE as usize) {
                    let page = &mut buf[..PAGE as usize];
                    if mem.read_exact_at(page, addr + p).is_ok() {
                        keep(addr + p, page, &mut runs, &mut off)?;
                    }
                }
            }
            addr += n as u64;
        }
    }
    Ok((runs, off))
}

/// An error and its causes, for a warning.
fn error_chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
