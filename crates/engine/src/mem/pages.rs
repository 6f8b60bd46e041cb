//! Page contents: which pages a dump saves, how they reach the page file, and how restore puts them
//! back.
//!
//! Dump is zero-copy: the task is made to `vmsplice` its own pages into a pipe whose read end we took
//! with `pidfd_getfd`, and we `splice` them into the page file; the bytes never pass through our memory.
//! Two such pipes are used in turn, so the task pins one batch while we write out the previous one,
//! and a second thread checksums what is written. A small process (up to [`SMALL_DUMP_BYTES`]) is
//! copied through `/proc/PID/mem` and checksummed after: its pipes, the injected calls that make and
//! close them and a thread would cost more than the copy.
//! Areas the task cannot read (PROT_NONE guard areas with pages) go through `/proc/PID/mem` instead.
//! Restore makes the task `preadv` the page file straight into its own memory, many runs per call,
//! the pages of large runs allocated first with `MADV_POPULATE_WRITE`; a large process is filled
//! from both ends at once, the task reading the first half while a thread of ours writes the
//! second into it.

use crate::error::{Error, Result};
use crate::mem::{guards, kind};
use crate::Progress;
use stasis_image::model::{PageMap, PageRun, Vma, VmaKind};
use stasis_image::PAGE_DATA_OFFSET;
use stasis_sys::fd::{pidfd_getfd, pidfd_open, set_pipe_size, splice_to_file};
use stasis_sys::inject::{InjectError, Injector};
use stasis_sys::mem::{is_pte_marker, PageMapFile, PM_FILE_OR_SHARED, PM_GUARD_REGION, PM_PRESENT, PM_SWAPPED};
use stasis_sys::remote::Remote;
use stasis_sys::Pid;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

const PAGE: u64 = 4096;
/// Up to this many bytes of pages, a dump copies them through `/proc/PID/mem`.
const SMALL_DUMP_BYTES: u64 = 4 << 20;
/// Pipe size for the zero-copy dump: `/proc/sys/fs/pipe-max-size` allows 1 MiB without CAP_SYS_RESOURCE.
const PIPE_BYTES: u64 = 1 << 20;
const SPLICE_F_NONBLOCK: u32 = 2;
/// Largest single piece and batch of a restore `preadv`, so progress is reported as it goes.
const PIECE_MAX: u64 = 64 << 20;
const BATCH_MAX: u64 = 256 << 20;
const IOV_MAX: u64 = 1024;

/// A run of saved pages and whether the task itself can read them.
#[derive(Clone, Copy, Debug)]
pub struct Selected {
    pub run: (u64, u64),
    pub readable: bool,
}

/// What a dump takes of the pages of a process (see [`select`]).
#[derive(Default)]
pub struct Selection {
    /// The runs to save.
    pub saved: Vec<Selected>,
    /// Runs a child shares copy-on-write with its parent: not saved.
    pub inherited: Vec<PageRun>,
    /// Guard regions: never read.
    pub guards: Vec<PageRun>,
}

/// The pages of `vmas` that must be saved: private anonymous pages (present or swapped), including
/// the copied-on-write pages of private file mappings; and the guard regions of every area.
///
/// With `parent` (its pid and VMAs), a page still shared copy-on-write with the parent (same physical
/// page at the same address, in a VMA the parent has too) is not saved but returned apart, as
/// inherited: the restored child gets it by being forked from its restored parent.
pub fn select(pid: Pid, vmas: &[Vma], parent: Option<(Pid, &[Vma])>) -> Result<Selection> {
    let io = |p: Pid| Error::io(format!("/proc/{p}/pagemap"));
    let pm = PageMapFile::open(pid).map_err(io(pid))?;
    let ppm = match parent {
        Some((p, _)) => Some(PageMapFile::open(p).map_err(io(p))?),
        None => None,
    };
    let mut out = Selection::default();
    let (mut entries, mut theirs) = (Vec::new(), Vec::new());
    for v in vmas.iter().filter(|v| !super::is_special(v)) {
        entries.clear();
        pm.read_range(v.start, v.end, &mut entries).map_err(io(pid))?;
        guards::collect(pid, v, &entries, &mut out.guards)?;
        let private = v.flags & libc::MAP_PRIVATE as u32 != 0;
        let file = match kind(v) {
            VmaKind::Anon => false,
            VmaKind::File if private => true,
            // A shared anonymous object: all of it, once, from the first process that has it (a
            // child that inherited it gets it again by being forked; see `inheritable`). A shared
            // hugetlb one too: the pages no process maps are not in any pagemap.
            VmaKind::SharedAnon if !parent.is_some_and(|(_, pv)| inheritable(v, pv)) => {
                out.saved.push(Selected {
                    run: (v.start, (v.end - v.start) / PAGE),
                    readable: v.prot & libc::PROT_READ as u32 != 0,
                });
                continue;
            }
            _ => continue,
        };
        theirs.clear();
        if let (Some(ppm), Some((p, pvmas))) = (&ppm, parent) {
            if inheritable(v, pvmas) {
                ppm.read_range(v.start, v.end, &mut theirs).map_err(io(p))?;
            }
        }
        // A pte marker (write tracking of an absent page, see `track`) is no page.
        let saved = |e: u64| {
            e & PM_GUARD_REGION == 0
                && ((e & PM_SWAPPED != 0 && !is_pte_marker(e))
                    || (e & PM_PRESENT != 0 && !(file && e & PM_FILE_OR_SHARED != 0)))
        };
        let shared = |i: usize| theirs.get(i).is_some_and(|&t| same_page(entries[i], t));
        let mut classes: Vec<u8> = (0..entries.len())
            .map(|i| match (saved(entries[i]), shared(i)) {
                (false, _) => 0,
                (true, false) => 1,
                (true, true) => 2,
            })
            .collect();
        if v.hugetlb_page_size != 0 {
            super::hugetlb::whole_pages(&mut classes, v.hugetlb_page_size);
        }
        let readable = v.prot & libc::PROT_READ as u32 != 0;
        let mut i = 0;
        while i < classes.len() {
            let c = classes[i];
            let first = i;
            while i < classes.len() && classes[i] == c {
                i += 1;
            }
            let run = (v.start + first as u64 * PAGE, (i - first) as u64);
            match c {
                1 => out.saved.push(Selected { run, readable }),
                2 => out.inherited.push(PageRun { vaddr: run.0, nr_pages: run.1 }),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Bits 0-54 of a pagemap entry: the page frame number (zero without CAP_SYS_ADMIN).
const PM_PFN: u64 = (1 << 55) - 1;

/// Two present pagemap entries naming the same physical page.
fn same_page(a: u64, b: u64) -> bool {
    a & PM_PRESENT != 0 && b & PM_PRESENT != 0 && a & PM_PFN != 0 && a & PM_PFN == b & PM_PFN
}

/// A VMA a forked child gets from its parent as it is: an anonymous, file or shared anonymous area
/// (same object: same inode) the parent has too,
/// not MADV_DONTFORK (such an area is not copied into a child). The vDSO and vvar are the kernel's.
pub fn inheritable(v: &Vma, parent: &[Vma]) -> bool {
    matches!(kind(v), VmaKind::Anon | VmaKind::File | VmaKind::SharedAnon | VmaKind::SysvShm | VmaKind::AioRing)
        && v.madvise & stasis_image::model::MADV_BIT_DONTFORK == 0
        && parent.iter().any(|p| super::same_vma(v, p))
}

/// The page map record for the selected runs (checksums are filled in when the file is finished).
pub fn page_map(selected: &[Selected], inherited: Vec<PageRun>) -> PageMap {
    let runs: Vec<PageRun> = selected.iter().map(|s| PageRun { vaddr: s.run.0, nr_pages: s.run.1 }).collect();
    let total_pages = runs.iter().map(|r| r.nr_pages).sum();
    PageMap { runs, total_pages, inherited, ..Default::default() }
}

/// A pipe inside the task (its write end) whose read end we hold.
struct TaskPipe {
    ours: OwnedFd,
    task_write_fd: i32,
}

impl TaskPipe {
    fn open(inj: &mut Injector, pid: Pid) -> Result<TaskPipe> {
        let (task_read, task_write) = inj.pipe2(libc::O_CLOEXEC)?;
        let pidfd = pidfd_open(pid).map_err(Error::sys(pid.0, "opening a pidfd"))?;
        let ours = pidfd_getfd(pidfd.as_fd(), task_read).map_err(Error::sys(pid.0, "taking the dump pipe"))?;
        inj.close(task_read)?;
        set_pipe_size(ours.as_fd(), PIPE_BYTES as usize).map_err(Error::sys(pid.0, "sizing the dump pipe"))?;
        Ok(TaskPipe { ours, task_write_fd: task_write })
    }

    fn close(self, inj: &mut Injector) -> Result<()> {
        inj.close(self.task_write_fd)?;
        Ok(())
    }
}

/// Write the selected pages to `out` from `PAGE_DATA_OFFSET` on. A second thread checksums each chunk
/// of `chunk_size` bytes as soon as it is written (the two cores copy and hash at once). Returns the
/// bytes written and the chunk checksums.
pub fn write(
    inj: &mut Injector,
    pid: Pid,
    selected: &[Selected],
    out: &File,
    chunk_size: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<(u64, Vec<u64>)> {
    let total: u64 = selected.iter().map(|s| s.run.1 * PAGE).sum();
    if total <= SMALL_DUMP_BYTES {
        let mut off = PAGE_DATA_OFFSET as i64;
        for s in selected {
            copy_through_proc(inj, s.run, out, &mut off)?;
        }
        progress(Progress { done_bytes: total, total_bytes: total });
        let sums = stasis_image::hash_chunks(out, total, chunk_size).map_err(Error::io("page file"))?;
        return Ok((total, sums));
    }
    let hash_file = out.try_clone().map_err(Error::io("page file"))?;
    let (tx, rx) = std::sync::mpsc::channel::<(u64, u64)>();
    let hasher = std::thread::spawn(move || -> std::io::Result<Vec<u64>> {
        let mut sums = Vec::new();
        for (chunk, written) in rx {
            sums.push(stasis_image::hash_chunk(&hash_file, written, chunk_size, chunk)?);
        }
        Ok(sums)
    });
    let mut sent = 0;
    let mut on_flush = |written: u64, last: bool| {
        let ready = if last { written.div_ceil(chunk_size) } else { written / chunk_size };
        while sent < ready {
            let _ = tx.send((sent, written));
            sent += 1;
        }
    };
    let bytes = write_all(inj, pid, selected, out, progress, &mut on_flush);
    on_flush(*bytes.as_ref().unwrap_or(&0), true);
    drop(tx);
    let sums = hasher.join().map_err(|_| Error::Failed { pid, what: "page hashing panicked".into() })?;
    let bytes = bytes?;
    Ok((bytes, sums.map_err(Error::io("page file"))?))
}

fn write_all(
    inj: &mut Injector,
    pid: Pid,
    selected: &[Selected],
    out: &File,
    progress: &mut dyn FnMut(Progress),
    on_flush: &mut dyn FnMut(u64, bool),
) -> Result<u64> {
    let total_bytes: u64 = selected.iter().map(|s| s.run.1 * PAGE).sum();
    let mut line = Pipeline::open(inj, pid, out)?;
    let mut batch: Vec<(u64, u64)> = Vec::new();
    let mut batch_bytes = 0;
    for s in selected {
        if !s.readable {
            line.push(inj, &mut batch)?;
            line.drain()?;
            batch_bytes = 0;
            copy_through_proc(inj, s.run, out, &mut line.off)?;
            continue;
        }
        let (mut addr, mut left) = (s.run.0, s.run.1 * PAGE);
        while left > 0 {
            let n = left.min(PIPE_BYTES - batch_bytes);
            batch.push((addr, n));
            batch_bytes += n;
            addr += n;
            left -= n;
            if batch_bytes == PIPE_BYTES {
                line.push(inj, &mut batch)?;
                batch_bytes = 0;
                let done = line.written();
                on_flush(done, false);
                progress(Progress { done_bytes: done, total_bytes });
            }
        }
    }
    line.push(inj, &mut batch)?;
    line.drain()?;
    progress(Progress { done_bytes: line.written(), total_bytes });
    let written = line.written();
    line.close(inj)?;
    Ok(written)
}

/// Two pipes used in turn: while the task `vmsplice`s a batch of pages into one, we `splice` the
/// previous batch out of the other into the page file, so the two copies overlap.
struct Pipeline<'a> {
    pipes: [TaskPipe; 2],
    /// The pipe the next batch goes into.
    next: usize,
    /// A pipe holding pages not yet written out, and how many bytes.
    queued: Option<(usize, u64)>,
    out: &'a File,
    /// Where the next bytes go in the page file.
    off: i64,
}

impl<'a> Pipeline<'a> {
    fn open(inj: &mut Injector, pid: Pid, out: &'a File) -> Result<Pipeline<'a>> {
        let pipes = [TaskPipe::open(inj, pid)?, TaskPipe::open(inj, pid)?];
        Ok(Pipeline { pipes, next: 0, queued: None, out, off: PAGE_DATA_OFFSET as i64 })
    }

    /// Bytes of page data written to the file so far.
    fn written(&self) -> u64 {
        self.off as u64 - PAGE_DATA_OFFSET
    }

    /// Hand `batch` (at most a pipe-full) to the task, writing out the previous one meanwhile.
    fn push(&mut self, inj: &mut Injector, batch: &mut Vec<(u64, u64)>) -> Result<()> {
        while !batch.is_empty() {
            let i = self.next;
            let iov = &batch[..batch.len().min(IOV_MAX as usize)];
            inj.vmsplice_start(self.pipes[i].task_write_fd, iov, SPLICE_F_NONBLOCK)?;
            // The task is filling pipe i: empty the other one now. Its result is looked at only once
            // the task has stopped again, so that an error never leaves the task running.
            let drained = self.drain();
            let moved = inj.wait_call()?;
            drained?;
            if moved == 0 {
                return Err(Error::Failed { pid: inj.pid(), what: "vmsplice moved no pages".into() });
            }
            consume(batch, moved);
            self.queued = Some((i, moved));
            self.next = 1 - i;
        }
        Ok(())
    }

    /// Write out the queued pipe, if any.
    fn drain(&mut self) -> Result<()> {
        let Some((i, mut left)) = self.queued.take() else { return Ok(()) };
        while left > 0 {
            let n = splice_to_file(self.pipes[i].ours.as_fd(), self.out.as_fd(), &mut self.off, left as usize)
                .map_err(|e| Error::Io { path: "page file".into(), source: e.source })?;
            if n == 0 {
                return Err(Error::Io {
                    path: "page file".into(),
                    source: std::io::Error::other("the dump pipe ran dry"),
                });
            }
            left -= n as u64;
        }
        Ok(())
    }

    fn close(self, inj: &mut Injector) -> Result<()> {
        let [a, b] = self.pipes;
        a.close(inj)?;
        b.close(inj)
    }
}

/// Drop the first `n` bytes of a list of (address, length) pieces.
fn consume(pieces: &mut Vec<(u64, u64)>, mut n: u64) {
    let mut done = 0;
    for p in pieces.iter_mut() {
        if n >= p.1 {
            n -= p.1;
            done += 1;
        } else {
            p.0 += n;
            p.1 -= n;
            break;
        }
    }
    pieces.drain(..done);
}

/// Pages through `/proc/PID/mem`, which reads what the task itself cannot (PROT_NONE).
fn copy_through_proc(inj: &Injector, run: (u64, u64), out: &File, off: &mut i64) -> Result<()> {
    let mut buf = vec![0u8; (run.1 * PAGE).min(PIPE_BYTES) as usize];
    let (mut addr, mut left) = (run.0, run.1 * PAGE);
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        inj.read(addr, &mut buf[..n])?;
        out.write_all_at(&buf[..n], *off as u64).map_err(Error::io("page file"))?;
        *off += n as i64;
        addr += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// Fill the pages of `map` into the stopped task `pid` straight from its compressed page file
/// `file`: the chunks decompressed by several threads (each checked against its checksum) and
/// written through `/proc/PID/mem`, with no uncompressed copy of the file made.
pub fn fill_compressed(pid: Pid, file: &File, map: &PageMap, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let path = format!("/proc/{pid}/mem");
    let mem = stasis_sys::mem::ProcMem::open(pid).map_err(Error::io(&path))?;
    // Where each run starts in the page data (file order).
    let mut starts = Vec::with_capacity(map.runs.len());
    let mut total = 0;
    for r in &map.runs {
        starts.push(total);
        total += r.nr_pages * PAGE;
    }
    let cs = map.chunk_size;
    let name = stasis_image::ImageKind::Pages.file_name(Some(pid.0));
    let write = |k: u64, chunk: &[u8]| -> std::result::Result<(), stasis_image::ImageError> {
        let (s, e) = (k * cs, k * cs + chunk.len() as u64);
        // The run holding the chunk's first byte, then the ones after it.
        let mut i = starts.partition_point(|&st| st <= s).saturating_sub(1);
        let mut at = s;
        while at < e && i < map.runs.len() {
            let run_end = starts[i] + map.runs[i].nr_pages * PAGE;
            let n = run_end.min(e) - at;
            let piece = &chunk[(at - s) as usize..(at - s + n) as usize];
            mem.write(map.runs[i].vaddr + (at - starts[i]), piece)
                .map_err(|source| stasis_image::ImageError::Io { path: path.clone().into(), source })?;
            at += n;
            i += 1;
        }
        Ok(())
    };
    stasis_image::compress::decompress_chunks(file, &name, map, None, &write)?;
    progress(Progress { done_bytes: total, total_bytes: total });
    Ok(())
}

/// A page writer for `pid` whose file is a memfd (the page file of a compressed image is made
/// from it; see `stasis_image::compress`).
pub fn stage(dir: &stasis_image::ImageDir, pid: Pid, chunk_size: u64) -> Result<stasis_image::PageWriter> {
    let name = stasis_image::ImageKind::Pages.file_name(Some(pid.0));
    let memfd = stasis_sys::fd::memfd_create(&name).map_err(Error::sys(pid.0, "staging the pages in a memfd"))?;
    Ok(dir.stage_pages(pid.0, chunk_size, File::from(memfd))?)
}

/// The page file of `pid` in `dir`, readable as raw pages: the file itself, or for a compressed
/// one (`--compress`) a memfd holding it uncompressed, with the chunks `wanted` (by index; `None`:
/// all) decompressed by several threads and checked against their checksums (the others are
/// zeros). Positioned at the page data.
pub fn open_raw(dir: &stasis_image::ImageDir, pid: i32, map: &PageMap, wanted: Option<&[u64]>) -> Result<File> {
    let file = dir.open_pages(pid, map)?;
    if !stasis_image::compress::is_compressed(map) {
        return Ok(file);
    }
    let name = stasis_image::ImageKind::Pages.file_name(Some(pid));
    let memfd = stasis_sys::fd::memfd_create(&name).map_err(Error::sys(pid, "a memfd for the decompressed pages"))?;
    let out = File::from(memfd);
    stasis_image::compress::decompress_pages(&file, &name, map, wanted, &out)?;
    use std::io::Seek;
    (&out).seek(std::io::SeekFrom::Start(stasis_image::PAGE_DATA_OFFSET)).map_err(Error::io(&name))?;
    Ok(out)
}

/// A restore of at least this many bytes of pages is filled from two sides at once (see [`fill`]).
const TWO_SIDED_MIN: u64 = 32 << 20;
/// The buffer of the side stasis fills.
const WRITER_BUF: usize = 4 << 20;

/// Make the task read every saved page from the page file (open in the task as `task_fd`, and here
/// as `file`) into place. From [`TWO_SIDED_MIN`] bytes on, the task reads the first half while a
/// thread of ours reads the second and writes it into the task (`process_vm_writev`), each on a CPU
/// of its own.
pub fn fill(
    inj: &mut dyn Remote,
    (task_fd, file): (i32, &File),
    map: &PageMap,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let total_bytes = map.total_pages * PAGE;
    let pieces = pieces(map);
    if total_bytes < TWO_SIDED_MIN || std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return fill_pieces(inj, task_fd, &pieces, (PAGE_DATA_OFFSET, total_bytes), progress);
    }
    let (mine, theirs) = split_half(&pieces, total_bytes);
    let their_off = PAGE_DATA_OFFSET + mine.iter().map(|p| p.1).sum::<u64>();
    let pid = inj.pid();
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        let writer = s.spawn(|| write_pieces(pid, file, &theirs, their_off).map(|()| start.elapsed()));
        let read = fill_pieces(inj, task_fd, &mine, (PAGE_DATA_OFFSET, total_bytes), progress);
        let read_took = start.elapsed();
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if let Ok(write_took) = &written {
            log::debug!("pid {pid}: pages filled by the task in {read_took:?}, by stasis in {write_took:?}");
        }
        read.and(written.map(drop))
    })?;
    progress(Progress { done_bytes: total_bytes, total_bytes });
    Ok(())
}

/// The runs of `map` in file order, cut into pieces of at most [`PIECE_MAX`] bytes.
fn pieces(map: &PageMap) -> Pieces {
    let mut pieces = Pieces::new();
    for r in &map.runs {
        let (mut a, mut left) = (r.vaddr, r.nr_pages * PAGE);
        while left > 0 {
            let n = left.min(PIECE_MAX);
            pieces.push((a, n));
            a += n;
            left -= n;
        }
    }
    pieces
}

/// Pieces of memory to fill: (address, bytes), in page file order.
type Pieces = Vec<(u64, u64)>;

/// `pieces` (file order) cut at half of their `total` bytes, on a page boundary.
fn split_half(pieces: &[(u64, u64)], total: u64) -> (Pieces, Pieces) {
    let half = total / 2 / PAGE * PAGE;
    let (mut mine, mut theirs, mut seen) = (Vec::new(), Vec::new(), 0);
    for &(addr, len) in pieces {
        if seen >= half {
            theirs.push((addr, len));
        } else if seen + len <= half {
            mine.push((addr, len));
        } else {
            let head = half - seen;
            mine.push((addr, head));
            theirs.push((addr + head, len - head));
        }
        seen += len;
    }
    (mine, theirs)
}

/// The task `preadv`s `pieces` from offset `off` of the page file; progress out of `total` bytes.
fn fill_pieces(
    inj: &mut dyn Remote,
    task_fd: i32,
    pieces: &[(u64, u64)],
    (mut off, total_bytes): (u64, u64),
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let max_iov = (inj.data_len() / 16).min(IOV_MAX) as usize;
    let mut next = 0;
    while next < pieces.len() {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while next < pieces.len() && batch.len() < max_iov && bytes + pieces[next].1 <= BATCH_MAX.max(pieces[next].1) {
            bytes += pieces[next].1;
            batch.push(pieces[next]);
            next += 1;
            if bytes >= BATCH_MAX {
                break;
            }
        }
        read_batch(inj, task_fd, &mut batch, &mut off)?;
        progress(Progress { done_bytes: off - PAGE_DATA_OFFSET, total_bytes });
    }
    Ok(())
}

/// Read `pieces` from offset `off` of the page file `file` and write them into task `pid`.
fn write_pieces(pid: Pid, file: &File, pieces: &[(u64, u64)], mut off: u64) -> Result<()> {
    let name = stasis_image::ImageKind::Pages.file_name(Some(pid.0));
    let mut buf = vec![0u8; WRITER_BUF];
    for &(addr, len) in pieces {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(WRITER_BUF as u64) as usize;
            file.read_exact_at(&mut buf[..n], off).map_err(Error::io(&name))?;
            stasis_sys::mem::write_remote(pid, addr + done, &buf[..n]).map_err(|e| Error::Failed {
                pid,
                what: format!("writing {n} bytes of its pages at {:#x}: {e}", addr + done),
            })?;
            off += n as u64;
            done += n as u64;
        }
    }
    Ok(())
}

/// A piece of at least this many bytes is populated (`MADV_POPULATE_WRITE`) before it is read.
const POPULATE_MIN: u64 = 1 << 20;

fn read_batch(inj: &mut dyn Remote, task_fd: i32, batch: &mut Vec<(u64, u64)>, off: &mut u64) -> Result<()> {
    populate(inj, batch)?;
    while !batch.is_empty() {
        let n = inj.preadv(task_fd, batch, *off)?;
        if n == 0 {
            return Err(Error::Failed { pid: inj.pid(), what: format!("page file ends early at offset {off}") });
        }
        *off += n;
        consume(batch, n);
    }
    Ok(())
}

/// Allocate the pages of the large pieces of `batch` in one call each before the `preadv` writes
/// them: faulting them in one by one inside the copy costs about a third more (the pages and their
/// contents end the same). Where the kernel lacks `MADV_POPULATE_WRITE` (before 5.14), or refuses it
/// for an area (`EINVAL`), the copy faults them in as before.
fn populate(inj: &mut dyn Remote, batch: &[(u64, u64)]) -> Result<()> {
    for &(addr, len) in batch.iter().filter(|(_, len)| *len >= POPULATE_MIN) {
        match inj.madvise(addr, len, libc::MADV_POPULATE_WRITE) {
            Ok(()) => {}
            Err(InjectError::Failed { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{consume, split_half};

    #[test]
    fn split_half_cuts_at_half_the_bytes_on_a_page() {
        let pieces = [(0x10000, 0x3000), (0x80000, 0x5000)];
        let (mine, theirs) = split_half(&pieces, 0x8000);
        assert_eq!(mine, vec![(0x10000, 0x3000), (0x80000, 0x1000)]);
        assert_eq!(theirs, vec![(0x81000, 0x4000)]);
        let (mine, theirs) = split_half(&[(0x1000, 0x1000)], 0x1000);
        assert_eq!((mine, theirs), (vec![], vec![(0x1000, 0x1000)]));
    }

    #[test]
    fn consume_drops_whole_and_partial_pieces() {
        let mut p = vec![(0x1000, 0x2000), (0x8000, 0x1000)];
        consume(&mut p, 0x2800);
        assert_eq!(p, vec![(0x8800, 0x800)]);
        consume(&mut p, 0x800);
        assert!(p.is_empty());
    }
}
