//! Dump, stage by stage: check the root, freeze the tree below it (every process, every thread),
//! inspect each process, take the files, run the checks of the whole tree, write each memory, write
//! the images and the inventory (last), then resume or kill the tree. Every refusal comes before
//! the first page is written. Any error before the inventory is written resumes every process
//! exactly as it was (see [`crate::task::Frozen`]) and removes the files the dump made (see
//! [`ImageDir::discard`]).
//!
//! With `--prev-images-dir`, the dump is the last round of an incremental dump: the pages not
//! written since the round before are left in its image (see [`predump`] and
//! [`crate::mem::track`]).

pub mod predump;

use crate::error::{Error, Result};
use crate::files::FileIds;
use crate::mem::sink::{LocalFiles, PageServerSink, PageSink};
use crate::notify::Point;
use crate::ns::{self, Ours};
use crate::pageserver::Connection;
use crate::proc::{self, ProcRoot};
use crate::task::FrozenProcess;
use crate::tree::freeze::{end_all, explain, freeze_tree, let_go, Member, Pool};
use crate::{cgroups, creds, fault, files, mem, misc, mm, regs, seccomp, session, signals, threads, timers};
use crate::{DumpOptions, DumpReport, Progress};
use stasis_image::model::{
    CgroupSet, FileEntry, Inventory, MmImage, Namespace, NetworkLock, PageRun, ProcessEntry, PsTree, TaskCore, Vma,
};
use stasis_image::{ImageDir, ImageKind, PageWriter};
use stasis_sys::inject::Calls;
use stasis_sys::Pid;
use std::time::Instant;

/// Chunk size of the page-file checksums.
const CHUNK: u64 = 4 << 20;

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
    /// Pages not written since the parent image: left there.
    in_parent: Vec<stasis_image::model::PageRun>,
    /// Ranges whose writes are tracked for the next round (`-R --track-mem`).
    tracked: Vec<(u64, u64)>,
    /// Where the injector found its `syscall` instruction (see `mem::gadget`).
    code: (u64, u64),
    fds: stasis_image::model::FdTable,
}

/// One process's collected state and its page file, written but not yet finished.
struct Dumped {
    c: Collected,
    writer: PageWriter,
    page_bytes: u64,
    checksums: Vec<u64>,
}

/// What one dump counts: its start, its injected calls and its image writes (see [`fault`]).
struct Run {
    start: Instant,
    calls: Calls,
    writes: fault::Writes,
}

pub fn dump(opts: &DumpOptions, progress: &mut dyn FnMut(Progress)) -> Result<DumpReport> {
    let start = Instant::now();
    let root = ProcRoot::system();
    let pid = Pid(opts.pid);
    let ours = Ours::read(&root);
    check_target(&root, pid, &ours)?;
    // A mount stasis does not make again is refused while the tree runs untouched.
    crate::mnt::precheck(pid.0, opts.mount_rules())?;
    opts.notify.at(Point::PreDump, pid.0)?;
    if opts.compress && opts.page_server.is_some() {
        return Err(Error::Unsupported { pid, what: "--compress with --page-server (page files are sent raw)".into() });
    }
    // Before anything is made or frozen: a page server that cannot be reached fails the dump here.
    let sink: Box<dyn PageSink> = match &opts.page_server {
        None => Box::new(LocalFiles),
        Some(crate::PageServerAddr::Tcp(address, port)) => {
            Box::new(PageServerSink::new(Connection::connect(address, *port)?))
        }
        Some(crate::PageServerAddr::Socket(fd)) => Box::new(PageServerSink::new(Connection::over(fd)?)),
    };
    // Its message queues and SysV objects are read from inside (see `ns`).
    let _in_ns = ns::enter_root_ns(&root, pid.0, &ours)?;
    let dir = ImageDir::create(&opts.dir)?;
    // `--prev-images-dir` is relative to the image directory, which exists from here on.
    let mut prev = match predump::Prev::open(opts) {
        Ok(p) => p,
        Err(e) => {
            let _ = dir.discard();
            return Err(e);
        }
    };
    // A plain dump of a tree an earlier pre-dump still tracks: a full dump that ends the tracking.
    let adopted = match opts.prev_images_dir {
        Some(_) => predump::Adopted::default(),
        None => match predump::Adopted::take(&root, pid) {
            Ok(a) => a,
            Err(e) => {
                let _ = dir.discard();
                return Err(e);
            }
        },
    };
    // An estimate: the tree is known only once frozen.
    let threads = Pool::threads_for(proc::children(&root, pid.0)?.len() + 1);
    let result = std::thread::scope(|scope| {
        let pool = Pool::start(scope, threads);
        let run = Run { start, calls: fault::calls("dump-call"), writes: fault::Writes::new() };
        dump_with(&pool, &root, (&dir, &*sink), &ours, opts, progress, &run, (prev.as_mut(), &adopted))
    });
    match result {
        Ok(_) => adopted.finish(),
        Err(_) => adopted.give_back(),
    }
    if result.is_err() {
        if let Some(p) = &prev {
            p.unlink(&opts.dir);
        }
        // A holder started before the failure (`-R --track-mem`) gives its fds up and exits.
        if opts.dir.join(crate::holder::SOCKET).exists() {
            drop(crate::holder::take(&opts.dir));
        }
        // Nothing of a failed dump stays; a no-op once the inventory is committed.
        if let Err(e) = dir.discard() {
            log::warn!("the failed dump's files in {} could not all be removed: {e}", opts.dir.display());
        }
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn dump_with<'env>(
    pool: &Pool<'env>,
    root: &'env ProcRoot,
    (dir, sink): (&'env ImageDir, &'env dyn PageSink),
    ours: &'env Ours,
    opts: &DumpOptions,
    progress: &mut dyn FnMut(Progress),
    run: &Run,
    (mut prev, adopted): (Option<&mut predump::Prev>, &predump::Adopted),
) -> Result<DumpReport> {
    let pid = Pid(opts.pid);
    let frozen_at = Instant::now();
    let (tree, zombies) = match freeze_with_cgroup(pool, root, (pid, &run.calls), ours, opts, progress) {
        Ok(t) => t,
        Err((tree, e)) => return Err(explain(pool, &tree, e, progress)),
    };
    if let Err(e) = opts.notify.at(Point::NetworkLock, pid.0) {
        return Err(explain(pool, &tree, e, progress));
    }
    let ids: Vec<session::Ids> = tree
        .iter()
        .map(|m| session::Ids { pid: m.pid.0, ppid: m.stat.ppid, pgid: m.stat.pgrp, sid: m.stat.session })
        .collect();
    let helpers = session::check(root, &ids, &zombies)?;
    let zombie_pids: Vec<i32> = zombies.iter().map(|z| z.pid).collect();
    let mut kept = Vec::new();
    let needs_helpers = !helpers.groups.is_empty() || !helpers.sessions.is_empty();
    let members = (&tree[..], &zombie_pids[..], ours, needs_helpers);
    let frozen = (frozen_at, (prev.as_deref_mut(), adopted), &mut kept);
    let (mut dumped, files, ipc, held, namespaces) =
        match dump_frozen(pool, root, (dir, sink), members, opts, progress, frozen) {
            Ok(done) => done,
            Err(e) => return Err(explain(pool, &tree, e, progress)),
        };
    let pids: Vec<i32> = dumped.iter().map(|d| d.c.process.pid).collect();
    let mounts = match crate::mnt::dump(&pids, opts.mount_rules()) {
        Ok(m) => m,
        Err(e) => return Err(explain(pool, &tree, e, progress)),
    };
    let mut zombies = zombies;
    for z in &mut zombies {
        if let Some(parent) = dumped.iter().find(|d| d.c.process.pid == z.ppid) {
            ns::dump_zombie(root, z, &parent.c.process);
        }
    }
    let tables: Vec<_> = dumped.iter().map(|d| (d.c.process.pid, &d.c.fds)).collect();
    let external = files::external::list(&files, &tables);
    for e in &external {
        log::info!("pid {} fd {}: {} (restore may replace it with --inherit-fd fd[N]:{})", e.pid, e.fd, e.what, e.key);
    }
    if let Err(e) = opts.notify.at(Point::PostDump, pid.0) {
        return Err(explain(pool, &tree, e, progress));
    }
    // The pages are written: the tracking of an earlier pre-dump ends while the tree is frozen.
    if let Err(e) = tree.iter().try_for_each(|m| adopted.end(root, m.pid)) {
        return Err(explain(pool, &tree, e, progress));
    }
    // A request in flight that completed while the tree was frozen moved its ring's tail.
    let aio = dumped.iter().try_for_each(|d| mem::aio::recheck(Pid(d.c.process.pid), &d.c.mm.aio_rings));
    if let Err(e) = aio {
        // Unlocked and out of repair mode before the tasks run again.
        drop(held);
        return Err(explain(pool, &tree, e, progress));
    }
    if let Err(e) = held.recheck(pid.0) {
        // Unlocked and out of repair mode before the tasks run again.
        drop(held);
        return Err(explain(pool, &tree, e, progress));
    }
    let mut frozen_for = None;
    let lock = held.table().map(|(method, table)| NetworkLock { method: method.into(), table: table.into() });
    let mut held = Some(held);
    if opts.keeps_tree() {
        // Unlocked and out of repair mode before the tasks run again: the connections go on.
        drop(held.take());
        let_go(pool, root, &tree, opts.leave_stopped, progress)?;
        frozen_for = Some(frozen_at.elapsed());
        opts.notify.at(Point::NetworkUnlock, pid.0)?;
    }
    let pages: u64 = dumped.iter().map(|d| d.page_bytes).sum::<u64>() / stasis_image::PAGE_SIZE;
    let pages_in_parent = dumped.iter().flat_map(|d| &d.c.in_parent).map(|r| r.nr_pages).sum();
    let root_ns = ns::NsSet::of_root(&dumped[0].c.process);
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut v1: Vec<_> = dumped
        .iter_mut()
        .flat_map(|d| std::iter::once(&mut d.c.core).chain(&mut d.c.threads))
        .map(|t| &mut t.cgroups_v1)
        .collect();
    cgroups::v1::drop_inherited(&mut v1, &ours);
    let cgroups = dump_cgroups(&dumped, &namespaces, opts);
    let tree_img = (zombies, helpers, namespaces, (cgroups, mounts));
    let lock = lock.filter(|_| !opts.keeps_tree());
    let tracked_processes = prev.as_ref().map_or(0, |p| p.used);
    let mut holder_pid = 0;
    let tracking = (prev.as_deref(), kept.as_slice(), &mut holder_pid);
    let image_bytes = write_images((dir, sink), dumped, tree_img, files, ipc, lock, (opts, &run.writes, tracking))?;
    log::info!("images written at {:?}", frozen_at.elapsed());
    if let Some(handoff) = opts.handoff.as_ref().filter(|_| !opts.keeps_tree()) {
        if let Err(e) = (handoff.0)(&opts.dir, frozen_at) {
            // Unlocked and out of repair mode before the tasks run again, as with --leave-running.
            drop(held.take());
            return Err(explain(pool, &tree, e, progress));
        }
        log::info!("image handed off at {:?}", frozen_at.elapsed());
    }
    if !opts.keeps_tree() {
        end_all(pool, &tree, FrozenProcess::kill, progress)?;
        frozen_for = Some(frozen_at.elapsed());
        log::info!("every process killed at {:?}", frozen_at.elapsed());
        // The sockets were closed in repair mode (nothing sent); the lock stays until the restore.
        if let Some(table) = held.take().and_then(|h| h.keep()) {
            log::info!("network lock {table} left in place for the restore (nft delete table inet {table})");
        }
    }
    let frozen_for = frozen_for.expect("resumed or killed");
    let (injected_calls, image_writes) = (run.calls.count(), run.writes.count());
    log::info!("{injected_calls} calls injected, {image_writes} image files written");
    Ok(DumpReport {
        pid: pid.0,
        frozen: frozen_for,
        total: run.start.elapsed(),
        pages,
        pages_in_parent,
        tracked_processes,
        holder_pid,
        image_bytes,
        pages_deduped: 0,
        left_running: opts.keeps_tree(),
        injected_calls,
        image_writes,
        external,
        namespaces: root_ns,
    })
}

/// Stage 1, with `--freeze-cgroup`: the cgroup frozen first, so that nothing forks away; the tree
/// seized; every process in the cgroup checked to be in the tree; the cgroup thawed (here, or when
/// the dump fails), and only then the tasks waited for (a task of a frozen cgroup v1 freezer stops
/// for ptrace only once thawed; one of v2 would stop frozen, but needs the thaw for our calls).
#[allow(clippy::type_complexity)]
fn freeze_with_cgroup<'env>(
    pool: &Pool<'env>,
    root: &'env ProcRoot,
    (pid, calls): (Pid, &Calls),
    ours: &'env Ours,
    opts: &DumpOptions,
    progress: &mut dyn FnMut(Progress),
) -> std::result::Result<(Vec<Member>, Vec<ProcessEntry>), (Vec<Member>, Error)> {
    let Some(dir) = &opts.freeze_cgroup else {
        return freeze_tree(pool, root, (pid, calls), (ours, check_process), None, progress);
    };
    let mut frozen = Some(cgroups::freezer::Frozen::freeze(dir, pid).map_err(|e| (Vec::new(), e))?);
    let mut thaw = |tree: &[Member], zombies: &[ProcessEntry]| -> Result<()> {
        let frozen = frozen.take().expect("the seized tree is thawed once");
        let all = frozen.processes()?;
        let outside =
            all.into_iter().find(|p| !tree.iter().any(|m| m.pid.0 == *p) && !zombies.iter().any(|z| z.pid == *p));
        if let Some(p) = outside {
            let what = format!("pid {p}, in the frozen cgroup {}, is not in the tree of the dump", dir.display());
            return Err(Error::Unsupported { pid, what });
        }
        frozen.thaw()
    };
    freeze_tree(pool, root, (pid, calls), (ours, check_process), Some(&mut thaw), progress)
}

/// The tree's cgroups and their settings, unless `--manage-cgroups=ignore` (see [`cgroups`]).
/// The tree's cgroups: from the deepest one holding every task (and the root of the tree's cgroup
/// namespace, if it has one) down.
fn dump_cgroups(dumped: &[Dumped], namespaces: &[Namespace], opts: &DumpOptions) -> Option<CgroupSet> {
    if opts.manage_cgroups == cgroups::Mode::Ignore {
        return None;
    }
    let mut tasks: Vec<&str> =
        dumped.iter().flat_map(|d| std::iter::once(&d.c.core).chain(&d.c.threads)).map(|t| t.cgroup.as_str()).collect();
    tasks.extend(namespaces.iter().filter(|n| n.kind == "cgroup").map(|n| n.cgroup_root.as_str()));
    let mut v1: Vec<&[_]> = dumped
        .iter()
        .flat_map(|d| std::iter::once(&d.c.core).chain(&d.c.threads))
        .map(|t| t.cgroups_v1.as_slice())
        .collect();
    v1.extend(namespaces.iter().filter(|n| n.kind == "cgroup").map(|n| n.cgroup_roots_v1.as_slice()));
    let v1 = cgroups::v1::dump_sets(&v1);
    let set = match cgroups::mount() {
        Some(mount) => cgroups::dump_set(&mount, &tasks),
        None => {
            log::warn!("no cgroup2 hierarchy mounted: the tree's cgroup v2 settings are not saved");
            None
        }
    };
    match set {
        Some(set) => Some(CgroupSet { v1, ..set }),
        None if v1.is_empty() => None,
        None => Some(CgroupSet { v1, ..Default::default() }),
    }
}

/// Stages 2 to 4 on the frozen tree: inspect each process (on its tracer thread, all processes at
/// once), take its files (here, in tree order, as file ids are given), run every check that can
/// refuse the dump, and only then write the pages (on the tracer threads again), so that a refused
/// dump has written no page.
#[allow(clippy::type_complexity)]
fn dump_frozen<'env>(
    pool: &Pool<'env>,
    root: &'env ProcRoot,
    (dir, sink): (&'env ImageDir, &'env dyn PageSink),
    (tree, zombies, ours, needs_helpers): (&[Member], &[i32], &Ours, bool),
    opts: &DumpOptions,
    progress: &mut dyn FnMut(Progress),
    (frozen_at, (mut prev, adopted), kept): (Instant, Tracked, &mut Vec<mem::track::Tracker>),
) -> Result<(Vec<Dumped>, Vec<FileEntry>, stasis_image::model::IpcImage, files::Held, Vec<Namespace>)> {
    if let Some(p) = prev.as_deref_mut() {
        p.drop_self_tracking(root, tree.iter().map(|m| m.pid))?;
    }
    let tracked = |pid: Pid| prev.as_deref().is_some_and(|p| p.tracks(pid)) || adopted.tracks(pid);
    // Every layout before any injector maps its scratch area, which must not be saved.
    let layouts: Vec<Vec<Vma>> =
        tree.iter().map(|m| mem::dump_vmas_with(root, m.pid, tracked(m.pid))).collect::<Result<_>>()?;
    let parent_of = |m: &Member| tree.iter().find(|p| p.pid.0 == m.stat.ppid);
    let pending: Vec<_> = tree
        .iter()
        .map(|m| {
            let (idx, stat, vmas) = (m.idx, m.stat.clone(), layouts[m.idx].clone());
            let parent = parent_of(m).map(|p| (p.pid, layouts[p.idx].clone()));
            pool.run(idx, move |owned, _| {
                let f = owned.get_mut(&idx).expect("frozen by this thread");
                collect(root, f, &stat, vmas, parent.as_ref().map(|(p, v)| (*p, v.as_slice())))
            })
        })
        .collect();
    let mut ids = FileIds::new(opts, tree[0].pid);
    let mut files = Vec::new();
    let mut collected = Vec::new();
    let mut shm_owners: Vec<(u64, Pid)> = Vec::new();
    for (m, inspected) in tree.iter().zip(pending) {
        let mut c = pool.wait(inspected, progress)?;
        let pid = m.pid;
        log::info!("pid {pid}: inspected at {:?}", frozen_at.elapsed());
        let parent = parent_of(m).map(|p| (p.pid, layouts[p.idx].as_slice()));
        if parent.is_some() {
            c.process.shares = crate::tree::sharing(pid, Pid(m.stat.ppid));
        }
        ns::dump_process(root, &mut c.process, ours)?;
        if opts.manage_cgroups == cgroups::Mode::Ignore {
            std::iter::once(&mut c.core).chain(&mut c.threads).for_each(|t| {
                t.cgroup.clear();
                t.cgroups_v1.clear();
            });
        }
        check_shared_anon(pid, &c.mm.vmas, parent, &mut shm_owners)?;
        let parent_mm = collected.iter().find(|p: &&Collected| p.process.pid == m.stat.ppid).map(|p| &p.mm);
        mem::aio::check_inherited(pid, &c.mm, parent_mm)?;
        if fault::armed("dump-kill-target") {
            log::warn!("STASIS_FAULT: killing pid {pid} mid-dump");
            let _ = stasis_sys::process::kill(pid, libc::SIGKILL);
        }
        let (fds, mut new_files) = files::dump(root, pid, opts.shell_job, &mut ids)?;
        new_files.append(&mut files::ghost_mappings(pid, &c.mm.vmas, &mut ids)?);
        c.fds = fds;
        files.append(&mut new_files);
        collected.push(c);
    }
    finish_locks(&mut ids, &mut collected)?;
    let external =
        ns::External { veths: opts.ext_veths.clone(), netns: opts.ext_netns.clone(), empty_net: opts.empty_netns };
    let namespaces = check_namespaces((root, ours), &collected, &files, (needs_helpers, &external))?;
    let ipc = check_tree(pool, tree, zombies, &collected, &mut files, &mut ids, opts, progress)?;
    fault::check("dump-fail-before-pages")?;
    let keep = opts.keeps_tree() && opts.track_mem;
    for (m, c) in tree.iter().zip(&mut collected) {
        if keep {
            // Armed again below with a userfaultfd of this dump's.
            adopted.end(root, m.pid)?;
        }
        track_pages(pool, root, m, c, prev.as_deref_mut(), keep.then_some(&mut *kept), progress)?;
    }
    let dumped = write_all_pages(pool, (dir, sink, opts.compress), tree, collected, progress)?;
    log::info!("pages written at {:?}", frozen_at.elapsed());
    fault::check("dump-fail-after-memory")?;
    Ok((dumped, files, ipc, ids.take_held(), namespaces))
}

/// The round before (`--prev-images-dir`) and the tracking a plain dump took over.
type Tracked<'a, 'b> = (Option<&'a mut predump::Prev>, &'b predump::Adopted);

/// How the tree's processes came into their namespaces, each namespace of its own described (see
/// [`ns`]); the IPC namespaces other than the root's hold nothing stasis would lose.
fn check_namespaces(
    (root, ours): (&ProcRoot, &Ours),
    collected: &[Collected],
    files: &[FileEntry],
    (needs_helpers, external): (bool, &ns::External),
) -> Result<Vec<Namespace>> {
    let procs: Vec<ProcessEntry> = collected.iter().map(|c| c.process.clone()).collect();
    let threaded: Vec<bool> = collected.iter().map(|c| !c.threads.is_empty()).collect();
    let facts = crate::userns::TreeFacts { procs: &procs, threaded: &threaded, helpers: needs_helpers, ours };
    let user = crate::userns::dump(root, &facts)?;
    let mut namespaces = ns::dump_tree(&procs, needs_helpers, external)?;
    namespaces.extend(user);
    let mqueues: Vec<u32> = files
        .iter()
        .filter(|f| matches!(f.kind, Some(stasis_image::model::FileKind::Mqueue(_))))
        .map(|f| f.id)
        .collect();
    let holders: Vec<i32> = collected
        .iter()
        .filter(|c| c.fds.fds.iter().any(|fd| mqueues.contains(&fd.file_id)))
        .map(|c| c.process.pid)
        .collect();
    ns::check_other_ipc(&procs, &holders)?;
    Ok(namespaces)
}

/// Leave in the parent image the pages of `c` not written since it; with `keep` (`-R
/// --track-mem`), track the process's writes on from now, for the next round.
fn track_pages(
    pool: &Pool,
    root: &ProcRoot,
    m: &Member,
    c: &mut Collected,
    prev: Option<&mut predump::Prev>,
    keep: Option<&mut Vec<mem::track::Tracker>>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let pid = m.pid;
    let prev = prev.filter(|p| p.tracks(pid));
    let armed = match (prev, keep.is_some()) {
        (Some(p), true) => {
            let (saved, in_parent, armed) = predump::go_on(p, root, pid, &c.mm.vmas, &c.selected)?;
            (c.selected, c.in_parent) = (saved, in_parent);
            Some(armed)
        }
        (Some(p), false) => {
            (c.selected, c.in_parent) = p.split(root, pid, &c.selected, false)?;
            None
        }
        (None, true) => predump::arm(pool, root, m, &c.mm.vmas, progress)?,
        (None, false) => None,
    };
    if let (Some((t, tracked)), Some(kept)) = (armed, keep) {
        c.tracked = tracked;
        kept.push(t);
    }
    Ok(())
}

/// The checks that need the whole tree's files (pipe pairs, unix peers, epoll targets, terminals,
/// pidfd targets, which may be the tree's `zombies`), that every process is still alive, and the
/// SysV IPC objects of the tree.
#[allow(clippy::too_many_arguments)]
fn check_tree(
    pool: &Pool,
    tree: &[Member],
    zombies: &[i32],
    collected: &[Collected],
    files: &mut [FileEntry],
    ids: &mut FileIds,
    opts: &DumpOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<stasis_image::model::IpcImage> {
    for c in collected {
        let threads: Vec<&stasis_image::model::TaskCore> = std::iter::once(&c.core).chain(&c.threads).collect();
        mem::uprobes::check_dump(Pid(c.process.pid), &c.mm.vmas, &threads, opts.allow_uprobes)?;
    }
    let procs: Vec<&ProcessEntry> = collected.iter().map(|c| &c.process).collect();
    let tasks: Vec<i32> =
        collected.iter().flat_map(|c| c.process.threads.iter().copied()).chain(zombies.iter().copied()).collect();
    let tables: Vec<_> = collected.iter().map(|c| (c.process.pid, &c.fds)).collect();
    let shell_job = opts.shell_job;
    files::finish_tree(&mut files::kinds::DumpTree {
        files,
        ids,
        procs: &procs,
        tables: &tables,
        tasks: &tasks,
        shell_job,
    })?;
    let pids: Vec<i32> = procs.iter().map(|p| p.pid).collect();
    for m in tree {
        let idx = m.idx;
        let alive = pool.run(idx, move |owned, _| owned.get_mut(&idx).map_or(Ok(()), |f| f.main().check_alive()));
        pool.wait(alive, progress)?;
    }
    let attached: Vec<u64> = collected
        .iter()
        .flat_map(|c| c.mm.vmas.iter())
        .filter(|v| mem::kind(v) == stasis_image::model::VmaKind::SysvShm)
        .map(|v| v.inode)
        .collect();
    crate::ipc::dump(pids[0], &pids, &attached, collected[0].process.ipc_ns != 0)
}

/// The file locks of the tree: each description's given to a holder, none held from outside.
fn finish_locks(ids: &mut FileIds, collected: &mut [Collected]) -> Result<()> {
    let pids: Vec<i32> = collected.iter().map(|c| c.process.pid).collect();
    let mut tables: Vec<(Pid, &mut stasis_image::model::FdTable)> =
        collected.iter_mut().map(|c| (Pid(c.process.pid), &mut c.fds)).collect();
    files::finish_locks(ids, &mut tables, &pids)
}

/// Stage 4: every process's pages, each on its tracer thread, all at once.
fn write_all_pages<'env>(
    pool: &Pool<'env>,
    (dir, sink, compress): (&'env ImageDir, &'env dyn PageSink, bool),
    tree: &[Member],
    collected: Vec<Collected>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Dumped>> {
    let pending: Vec<_> = tree
        .iter()
        .zip(collected)
        .map(|(m, c)| {
            let idx = m.idx;
            pool.run(idx, move |owned, progress| {
                let f = owned.get_mut(&idx).expect("frozen by this thread");
                let (writer, page_bytes, checksums) = write_pages((dir, sink, compress), f, &c, progress)?;
                Ok(Dumped { c, writer, page_bytes, checksums })
            })
        })
        .collect();
    let mut dumped = Vec::new();
    let mut first_error = None;
    for written in pending {
        match pool.wait(written, progress) {
            Ok(d) => dumped.push(d),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(dumped), Err)
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
            return Err(Error::Unsupported { pid, what });
        }
        owners.push((v.inode, pid));
    }
    Ok(())
}

/// The root exists, is not us, and can be dumped (see [`check_process`]).
fn check_target(root: &ProcRoot, pid: Pid, ours: &Ours) -> Result<()> {
    if pid == Pid::this() || pid.0 <= 0 {
        return Err(Error::Unsupported { pid, what: "checkpointing stasis itself".into() });
    }
    let stat = proc::stat(root, pid.0).map_err(|e| match e.is_not_found() {
        true => Error::NoSuchProcess { pid },
        false => e.into(),
    })?;
    if stat.state == 'Z' {
        return Err(Error::Unsupported { pid, what: "a zombie as the root of a dump".into() });
    }
    check_process(root, pid, ours)
}

/// A process is traced by nobody else, and has no time namespace for its children only (its other
/// namespaces are checked with the whole tree, see [`ns::dump_tree`] and [`crate::userns`]).
fn check_process(root: &ProcRoot, pid: Pid, _ours: &Ours) -> Result<()> {
    let status = proc::status(root, pid.0)?;
    if status.tracer_pid != 0 {
        return Err(Error::Unsupported { pid, what: format!("a process traced by pid {}", status.tracer_pid) });
    }
    check_time_for_children(root, pid)
}

/// A process that made a time namespace for its children (`unshare(CLONE_NEWTIME)`) and forked
/// none into it yet is refused: the namespace cannot be made again, so the children it forks after
/// a restore would run in its own time namespace, with other clock offsets.
fn check_time_for_children(root: &ProcRoot, pid: Pid) -> Result<()> {
    let own = proc::ns_inode(root, pid.0, "time").ok();
    let children = proc::ns_inode(root, pid.0, "time_for_children").ok();
    if own == children {
        return Ok(());
    }
    let what = format!(
        "a time namespace for its children (time_for_children:[{}], made by unshare(CLONE_NEWTIME)) other than its own",
        children.unwrap_or_default()
    );
    Err(Error::Unsupported { pid, what })
}

/// Inspect the frozen process: registers, signals, timers, limits, credentials, layout (`vmas`, read
/// before any scratch area was mapped), and each thread's own state. Its files are taken after.
fn collect(
    root: &ProcRoot,
    process: &mut FrozenProcess,
    stat: &proc::Stat,
    vmas: Vec<Vma>,
    parent: Option<(Pid, &[Vma])>,
) -> Result<Collected> {
    let pid = process.pid();
    // The vDSO, or an executable area of a process that unmapped it.
    let code = mem::gadget::code_area(pid, &vmas)?;
    // The other threads' injected calls use the main thread's scratch area.
    let scratch = process.main().injector(code)?.scratch();
    let mut threads = Vec::new();
    for t in process.threads.iter_mut().skip(1) {
        let mut core = threads::dump(root, t, code, scratch)?;
        core.nspid = ns::dump_thread(root, core.pid)?;
        threads.push(core);
    }
    let frozen = process.main();
    let mut core = TaskCore {
        pid: pid.0,
        regs: Some(regs::to_image(&frozen.regs)),
        xstate: frozen.xstate.clone(),
        sigmask: frozen.sigmask,
        pending: signals::dump_pending(pid, true)?,
        syscall_dispatch: frozen.syscall_dispatch(),
        ..Default::default()
    };
    let inj = frozen.injector(code)?;
    let status = proc::status(root, pid.0)?;
    core.sigactions = signals::dump_actions(inj, status.sig_cgt | status.sig_ign)?;
    core.altstack = Some(signals::dump_altstack(inj)?);
    core.itimers = timers::dump(inj)?;
    core.posix_timers = crate::posix_timers::dump(inj, root, pid)?;
    misc::dump(inj, root, pid, &status, &mut core)?;
    core.creds = Some(creds::dump(inj, &status)?);
    core.seccomp_mode = status.seccomp;
    core.seccomp_filters = seccomp::dump(pid, status.seccomp)?;
    seccomp::plan(&core, &threads)?;
    misc::check_threads_loginuid(root, &core, &threads)?;
    let mut mm = MmImage {
        fields: Some(mm::dump_fields(inj, root, pid)?),
        auxv: proc::auxv(root, pid.0)?,
        exe_path: proc::link(root, pid.0, "exe")?.to_string_lossy().into_owned(),
        vdso_checksum: mem::vdso_range(&vmas).map_or(Ok(0), |vdso| mem::vdso_checksum(inj, vdso))?,
        vmas,
        ..Default::default()
    };
    mem::mm_wide::dump(inj, root, pid, &mut mm)?;
    mm.aio_rings = mem::aio::dump(inj, pid, &mm.vmas)?;
    let mem::pages::Selection { saved: selected, inherited, guards } = mem::pages::select(pid, &mm.vmas, parent)?;
    mm.guards = guards;
    let process = ProcessEntry {
        pid: pid.0,
        ppid: stat.ppid,
        pgid: stat.pgrp,
        sid: stat.session,
        threads: std::iter::once(pid.0).chain(threads.iter().map(|t| t.pid)).collect(),
        stopped: frozen.was_stopped,
        stop_signal: frozen.stop_signal,
        ctty: files::tty::ctty_of(stat).0,
        tty_fg_pgrp: files::tty::ctty_of(stat).1,
        ..Default::default()
    };
    Ok(Collected {
        process,
        core,
        threads,
        mm,
        selected,
        inherited,
        in_parent: Vec::new(),
        tracked: Vec::new(),
        code,
        fds: Default::default(),
    })
}

/// Stage 4: the pages, zero-copy. Returns the page file, the bytes of page data in it, and their chunk
/// checksums.
fn write_pages(
    (dir, sink, compress): (&ImageDir, &dyn PageSink, bool),
    process: &mut FrozenProcess,
    c: &Collected,
    progress: &mut dyn FnMut(Progress),
) -> Result<(PageWriter, u64, Vec<u64>)> {
    let pid = process.pid();
    // Compressed, the pages are staged in a memfd first, compressed into the page file once
    // the tree no longer waits (see `write_process`).
    let writer = if compress { mem::pages::stage(dir, pid, CHUNK)? } else { sink.create(dir, pid, CHUNK)? };
    let inj = process.main().injector(c.code)?;
    let (bytes, checksums) = mem::pages::write(inj, pid, &c.selected, writer.file(), CHUNK, progress)?;
    Ok((writer, bytes, checksums))
}

/// The round before, the write tracking kept for the next one, and where the holder's pid goes.
type Tracking<'a> = (Option<&'a predump::Prev>, &'a [mem::track::Tracker], &'a mut u32);

/// What `pstree.img` holds besides the dumped processes.
type TreeImage =
    (Vec<ProcessEntry>, session::Helpers, Vec<Namespace>, (Option<CgroupSet>, Option<stasis_image::model::MountNs>));

/// Stage 5: checksum the page file, write every record file, then the inventory.
fn write_images(
    (dir, sink): (&ImageDir, &dyn PageSink),
    dumped: Vec<Dumped>,
    (zombies, helpers, namespaces, (cgroups, mounts)): TreeImage,
    files: Vec<FileEntry>,
    ipc: stasis_image::model::IpcImage,
    network_lock: Option<NetworkLock>,
    (opts, writes, (prev, kept, holder_pid)): (&DumpOptions, &fault::Writes, Tracking),
) -> Result<u64> {
    let mut bytes = 0;
    let mut processes = Vec::new();
    let root = &dumped[0].c;
    let inventory = Inventory {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: kernel_release(),
        xfeatures: regs::xstate_features(&root.core.xstate),
        cpu_flags: crate::cpu::flags(),
        root_pid: root.process.pid,
        created_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        shell_job: opts.shell_job,
        network_lock,
        parent_created_unix_ms: prev.map_or(0, |p| p.created()),
        ..Default::default()
    };
    processes.extend(dumped.iter().map(|d| d.c.process.clone()));
    bytes += write_processes((dir, sink, opts.compress), dumped, writes)?;
    processes.extend(zombies);
    writes.next("files.img")?;
    bytes += dir.write_records(ImageKind::Files, None, &[stasis_image::model::FileTable { files }])?.size;
    writes.next("pstree.img")?;
    bytes += dir
        .write_records(
            ImageKind::PsTree,
            None,
            &[PsTree {
                processes,
                group_helpers: helpers.groups,
                session_helpers: helpers.sessions,
                namespaces,
                cgroups,
                mounts,
            }],
        )?
        .size;
    writes.next("ipc.img")?;
    bytes += dir.write_records(ImageKind::Ipc, None, &[ipc])?.size;
    if let Some(p) = prev {
        p.link_into(dir.path())?;
    }
    if opts.keeps_tree() && opts.track_mem {
        *holder_pid = crate::holder::spawn(dir.path(), kept)?;
    }
    sink.commit()?;
    writes.next("inventory.img")?;
    dir.commit_inventory(inventory, opts.fsync)?;
    Ok(bytes)
}

/// The files of every process, spread over one thread per CPU (they need no ptrace).
fn write_processes(
    (dir, sink, compress): (&ImageDir, &dyn PageSink, bool),
    dumped: Vec<Dumped>,
    writes: &fault::Writes,
) -> Result<u64> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = crate::tracers::shares(dumped)
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    share.into_iter().map(|d| write_process((dir, sink, compress), d, writes)).sum::<Result<u64>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).sum()
    })
}

/// The page file (finished with its checksums) and the record files of one process.
fn write_process(
    (dir, sink, compress): (&ImageDir, &dyn PageSink, bool),
    d: Dumped,
    writes: &fault::Writes,
) -> Result<u64> {
    let c = &d.c;
    let pid = Some(c.process.pid);
    let file = |kind: ImageKind| -> Result<()> { writes.next(&kind.file_name(pid)) };
    file(ImageKind::Pages)?;
    let staged = d.writer.file().try_clone().map_err(crate::error::Error::io("page file"))?;
    let (checksums, mut pages_digest) = d.writer.finish_with(d.page_bytes, d.checksums)?;
    let mut map = mem::pages::page_map(&c.selected, c.inherited.clone());
    if compress {
        (map.frame_sizes, pages_digest) =
            stasis_image::compress::compress_pages(dir, c.process.pid, &staged, d.page_bytes, CHUNK, &checksums)?;
        map.compression = stasis_image::compress::COMPRESSION_ZSTD;
    } else {
        sink.finished(Pid(c.process.pid), &staged, pages_digest.size, CHUNK, &checksums)?;
    }
    map.in_parent = c.in_parent.clone();
    map.tracked =
        c.tracked.iter().map(|&(s, e)| PageRun { vaddr: s, nr_pages: (e - s) / stasis_image::PAGE_SIZE }).collect();
    map.chunk_size = CHUNK;
    map.chunk_checksums = checksums;
    let cores: Vec<TaskCore> = std::iter::once(c.core.clone()).chain(c.threads.iter().cloned()).collect();
    let mut digests = vec![pages_digest];
    file(ImageKind::PageMap)?;
    digests.push(dir.write_records(ImageKind::PageMap, pid, &[map])?);
    file(ImageKind::Core)?;
    digests.push(dir.write_records(ImageKind::Core, pid, &cores)?);
    file(ImageKind::Mm)?;
    digests.push(dir.write_records(ImageKind::Mm, pid, std::slice::from_ref(&c.mm))?);
    file(ImageKind::Fds)?;
    digests.push(dir.write_records(ImageKind::Fds, pid, std::slice::from_ref(&c.fds))?);
    Ok(digests.iter().map(|d| d.size).sum())
}

pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}
