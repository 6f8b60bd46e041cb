//! Dump, stage by stage: check the target, freeze it, inspect it, take its files, write its memory,
//! write the images and the inventory (last), then resume or kill it. Any error before the inventory
//! is written resumes the process exactly as it was (see [`crate::task::Frozen`]).

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use crate::task::{Frozen, FrozenProcess};
use crate::{creds, fault, files, mem, misc, mm, regs, signals, threads, timers};
use crate::{DumpOptions, DumpReport, Progress};
use stasis_image::model::{Inventory, MmImage, ProcessEntry, PsTree, TaskCore};
use stasis_image::{ImageDir, ImageKind, PageWriter};
use stasis_sys::Pid;
use std::time::{Duration, Instant};

/// Chunk size of the page-file checksums.
const CHUNK: u64 = 4 << 20;
const NAMESPACES: [&str; 8] = ["mnt", "pid", "net", "uts", "ipc", "user", "cgroup", "time"];

/// Everything a dump collects about one process before writing it.
struct Collected {
    process: ProcessEntry,
    core: TaskCore,
    /// The other threads, in TID order.
    threads: Vec<TaskCore>,
    mm: MmImage,
    selected: Vec<mem::pages::Selected>,
    fds: stasis_image::model::FdTable,
    files: Vec<stasis_image::model::FileEntry>,
}

pub fn dump(opts: &DumpOptions, progress: &mut dyn FnMut(Progress)) -> Result<DumpReport> {
    let start = Instant::now();
    let root = ProcRoot::system();
    let pid = Pid(opts.pid);
    let stat = check_target(&root, pid)?;
    let dir = ImageDir::create(&opts.dir)?;
    let mut frozen = FrozenProcess::freeze(&root, pid, stat.state == 'T')?;
    let frozen_at = Instant::now();
    let (collected, writer, page_bytes, checksums) =
        match dump_frozen(&root, &dir, &mut frozen, &stat, opts, progress, frozen_at) {
            Ok(done) => done,
            Err(e) => return Err(frozen.explain(e)),
        };
    let mut frozen = Some(frozen);
    let mut frozen_for = None;
    if opts.leave_running {
        frozen.take().expect("still frozen").resume()?;
        frozen_for = Some(frozen_at.elapsed());
    }
    let image_bytes = write_images(&dir, &collected, writer, (page_bytes, checksums), opts)?;
    if let Some(f) = frozen {
        f.kill()?;
        frozen_for = Some(frozen_at.elapsed());
    }
    let frozen_for = frozen_for.expect("resumed or killed");
    let pages = page_bytes / stasis_image::PAGE_SIZE;
    Ok(report(pid, frozen_for, start.elapsed(), pages, image_bytes, opts.leave_running))
}

/// Stages 2 to 4 on the frozen task: inspect it, take its files, write its pages.
fn dump_frozen(
    root: &ProcRoot,
    dir: &ImageDir,
    frozen: &mut FrozenProcess,
    stat: &proc::Stat,
    opts: &DumpOptions,
    progress: &mut dyn FnMut(Progress),
    frozen_at: Instant,
) -> Result<(Collected, PageWriter, u64, Vec<u64>)> {
    let pid = frozen.pid();
    check_single(root, pid)?;
    let collected = collect(root, frozen, stat, opts)?;
    log::info!("pid {pid}: frozen and inspected in {:?}", frozen_at.elapsed());
    let (writer, page_bytes, checksums) = write_pages(dir, frozen.main(), &collected, progress)?;
    log::info!("pid {pid}: {page_bytes} bytes of pages written at {:?}", frozen_at.elapsed());
    fault::check("dump-fail-after-memory")?;
    Ok((collected, writer, page_bytes, checksums))
}

fn report(pid: Pid, frozen: Duration, total: Duration, pages: u64, image_bytes: u64, left: bool) -> DumpReport {
    DumpReport { pid: pid.0, frozen, total, pages, image_bytes, left_running: left }
}

/// The process exists, is not us, shares our namespaces, and is not traced by someone else.
fn check_target(root: &ProcRoot, pid: Pid) -> Result<proc::Stat> {
    if pid == Pid::this() || pid.0 <= 0 {
        return Err(Error::Unsupported { pid: pid.0, what: "checkpointing stasis itself".into() });
    }
    let stat = proc::stat(root, pid.0).map_err(|e| match e.is_not_found() {
        true => Error::NoSuchProcess { pid: pid.0 },
        false => e.into(),
    })?;
    if stat.state == 'Z' {
        return Err(Error::Unsupported { pid: pid.0, what: "a zombie as the root of a dump".into() });
    }
    let status = proc::status(root, pid.0)?;
    if status.tracer_pid != 0 {
        return Err(Error::Unsupported { pid: pid.0, what: format!("a process traced by pid {}", status.tracer_pid) });
    }
    if status.seccomp != 0 {
        return Err(Error::Unsupported { pid: pid.0, what: format!("seccomp mode {}", status.seccomp) });
    }
    let me = std::process::id() as i32;
    for ns in NAMESPACES {
        if proc::ns_inode(root, pid.0, ns).ok() != proc::ns_inode(root, me, ns).ok() {
            return Err(Error::Unsupported { pid: pid.0, what: format!("a {ns} namespace of its own") });
        }
    }
    check_single(root, pid)?;
    let timers = root.pid_path(pid.0, "timers");
    if std::fs::read_to_string(&timers).is_ok_and(|t| !t.trim().is_empty()) {
        return Err(Error::Unsupported { pid: pid.0, what: "POSIX timers (timer_create)".into() });
    }
    Ok(stat)
}

/// Trees are not handled yet: refuse them by name.
fn check_single(root: &ProcRoot, pid: Pid) -> Result<()> {
    if let Some(child) = proc::children(root, pid.0)?.first() {
        let what = format!("a child process (pid {child}; process trees)");
        return Err(Error::Unsupported { pid: pid.0, what });
    }
    Ok(())
}

/// Inspect the frozen process: registers, signals, timers, limits, credentials, layout, files, and
/// each thread's own state.
fn collect(root: &ProcRoot, process: &mut FrozenProcess, stat: &proc::Stat, opts: &DumpOptions) -> Result<Collected> {
    let pid = process.pid();
    // Before any injector maps its scratch area, which must not be saved.
    let vmas = mem::dump_vmas(root, pid)?;
    let vdso =
        mem::vdso_range(&vmas).ok_or(Error::Unsupported { pid: pid.0, what: "a process without a vDSO".into() })?;
    let mut threads = Vec::new();
    for t in process.threads.iter_mut().skip(1) {
        threads.push(threads::dump(root, t, vdso)?);
    }
    let frozen = process.main();
    let mut core = TaskCore {
        pid: pid.0,
        regs: Some(regs::to_image(&frozen.regs)),
        xstate: frozen.xstate.clone(),
        sigmask: frozen.sigmask,
        pending: signals::dump_pending(pid, true)?,
        ..Default::default()
    };
    let inj = frozen.injector(vdso)?;
    core.sigactions = signals::dump_actions(inj)?;
    core.altstack = Some(signals::dump_altstack(inj)?);
    core.itimers = timers::dump(inj)?;
    misc::dump(inj, root, pid, &mut core)?;
    core.creds = Some(creds::dump(inj, root, pid)?);
    let mm = MmImage {
        fields: Some(mm::dump_fields(inj, root, pid)?),
        auxv: proc::auxv(root, pid.0)?,
        exe_path: proc::link(root, pid.0, "exe")?.to_string_lossy().into_owned(),
        vdso_checksum: mem::vdso_checksum(inj, vdso)?,
        vmas,
    };
    let mut next_id = 1;
    let (fds, files) = files::dump(root, pid, opts.shell_job, &mut next_id)?;
    if fault::armed("dump-kill-target") {
        log::warn!("STASIS_FAULT: killing pid {pid} mid-dump");
        let _ = stasis_sys::process::kill(pid, libc::SIGKILL);
    }
    let selected = mem::pages::select(pid, &mm.vmas)?;
    let process = ProcessEntry {
        pid: pid.0,
        ppid: stat.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        threads: std::iter::once(pid.0).chain(threads.iter().map(|t| t.pid)).collect(),
        stopped: frozen.was_stopped,
    };
    Ok(Collected { process, core, threads, mm, selected, fds, files })
}

/// Stage 4: the pages, zero-copy. Returns the page file, the bytes of page data in it, and their chunk
/// checksums.
fn write_pages(
    dir: &ImageDir,
    frozen: &mut Frozen,
    c: &Collected,
    progress: &mut dyn FnMut(Progress),
) -> Result<(PageWriter, u64, Vec<u64>)> {
    let pid = frozen.pid;
    let writer = dir.create_pages(pid.0, CHUNK)?;
    let vdso = mem::vdso_range(&c.mm.vmas).expect("checked in collect");
    let inj = frozen.injector(vdso)?;
    let (bytes, checksums) = mem::pages::write(inj, pid, &c.selected, writer.file(), CHUNK, progress)?;
    Ok((writer, bytes, checksums))
}

/// Stage 5: checksum the page file, write every record file, then the inventory.
fn write_images(
    dir: &ImageDir,
    c: &Collected,
    writer: PageWriter,
    (page_bytes, checksums): (u64, Vec<u64>),
    opts: &DumpOptions,
) -> Result<u64> {
    let pid = c.process.pid;
    let (checksums, pages_digest) = writer.finish_with(page_bytes, checksums)?;
    let mut map = mem::pages::page_map(&c.selected);
    map.chunk_size = CHUNK;
    map.chunk_checksums = checksums;
    let mut digests = vec![pages_digest];
    digests.push(dir.write_records(ImageKind::PageMap, Some(pid), &[map])?);
    let cores: Vec<TaskCore> = std::iter::once(c.core.clone()).chain(c.threads.iter().cloned()).collect();
    digests.push(dir.write_records(ImageKind::Core, Some(pid), &cores)?);
    digests.push(dir.write_records(ImageKind::Mm, Some(pid), std::slice::from_ref(&c.mm))?);
    digests.push(dir.write_records(ImageKind::Fds, Some(pid), std::slice::from_ref(&c.fds))?);
    let files = stasis_image::model::FileTable { files: c.files.clone() };
    digests.push(dir.write_records(ImageKind::Files, None, &[files])?);
    let tree = PsTree { processes: vec![c.process.clone()] };
    digests.push(dir.write_records(ImageKind::PsTree, None, &[tree])?);
    let inventory = Inventory {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: kernel_release(),
        xfeatures: regs::xstate_features(&c.core.xstate),
        root_pid: pid,
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        shell_job: opts.shell_job,
        ..Default::default()
    };
    dir.commit_inventory(inventory, opts.fsync)?;
    Ok(digests.iter().map(|d| d.size).sum())
}

pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}
