//! Restore stage 2 as data: from `pstree.img` alone, who creates whom, with which clone flags and
//! helpers, which fd table and memory each process gets from its parent, in which order. Pure and
//! validated: an image whose tree cannot be made again as it was is refused here, by name, before
//! any process exists.
//!
//! Each process, once built, creates in this order: the helpers of process groups whose leader had
//! exited (no exit signal), its zombie children (made to exit as they did), its children, then, for
//! each session whose leader had exited and whose helper it forks, that helper, which calls
//! `setsid` and forks the members of the session with `CLONE_PARENT`. Its children are then built
//! in that order ([`ProcPlan::builds`]).

use super::clone_flags;
use crate::error::{Error, Result};
use stasis_image::model::{LeaderHelper, ProcessEntry, PsTree, SHARES_FILES, SHARES_FS, SHARES_SIGHAND, SHARES_VM};
use std::collections::HashSet;

/// The `SHARES_*` bits a restore can make again.
const KNOWN_SHARES: u32 = SHARES_VM | SHARES_FILES | SHARES_FS | SHARES_SIGHAND;

/// One task a process creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Creation {
    /// The helper of process group `pid`, whose leader had exited: forked with that PID and no
    /// exit signal; it leads the group until the members joined, then exits.
    GroupHelper { pid: i32 },
    /// Zombie `zombie` (index in [`Plan::zombies`]): forked with its PID, then made to exit as it did.
    Zombie { zombie: usize, pid: i32 },
    /// Process `idx` of [`Plan::procs`]: forked with its PID and `flags` (what it shares).
    Child { idx: usize, pid: i32, flags: u64 },
    /// The helper of session `sid`, whose leader had exited: forked with that PID, it calls `setsid`
    /// and forks the processes `members` (index, PID) with `CLONE_PARENT`, then exits.
    Session { sid: i32, members: Vec<(usize, i32)> },
}

/// What one process of the image is made of and makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcPlan {
    pub pid: i32,
    /// Its fd table is its parent's (`CLONE_FILES`): none of its own is installed.
    pub shares_files: bool,
    /// Its address space is its parent's (`CLONE_VM`): no memory of its own is restored.
    pub shares_vm: bool,
    /// What it creates, in order.
    pub creates: Vec<Creation>,
    /// Its children of the image (index, PID) in the order they are built.
    pub builds: Vec<(usize, i32)>,
}

/// The whole of restore stage 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The processes of the image that are not zombies (the root first), in image order.
    pub procs: Vec<ProcPlan>,
    /// The zombies (pids), in image order.
    pub zombies: Vec<i32>,
    /// The root's session, if its leader had exited and is not in the image: a helper with the
    /// leader's PID forks the root, unless that PID is taken on this machine. None for a root in a
    /// PID namespace of its own.
    pub root_session_helper: Option<i32>,
}

/// The plan of `tree`, or why it cannot be restored.
pub fn plan(tree: &PsTree) -> Result<Plan> {
    let (procs, zombies) = split(tree)?;
    check_pids(&procs, &zombies, tree)?;
    check_parents(&procs, &zombies, tree)?;
    let root = procs[0];
    let sid = root.sid;
    // The init of a PID namespace of its own cannot see a session outside it: it stays in ours.
    let gone = sid != root.pid && sid > 0 && !procs.iter().any(|p| p.pid == sid) && root.pid_ns == 0;
    let root_session_helper = gone.then_some(sid);
    let plans = (0..procs.len()).map(|idx| proc_plan(idx, &procs, &zombies, tree)).collect::<Result<_>>()?;
    Ok(Plan { procs: plans, zombies: zombies.iter().map(|z| z.pid).collect(), root_session_helper })
}

fn incompatible(what: String) -> Error {
    Error::Incompatible { file: "pstree.img".into(), what }
}

/// The processes (the root first, even a zombie one is refused) and the zombies, in image order.
fn split(tree: &PsTree) -> Result<(Vec<&ProcessEntry>, Vec<&ProcessEntry>)> {
    let Some(root) = tree.processes.first() else { return Err(incompatible("no process".into())) };
    if root.zombie {
        return Err(incompatible(format!("the root {} is a zombie", root.pid)));
    }
    if root.shares != 0 {
        return Err(incompatible(format!(
            "the root {} shares {:#x} with a parent outside the image",
            root.pid, root.shares
        )));
    }
    let (zombies, procs): (Vec<&ProcessEntry>, Vec<&ProcessEntry>) = tree.processes.iter().partition(|p| p.zombie);
    Ok((procs, zombies))
}

/// Every PID and TID, and every helper's PID, is positive and appears once.
fn check_pids(procs: &[&ProcessEntry], zombies: &[&ProcessEntry], tree: &PsTree) -> Result<()> {
    let mut seen = HashSet::new();
    let tids =
        procs.iter().chain(zombies).flat_map(|p| std::iter::once(p.pid).chain(p.threads.iter().copied().skip(1)));
    let helpers = tree.group_helpers.iter().chain(&tree.session_helpers).map(|h| h.pid);
    for pid in tids.chain(helpers) {
        if pid <= 0 || !seen.insert(pid) {
            return Err(incompatible(format!("pid {pid} is not a pid, or appears twice")));
        }
    }
    for p in procs.iter().chain(zombies) {
        if p.threads.first().is_some_and(|&t| t != p.pid) {
            return Err(incompatible(format!("process {}: its first thread is {}", p.pid, p.threads[0])));
        }
    }
    Ok(())
}

/// Every process but the root comes after its parent, a process of the image (never a zombie);
/// every helper's parent is a process of the image; what a child shares can be made again.
fn check_parents(procs: &[&ProcessEntry], zombies: &[&ProcessEntry], tree: &PsTree) -> Result<()> {
    for (i, p) in procs.iter().enumerate().skip(1) {
        if !procs[..i].iter().any(|q| q.pid == p.ppid) {
            return Err(incompatible(format!("process {} comes before its parent {}", p.pid, p.ppid)));
        }
        check_shares(p)?;
    }
    for z in zombies {
        if !procs.iter().any(|q| q.pid == z.ppid) {
            return Err(incompatible(format!("zombie {}: its parent {} is not a process of the image", z.pid, z.ppid)));
        }
    }
    for h in tree.group_helpers.iter().chain(&tree.session_helpers) {
        if !procs.iter().any(|q| q.pid == h.parent) {
            let what = format!("the helper of leader {}: its parent {} is not a process of the image", h.pid, h.parent);
            return Err(incompatible(what));
        }
    }
    Ok(())
}

/// The kernel shares signal handlers only with the address space (`CLONE_SIGHAND` needs `CLONE_VM`).
fn check_shares(p: &ProcessEntry) -> Result<()> {
    if p.shares & !KNOWN_SHARES != 0 {
        return Err(incompatible(format!("process {}: shares bits {:#x} this version does not know", p.pid, p.shares)));
    }
    if p.shares & SHARES_SIGHAND != 0 && p.shares & SHARES_VM == 0 {
        return Err(incompatible(format!("process {}: shares its signal handlers but not its memory", p.pid)));
    }
    Ok(())
}

fn proc_plan(idx: usize, procs: &[&ProcessEntry], zombies: &[&ProcessEntry], tree: &PsTree) -> Result<ProcPlan> {
    let p = procs[idx];
    let pid = p.pid;
    let helpers_of =
        |list: &[LeaderHelper]| -> Vec<i32> { list.iter().filter(|h| h.parent == pid).map(|h| h.pid).collect() };
    let mut creates: Vec<Creation> =
        helpers_of(&tree.group_helpers).into_iter().map(|pid| Creation::GroupHelper { pid }).collect();
    let kids: Vec<usize> = (1..procs.len()).filter(|&k| k != idx && procs[k].ppid == pid).collect();
    let sessions = helpers_of(&tree.session_helpers);
    let mut builds = Vec::new();
    for &k in kids.iter().filter(|&&k| !sessions.contains(&procs[k].sid)) {
        creates.push(Creation::Child { idx: k, pid: procs[k].pid, flags: clone_flags(procs[k].shares) });
        builds.push((k, procs[k].pid));
    }
    // After the live children (which lead their groups at once): a zombie may be in a group its
    // sibling leads.
    let zombie_kids = zombies.iter().enumerate().filter(|(_, z)| z.ppid == pid);
    creates.extend(zombie_kids.map(|(zombie, z)| Creation::Zombie { zombie, pid: z.pid }));
    for sid in sessions {
        let members: Vec<(usize, i32)> =
            kids.iter().filter(|&&k| procs[k].sid == sid).map(|&k| (k, procs[k].pid)).collect();
        if let Some(&(k, _)) = members.iter().find(|(k, _)| procs[*k].shares != 0) {
            let what =
                format!("sharing {:#x} with its parent while in session {sid}, whose leader exited", procs[k].shares);
            return Err(Error::Unsupported { pid: stasis_sys::Pid(procs[k].pid), what });
        }
        builds.extend(members.iter().copied());
        creates.push(Creation::Session { sid, members });
    }
    let shares_files = idx != 0 && p.shares & SHARES_FILES != 0;
    let shares_vm = idx != 0 && p.shares & SHARES_VM != 0;
    Ok(ProcPlan { pid, shares_files, shares_vm, creates, builds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, ppid: i32, sid: i32) -> ProcessEntry {
        ProcessEntry { pid, ppid, pgid: pid, sid, threads: vec![pid], ..Default::default() }
    }

    fn zombie(pid: i32, ppid: i32) -> ProcessEntry {
        ProcessEntry { zombie: true, exit_status: 3 << 8, ..proc(pid, ppid, 1) }
    }

    fn helper(pid: i32, parent: i32) -> LeaderHelper {
        LeaderHelper { pid, parent }
    }

    #[test]
    fn a_tree_is_made_parents_first_with_helpers_zombies_children_and_sessions_in_order() {
        let mut shared = proc(12, 10, 10);
        shared.shares = SHARES_VM | SHARES_FILES | SHARES_SIGHAND;
        let tree = PsTree {
            processes: vec![
                proc(10, 1, 10),
                proc(11, 10, 10),
                zombie(13, 10),
                shared,
                proc(14, 10, 20),
                proc(15, 11, 10),
            ],
            group_helpers: vec![helper(30, 10)],
            session_helpers: vec![helper(20, 10)],
            ..Default::default()
        };
        let plan = plan(&tree).expect("a valid tree");
        assert_eq!(plan.zombies, [13]);
        assert_eq!(plan.root_session_helper, None);
        let pids: Vec<i32> = plan.procs.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [10, 11, 12, 14, 15]);
        let flags = (libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_SIGHAND) as u64;
        assert_eq!(
            plan.procs[0].creates,
            [
                Creation::GroupHelper { pid: 30 },
                Creation::Child { idx: 1, pid: 11, flags: 0 },
                Creation::Child { idx: 2, pid: 12, flags },
                Creation::Zombie { zombie: 0, pid: 13 },
                Creation::Session { sid: 20, members: vec![(3, 14)] },
            ]
        );
        assert_eq!(plan.procs[0].builds, [(1, 11), (2, 12), (3, 14)]);
        assert_eq!(plan.procs[1].creates, [Creation::Child { idx: 4, pid: 15, flags: 0 }]);
        assert!(plan.procs[2].shares_files && plan.procs[2].shares_vm);
        assert!(!plan.procs[1].shares_files && !plan.procs[0].shares_vm);
    }

    #[test]
    fn a_root_whose_session_leader_exited_needs_a_helper() {
        let tree = PsTree { processes: vec![proc(10, 1, 7)], ..Default::default() };
        assert_eq!(plan(&tree).expect("valid").root_session_helper, Some(7));
    }

    fn refusal(tree: &PsTree) -> String {
        plan(tree).expect_err("refused").to_string()
    }

    #[test]
    fn trees_that_cannot_be_made_again_are_refused_by_name() {
        let empty = PsTree::default();
        assert!(refusal(&empty).contains("no process"), "{}", refusal(&empty));
        let orphan = PsTree { processes: vec![proc(10, 1, 10), proc(12, 11, 10)], ..Default::default() };
        assert!(refusal(&orphan).contains("process 12 comes before its parent 11"), "{}", refusal(&orphan));
        let twice = PsTree { processes: vec![proc(10, 1, 10), proc(10, 10, 10)], ..Default::default() };
        assert!(refusal(&twice).contains("pid 10"), "{}", refusal(&twice));
        let zombie_root = PsTree { processes: vec![zombie(10, 1)], ..Default::default() };
        assert!(refusal(&zombie_root).contains("zombie"), "{}", refusal(&zombie_root));
        let zombie_parent =
            PsTree { processes: vec![proc(10, 1, 10), zombie(11, 10), proc(12, 11, 10)], ..Default::default() };
        assert!(refusal(&zombie_parent).contains("before its parent 11"), "{}", refusal(&zombie_parent));
        let mut sighand = proc(11, 10, 10);
        sighand.shares = SHARES_SIGHAND;
        let sighand = PsTree { processes: vec![proc(10, 1, 10), sighand], ..Default::default() };
        assert!(refusal(&sighand).contains("signal handlers but not its memory"), "{}", refusal(&sighand));
        let lost_helper =
            PsTree { processes: vec![proc(10, 1, 10)], group_helpers: vec![helper(30, 99)], ..Default::default() };
        assert!(refusal(&lost_helper).contains("parent 99"), "{}", refusal(&lost_helper));
        let helper_pid =
            PsTree { processes: vec![proc(10, 1, 10)], group_helpers: vec![helper(10, 10)], ..Default::default() };
        assert!(refusal(&helper_pid).contains("pid 10"), "{}", refusal(&helper_pid));
    }

    #[test]
    fn a_session_member_sharing_with_its_parent_is_refused() {
        let mut member = proc(11, 10, 20);
        member.shares = SHARES_FS;
        let tree = PsTree {
            processes: vec![proc(10, 1, 10), member],
            session_helpers: vec![helper(20, 10)],
            ..Default::default()
        };
        assert!(refusal(&tree).contains("pid 11: sharing 0x4"), "{}", refusal(&tree));
    }
}
