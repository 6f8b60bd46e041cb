//! Dump, stage by stage: check the root, freeze the tree below it (every process, every thread),
//! inspect each process, take the files, write each memory, write the images and the inventory
//! (last), then resume or kill the tree. Any error before the inventory is written resumes every
//! process exactly as it was (see [`crate::task::Frozen`]).

use crate::error::{Error, Result};
use crate::files::FileIds;
use crate::proc::{self, ProcRoot};
use crate::task::FrozenProcess;
use crate::{creds, fault, files, mem, misc, mm, regs, signals, threads, timers};
use crate::{DumpOptions, DumpReport, Progress};
use stasis_image::model::{FileEntry, Inventory, MmImage, ProcessEntry, PsTree, TaskCore};
use stasis_image::{ImageDir, ImageKind, PageWriter};
use stasis_sys::Pid;
use std::time::{Duration, Instant};

/// Chunk size of the page-file checksums.
const CHUNK: u64 = 4 << 20;
const NAMESPACES: [&str; 8] = ["mnt", "pid", "net", "uts", "ipc", "user", "cgroup", "time"];
/// `kcmp` types of the kernel objects a child may share with its parent, and their `shares` bits.
const SHARED_OBJECTS: [(i32, u32); 4] = [
    (1, stasis_image::model::SHARES_VM),
    (2, stasis_image::model::SHARES_FILES),
    (3, stasis_image::model::SHARES_FS),
    (4, stasis_image::model::SHARES_SIGHAND),
];

/// Everything a dump collects about one process before writing it.
struct Collected {
    process: ProcessEntry,
    core: TaskCore,
    /// The other threads, in TID order.
    threads: Vec<TaskCore>,
    mm: MmImage,
    selected: Vec<mem::pages::Selected>,
    /// Pages still shared copy-on-write with the parent.
    inherited: Vec<stasis_image::model::PageRun>,
    fds: stasis_image::model::FdTable,
}

/// One process's collected state and its page file, written but not yet finished.
struct Dumped {
    c: Collected,
    writer: PageWriter,
    page_bytes: u64,
    checksums: Vec<u64>,
}

pub fn dump(opts: &DumpOptions, progress: &mut dyn FnMut(Progress)) -> Result<DumpReport> {
    let start = Instant::now();
    let root = ProcRoot::system();
    let pid = Pid(opts.pid);
    check_target(&root, pid)?;
    let dir = ImageDir::create(&opts.dir)?;
    let frozen_at = Instant::now();
    let (mut tree, zombies) = freeze_tree(&root, pid)?;
    check_sessions(&root, &tree, &zombies)?;
    let (dumped, files, ipc) = match dump_frozen(&root, &dir, &mut tree, opts, progress, frozen_at) {
        Ok(done) => done,
        Err(e) => return Err(explain(&mut tree, e)),
    };
    let mut tree = Some(tree);
    let mut frozen_for = None;
    if opts.leave_running {
        resume_all(tree.take().expect("still frozen"))?;
        frozen_for = Some(frozen_at.elapsed());
    }
    let pages: u64 = dumped.iter().map(|d| d.page_bytes).sum::<u64>() / stasis_image::PAGE_SIZE;
    let image_bytes = write_images(&dir, dumped, zombies, files, ipc, opts)?;
    if let Some(t) = tree {
        for (p, _) in t {
            p.kill()?;
        }
        frozen_for = Some(frozen_at.elapsed());
    }
    let frozen_for = frozen_for.expect("resumed or killed");
    Ok(report(pid, frozen_for, start.elapsed(), pages, image_bytes, opts.leave_running))
}

/// A frozen process and its `/proc/PID/stat` from before the freeze.
type Frozen = (FrozenProcess, proc::Stat);

/// Freeze the root and every process below it, parents before children, walking the tree again
/// until no new process appears (one not yet frozen may have forked). Zombie children are only
/// recorded.
fn freeze_tree(root: &ProcRoot, pid: Pid) -> Result<(Vec<Frozen>, Vec<ProcessEntry>)> {
    let mut tree: Vec<Frozen> = Vec::new();
    let mut zombies: Vec<ProcessEntry> = Vec::new();
    let mut todo = vec![pid];
    while !todo.is_empty() {
        for p in std::mem::take(&mut todo) {
            let stat = proc::stat(root, p.0)?;
            if stat.state == 'Z' {
                zombies.push(zombie_entry(&stat));
                continue;
            }
            if p != pid {
                check_process(root, p)?;
            }
            let frozen = FrozenProcess::freeze(root, p, stat.state == 'T')?;
            tree.push((frozen, stat));
        }
        for (f, _) in &tree {
            for child in proc::children(root, f.pid().0)? {
                let known = tree.iter().any(|(t, _)| t.pid().0 == child) || zombies.iter().any(|z| z.pid == child);
                if !known && !todo.contains(&Pid(child)) {
                    todo.push(Pid(child));
                }
            }
        }
    }
    Ok((tree, zombies))
}

fn zombie_entry(stat: &proc::Stat) -> ProcessEntry {
    ProcessEntry {
        pid: stat.pid,
        ppid: stat.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        threads: vec![stat.pid],
        zombie: true,
        exit_status: stat.exit_code,
        ..Default::default()
    }
}

/// Sessions and groups restore can make again: a leader is in the tree (or alive, for the root's
/// group), or, for the root only, its session leader has exited (a helper with the leader's pid makes
/// it again). A group whose leader exited, or a process whose session is neither its parent's nor its
/// own, is refused by name rather than restored into another group or session.
fn check_sessions(root: &ProcRoot, tree: &[Frozen], zombies: &[ProcessEntry]) -> Result<()> {
    // A zombie that led a group is made again as its leader before it exits: its group exists.
    let in_tree = |p: i32| tree.iter().any(|(f, _)| f.pid().0 == p) || zombies.iter().any(|z| z.pid == p);
    let alive = |p: i32| proc::stat(root, p).is_ok_and(|s| s.state != 'Z');
    for (i, (f, stat)) in tree.iter().enumerate() {
        let (pid, sid, pgid) = (f.pid().0, stat.session, stat.pgrp);
        let parent_sid = tree.iter().find(|(p, _)| p.pid().0 == stat.ppid).map(|(_, s)| s.session);
        let is_root = i == 0;
        if is_root && sid != pid && !alive(sid) {
            // The daemon case: a helper remakes the session, and the group if it is the session's.
            if pgid != sid && pgid != pid && !in_tree(pgid) && !alive(pgid) {
                let what = format!("process group {pgid} whose leader has exited (in session {sid})");
                return Err(Error::Unsupported { pid, what });
            }
            continue;
        }
        if !is_root && sid != pid && parent_sid.is_some_and(|ps| ps != sid) {
            let what = format!("session {sid}, which is neither its parent's nor its own (its leader has exited)");
            return Err(Error::Unsupported { pid, what });
        }
        if pgid != pid && !in_tree(pgid) && !alive(pgid) {
            let what = format!("process group {pgid} whose leader has exited");
            return Err(Error::Unsupported { pid, what });
        }
    }
    Ok(())
}

/// If a process of the tree died while frozen, say so; otherwise `err`.
fn explain(tree: &mut [Frozen], err: Error) -> Error {
    let mut err = err;
    for (f, _) in tree.iter_mut() {
        err = f.explain(err);
        if matches!(err, Error::Exited { .. }) {
            break;
        }
    }
    err
}

fn resume_all(tree: Vec<Frozen>) -> Result<()> {
    let mut first_error = None;
    for (p, _) in tree.into_iter().rev() {
        if let Err(e) = p.resume() {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Stages 2 to 4 on the frozen tree: inspect each process, take its files, write its pages.
fn dump_frozen(
    root: &ProcRoot,
    dir: &ImageDir,
    tree: &mut [Frozen],
    opts: &DumpOptions,
    progress: &mut dyn FnMut(Progress),
    frozen_at: Instant,
) -> Result<(Vec<Dumped>, Vec<FileEntry>, stasis_image::model::IpcImage)> {
    let mut ids = FileIds::new(opts.ghost_limit);
    ids.unix.ext = opts.ext_unix_sk;
    let mut files = Vec::new();
    let mut dumped = Vec::new();
    let mut layouts: Vec<(Pid, Vec<stasis_image::model::Vma>)> = Vec::new();
    let mut shm_owners: Vec<(u64, Pid)> = Vec::new();
    for (process, stat) in tree.iter_mut() {
        let pid = process.pid();
        let parent = layouts.iter().find(|(p, _)| p.0 == stat.ppid).map(|(p, v)| (*p, v.as_slice()));
        let (mut c, mut new_files) = collect(root, process, stat, opts, &mut ids, parent)?;
        if parent.is_some() {
            c.process.shares = sharing(pid, Pid(stat.ppid));
        }
        check_shared_anon(pid, &c.mm.vmas, parent, &mut shm_owners)?;
        layouts.push((pid, c.mm.vmas.clone()));
        files.append(&mut new_files);
        log::info!("pid {pid}: frozen and inspected at {:?}", frozen_at.elapsed());
        let (writer, page_bytes, checksums) = write_pages(dir, process, &c, progress)?;
        log::info!("pid {pid}: {page_bytes} bytes of pages written at {:?}", frozen_at.elapsed());
        dumped.push(Dumped { c, writer, page_bytes, checksums });
    }
    files::pipe::check_pairs(tree[0].0.pid().0, &files)?;
    files::unix::check_peers(&mut files, &mut ids)?;
    let pids: Vec<i32> = dumped.iter().map(|d| d.c.process.pid).collect();
    let attached: Vec<u64> = dumped
        .iter()
        .flat_map(|d| d.c.mm.vmas.iter())
        .filter(|v| mem::kind(v) == stasis_image::model::VmaKind::SysvShm)
        .map(|v| v.inode)
        .collect();
    let ipc = crate::ipc::dump(pids[0], &pids, &attached)?;
    fault::check("dump-fail-after-memory")?;
    Ok((dumped, files, ipc))
}

/// Shared anonymous memory is saved once, by the first process that maps it, and given to the others
/// by forking them from it: each other process must have it as an inherited copy of its parent's.
fn check_shared_anon(
    pid: Pid,
    vmas: &[stasis_image::model::Vma],
    parent: Option<(Pid, &[stasis_image::model::Vma])>,
    owners: &mut Vec<(u64, Pid)>,
) -> Result<()> {
    for v in vmas.iter().filter(|v| mem::kind(v) == stasis_image::model::VmaKind::SharedAnon) {
        if parent.is_some_and(|(_, pv)| mem::pages::inheritable(v, pv)) {
            continue;
        }
        if let Some((_, owner)) = owners.iter().find(|(ino, _)| *ino == v.inode) {
            let what = format!(
                "shared anonymous memory {:#x}-{:#x} (inode {}) that pid {owner} also maps, not inherited from its parent",
                v.start, v.end, v.inode
            );
            return Err(Error::Unsupported { pid: pid.0, what });
        }
        owners.push((v.inode, pid));
    }
    Ok(())
}

/// What a child shares with its parent (`kcmp` of its mm, fd table, fs info, signal handlers): made
/// by clone without CLONE_THREAD, restored by forking it with the same flags.
fn sharing(child: Pid, parent: Pid) -> u32 {
    SHARED_OBJECTS
        .iter()
        .filter(|(kind, _)| stasis_sys::fd::kcmp(child, parent, *kind, 0, 0).ok() == Some(0))
        .fold(0, |acc, (_, bit)| acc | bit)
}

fn report(pid: Pid, frozen: Duration, total: Duration, pages: u64, image_bytes: u64, left: bool) -> DumpReport {
    DumpReport { pid: pid.0, frozen, total, pages, image_bytes, left_running: left }
}

/// The root exists, is not us, and can be dumped (see [`check_process`]).
fn check_target(root: &ProcRoot, pid: Pid) -> Result<()> {
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
    check_process(root, pid)
}

/// A process shares our namespaces, is traced by nobody else, has no seccomp filter and no POSIX
/// timers.
fn check_process(root: &ProcRoot, pid: Pid) -> Result<()> {
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
    let timers = root.pid_path(pid.0, "timers");
    if std::fs::read_to_string(&timers).is_ok_and(|t| !t.trim().is_empty()) {
        return Err(Error::Unsupported { pid: pid.0, what: "POSIX timers (timer_create)".into() });
    }
    Ok(())
}

/// Inspect the frozen process: registers, signals, timers, limits, credentials, layout, files, and
/// each thread's own state.
fn collect(
    root: &ProcRoot,
    process: &mut FrozenProcess,
    stat: &proc::Stat,
    opts: &DumpOptions,
    ids: &mut FileIds,
    parent: Option<(Pid, &[stasis_image::model::Vma])>,
) -> Result<(Collected, Vec<FileEntry>)> {
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
    let status = proc::status(root, pid.0)?;
    core.sigactions = signals::dump_actions(inj, status.sig_cgt | status.sig_ign)?;
    core.altstack = Some(signals::dump_altstack(inj)?);
    core.itimers = timers::dump(inj)?;
    misc::dump(inj, root, pid, &status, &mut core)?;
    core.creds = Some(creds::dump(inj, &status)?);
    let mm = MmImage {
        fields: Some(mm::dump_fields(inj, root, pid)?),
        auxv: proc::auxv(root, pid.0)?,
        exe_path: proc::link(root, pid.0, "exe")?.to_string_lossy().into_owned(),
        vdso_checksum: mem::vdso_checksum(inj, vdso)?,
        vmas,
    };
    let (fds, mut files) = files::dump(root, pid, opts.shell_job, ids)?;
    files.append(&mut files::ghost_mappings(pid, &mm.vmas, ids)?);
    if fault::armed("dump-kill-target") {
        log::warn!("STASIS_FAULT: killing pid {pid} mid-dump");
        let _ = stasis_sys::process::kill(pid, libc::SIGKILL);
    }
    let (selected, inherited) = mem::pages::select(pid, &mm.vmas, parent)?;
    let process = ProcessEntry {
        pid: pid.0,
        ppid: stat.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        threads: std::iter::once(pid.0).chain(threads.iter().map(|t| t.pid)).collect(),
        stopped: frozen.was_stopped,
        ..Default::default()
    };
    Ok((Collected { process, core, threads, mm, selected, inherited, fds }, files))
}

/// Stage 4: the pages, zero-copy. Returns the page file, the bytes of page data in it, and their chunk
/// checksums.
fn write_pages(
    dir: &ImageDir,
    process: &mut FrozenProcess,
    c: &Collected,
    progress: &mut dyn FnMut(Progress),
) -> Result<(PageWriter, u64, Vec<u64>)> {
    let pid = process.pid();
    let writer = dir.create_pages(pid.0, CHUNK)?;
    let vdso = mem::vdso_range(&c.mm.vmas).expect("checked in collect");
    let inj = process.main().injector(vdso)?;
    let (bytes, checksums) = mem::pages::write(inj, pid, &c.selected, writer.file(), CHUNK, progress)?;
    Ok((writer, bytes, checksums))
}

/// Stage 5: checksum the page file, write every record file, then the inventory.
fn write_images(
    dir: &ImageDir,
    dumped: Vec<Dumped>,
    zombies: Vec<ProcessEntry>,
    files: Vec<FileEntry>,
    ipc: stasis_image::model::IpcImage,
    opts: &DumpOptions,
) -> Result<u64> {
    let mut bytes = 0;
    let mut processes = Vec::new();
    let root = &dumped[0].c;
    let inventory = Inventory {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: kernel_release(),
        xfeatures: regs::xstate_features(&root.core.xstate),
        root_pid: root.process.pid,
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        shell_job: opts.shell_job,
        ..Default::default()
    };
    for d in dumped {
        processes.push(d.c.process.clone());
        bytes += write_process(dir, d)?;
    }
    processes.extend(zombies);
    bytes += dir.write_records(ImageKind::Files, None, &[stasis_image::model::FileTable { files }])?.size;
    bytes += dir.write_records(ImageKind::PsTree, None, &[PsTree { processes }])?.size;
    bytes += dir.write_records(ImageKind::Ipc, None, &[ipc])?.size;
    dir.commit_inventory(inventory, opts.fsync)?;
    Ok(bytes)
}

/// The page file (finished with its checksums) and the record files of one process.
fn write_process(dir: &ImageDir, d: Dumped) -> Result<u64> {
    let c = &d.c;
    let pid = Some(c.process.pid);
    let (checksums, pages_digest) = d.writer.finish_with(d.page_bytes, d.checksums)?;
    let mut map = mem::pages::page_map(&c.selected, c.inherited.clone());
    map.chunk_size = CHUNK;
    map.chunk_checksums = checksums;
    let cores: Vec<TaskCore> = std::iter::once(c.core.clone()).chain(c.threads.iter().cloned()).collect();
    let digests = [
        pages_digest,
        dir.write_records(ImageKind::PageMap, pid, &[map])?,
        dir.write_records(ImageKind::Core, pid, &cores)?,
        dir.write_records(ImageKind::Mm, pid, std::slice::from_ref(&c.mm))?,
        dir.write_records(ImageKind::Fds, pid, std::slice::from_ref(&c.fds))?,
    ];
    Ok(digests.iter().map(|d| d.size).sum())
}

pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}
