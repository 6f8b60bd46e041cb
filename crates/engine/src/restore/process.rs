//! Restore of one process, in a task created with its PID: memory, mm fields, fds, signals, timers,
//! limits, its threads, its children (each created by this process, so it starts as a copy of it, as
//! it once did), then credentials; and, at the very end, its release.

use super::{Ctx, ProcImage};
use crate::error::{Error, Result};
use crate::files::{self, FdImporter};
use crate::proc::{self, ProcRoot};
use crate::threads::{self, NewThread, ParkedThread};
use crate::tracers::{Pending, Tracers};
use crate::tree::Creation;
use crate::Progress;
use crate::{creds, fault, mem, misc, mm, session, signals, timers};
use stasis_image::model::{ProcessEntry, TaskCore, SHARES_FILES};
use stasis_sys::inject::{Calls, Injector, SCRATCH_LEN};
use stasis_sys::ptrace::{self, WaitStatus};
use stasis_sys::remote::{CloneArgs, Remote};
use stasis_sys::Pid;
use std::os::fd::{AsFd, AsRawFd};

/// A process restored but for its registers, stopped, waiting for the release.
pub struct Built {
    /// Index in `Image::procs`.
    pub idx: usize,
    pub pid: Pid,
    inj: Injector,
    threads: Vec<NewThread>,
    /// Its tasks' ptrace options (see [`trace_options`]), kept when they change tracer thread.
    options: u32,
}

/// What one tracer thread has built: every process (children before their parents) and the group
/// helpers it made.
#[derive(Default)]
pub struct Out {
    pub built: Vec<Built>,
    pub helpers: Vec<session::Helper>,
}

/// Ptrace options of every task a restore traces.
pub(super) const TRACE_OPTIONS: u32 =
    ptrace::OPT_TRACESYSGOOD | ptrace::OPT_EXITKILL | ptrace::OPT_TRACECLONE | ptrace::OPT_TRACEFORK;

/// The ptrace options of process `img`'s tasks once its seccomp filters are installed (see
/// [`crate::seccomp`]): [`TRACE_OPTIONS`], with `PTRACE_O_SUSPEND_SECCOMP` for a process under
/// seccomp, so that the calls injected after the filters are not filtered.
fn trace_options(img: &ProcImage) -> u32 {
    let seccomp = crate::seccomp::any(&img.core, &img.threads);
    TRACE_OPTIONS | if seccomp { ptrace::OPT_SUSPEND_SECCOMP } else { 0 }
}

impl Out {
    /// Give up on everything (the tree is being killed).
    pub fn abandon(self) {
        self.built.into_iter().for_each(Built::abandon);
        self.helpers.into_iter().for_each(session::Helper::abandon);
    }

    /// Hand every task over to another tracer thread (see [`stasis_sys::inject::park`]).
    pub fn park(self) -> Result<ParkedOut> {
        let built = self.built.into_iter().map(Built::park).collect::<Result<_>>()?;
        let helpers = self.helpers.into_iter().map(session::Helper::park).collect::<Result<_>>()?;
        Ok(ParkedOut { built, helpers })
    }
}

/// An [`Out`] handed over to another tracer thread.
pub struct ParkedOut {
    built: Vec<ParkedBuilt>,
    helpers: Vec<session::ParkedHelper>,
}

impl ParkedOut {
    /// Attach every task from this thread.
    pub fn adopt(self) -> Result<Out> {
        let built = self.built.into_iter().map(ParkedBuilt::adopt).collect::<Result<_>>()?;
        let helpers = self.helpers.into_iter().map(|h| h.adopt(TRACE_OPTIONS)).collect::<Result<_>>()?;
        Ok(Out { built, helpers })
    }
}

struct ParkedBuilt {
    idx: usize,
    pid: Pid,
    inj: stasis_sys::inject::Parked,
    threads: Vec<ParkedThread>,
    options: u32,
}

impl ParkedBuilt {
    fn adopt(self) -> Result<Built> {
        let options = self.options;
        let threads = self.threads.into_iter().map(|t| t.adopt(options)).collect::<Result<_>>()?;
        Ok(Built { idx: self.idx, pid: self.pid, inj: self.inj.adopt(options)?, threads, options })
    }
}

/// Children handed over to other tracer threads, each built there with its subtree (only from the
/// thread that runs the restore: see `create_children`).
pub struct Handoff<'p, 'env> {
    pub pool: &'p Tracers<'env, ()>,
    pub pending: std::cell::RefCell<Vec<Pending<Result<ParkedOut>>>>,
}

impl<'env> Handoff<'_, 'env> {
    /// Park child `pid` (process `idx`, a copy of a parent whose scratch area starts at `code`) and
    /// have a tracer thread adopt it and build it and its subtree there.
    fn send(&self, ctx: &'env Ctx<'env>, idx: usize, pid: Pid, scratch: u64, code: u64) -> Result<()> {
        stasis_sys::inject::park(pid, code)?;
        let job = self.pool.run(idx, move |_, progress| -> Result<ParkedOut> {
            stasis_sys::inject::adopt(pid, TRACE_OPTIONS)?;
            let mut out = Out::default();
            match build(ctx, idx, pid, scratch, &mut out, None, progress) {
                Ok(()) => out.park(),
                Err(e) => {
                    out.abandon();
                    Err(e)
                }
            }
        });
        self.pending.borrow_mut().push(job);
        Ok(())
    }
}

/// Build process `idx` in the new task `pid` (a copy of the controller, or of its restored parent),
/// then its children; every process built is appended to `out`, children before their parent. With
/// `handoff`, children may be built on other tracer threads.
pub fn build<'env>(
    ctx: &'env Ctx<'env>,
    idx: usize,
    pid: Pid,
    scratch: u64,
    out: &mut Out,
    handoff: Option<&Handoff<'_, 'env>>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let code = mem::gadget::current_code_area(pid)?;
    let mut inj = Injector::new(pid, code, Some(scratch), SCRATCH_LEN, &ctx.calls)?;
    match build_in(ctx, idx, &mut inj, pid, out, handoff, progress) {
        Ok(threads) => {
            out.built.push(Built { idx, pid, inj, threads, options: trace_options(&ctx.img.procs[idx]) });
            Ok(())
        }
        Err(e) => {
            // The task is about to be killed: no point unmapping anything in it.
            inj.abandon();
            Err(e)
        }
    }
}

fn build_in<'env>(
    ctx: &'env Ctx<'env>,
    idx: usize,
    inj: &mut Injector,
    pid: Pid,
    out: &mut Out,
    handoff: Option<&Handoff<'_, 'env>>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<NewThread>> {
    let img = &ctx.img.procs[idx];
    // What a child shares with its parent (made with the same clone flags) is the parent's, already
    // restored: its fd table, its address space (and the mm fields with it).
    let plan = &ctx.img.plan.procs[idx];
    let (shared_files, shared_vm) = (plan.shares_files, plan.shares_vm);
    misc::unregister_inherited_rseq(inj, pid)?;
    if idx == 0 {
        if let Some(ns) = crate::ns::cgroup_root(&img.process, &ctx.img.namespaces)? {
            let ns_root = (ns.cgroup_root.as_str(), ns.cgroup_roots_v1.as_slice());
            ctx.cgroups.enter_ns(inj, pid, ns_root, (&img.core.cgroup, &img.core.cgroups_v1))?;
        }
    }
    // The controller's pidfd, inherited in a tree with PID namespaces (see `crate::ns`), stays open
    // until this process's children are made.
    let ctl = ctx.ctl_pidfd.as_ref().map(|fd| fd.as_raw_fd());
    if !shared_files {
        match ctl {
            Some(k) => {
                inj.close_range(0, k as u32 - 1, 0)?;
                inj.close_range(k as u32 + 1, u32::MAX, 0)?;
            }
            None => inj.close_range(0, u32::MAX, 0)?,
        }
    }
    let max_fd = img.fds.fds.iter().map(|f| f.fd).max().unwrap_or(2);
    let mut imp = FdImporter::new_in(inj, max_fd + 1, ctl)?;
    // The restored parent a child is a copy of (none for the root).
    let parent = (idx != 0).then(|| ctx.img.procs.iter().find(|p| p.process.pid == img.process.ppid)).flatten();
    if !shared_vm {
        restore_memory(inj, &mut imp, pid, ctx, idx, parent, progress)?;
    }
    fault::check("restore-fail-after-memory")?;
    if idx == 1 {
        fault::check("restore-fail-in-child")?;
    }
    if !shared_vm {
        mm::restore(inj, &mut imp, pid, &img.mm)?;
    }
    if !shared_files {
        files::install(inj, &mut imp, pid, &img.fds, &ctx.files.fds)?;
    }
    imp.close(inj)?;
    if !shared_files {
        // After the last close of an fd (which drops the process's POSIX locks on its file).
        files::locks::restore(inj, pid, &img.fds)?;
    }
    // Only the root's parent may be stasis, which exits at once with -d.
    let parent_exits = idx == 0 && ctx.root_parent_exits;
    let mut made = restore_task_state(inj, pid, img, parent.map(|p| &p.core), (parent_exits, ctx.cgroups))?;
    let ctty = files::tty::restore::take_ctty(inj, pid, &img.process, &img.fds, ctx.files.terminals());
    let rest = ctty.and_then(|()| create_children(ctx, idx, inj, pid, out, handoff, progress)).and_then(|()| {
        let procs: Vec<&ProcessEntry> = ctx.img.procs.iter().map(|p| &p.process).collect();
        crate::ns::enter_for_children(inj, &img.process, &procs)?;
        // Every process a pidfd may name exists now (see files::pidfd); timers after the threads.
        if !shared_files {
            files::pidfd::install_late(inj, pid, &img.fds, &ctx.img.files.files, &ctx.pidfds, false)?;
            if let Some(k) = ctl {
                inj.close(k)?;
            }
        }
        crate::posix_timers::restore(inj, &img.core.posix_timers)?;
        if !shared_vm {
            mem::mm_wide::restore(inj, &img.mm)?;
            mem::seal(inj, &img.mm)?;
            misc::restore_mdwe(inj, &img.core)?;
        }
        // Queued signals last: a zombie child's exit just queued a SIGCHLD the process never had.
        flush_sigchld(inj)?;
        let local = crate::ns::local(&img.process.nspid, pid);
        signals::restore_pending(inj, local, local, &img.core.pending)?;
        // The filters before the credentials: installing one takes CAP_SYS_ADMIN or no_new_privs,
        // and a container's process has neither; every thread and child exists by now.
        if crate::seccomp::any(&img.core, &img.threads) {
            let mut tasks: Vec<(&mut Injector, &TaskCore)> = vec![(&mut *inj, &img.core)];
            tasks.extend(made.iter_mut().map(NewThread::injector).zip(&img.threads));
            crate::seccomp::restore(&mut tasks, TRACE_OPTIONS)?;
        }
        match (&img.core.creds, ctx.user) {
            (Some(c), Some(user)) => user.join(inj, pid, max_fd + 1, c)?,
            (Some(c), None) => creds::restore(inj, pid, c)?,
            (None, Some(_)) => {
                let what = format!("pid {pid}: field creds is missing, and the task must join its user namespace");
                return Err(Error::Incompatible { file: format!("core-{pid}.img"), what });
            }
            (None, None) => {}
        }
        misc::restore_after_creds(inj, &img.core, parent_exits)
    });
    if let Err(e) = rest {
        made.into_iter().for_each(NewThread::abandon);
        return Err(e);
    }
    Ok(made)
}

/// Stage 4: layout, pages, final protections.
fn restore_memory(
    inj: &mut Injector,
    imp: &mut FdImporter,
    pid: Pid,
    ctx: &Ctx,
    idx: usize,
    parent: Option<&ProcImage>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let img = &ctx.img.procs[idx];
    let pages = &ctx.pages[idx];
    let filled = mem::with_pages(&img.mm, &img.pagemap);
    // A child is a fork of its restored parent: the areas it shares with it stay as they are.
    let kept: std::collections::HashSet<u64> = match parent {
        Some(p) => img.mm.vmas.iter().filter(|v| mem::pages::inheritable(v, &p.mm.vmas)).map(|v| v.start).collect(),
        None => Default::default(),
    };
    mem::restore_layout(inj, imp, pid, &img.mm, &filled, &kept, ctx.files.ghosts())?;
    mem::aio::restore(inj, imp, pid, &img.mm, &kept)?;
    if let Some(p) = parent {
        mem::guards::drop_inherited(inj, &img.mm, &p.mm, &kept)?;
    }
    mem::guards::mark_once_guarded(inj, &img.mm, parent.map(|p| &p.mm), &kept)?;
    if let Some(vdso) = mem::vdso_range(&img.mm.vmas) {
        if mem::vdso_checksum(inj, vdso)? != img.mm.vdso_checksum {
            return Err(Error::Failed {
                pid,
                what: "this kernel's vDSO differs from the image's: restore on the kernel the image was made on".into(),
            });
        }
    }
    let task_fd = imp.import(inj, pages.as_fd())?;
    match ctx.lazy.filter(|_| super::lazy_process(ctx.img, idx)) {
        Some(handoff) => {
            let areas = mem::lazy::lazy_areas(&img.mm);
            let (eager, lazy) = mem::lazy::split(&img.pagemap, &areas);
            mem::lazy::restore(inj, task_fd, (&eager, &lazy, &areas), parent.is_some(), handoff)?;
        }
        // Compressed (and not lazy): `pages` is the compressed file, filled from here.
        None if stasis_image::compress::is_compressed(&img.pagemap) => {
            mem::pages::fill_compressed(pid, pages, &img.pagemap, progress)?
        }
        None => mem::pages::fill(inj, (task_fd, pages), &img.pagemap, progress)?,
    }
    inj.close(task_fd)?;
    ctx.chains[idx].fill(inj, imp, progress)?;
    mem::drop_absent(inj, &img.mm, &img.pagemap, &kept)?;
    mem::guards::install(inj, &img.mm)?;
    mem::finish_layout(inj, &img.mm, &filled)?;
    // Without a vDSO (the process had unmapped it, and it is gone now), the injector's last call
    // goes through a syscall instruction of the process's own code.
    if mem::vdso_range(&img.mm.vmas).is_none() {
        inj.use_gadget_in(mem::gadget::code_area(pid, &img.mm.vmas)?)?;
    }
    Ok(())
}

/// Stages 7 and 8: signals, timers, limits and the rest, the session; then the other threads (while
/// the main thread may still make threads with chosen TIDs).
fn restore_task_state(
    inj: &mut Injector,
    pid: Pid,
    img: &ProcImage,
    parent: Option<&TaskCore>,
    (parent_exits, cgroups): (bool, &crate::cgroups::restore::Placement),
) -> Result<Vec<NewThread>> {
    let core = &img.core;
    signals::restore_actions(inj, &core.sigactions, parent.map(|p| p.sigactions.as_slice()))?;
    if let Some(ss) = &core.altstack {
        signals::restore_altstack(inj, ss)?;
    }
    timers::restore(inj, &core.itimers)?;
    misc::restore(inj, core, parent)?;
    misc::restore_loginuid(inj, pid, core)?;
    session::restore(inj, &img.process)?;
    create_threads(inj, pid, img, (parent_exits, cgroups))
}

/// Every other thread of the process, each put in its own cgroup before it runs.
fn create_threads(
    inj: &mut Injector,
    pid: Pid,
    img: &ProcImage,
    (parent_exits, cgroups): (bool, &crate::cgroups::restore::Placement),
) -> Result<Vec<NewThread>> {
    if img.threads.is_empty() {
        return Ok(Vec::new());
    }
    trace_new_tasks(pid)?;
    // New threads go through the process's own gadget (see `restore_memory`).
    let code = (inj.gadget(), inj.gadget() + 2);
    let mut made = Vec::new();
    for t in &img.threads {
        let made_one =
            threads::create(inj, (pid, &img.core), t, code, (parent_exits, crate::ns::local(&img.process.nspid, pid)))
                .and_then(|n| {
                    match cgroups.join_thread(
                        n.tid(),
                        (&img.core.cgroup, &img.core.cgroups_v1),
                        (&t.cgroup, &t.cgroups_v1),
                    ) {
                        Ok(()) => Ok(n),
                        Err(e) => {
                            n.abandon();
                            Err(e)
                        }
                    }
                });
        match made_one {
            Ok(n) => made.push(n),
            Err(e) => {
                made.into_iter().for_each(NewThread::abandon);
                return Err(e);
            }
        }
    }
    Ok(made)
}

/// Threads and children the task creates are traced from their first instruction.
pub(super) fn trace_new_tasks(pid: Pid) -> Result<()> {
    ptrace::set_options(pid, TRACE_OPTIONS).map_err(Error::sys(pid.0, "tracing new tasks"))
}

/// Stage 5: every child of process `idx`, created by it with its own PID (fork semantics: it starts
/// as a copy of its restored parent), then built like its parent, recursively.
///
/// With `handoff` (on the thread that runs the restore), every child but the last is built on a
/// tracer thread of the pool, the last one here (so the handing off goes on one level down).
fn create_children<'env>(
    ctx: &'env Ctx<'env>,
    idx: usize,
    inj: &mut Injector,
    pid: Pid,
    out: &mut Out,
    handoff: Option<&Handoff<'_, 'env>>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let plan = &ctx.img.plan.procs[idx];
    if plan.creates.is_empty() {
        return Ok(());
    }
    trace_new_tasks(pid)?;
    let me = &ctx.img.procs[idx].process;
    let mut made = Vec::new();
    for creation in &plan.creates {
        match creation {
            Creation::GroupHelper { pid: pgid } => {
                // No exit signal: its end, once the members have joined, queues no SIGCHLD.
                let child = fork_task(inj, pid, Pid(*pgid), 0, 0)?;
                ctx.created.lock().expect("not poisoned").push(child);
                let helper = session::Helper::lead(child, pid, mem::gadget::current_code_area(child)?, inj.calls())?;
                out.helpers.push(helper);
            }
            Creation::Zombie { zombie, .. } => {
                let z = &ctx.img.zombies[*zombie];
                let child = fork_as(inj, pid, crate::ns::clone_args(z, me, 0, libc::SIGCHLD as u64))?;
                ctx.created.lock().expect("not poisoned").push(child);
                let procs: Vec<&ProcessEntry> = ctx.img.procs.iter().map(|q| &q.process).collect();
                make_zombie(child, (z, crate::ns::local_pgid(&procs, z, z.pgid)), inj.calls())?;
            }
            Creation::Child { idx: k, flags, .. } => {
                let img = &ctx.img.procs[*k];
                let args = crate::ns::clone_args(&img.process, me, *flags, libc::SIGCHLD as u64);
                let (new_uts, seen) = (args.0.flags & libc::CLONE_NEWUTS as u64 != 0, args.1);
                let child = fork_as(inj, pid, args)?;
                ctx.created.lock().expect("not poisoned").push(child);
                if new_uts {
                    crate::ns::set_child_names(child, &img.process, &ctx.img.namespaces)?;
                }
                lead_group_now(inj, seen, &ctx.img.procs[*k].process)?;
                made.push((*k, child));
            }
            Creation::Session { sid, members } => made.extend(fork_in_session(ctx, inj, pid, *sid, members)?),
        }
    }
    let last = made.len().saturating_sub(1);
    for (i, (k, child)) in made.into_iter().enumerate() {
        let img = &ctx.img.procs[k];
        ptrace::set_sigmask(child, u64::MAX).map_err(Error::sys(child.0, "blocking signals"))?;
        misc::restore_from_outside(child, &img.core, ctx.cgroups)?;
        let scratch = scratch_in_copy(child, img)?;
        match handoff {
            Some(h) if i != last => h.send(ctx, k, child, scratch, inj.scratch().0)?,
            _ => build(ctx, k, child, scratch, out, handoff, progress)?,
        }
    }
    Ok(())
}

/// Children `members` of `pid` in session `sid`, whose leader had exited: a helper forked by `pid`
/// with the leader's PID calls `setsid` and forks each with CLONE_PARENT (a child of `pid` in the
/// session), then exits; `pid` reaps it (its SIGCHLD is flushed with the others).
fn fork_in_session(
    ctx: &Ctx,
    inj: &mut Injector,
    pid: Pid,
    sid: i32,
    members: &[(usize, i32)],
) -> Result<Vec<(usize, Pid)>> {
    let helper = fork_child(inj, pid, Pid(sid), 0)?;
    ctx.created.lock().expect("not poisoned").push(helper);
    let mut hinj = lead_session(helper, inj.calls())?;
    let mut made = Vec::new();
    // Members share nothing with their parent (see `crate::tree::plan`).
    for &(k, member) in members {
        // CLONE_PARENT takes the exit signal of the helper (SIGCHLD): clone3 wants 0 here.
        let child = fork_task(&mut hinj, helper, Pid(member), libc::CLONE_PARENT as u64, 0)?;
        ctx.created.lock().expect("not poisoned").push(child);
        made.push((k, child));
    }
    session::end_helper(hinj)?;
    session::reap(inj, helper)?;
    ctx.created.lock().expect("not poisoned").retain(|&p| p != helper);
    log::info!("pid {pid}: session {sid} made again by a helper with its leader's pid, which has exited");
    Ok(made)
}

/// Make the new task `helper` lead a session of its own (`setsid`) and trace what it forks: a
/// helper that makes a session whose leader has exited again (see `crate::session`). `calls` counts
/// the calls of the restore.
pub(super) fn lead_session(helper: Pid, calls: &Calls) -> Result<Injector> {
    let mut inj = Injector::new(helper, mem::gadget::current_code_area(helper)?, None, SCRATCH_LEN, calls)?;
    inj.setsid()?;
    trace_new_tasks(helper)?;
    Ok(inj)
}

/// Create the root (`img`) in a time namespace of its own (see `crate::ns`): a short-lived helper,
/// single-threaded and traced, unshares a time namespace for its children, gets the image's
/// offsets written (before any task is in it), and forks the root with `CLONE_PARENT` (so it is
/// our child, in the new namespace from its first instruction, with its PID at every level), then
/// exits. Returns the root.
pub(super) fn create_in_time_ns(
    img: &ProcImage,
    namespaces: &[stasis_image::model::Namespace],
    created: &std::sync::Mutex<Vec<Pid>>,
    calls: &Calls,
) -> Result<Pid> {
    let pid = img.process.pid;
    let helper = stasis_sys::process::spawn_traced_any().map_err(|e| Error::Failed {
        pid: Pid(pid),
        what: format!("creating the helper of its time namespace: {e}"),
    })?;
    created.lock().expect("not poisoned").push(helper);
    let mut inj = Injector::new(helper, mem::gadget::current_code_area(helper)?, None, SCRATCH_LEN, calls)?;
    inj.unshare(libc::CLONE_NEWTIME)?;
    let path = format!("/proc/{helper}/timens_offsets");
    std::fs::write(&path, crate::ns::time_offsets_text(&img.process, namespaces)?).map_err(Error::io(&path))?;
    trace_new_tasks(helper)?;
    // CLONE_PARENT takes the exit signal of the helper (SIGCHLD): clone3 wants 0 here.
    let (flags, inner) = crate::ns::root_clone(&img.process);
    let mut inner_tids = [0; stasis_sys::remote::MAX_INNER_LEVELS];
    inner_tids.iter_mut().zip(&inner).for_each(|(slot, id)| *slot = *id);
    let args = CloneArgs {
        flags: flags | libc::CLONE_PARENT as u64,
        exit_signal: 0,
        set_tid: Some(Pid(pid)),
        inner_tids,
        child_tid: 0,
    };
    let child = fork_as(&mut inj, helper, (args, Pid(pid)))?;
    created.lock().expect("not poisoned").push(child);
    session::end_helper(inj)?;
    created.lock().expect("not poisoned").retain(|&p| p != helper);
    log::info!("pid {pid}: created in a time namespace of its own by helper {helper}, which has exited");
    Ok(child)
}

/// Make process `parent` fork a child with PID `want` (`clone3` with `set_tid`, SIGCHLD, and `flags`
/// for what it shares with its parent); the child is traced and stopped before it runs anything.
pub(super) fn fork_child(inj: &mut dyn Remote, parent: Pid, want: Pid, flags: u64) -> Result<Pid> {
    fork_task(inj, parent, want, flags, libc::SIGCHLD as u64)
}

/// [`fork_child`] with `exit_signal` for the signal the parent gets when the child ends (0: none).
fn fork_task(inj: &mut dyn Remote, parent: Pid, want: Pid, flags: u64, exit_signal: u64) -> Result<Pid> {
    fork_as(inj, parent, (CloneArgs { flags, exit_signal, set_tid: Some(want), ..Default::default() }, want))
}

/// Make process `parent` fork a child with `args` (its `set_tid` the child's PID here), which
/// `clone3` returns as `seen` in the parent's PID namespace; the child is traced and stopped.
fn fork_as(inj: &mut dyn Remote, parent: Pid, (args, seen): (CloneArgs, Pid)) -> Result<Pid> {
    let want = args.set_tid.unwrap_or(seen);
    let got = inj.clone3(&args).map_err(|e| Error::Step {
        pid: parent,
        what: format!("child process {want}"),
        source: Box::new(e.into()),
    })?;
    if got != seen {
        return Err(Error::Failed { pid: parent, what: format!("child {want} was created as {got}") });
    }
    let child = want;
    match ptrace::wait(child).map_err(Error::sys(child.0, "waiting for a new child"))? {
        WaitStatus::Stopped { .. } => Ok(child),
        status => Err(Error::Failed { pid: child, what: format!("new child did not stop: {status:?}") }),
    }
}

/// A just-forked child `child` that leads a process group of its own (not a session) is made its
/// leader at once by its parent (`setpgid(child, child)`, `child` its id in the parent's PID
/// namespace), before it is built (maybe on another tracer thread), so that the zombies forked next
/// can join that group.
fn lead_group_now(inj: &mut Injector, child: Pid, p: &ProcessEntry) -> Result<()> {
    if p.pgid != p.pid || p.sid == p.pid {
        return Ok(());
    }
    inj.setpgid(child.0, child.0).map_err(|e| Error::Step {
        pid: child,
        what: "leading its process group (set by its parent)".into(),
        source: Box::new(e.into()),
    })?;
    Ok(())
}

/// Make a just-forked child die as the zombie `z` did (its exit code, or its signal with the default
/// disposition), and take the tracer's notification only: its parent sees a zombie to reap. It is
/// first put in its process group: its own, or one that exists by now (a sibling's or an
/// ancestor's; `local`: its id in the zombie's PID namespace, see `crate::ns::local_pgid`).
fn make_zombie(child: Pid, (z, local): (&ProcessEntry, Option<i32>), calls: &Calls) -> Result<()> {
    let mut inj = Injector::new(child, mem::gadget::current_code_area(child)?, None, SCRATCH_LEN, calls)?;
    session::restore(&mut inj, z)?;
    if z.pgid != z.pid && z.sid != z.pid {
        session::join_group(&mut inj, child, z, local)?;
    }
    let status = z.exit_status;
    let (exited, code, sig) = (libc::WIFEXITED(status), libc::WEXITSTATUS(status), libc::WTERMSIG(status));
    if exited {
        inj.exit_group(code)?;
    } else {
        // No core file: the status keeps the signal, not the core-dump bit.
        inj.prlimit64_set(libc::RLIMIT_CORE, 0, 0)?;
        // SIGKILL's disposition cannot be changed (EINVAL) and is always the default.
        if sig != libc::SIGKILL {
            inj.rt_sigaction_set(sig, &Default::default())?;
        }
        ptrace::set_sigmask(child, 0).map_err(Error::sys(child.0, "unblocking signals"))?;
        let local = crate::ns::local(&z.nspid, child);
        inj.tgkill_and_leave(local, local, sig)?;
    }
    loop {
        match ptrace::wait(child).map_err(Error::sys(child.0, "waiting for a zombie to exit"))? {
            WaitStatus::Exited(_) | WaitStatus::Signaled(_) => return Ok(()),
            WaitStatus::Stopped { sig: s, event: 0 } if s != libc::SIGTRAP => {
                ptrace::cont(child, s).map_err(Error::sys(child.0, "letting a zombie die"))?
            }
            _ => ptrace::cont(child, 0).map_err(Error::sys(child.0, "letting a zombie die"))?,
        }
    }
}

/// Dequeue a pending SIGCHLD (blocked during the restore) with a zero-timeout `rt_sigtimedwait`.
fn flush_sigchld(inj: &mut dyn Remote) -> Result<()> {
    inj.rt_sigtimedwait_poll(1u64 << (libc::SIGCHLD - 1))?;
    Ok(())
}

/// A place for the scratch area of process `img` that is free both in its image's layout and in the
/// layout new task `task` has now (a copy of its parent, or of us), read from its own maps: the
/// layout it was copied from may have changed since the clone.
pub(super) fn scratch_in_copy(task: Pid, img: &ProcImage) -> Result<u64> {
    let mut busy: Vec<(u64, u64)> = img.mm.vmas.iter().map(|v| (v.start, v.end)).collect();
    busy.extend(proc::maps(&ProcRoot::system(), task.0)?.iter().map(|e| (e.start, e.end)));
    mem::find_free(&busy, SCRATCH_LEN)
        .ok_or(Error::Failed { pid: Pid(img.process.pid), what: "no free address for the scratch area".into() })
}

/// The signal a stopped process is stopped with again at its release (0: it was not stopped): the
/// one that had stopped it; SIGSTOP for an image that did not save it, and for a process in a group
/// that is orphaned here (the kernel would discard the other stop signals: a warning says so).
fn stop_signal(p: &ProcessEntry) -> i32 {
    match (p.stopped, p.stop_signal) {
        (false, _) => 0,
        (true, 0 | libc::SIGSTOP) => libc::SIGSTOP,
        (true, sig) if session::orphaned(p.pgid) => {
            log::warn!("pid {}: stopped by signal {sig}, stopped by SIGSTOP: its process group is orphaned", p.pid);
            libc::SIGSTOP
        }
        (true, sig) => sig,
    }
}

impl Built {
    /// Join the process group if it is another process's (before any release: see `join_groups`).
    pub fn join_group(&mut self, img: &super::Image) -> Result<()> {
        let p = &img.procs[self.idx].process;
        let procs: Vec<&ProcessEntry> = img.procs.iter().map(|q| &q.process).collect();
        session::join_group(&mut self.inj, self.pid, p, crate::ns::local_pgid(&procs, p, p.pgid))
    }

    /// A session leader gives its terminal's foreground to the group that had it (after
    /// `join_group`, before any release).
    pub fn set_foreground(&mut self, ctx: &Ctx) -> Result<()> {
        let img = &ctx.img.procs[self.idx];
        files::tty::restore::set_foreground(&mut self.inj, self.pid, &img.process, ctx.files.terminals())
    }

    /// Reap exited group helper `child`, a child of this process.
    pub fn reap(&mut self, child: Pid) -> Result<()> {
        session::reap(&mut self.inj, child)
    }

    /// Stage 9: each thread's last injected call removes its scratch area (the seccomp filters are in
    /// already, installed before the credentials: see `crate::seccomp`); then registers, mask, and go; the other threads first, the main
    /// thread last.
    /// `leave_stopped` (`--leave-stopped`): a process that ran at the dump is let go stopped by
    /// SIGSTOP.
    pub fn release(self, img: &ProcImage, leave_stopped: bool) -> Result<()> {
        let stop_signal = match stop_signal(&img.process) {
            0 if leave_stopped => libc::SIGSTOP,
            sig => sig,
        };
        let threads = self.threads;
        for (t, core) in threads.into_iter().zip(&img.threads) {
            t.release(core, stop_signal)?;
        }
        threads::let_go(self.inj, &img.core, stop_signal)
    }

    /// The last pass of the pidfds (see `files::pidfd`): every process of the tree exists now.
    pub fn finish_pidfds(&mut self, ctx: &Ctx) -> Result<()> {
        let img = &ctx.img.procs[self.idx];
        if img.process.shares & SHARES_FILES != 0 {
            return Ok(());
        }
        files::pidfd::install_late(&mut self.inj, self.pid, &img.fds, &ctx.img.files.files, &ctx.pidfds, true)
    }

    /// Give up on the process (the tree is being killed).
    pub fn abandon(self) {
        self.threads.into_iter().for_each(NewThread::abandon);
        self.inj.abandon();
    }

    fn park(self) -> Result<ParkedBuilt> {
        let threads = self.threads.into_iter().map(NewThread::park).collect::<Result<_>>()?;
        Ok(ParkedBuilt { idx: self.idx, pid: self.pid, inj: self.inj.park()?, threads, options: self.options })
    }
}
