//! Sessions and process groups: which layouts a dump can keep, and how restore makes them again.
//!
//! A session or group leader in the tree becomes one again with `setsid` / `setpgid(0, 0)`; every
//! other process stays in the session it is created in (its parent's) and joins its group at the
//! release, once every process exists. Two kinds of leaders are gone by the time of a dump:
//! - the root's session leader (a daemon after its double fork): `restore::create_root` forks the
//!   root from a helper with the leader's PID that calls `setsid`;
//! - a group leader that exited while members of its group live on: a helper with the leader's PID,
//!   forked by a member's parent (so it is in the members' session), calls `setpgid(0, 0)`; the
//!   members join the group, then the helper exits and its parent reaps it. The helper is created with
//!   no exit signal, so its end queues no SIGCHLD the parent never had.
//!
//! - the session leader of a process below the root whose parent is in another session (the process
//!   was reparented to a child subreaper): a helper with the leader's PID, forked by that parent, calls
//!   `setsid` and forks the process with CLONE_PARENT (so its parent is the right one from the start),
//!   then exits and the parent reaps it.
//!
//! Anything else (a session whose leader is alive outside the tree, a dead session of the children of
//! two parents, a dead group none of whose members has its parent in its session) is refused at dump
//! by name.

use crate::error::{Error, Result};
use crate::proc::{self, ProcRoot};
use stasis_image::model::{LeaderHelper, ProcessEntry};
use stasis_sys::inject::{Calls, Injector, SCRATCH_LEN};
use stasis_sys::remote::Remote;
use stasis_sys::Pid;

/// The ids of one process of the tree: pid, parent, group, session.
#[derive(Clone, Copy, Debug)]
pub struct Ids {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
}

/// The groups of `tree` (root first, parents before children) whose leader is `gone`, each with the
/// process that forks its helper: the parent of the first member below the root whose parent is in
/// the tree and in the member's session. A gone group with no such member gets no helper.
pub fn group_helpers(tree: &[Ids], gone: impl Fn(i32) -> bool) -> Vec<LeaderHelper> {
    let mut out: Vec<LeaderHelper> = Vec::new();
    for p in tree.iter().skip(1) {
        if p.pgid == p.pid || !gone(p.pgid) || out.iter().any(|h| h.pid == p.pgid) {
            continue;
        }
        if tree.iter().any(|q| q.pid == p.ppid && q.sid == p.sid) {
            out.push(LeaderHelper { pid: p.pgid, parent: p.ppid });
        }
    }
    out
}

/// The helpers restore needs (see the module doc).
#[derive(Debug, Default)]
pub struct Helpers {
    pub groups: Vec<LeaderHelper>,
    pub sessions: Vec<LeaderHelper>,
}

/// The sessions of `tree` whose leader is `gone`, of processes below the root whose parent is in
/// another session, each with that parent (which forks the session's helper). Such processes of one
/// session must have one parent: a second helper could not make the same session again.
fn session_helpers(tree: &[Ids], gone: impl Fn(i32) -> bool) -> Result<Vec<LeaderHelper>> {
    let mut out: Vec<LeaderHelper> = Vec::new();
    for p in tree.iter().skip(1) {
        let parent_sid = tree.iter().find(|q| q.pid == p.ppid).map(|q| q.sid);
        if p.sid == p.pid || parent_sid.is_none_or(|ps| ps == p.sid) {
            continue;
        }
        if !gone(p.sid) {
            let what = format!("session {}, which is neither its parent's nor its own (its leader is alive)", p.sid);
            return Err(Error::Unsupported { pid: Pid(p.pid), what });
        }
        match out.iter().find(|h| h.pid == p.sid) {
            Some(h) if h.parent != p.ppid => {
                let what = format!(
                    "session {} whose leader has exited, shared with the children of {} and of {}",
                    p.sid, h.parent, p.ppid
                );
                return Err(Error::Unsupported { pid: Pid(p.pid), what });
            }
            Some(_) => {}
            None => out.push(LeaderHelper { pid: p.sid, parent: p.ppid }),
        }
    }
    Ok(out)
}

/// Sessions and groups restore can make again (see the module doc), and the helpers it needs for
/// that. `tree` is the frozen tree, root first; `zombies` its zombies (a zombie that led a group is
/// made again as its leader before it exits: its group exists).
pub fn check(root: &ProcRoot, tree: &[Ids], zombies: &[ProcessEntry]) -> Result<Helpers> {
    let in_tree = |p: i32| tree.iter().any(|q| q.pid == p) || zombies.iter().any(|z| z.pid == p);
    let alive = |p: i32| proc::stat(root, p).is_ok_and(|s| s.state != 'Z');
    let dead = |p: i32| !in_tree(p) && !alive(p);
    // The root's session, if its leader has exited, is made again with its group by the helper of
    // `restore::create_root`; the others by `session_helpers`.
    let root_session = tree.first().filter(|r| r.sid != r.pid && dead(r.sid)).map(|r| r.sid);
    let sessions = session_helpers(tree, |s| dead(s) && Some(s) != root_session)?;
    let gone = |p: i32| dead(p) && Some(p) != root_session && !sessions.iter().any(|h| h.pid == p);
    let groups = group_helpers(tree, gone);
    if let Some(p) = tree.iter().find(|p| p.pgid != p.pid && gone(p.pgid) && !groups.iter().any(|h| h.pid == p.pgid)) {
        let what = format!(
            "process group {} whose leader has exited, with no member whose parent is in the dump and in its \
             session {} to recreate it",
            p.pgid, p.sid
        );
        return Err(Error::Unsupported { pid: Pid(p.pid), what });
    }
    Ok(Helpers { groups, sessions })
}

/// A session or group leader becomes one again; otherwise the process stays in the session and group
/// it was created in (its parent's; for the root, stasis's, as with `--shell-job`). A group led by
/// another process is joined at the release ([`join_group`]), once every process exists.
pub fn restore(inj: &mut dyn Remote, p: &ProcessEntry) -> Result<()> {
    if p.sid == p.pid {
        inj.setsid()?;
    } else if p.pgid == p.pid {
        inj.setpgid(0, 0)?;
    }
    Ok(())
}

/// Join the group led by another process (or held by a group helper), if not in it yet. `local`:
/// the group's id in the process's PID namespace (see `crate::ns::local_pgid`), None for a group
/// it cannot name there.
pub fn join_group(inj: &mut dyn Remote, pid: Pid, p: &ProcessEntry, local: Option<i32>) -> Result<()> {
    let now = proc::stat(&ProcRoot::system(), pid.0)?.pgrp;
    if p.pgid != now && p.pgid != p.pid && proc::stat(&ProcRoot::system(), p.pgid).is_ok() {
        let Some(local) = local else {
            log::info!("pid {pid}: stays in group {now}: group {} is outside its PID namespace", p.pgid);
            return Ok(());
        };
        inj.setpgid(0, local).map_err(|e| Error::Step {
            pid,
            what: format!("process group {}", p.pgid),
            source: Box::new(e.into()),
        })?;
    }
    Ok(())
}

/// Whether process group `pgid` is orphaned now: no member has its parent in another group of the
/// same session (`/proc/*/stat`). The kernel discards SIGTSTP, SIGTTIN and SIGTTOU sent to a member
/// of an orphaned group instead of stopping it.
pub fn orphaned(pgid: i32) -> bool {
    let root = ProcRoot::system();
    let Ok(dir) = std::fs::read_dir(root.path()) else { return false };
    let members = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| proc::stat(&root, p).ok())
        .filter(|s| s.pgrp == pgid);
    let mut members = members.peekable();
    members.peek().is_some()
        && !members
            .into_iter()
            .any(|m| proc::stat(&root, m.ppid).is_ok_and(|parent| parent.session == m.session && parent.pgrp != pgid))
}

/// A group helper, stopped, leading its group until the members have joined it.
pub struct Helper {
    pub pid: Pid,
    /// The process that forked it, which reaps it.
    pub parent: Pid,
    inj: Injector,
}

impl Helper {
    /// Make the just-forked task `pid` (a child of `parent`, created without an exit signal) lead a
    /// group of its own; `calls` counts the calls of the restore.
    pub fn lead(pid: Pid, parent: Pid, vdso: (u64, u64), calls: &Calls) -> Result<Helper> {
        let mut inj = Injector::new(pid, vdso, None, SCRATCH_LEN, calls)?;
        inj.setpgid(0, 0).map_err(|e| Error::Step {
            pid,
            what: "leading the process group of its pid (group helper)".into(),
            source: Box::new(e.into()),
        })?;
        Ok(Helper { pid, parent, inj })
    }

    /// Exit; the tracer's notification is taken, and the zombie is left for `parent` to reap
    /// (`reap` below, injected in the parent).
    pub fn exit(self) -> Result<()> {
        end_helper(self.inj)?;
        log::info!("pid {}: process group {} made again by a helper, which has exited", self.parent, self.pid);
        Ok(())
    }

    /// Give up on the helper (the tree is being killed).
    pub fn abandon(self) {
        self.inj.abandon();
    }

    /// Hand the helper over to another tracer thread (see [`Injector::park`]).
    pub fn park(self) -> Result<ParkedHelper> {
        Ok(ParkedHelper { pid: self.pid, parent: self.parent, parked: self.inj.park()? })
    }
}

/// A group helper handed over to another tracer thread.
pub struct ParkedHelper {
    pid: Pid,
    parent: Pid,
    parked: stasis_sys::inject::Parked,
}

impl ParkedHelper {
    /// Attach it from this thread, with ptrace `options`.
    pub fn adopt(self, options: u32) -> Result<Helper> {
        Ok(Helper { pid: self.pid, parent: self.parent, inj: self.parked.adopt(options)? })
    }
}

/// End the helper driven by `inj` with an injected `exit_group(0)`; only the tracer's notification
/// is taken, so the helper's parent sees it exit (and, for a restored parent, reaps it: [`reap`]).
pub fn end_helper(inj: Injector) -> Result<()> {
    let pid = inj.pid();
    inj.exit_group(0)?;
    crate::task::reap(&[pid]);
    Ok(())
}

/// Reap the exited helper `child` in its parent (`wait4(child, NULL, __WALL)`).
pub fn reap(inj: &mut dyn Remote, child: Pid) -> Result<()> {
    inj.wait4(child, libc::__WALL).map_err(|e| Error::Step {
        pid: inj.pid(),
        what: format!("reaping helper {child}"),
        source: Box::new(e.into()),
    })?;
    Ok(())
}
