//! Sessions and process groups made with setsid and setpgid survive: the root leads a session
//! (the harness started it with setsid; it calls setsid itself otherwise); child A leads a process
//! group of its own (setpgid(0, 0)); child B joins A's group (setpgid(0, A)); child C leads a
//! second session (setsid) and has two children in it: C1 stays in C's group, C2 leads a group of
//! its own inside C's session. Child L leads a group (setpgid(0, 0)) that child M joins; then L is
//! killed and reaped, so M is in a live group whose leader has exited. After the wake every process checks its pid, parent, group and
//! session against the values the layout implies and what it recorded; the root also checks every
//! process's group and session from outside (getpgid(PID), getsid(PID)).

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, ProcIds, TreeChild, TreeParent, WAKE};
use std::time::Duration;

/// What a process must see: its parent, group and session (its pid is checked against the one
/// recorded at fork).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expect {
    ppid: i32,
    pgid: i32,
    sid: i32,
}

/// How a child arranges its group or session after the fork.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// setpgid(0, 0).
    OwnGroup,
    /// setpgid(0, leader).
    JoinGroup(i32),
    /// setsid().
    NewSession,
    /// Nothing: stays in the parent's group.
    Inherit,
}

impl Layout {
    fn apply(self) -> std::io::Result<()> {
        match self {
            Layout::OwnGroup => raw::setpgid(0, 0),
            Layout::JoinGroup(leader) => raw::setpgid(0, leader),
            Layout::NewSession => raw::setsid().map(drop),
            Layout::Inherit => Ok(()),
        }
    }

    /// The ids a child of a parent with `parent` ids gets with this layout.
    fn expect(self, pid: i32, parent: ProcIds) -> Expect {
        let (pgid, sid) = match self {
            Layout::OwnGroup => (pid, parent.sid),
            Layout::JoinGroup(leader) => (leader, parent.sid),
            Layout::NewSession => (pid, pid),
            Layout::Inherit => (parent.pgid, parent.sid),
        };
        Expect { ppid: parent.pid, pgid, sid }
    }
}

/// Checks this process's ids against what it recorded and what the layout implies.
fn check_ids(c: &mut Checker, recorded: ProcIds, want: Expect) {
    let Some(now) = c.ok("process ids", ProcIds::own()) else { return };
    c.same("pid, parent, group, session", &recorded, &now);
    c.same(
        "parent, group, session the layout implies",
        &want,
        &Expect { ppid: now.ppid, pgid: now.pgid, sid: now.sid },
    );
}

/// Checks from outside that `pid` is in group `pgid` and session `sid`.
fn check_other(c: &mut Checker, who: &str, pid: i32, want: Expect) {
    let got = (raw::getpgid(pid).ok(), raw::getsid(pid).ok());
    c.same(&format!("{who} (pid {pid}): getpgid, getsid from outside"), &(Some(want.pgid), Some(want.sid)), &got);
}

/// A child: applies `layout`, forks the children `grandchildren` describes, says ready with the
/// pids below it, waits, wakes its children, checks, collects them and reports.
fn child(layout: Layout, grandchildren: &[(&'static str, Layout)], parent: TreeParent, parent_ids: ProcIds) -> i32 {
    let mut s = workload::start();
    layout.apply().or_fail(&format!("{layout:?}"));
    let recorded = ProcIds::own().or_fail("process ids");
    let want = layout.expect(s.pid(), parent_ids);
    let kids: Vec<(TreeChild, Expect, Vec<i32>)> =
        grandchildren.iter().map(|&(name, l)| spawn(name, l, recorded)).collect();
    let below = kids.iter().flat_map(|(_, _, pids)| pids.iter().copied());
    let pids: Vec<String> = std::iter::once(s.pid()).chain(below).map(|p| p.to_string()).collect();
    parent.send(&format!("ready {}\n", pids.join(" "))).or_fail("ready line");
    s.wait_for_wake();
    for (kid, _, _) in &kids {
        s.checker.ok(&format!("wake {}", kid.name), raw::kill(kid.pid, WAKE));
    }
    check_ids(&mut s.checker, recorded, want);
    for (kid, want, _) in kids {
        check_other(&mut s.checker, &kid.name, kid.pid, want);
        kid.collect(&mut s.checker);
    }
    parent.report(s.into_checker())
}

/// Forks a child named `name` with `layout` (C gets its two children), waits for its ready line
/// (so that a later sibling can join its group) and returns it with the ids it must have and the
/// pids of its subtree.
fn spawn(name: &'static str, layout: Layout, me: ProcIds) -> (TreeChild, Expect, Vec<i32>) {
    let grandchildren: &[(&str, Layout)] = match name {
        "C" => &[("C1", Layout::Inherit), ("C2", Layout::OwnGroup)],
        _ => &[],
    };
    let kid = workload::fork_child(name, |link| child(layout, grandchildren, link, me));
    let line = kid.line().or_fail(&format!("ready line of {name}"));
    let list = line.strip_prefix("ready ").ok_or(format!("unexpected line {line:?}")).or_fail(name);
    let pids = list.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    let want = layout.expect(kid.pid, me);
    (kid, want, pids)
}

/// Forks L, which leads a group of its own (set by this parent, so that M can join it at once) and
/// sleeps; it shares no pipe with the others, so nothing of it outlives it.
fn group_leader() -> i32 {
    match raw::fork().or_fail("fork L") {
        raw::Forked::Child => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        raw::Forked::Parent(pid) => {
            raw::setpgid(pid, pid).or_fail("setpgid(L, L)");
            pid
        }
    }
}

/// Kills and reaps group leader `pid`: its group lives on in the members it has left.
fn end_group_leader(pid: i32) {
    raw::kill(pid, libc::SIGKILL).or_fail("kill the group leader L");
    while raw::try_waitpid(pid).or_fail("reap the group leader L").is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let mut s = workload::start();
    if raw::getsid(0).or_fail("getsid") != s.pid() {
        raw::setsid().or_fail("setsid");
    }
    let me = ProcIds::own().or_fail("process ids");
    let a = spawn("A", Layout::OwnGroup, me);
    let b = spawn("B", Layout::JoinGroup(a.0.pid), me);
    let c = spawn("C", Layout::NewSession, me);
    let l = group_leader();
    let m = spawn("M", Layout::JoinGroup(l), me);
    end_group_leader(l);
    let kids = vec![a, b, c, m];
    let pids: Vec<i32> = kids.iter().flat_map(|(_, _, pids)| pids.iter().copied()).collect();
    s.checker.same("processes below the root", &6, &pids.len());
    let awake = workload::wait_processes_in(&pids, &['S'], Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("processes not asleep at READY (pid, state): {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for (kid, _, _) in &kids {
        c.ok(&format!("wake {}", kid.name), raw::kill(kid.pid, WAKE));
    }
    let now = c.ok("process ids", ProcIds::own());
    c.same("root: pid, group, session", &Some((me.pid, me.pgid, me.sid)), &now.map(|n| (n.pid, n.pgid, n.sid)));
    c.same("root leads its session and group", &(me.pid, me.pid), &(me.sid, me.pgid));
    for (kid, want, _) in kids {
        check_other(c, &kid.name, kid.pid, want);
        kid.collect(c);
    }
    s.finish()
}
