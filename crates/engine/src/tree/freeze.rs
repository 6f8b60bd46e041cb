//! Freezing and walking the tree of a dump: every process below the root, parents before children,
//! each attached on the tracer thread of its index; zombies only recorded; and, at the end (or on an
//! error), every process resumed or killed, each on its thread.

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use crate::task::FrozenProcess;
use crate::tracers::{Pending, Tracers};
use crate::Progress;
use stasis_image::model::ProcessEntry;
use stasis_sys::inject::Calls;
use stasis_sys::Pid;

/// The check of a process below the root before it is frozen (our namespaces, no other tracer),
/// given our namespaces.
pub(crate) type Check = fn(&ProcRoot, Pid, &crate::ns::Ours) -> Result<()>;

/// A frozen process of the tree as the dump sees it: its index, PID and `/proc/PID/stat` from
/// before the freeze. Its tasks are held by the tracer thread of its index (see [`crate::tracers`]).
pub(crate) struct Member {
    pub idx: usize,
    pub pid: Pid,
    pub stat: proc::Stat,
}

/// The tracer threads of a dump, each holding the frozen processes it attached.
pub(crate) type Pool<'env> = Tracers<'env, FrozenProcess>;

/// What happens between seizing the tree and waiting for its tasks to stop: nothing, or (a cgroup
/// v1 freezer, whose frozen tasks stop only once thawed) a step given the whole seized tree, which
/// checks it and thaws the cgroup.
pub(crate) type BeforeSettle<'a> = Option<&'a mut dyn FnMut(&[Member], &[ProcessEntry]) -> Result<()>>;

/// Freeze the root and every process below it, parents before children, walking the tree again
/// until no new process appears (one not yet frozen may have forked). Zombie children are only
/// recorded. Each process is attached by the tracer thread of its index. With `before_settle`,
/// every process is seized first, the step runs, and only then are the tasks waited for. On error,
/// the processes frozen so far come back with it.
#[allow(clippy::type_complexity)]
pub(crate) fn freeze_tree<'env>(
    pool: &Pool<'env>,
    root: &'env ProcRoot,
    (pid, calls): (Pid, &Calls),
    (ours, check): (&'env crate::ns::Ours, Check),
    mut before_settle: BeforeSettle,
    progress: &mut dyn FnMut(Progress),
) -> std::result::Result<(Vec<Member>, Vec<ProcessEntry>), (Vec<Member>, Error)> {
    let mut tree: Vec<Member> = Vec::new();
    let mut zombies: Vec<ProcessEntry> = Vec::new();
    let mut todo = vec![pid];
    loop {
        let settle = before_settle.is_none();
        while !todo.is_empty() {
            let batch = std::mem::take(&mut todo);
            if let Err(e) =
                freeze_batch(pool, root, (batch, pid, calls), (ours, check), settle, &mut tree, &mut zombies, progress)
            {
                return Err((tree, e));
            }
            if let Err(e) = new_children(root, &tree, &zombies, &mut todo) {
                return Err((tree, e));
            }
        }
        let Some(step) = before_settle.take() else { break };
        if let Err(e) = step(&tree, &zombies).and_then(|()| settle_all(pool, root, &tree, calls, progress)) {
            return Err((tree, e));
        }
        if let Err(e) = new_children(root, &tree, &zombies, &mut todo) {
            return Err((tree, e));
        }
    }
    Ok((tree, zombies))
}

/// The processes found in one walk frozen (or only seized, unless `settle`) at once, each on its
/// tracer thread, and added to `tree` (or `zombies`).
#[allow(clippy::too_many_arguments)]
fn freeze_batch<'env>(
    pool: &Pool<'env>,
    root: &'env ProcRoot,
    (batch, top, calls): (Vec<Pid>, Pid, &Calls),
    (ours, check): (&'env crate::ns::Ours, Check),
    settle: bool,
    tree: &mut Vec<Member>,
    zombies: &mut Vec<ProcessEntry>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let mut frozen = Vec::new();
    let mut next = tree.len();
    for p in batch {
        match start_freeze(pool, root, (p, top), (ours, check), (next, settle), calls)? {
            (stat, None) => zombies.push(zombie_entry(&stat)),
            (stat, Some(pending)) => {
                frozen.push((Member { idx: next, pid: p, stat }, pending));
                next += 1;
            }
        }
    }
    let mut failed = None;
    for (member, pending) in frozen {
        match pool.wait(pending, progress) {
            Ok(()) => tree.push(member),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The children of the processes of `tree` not known yet, added to `todo`.
fn new_children(root: &ProcRoot, tree: &[Member], zombies: &[ProcessEntry], todo: &mut Vec<Pid>) -> Result<()> {
    for m in tree {
        for child in proc::children(root, m.pid.0)? {
            let known = tree.iter().any(|t| t.pid.0 == child) || zombies.iter().any(|z| z.pid == child);
            if !known && !todo.contains(&Pid(child)) {
                todo.push(Pid(child));
            }
        }
    }
    Ok(())
}

/// Wait for every seized process of `tree` to stop, each on its tracer thread.
fn settle_all<'env>(
    pool: &Pool<'env>,
    root: &'env ProcRoot,
    tree: &[Member],
    calls: &Calls,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let settling: Vec<_> = tree
        .iter()
        .map(|m| {
            let (idx, stopped, calls) = (m.idx, m.stat.state == 'T', calls.clone());
            pool.run(idx, move |owned, _| match owned.get_mut(&idx) {
                Some(f) => f.settle(root, stopped, &calls),
                None => Ok(()),
            })
        })
        .collect();
    let mut failed = None;
    for pending in settling {
        if let Err(e) = pool.wait(pending, progress) {
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The stat of `p` and, unless it is a zombie, the check (`check`) and freezing (or, unless
/// `settle`, seizing) of `p` started on the tracer thread of `idx`.
fn start_freeze<'env>(
    pool: &Pool<'env>,
    root: &'env ProcRoot,
    (p, top): (Pid, Pid),
    (ours, check): (&'env crate::ns::Ours, Check),
    (idx, settle): (usize, bool),
    calls: &Calls,
) -> Result<(proc::Stat, Option<Pending<Result<()>>>)> {
    let stat = proc::stat(root, p.0)?;
    if stat.state == 'Z' {
        return Ok((stat, None));
    }
    let stopped = stat.state == 'T';
    // A vfork parent does not stop for ptrace until its child execs or exits: refused at once.
    if stat.state == 'D' && matches!(proc::wchan(root, p.0).as_str(), "kernel_clone" | "wait_for_vfork_done") {
        let what = "a process waiting in vfork() for its child to exec or exit".to_string();
        return Err(Error::Unsupported { pid: p, what });
    }
    let calls = calls.clone();
    let frozen = pool.run(idx, move |owned, _| {
        if p != top {
            check(root, p, ours)?;
        }
        let f = if settle {
            FrozenProcess::freeze(root, p, stopped, &calls)?
        } else {
            FrozenProcess::seize(root, p, stopped, &calls)?
        };
        owned.insert(idx, f);
        Ok(())
    });
    Ok((stat, Some(frozen)))
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

/// If a process of the tree died while frozen, say so; otherwise `err`. Work not yet started on
/// the tracer threads is dropped first.
pub(crate) fn explain(pool: &Pool, tree: &[Member], err: Error, progress: &mut dyn FnMut(Progress)) -> Error {
    pool.cancel();
    let mut err = err;
    for m in tree {
        let idx = m.idx;
        let ask = pool.run(idx, move |owned, _| match owned.get_mut(&idx) {
            Some(f) => f.explain(err),
            None => err,
        });
        err = pool.wait(ask, progress);
        if matches!(err, Error::Exited { .. }) {
            break;
        }
    }
    err
}

/// After [`end_all`] with [`FrozenProcess::stop`]: wait (up to 2 s) until each process of the tree
/// shows the stop in `/proc` (the SIGSTOP is taken once the process runs), so that the caller sees
/// it stopped; one that does not is named in a warning.
fn wait_stopped(root: &ProcRoot, tree: &[Member]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    for m in tree {
        while proc::stat(root, m.pid.0).is_ok_and(|s| s.state != 'T') {
            if std::time::Instant::now() > deadline {
                log::warn!("pid {}: not stopped yet 2 s after its SIGSTOP (--leave-stopped)", m.pid);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Let every process of the tree run on after a dump or pre-dump that keeps it, or leave it
/// stopped (`stopped`: `--leave-stopped`), and see it stopped.
pub(crate) fn let_go(
    pool: &Pool,
    root: &ProcRoot,
    tree: &[Member],
    stopped: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    if !stopped {
        return end_all(pool, tree, FrozenProcess::resume, progress);
    }
    end_all(pool, tree, FrozenProcess::stop, progress)?;
    wait_stopped(root, tree);
    Ok(())
}

/// Resume or kill every process (`end`), each on its tracer thread, all threads at once (each
/// takes its processes children first).
pub(crate) fn end_all(
    pool: &Pool,
    tree: &[Member],
    end: fn(FrozenProcess) -> Result<()>,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let ending: Vec<_> = tree
        .iter()
        .rev()
        .map(|m| {
            let idx = m.idx;
            pool.run(idx, move |owned, _| owned.remove(&idx).map_or(Ok(()), end))
        })
        .collect();
    let mut first_error = None;
    for ended in ending {
        if let Err(e) = pool.wait(ended, progress) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
