//! Restore, stage by stage: read and check the image, open its files in the controller, create the
//! root with its PID, rebuild each process (memory, mm fields, fds, signals, timers, limits, threads,
//! children, credentials: see [`process`]) by injected calls, then set every task's registers and let
//! the tree go. Any error kills every task made so far: nothing is left behind, stopped or running.

mod process;

use crate::error::{Error, Result};
use crate::notify::Point;
use crate::proc::{self, ProcRoot};
use crate::tracers::Tracers;
use crate::{fault, files, mem, misc};
use crate::{Progress, RestoreOptions, RestoreReport};
use process::{Handoff, Out};
use stasis_image::model::{FdTable, FileTable, IpcImage, MmImage, Namespace, PageMap, ProcessEntry, PsTree, TaskCore};
use stasis_image::{ImageDir, ImageKind};
use stasis_sys::inject::Calls;
use stasis_sys::ptrace::{self, WaitStatus};
use stasis_sys::{process as sysproc, Pid};
use std::cell::RefCell;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Instant;

/// The image of one process, read and checked.
pub(crate) struct ProcImage {
    process: ProcessEntry,
    /// The main thread, with the process-wide state.
    core: TaskCore,
    /// The other threads.
    threads: Vec<TaskCore>,
    mm: MmImage,
    pagemap: PageMap,
    fds: FdTable,
}

/// The whole image: every process (the root first, parents before children) and the files.
pub(crate) struct Image {
    procs: Vec<ProcImage>,
    /// Zombies: made again by their parent, then made to exit as they did.
    zombies: Vec<ProcessEntry>,
    files: FileTable,
    ipc: IpcImage,
    /// Who creates whom (with the helpers of groups and sessions whose leader had exited), in which order (see [`crate::tree::plan`]).
    plan: crate::tree::Plan,
    /// The namespaces of the tree's own (see [`crate::ns`]).
    namespaces: Vec<Namespace>,
    /// The tree's cgroups (see [`crate::cgroups`]).
    cgroups: Option<stasis_image::model::CgroupSet>,
    /// The tree's own mount namespace (see [`crate::mnt`]).
    mounts: Option<stasis_image::model::MountNs>,
}

/// What building every process needs.
pub(crate) struct Ctx<'a> {
    img: &'a Image,
    /// Every description of the image, open in the controller, and what the kinds left for the
    /// later stages (see [`files::Opened`]).
    files: &'a files::Opened,
    /// The page file of each process, by index in `img.procs`.
    pages: Vec<File>,
    /// The pages of each process in the parent images (see [`mem::chain`]), by index.
    chains: Vec<mem::chain::Chain>,
    /// `restore -d` and the root is our child: stasis, the root's parent, exits once the tree runs,
    /// so the root's parent-death signal is not armed (the other processes' parents are restored).
    root_parent_exits: bool,
    /// Every process created so far, for [`KillOnDrop`].
    created: &'a Mutex<Vec<Pid>>,
    /// Pidfds of processes of the tree, opened once their process exists (see `files::pidfd`).
    pidfds: files::pidfd::Late,
    /// Counts the calls injected by this restore (see [`crate::fault`]).
    calls: Calls,
    /// `--lazy-pages`: the connection to the lazy-pages daemon.
    lazy: Option<&'a crate::mem::lazy::Handoff>,
    /// A pidfd of ours, above every fd number of the image, that the root inherits and hands
    /// down, in a tree with PID namespaces (see [`crate::ns`]).
    ctl_pidfd: Option<OwnedFd>,
    /// Where each task goes in the cgroup hierarchy (see [`crate::cgroups`]).
    cgroups: &'a crate::cgroups::restore::Placement,
    /// The root's new user namespace, which every task joins once built (see [`crate::userns`]).
    user: Option<&'a crate::userns::Joined>,
}

/// A restored process tree, running.
#[derive(Debug)]
pub struct Restored {
    pub report: RestoreReport,
    pid: Pid,
    /// The root is our child (not when a helper made its session: it was reparented).
    ours: bool,
}

impl Restored {
    pub fn pid(&self) -> i32 {
        self.pid.0
    }

    /// Wait for the restored root to end: its exit code, or 128 + the signal that killed it. A root
    /// that is not our child (see `create_root`) is watched until it is gone; its status is then
    /// unknown to us and 0 is returned, with a warning.
    pub fn wait(self) -> Result<i32> {
        if !self.ours {
            while proc::stat(&ProcRoot::system(), self.pid.0).is_ok_and(|s| s.state != 'Z') {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            log::warn!("pid {}: ended, but its parent is not stasis: exit status unknown", self.pid);
            return Ok(0);
        }
        loop {
            match ptrace::wait(self.pid).map_err(Error::sys(self.pid.0, "waiting for the restored process"))? {
                WaitStatus::Exited(code) => return Ok(code),
                WaitStatus::Signaled(sig) => return Ok(128 + sig),
                _ => {}
            }
        }
    }

    /// Leave the process running on its own.
    pub fn detach(self) {}
}

/// Kills every process created so far unless defused, and reaps each of their threads: a failed
/// restore leaves nothing behind. A process killed before its parent is a zombie its parent (being
/// killed too) would reap: stasis becomes a child subreaper for the time of the kills, so that such
/// zombies come to it, and reaps them too (else they stay, holding their pids, until init reaps them).
struct KillOnDrop<'a>(&'a Mutex<Vec<Pid>>);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let created = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if created.is_empty() {
            return;
        }
        let was_subreaper = sysproc::child_subreaper().unwrap_or(false);
        if let Err(e) = sysproc::set_child_subreaper(true) {
            log::warn!("the processes of the failed restore may stay zombies until init reaps them: {e}");
        }
        for &pid in created.iter().rev() {
            let mut tids: Vec<Pid> =
                proc::threads(&ProcRoot::system(), pid.0).unwrap_or_default().into_iter().map(Pid).collect();
            tids.sort_by_key(|t| *t != pid);
            if tids.is_empty() {
                tids.push(pid);
            }
            let _ = sysproc::kill(pid, libc::SIGKILL);
            crate::task::reap(&tids);
        }
        for &pid in created.iter() {
            reap_orphan(pid);
        }
        if !was_subreaper {
            let _ = sysproc::set_child_subreaper(false);
        }
    }
}

/// Reap `pid` if it is a zombie that came to us (see [`KillOnDrop`]); nothing if it is gone or not
/// ours.
fn reap_orphan(pid: Pid) {
    // A killed process whose parent died is reparented by the time the parent is reaped; one that
    // is still dying is waited for, briefly.
    for _ in 0..1000 {
        match ptrace::try_wait(pid) {
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(2)),
            _ => return,
        }
    }
    log::warn!("pid {pid}: killed, not reaped after 2 s");
}

/// An image holding file locks is restored only with `--file-locks`, as CRIU does.
fn check_file_locks(img: &Image, file_locks: bool) -> Result<()> {
    match img.procs.iter().find(|p| !p.fds.locks.is_empty()) {
        Some(p) if !file_locks => Err(Error::Incompatible {
            file: format!("fds-{}.img", p.process.pid),
            what: format!(
                "pid {} held {} file locks ({}): restore with --file-locks",
                p.process.pid,
                p.fds.locks.len(),
                files::locks::describe(&p.fds.locks[0])
            ),
        }),
        _ => Ok(()),
    }
}

pub fn restore(opts: &RestoreOptions, progress: &mut dyn FnMut(Progress)) -> Result<Restored> {
    let start = Instant::now();
    let dir = ImageDir::open(&opts.dir)?;
    refuse_pre_dump(&dir)?;
    let img = load(&dir)?;
    opts.notify.at(Point::PreRestore, img.procs[0].process.pid)?;
    let parents = mem::chain::parents(&dir)?;
    let mut chains: Vec<_> =
        img.procs.iter().map(|p| mem::chain::resolve(p.process.pid, &p.pagemap, &parents)).collect::<Result<_>>()?;
    let tasks = img.procs.iter().map(|p| (p.process.pid, std::iter::once(&p.core).chain(&p.threads).collect()));
    crate::cpu::check(&dir, tasks, opts.cpu_caps)?;
    check_pids_free(&img)?;
    check_file_locks(&img, opts.file_locks)?;
    check_hugetlb(&img)?;
    for p in &img.procs {
        mem::uprobes::check_restore(p.process.pid, &p.mm.vmas, opts.allow_uprobes)?;
    }
    check_user_ns(&img)?;
    let prepared = start.elapsed();
    // From here on, until it returns, this thread is in the root's new namespaces (if any): the
    // network lock, IPC objects, queues and sockets below are made in them, and the root is
    // forked into them.
    let root_ns = crate::ns::enter_root(&img.procs[0].process, &img.namespaces, opts)?;
    // The tree's mount namespace, made in the root's other new namespaces (sysfs and mqueue
    // mounts belong to them); files are opened and the root forked inside it.
    let root_pid = img.procs[0].process.pid;
    let mut mnt = img.mounts.as_ref().map(|ns| crate::mnt::restore::build(ns, root_pid, opts)).transpose()?;
    let lock = network_lock(&dir, &img, opts.network_lock)?;
    let settings = files::kinds::Settings {
        shell_job: opts.shell_job,
        ext_unix_sk: opts.ext_unix_sk,
        tcp: opts.tcp,
        evasive_devices: opts.evasive_devices,
    };
    let open_files = |mnt: Option<&crate::mnt::Built>| {
        crate::mnt::inside(mnt, || files::open_all(&img.files.files, settings, &opts.inherit_fds))
    };
    // Files are opened inside the tree's mount namespace: once it is whole, so after the root
    // when some of its mounts wait for the root (see `mnt::Built::finish`).
    let early = mnt.as_ref().is_none_or(|m| m.whole());
    let mut early_files = early.then(|| open_files(mnt.as_ref())).transpose()?;
    // The limits of a tree's own IPC namespace, set in the new one (not in one joined by --join-ns).
    if !opts.join_ns.iter().any(|(kind, _)| kind == "ipc") {
        crate::sysv::restore_limits(&img.ipc.limits)?;
    }
    let segments = crate::ipc::restore(&img.ipc, img.procs[0].process.pid)?;
    let pages = open_pages(&dir, &img, opts.lazy_pages)?;
    let handoff = opts.lazy_pages.then(|| crate::mem::lazy::Handoff::connect(&opts.dir)).transpose()?;
    // A lazy process's pages are checked by the daemon, chunk by chunk, as it serves them.
    // A compressed page file was checked chunk by chunk as it was decompressed.
    let in_parents = chains.iter_mut().flat_map(|c| c.unchecked()).collect();
    let verifiers = spawn_verifiers(&pages, &img, in_parents, |idx| {
        (handoff.is_some() && lazy_process(&img, idx)) || stasis_image::compress::is_compressed(&img.procs[idx].pagemap)
    })?;
    let root = &img.procs[0];
    let pid = Pid(root.process.pid);
    let tables: Vec<&FdTable> = img.procs.iter().map(|p| &p.fds).collect();
    let nested = img.procs.iter().any(|p| !p.process.nspid.is_empty());
    let ctl_pidfd = crate::ns::controller_pidfd(&tables, &root_ns, nested)?;
    // Before the guard, so that a failed restore's tasks are gone before its cgroups are removed.
    let placement = place_in_cgroups(&img, opts)?;
    let created = Mutex::new(Vec::new());
    let guard = KillOnDrop(&created);
    let calls = fault::calls("restore-call");
    let (child, scratch, ours) = create_root(&img, &created, &calls, (opts.sibling, mnt.as_ref()))?;
    let set_up = start.elapsed();
    // The mounts that wait for the root's PID namespace (a proc of it) and what follows them.
    if let Some(m) = mnt.as_mut() {
        m.finish(child)?;
    }
    let (mut opened, unfinished) = match early_files.take() {
        Some(files) => files,
        None => open_files(mnt.as_ref())?,
    };
    root_ns.load_firewall()?;
    opts.notify.at(Point::SetupNamespaces, child.0)?;
    opts.notify.at(Point::PostSetupNamespaces, child.0)?;
    ptrace::set_sigmask(child, u64::MAX).map_err(Error::sys(pid.0, "blocking signals"))?;
    misc::restore_from_outside(child, &root.core, &placement)?;
    let ctx = Ctx {
        img: &img,
        files: &opened,
        pages,
        chains,
        root_parent_exits: opts.detached && ours,
        created: &created,
        pidfds: Default::default(),
        calls: calls.clone(),
        lazy: handoff.as_ref(),
        ctl_pidfd,
        cgroups: &placement,
        user: root_ns.user(),
    };
    let mut out = build_tree(&ctx, child, scratch, progress)?;
    let built = start.elapsed();
    let tables: Vec<_> = img.procs.iter().map(|p| (p.process.pid, &p.fds)).collect();
    let result = out.built.iter_mut().try_for_each(|b| b.finish_pidfds(&ctx));
    let result = result.and_then(|()| files::pidfd::restore_owners(&ctx.pidfds, &img.files.files, &tables));
    let result = result.and_then(|()| join_verifiers(verifiers, pid));
    let result = result.and_then(|()| handoff.as_ref().map_or(Ok(()), |h| h.finish()));
    let result = result.and_then(|()| unfinished.finish(&opened, &img.files.files, &tables));
    let result = result.and_then(|()| join_groups(&mut out, &img, &ctx));
    let result = result.and_then(|()| out.built.iter_mut().try_for_each(|b| b.set_foreground(&ctx)));
    let result = result.and_then(|()| opts.notify.at(Point::PostRestore, child.0));
    if let Err(e) = result {
        out.abandon();
        return Err(e);
    }
    for b in out.built {
        let idx = b.idx;
        b.release(&img.procs[idx], opts.leave_stopped)?;
    }
    created.lock().expect("not poisoned").clear();
    drop(guard);
    if opts.shell_job {
        files::tty::restore::shell_job_foreground(&root.process);
    }
    drop(ctx);
    placement.keep();
    opened.release();
    segments.finish(&img.ipc);
    drop(lock);
    if let Err(e) = opts.notify.at(Point::NetworkUnlock, child.0) {
        log::warn!("the restored tree runs, but its caller's network unlock failed: {e}");
    }
    let pages = img.procs.iter().map(|p| p.pagemap.total_pages).sum();
    let injected_calls = calls.count();
    log::info!("{injected_calls} calls injected");
    let total = start.elapsed();
    let stages = crate::RestoreStages {
        prepare: prepared,
        setup: set_up - prepared,
        tasks: built - set_up,
        finish: total - built,
    };
    log::info!("restore stages: {stages:?}");
    let report = RestoreReport { pid: pid.0, total, pages, injected_calls, namespaces: root_ns.set, stages };
    Ok(Restored { report, pid: child, ours })
}

/// The network lock the dump left (see [`crate::netlock`]), to be removed once the tree runs or the
/// restore fails; made again first if it is gone (a lock removed by hand, an image from elsewhere),
/// so no packet of a connection reaches it before it is restored; with the dump's method (nftables
/// or iptables). `None` with `--network-lock skip`.
fn network_lock(dir: &ImageDir, img: &Image, mode: crate::netlock::Mode) -> Result<Option<crate::netlock::Lock>> {
    use crate::netlock::{Lock, Mode};
    let Some(l) = dir.inventory().and_then(|i| i.network_lock.as_ref()) else { return Ok(None) };
    let root = img.procs[0].process.pid;
    let failed = |what: String| Error::Failed { pid: Pid(root), what };
    if mode == Mode::Skip {
        return Ok(None);
    }
    // Removed with the method that made it, whichever --network-lock the restore was given.
    let mut lock = Lock::adopt(&l.method, &l.table, true).map_err(failed)?;
    if lock.exists() {
        return Ok(Some(lock));
    }
    lock = Lock::adopt(&l.method, &l.table, false).map_err(failed)?;
    for conn in files::inet::connections(&img.files.files) {
        lock.add(&conn).map_err(failed)?;
    }
    Ok(Some(lock))
}

/// Build every process: the root, and on the way down the last child of each process built here;
/// the other children, each with its subtree, on tracer threads (see `process::create_children`).
/// Then every task is adopted back by this thread: children before their parents.
fn build_tree<'env>(ctx: &'env Ctx<'env>, root: Pid, scratch: u64, progress: &mut dyn FnMut(Progress)) -> Result<Out> {
    let threads = Tracers::<()>::threads_for(ctx.img.procs.len());
    std::thread::scope(|scope| {
        let pool = Tracers::start(scope, threads);
        let handoff = Handoff { pool: &pool, pending: RefCell::new(Vec::new()) };
        let mut here = Out::default();
        let mut first_error =
            process::build(ctx, 0, root, scratch, &mut here, (threads > 1).then_some(&handoff), progress).err();
        let mut parked = Vec::new();
        for pending in handoff.pending.take() {
            match pool.wait(pending, progress) {
                Ok(p) => parked.push(p),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let mut all = Out::default();
        for p in parked {
            if first_error.is_some() {
                break;
            }
            match p.adopt() {
                Ok(o) => {
                    all.built.extend(o.built);
                    all.helpers.extend(o.helpers);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        all.built.extend(here.built);
        all.helpers.extend(here.helpers);
        match first_error {
            None => Ok(all),
            Some(e) => {
                // Parked tasks not adopted are killed by `KillOnDrop` like the others.
                all.abandon();
                Err(e)
            }
        }
    })
}

/// Every process joins its group (led by another process or by a group helper); then the helpers
/// exit and their parents reap them.
fn join_groups(out: &mut Out, img: &Image, ctx: &Ctx) -> Result<()> {
    for b in out.built.iter_mut() {
        b.join_group(img)?;
    }
    for h in std::mem::take(&mut out.helpers) {
        let (helper, parent) = (h.pid, h.parent);
        h.exit()?;
        let b = out.built.iter_mut().find(|b| b.pid == parent).ok_or(Error::Failed {
            pid: parent,
            what: format!("the parent of group helper {helper} is not among the restored processes"),
        })?;
        b.reap(helper)?;
        ctx.created.lock().expect("not poisoned").retain(|&p| p != helper);
    }
    Ok(())
}

/// Create the root with its PID. A root in a session whose leader has exited (a daemon after its
/// double fork) is forked by a short-lived helper that takes the leader's PID and calls `setsid`, then
/// exits: the root has its session and group again, and is reparented as it was. Returns the root,
/// its scratch address, and whether it is our child.
fn create_root(
    img: &Image,
    created: &Mutex<Vec<Pid>>,
    calls: &Calls,
    (sibling, mnt): (bool, Option<&crate::mnt::Built>),
) -> Result<(Pid, u64, bool)> {
    let root = &img.procs[0];
    let pid = Pid(root.process.pid);
    if mnt.is_some() && (root.process.time_ns != 0 || img.plan.root_session_helper.is_some()) {
        let what = "a mount namespace of its own with a time namespace or a session whose leader exited (the root is forked by a helper)".into();
        return Err(Error::Unsupported { pid, what });
    }
    if root.process.time_ns != 0 {
        if sibling {
            let what = "restoring as a sibling a root in a time namespace of its own (it is forked by a helper)".into();
            return Err(Error::Unsupported { pid, what });
        }
        let child = process::create_in_time_ns(root, &img.namespaces, created, calls)?;
        return Ok((child, process::scratch_in_copy(child, root)?, true));
    }
    let leader_gone = img.plan.root_session_helper;
    if leader_gone.is_none_or(|sid| proc::stat(&ProcRoot::system(), sid).is_ok()) {
        let (flags, inner) = crate::ns::root_clone(&root.process);
        let child = crate::mnt::inside(mnt, || {
            match sibling {
                true => sysproc::spawn_traced_sibling_in(pid, flags, &inner),
                false => sysproc::spawn_traced_in(pid, flags, &inner),
            }
            .map_err(|e| spawn_error(pid, e))
        })?;
        created.lock().expect("not poisoned").push(child);
        // The new task is a copy of us as we were at the clone: its own maps, read now that it is
        // stopped, are exact (ours may have changed since, another thread unmapping or mapping).
        return Ok((child, process::scratch_in_copy(child, root)?, !sibling));
    }
    let sid = leader_gone.expect("checked above");
    if sibling {
        let what =
            format!("restoring as a sibling a root whose session leader {sid} has exited (it is forked by a helper)");
        return Err(Error::Unsupported { pid, what });
    }
    let helper = sysproc::spawn_traced(Pid(sid)).map_err(|e| spawn_error(Pid(sid), e))?;
    created.lock().expect("not poisoned").push(helper);
    let mut inj = process::lead_session(helper, calls)?;
    let child = process::fork_child(&mut inj, helper, pid, 0)?;
    created.lock().expect("not poisoned").push(child);
    crate::session::end_helper(inj)?;
    log::info!("pid {pid}: session {sid} made again by a helper with its leader's pid, which has exited");
    Ok((child, process::scratch_in_copy(child, root)?, false))
}

/// A root in a user namespace of its own comes without the namespaces and helpers the dump refuses
/// with one (see [`crate::userns`]): checked before anything is made, for an image from elsewhere.
fn check_user_ns(img: &Image) -> Result<()> {
    let root = &img.procs[0];
    let other = img.mounts.is_some() || root.process.time_ns != 0 || root.process.pid_ns != 0;
    if root.process.user_ns != 0 && (other || img.plan.root_session_helper.is_some()) {
        let what =
            "a user namespace of its own with a mount, PID or time namespace, or a session whose leader exited".into();
        return Err(Error::Unsupported { pid: Pid(root.process.pid), what });
    }
    Ok(())
}

/// Stage 1: read every file of the image (checksums are verified on the way).
fn load(dir: &ImageDir) -> Result<Image> {
    let tree: PsTree = dir.read_one(ImageKind::PsTree, None)?;
    let plan = crate::tree::plan(&tree)?;
    let root = dir.inventory().map_or(0, |i| i.root_pid);
    if tree.processes.first().map(|p| p.pid) != Some(root) {
        let what = format!("the first process is not the root {root} of inventory.img");
        return Err(Error::Incompatible { file: "pstree.img".into(), what });
    }
    let mut procs = Vec::new();
    let mut zombies = Vec::new();
    for process in tree.processes {
        let known = procs.iter().any(|p: &ProcImage| p.process.pid == process.ppid);
        if !procs.is_empty() && !known {
            let what = format!("process {} comes before its parent {}", process.pid, process.ppid);
            return Err(Error::Incompatible { file: "pstree.img".into(), what });
        }
        if process.zombie && !procs.is_empty() {
            zombies.push(process);
        } else {
            procs.push(load_process(dir, process)?);
        }
    }
    let (files, ipc) = (dir.read_one(ImageKind::Files, None)?, dir.read_one(ImageKind::Ipc, None)?);
    let (namespaces, cgroups, mounts) = (tree.namespaces, tree.cgroups, tree.mounts);
    Ok(Image { procs, zombies, files, ipc, plan, namespaces, cgroups, mounts })
}

/// The image's cgroups made and set as `--manage-cgroups` says, before any task exists.
fn place_in_cgroups(img: &Image, opts: &RestoreOptions) -> Result<crate::cgroups::restore::Placement> {
    let mut tasks: Vec<&str> =
        img.procs.iter().flat_map(|p| std::iter::once(&p.core).chain(&p.threads)).map(|c| c.cgroup.as_str()).collect();
    // The root of the tree's cgroup namespace is joined by its root for a moment (see
    // `Placement::enter_ns`): it must exist too.
    tasks.extend(img.namespaces.iter().filter(|n| n.kind == "cgroup").map(|n| n.cgroup_root.as_str()));
    let mut tasks_v1: Vec<&_> =
        img.procs.iter().flat_map(|p| std::iter::once(&p.core).chain(&p.threads)).flat_map(|c| &c.cgroups_v1).collect();
    tasks_v1.extend(img.namespaces.iter().filter(|n| n.kind == "cgroup").flat_map(|n| &n.cgroup_roots_v1));
    let root = Pid(img.procs[0].process.pid);
    crate::cgroups::restore::Placement::prepare(img.cgroups.as_ref(), (&tasks, &tasks_v1), &opts.cgroups, root)
}

/// A pre-dump holds memory only: it is the parent of a later dump, not an image to restore.
fn refuse_pre_dump(dir: &ImageDir) -> Result<()> {
    if dir.inventory().is_some_and(|i| i.pre_dump) {
        let what = format!(
            "field pre_dump: {} is a pre-dump (memory only); restore the dump made with --prev-images-dir pointing to it",
            dir.path().display()
        );
        return Err(Error::Incompatible { file: "inventory.img".into(), what });
    }
    Ok(())
}

fn load_process(dir: &ImageDir, process: ProcessEntry) -> Result<ProcImage> {
    let pid = Some(process.pid);
    let mut cores: Vec<TaskCore> = dir.read_records(ImageKind::Core, pid)?;
    if cores.is_empty() || cores[0].pid != process.pid || cores.len() != process.threads.len() {
        let what = format!("{} thread records for the {} threads of pstree.img", cores.len(), process.threads.len());
        return Err(Error::Incompatible { file: ImageKind::Core.file_name(pid), what });
    }
    let threads = cores.split_off(1);
    Ok(ProcImage {
        core: cores.remove(0),
        threads,
        mm: dir.read_one(ImageKind::Mm, pid)?,
        pagemap: dir.read_one(ImageKind::PageMap, pid)?,
        fds: dir.read_one(ImageKind::Fds, pid)?,
        process,
    })
}

/// The huge pages the hugetlb areas of the image take are in the kernel's pools.
fn check_hugetlb(img: &Image) -> Result<()> {
    let procs: Vec<mem::hugetlb::Proc> = img
        .procs
        .iter()
        .enumerate()
        .map(|(idx, p)| mem::hugetlb::Proc {
            pid: p.process.pid,
            mm: &p.mm,
            pagemap: &p.pagemap,
            parent: (idx != 0)
                .then(|| img.procs.iter().find(|q| q.process.pid == p.process.ppid))
                .flatten()
                .map(|q| q.mm.vmas.as_slice()),
        })
        .collect();
    mem::hugetlb::check_reserve(&procs, &img.files.files)
}

/// How long a zombie holding a PID of the image is given to be reaped: the dumped tree was killed a
/// moment ago, and a container's init, reparented to a PID 1 that reaps when it gets to it (seen
/// taking seconds), holds its PID until then.
const ZOMBIE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Every PID and TID of the image must be free (a zombie holding one given [`ZOMBIE_GRACE`]).
fn check_pids_free(img: &Image) -> Result<()> {
    let root = ProcRoot::system();
    let deadline = std::time::Instant::now() + ZOMBIE_GRACE;
    for p in img.procs.iter().map(|p| &p.process).chain(&img.zombies) {
        for tid in &p.threads {
            while let Ok(s) = proc::stat(&root, *tid) {
                if s.state != 'Z' || std::time::Instant::now() > deadline {
                    return Err(Error::PidTaken { pid: Pid(*tid), holder: holder(&s) });
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    Ok(())
}

fn holder(s: &proc::Stat) -> String {
    let zombie = if s.state == 'Z' { ", a zombie its parent has not reaped" } else { "" };
    format!("'{}' (state {}, parent {}{zombie})", s.comm, s.state, s.ppid)
}

/// Who holds `pid` now, for [`Error::PidTaken`]: the task's name, state and parent, and its
/// process if it is a thread of another.
pub(crate) fn holder_of(pid: Pid) -> String {
    let root = ProcRoot::system();
    let Ok(s) = proc::stat(&root, pid.0) else { return "another process (gone since)".into() };
    let tgid = proc::status(&root, pid.0).ok().map(|st| st.tgid).filter(|t| *t != pid.0);
    match tgid {
        Some(t) => format!("{}, a thread of process {t}", holder(&s)),
        None => holder(&s),
    }
}

fn spawn_error(pid: Pid, e: sysproc::SpawnError) -> Error {
    if let sysproc::SpawnError::Clone { source, .. } = &e {
        if source.errno() == libc::EEXIST {
            return Error::PidTaken { pid, holder: holder_of(pid) };
        }
    }
    Error::Spawn { pid, source: e }
}

/// Each process's page file. A compressed one stays compressed (its pages are decompressed
/// straight into the task, see `mem::pages::fill_compressed`), but for a process restored lazily,
/// whose eager pages the task reads itself: for it, a memfd of the uncompressed file.
fn open_pages(dir: &ImageDir, img: &Image, lazy: bool) -> Result<Vec<File>> {
    (0..img.procs.len())
        .map(|idx| {
            let p = &img.procs[idx];
            crate::mem::dedup::check_whole(p.process.pid, &p.pagemap)?;
            if lazy && lazy_process(img, idx) {
                crate::mem::pages::open_raw(dir, p.process.pid, &p.pagemap, None)
            } else {
                Ok(dir.open_pages(p.process.pid, &p.pagemap)?)
            }
        })
        .collect()
}

type Verifier = std::thread::JoinHandle<Result<()>>;

/// Check the page data in parallel with the restore, on one thread per CPU (each verifying a share
/// of the page files, and of the chunks read from parent images, `in_parents`); joined before any
/// process is let go.
fn spawn_verifiers(
    pages: &[File],
    img: &Image,
    in_parents: Vec<mem::chain::Unchecked>,
    skip: impl Fn(usize) -> bool,
) -> Result<Vec<Verifier>> {
    let mut work = Vec::new();
    for (idx, (file, p)) in pages.iter().zip(&img.procs).enumerate() {
        if skip(idx) {
            continue;
        }
        let name = ImageKind::Pages.file_name(Some(p.process.pid));
        let file = file.try_clone().map_err(Error::io(&name))?;
        work.push((file, name, p.pagemap.clone(), None));
    }
    work.extend(in_parents.into_iter().map(|u| (u.file, u.name, u.map, Some(u.chunks))));
    let verify = |share: Vec<(File, String, PageMap, Option<Vec<u64>>)>| -> Result<()> {
        for (file, name, map, chunks) in share {
            match chunks {
                None => stasis_image::verify_pages(&file, &name, &map)?,
                Some(chunks) => stasis_image::verify_page_chunks(&file, &name, &map, &chunks)?,
            }
        }
        Ok(())
    };
    Ok(crate::tracers::shares(work).into_iter().map(|share| std::thread::spawn(move || verify(share))).collect())
}

/// Whether process `idx` of the image is restored lazily with `--lazy-pages` (see [`mem::lazy`]).
pub(crate) fn lazy_process(img: &Image, idx: usize) -> bool {
    let p = &img.procs[idx];
    let procs: Vec<&ProcessEntry> = img.procs.iter().map(|p| &p.process).collect();
    crate::mem::lazy::lazily_restored(&p.process, &procs, &p.mm, &p.pagemap)
}

fn join_verifiers(verifiers: Vec<Verifier>, pid: Pid) -> Result<()> {
    for v in verifiers {
        v.join().map_err(|_| Error::Failed { pid, what: "page verification panicked".into() })??;
    }
    Ok(())
}
