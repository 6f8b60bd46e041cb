//! Processes reparented to a child subreaper, in a session whose leader has exited (a service
//! manager and the daemons below it): the root R is a child subreaper; its child S starts a session
//! (setsid), forks X1 and X2 into it and exits, so X1 and X2 become children of R in session S
//! (group S) with S gone; X2 forks Y, which stays in that session. After the wake each checks its
//! pid, parent, group and session; R checks them from outside and that it is still a child subreaper.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, ProcIds, TreeChild, TreeParent, WAKE};
use std::time::Duration;

/// The ids a process must have now: `ppid` and session/group `sid`.
fn check_ids(c: &mut Checker, recorded: ProcIds, ppid: i32, sid: i32) {
    let Some(now) = c.ok("process ids", ProcIds::own()) else { return };
    c.same("pid", &recorded.pid, &now.pid);
    c.same("parent, group, session", &(ppid, sid, sid), &(now.ppid, now.pgid, now.sid));
}

/// Y: a plain child of X2, in X2's session and group.
fn leaf(parent: TreeParent, sid: i32) -> i32 {
    let mut s = workload::start();
    let recorded = ProcIds::own().or_fail("process ids");
    parent.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    check_ids(&mut s.checker, recorded, recorded.ppid, sid);
    parent.report(s.into_checker())
}

/// X1 or X2, forked by S, a child of `root` once S has exited.
fn member(parent: TreeParent, root: i32, with_child: bool) -> i32 {
    let mut s = workload::start();
    let recorded = ProcIds::own().or_fail("process ids");
    let sid = recorded.sid;
    let kid = with_child.then(|| workload::fork_child("Y", |link| leaf(link, sid)));
    if let Some(k) = &kid {
        let line = k.line();
        s.checker.check(line.as_deref().ok() == Some("ready"), || format!("Y: ready line: {line:?}"));
    }
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    check_ids(&mut s.checker, recorded, root, sid);
    if let Some(k) = kid {
        s.checker.ok("wake Y", raw::kill(k.pid, WAKE));
        k.collect(&mut s.checker);
    }
    parent.report(s.into_checker())
}

/// The pipes of one member: R's end (its pid filled in from the ready line) and the member's.
fn link(name: &str) -> (TreeChild, TreeParent) {
    let (up_r, up_w) = std::io::pipe().or_fail("pipe up");
    let (down_r, down_w) = std::io::pipe().or_fail("pipe down");
    (TreeChild { name: name.into(), pid: 0, up: up_r, down: down_w }, TreeParent { up: up_w, down: down_r })
}

/// S: a new session with the members in it, then exit.
fn session_leader(members: Vec<(TreeParent, bool)>, root: i32) -> ! {
    raw::setsid().or_fail("setsid in S");
    for (parent, with_child) in members {
        if let raw::Forked::Child = raw::fork().or_fail("fork a member") {
            std::process::exit(member(parent, root, with_child));
        }
    }
    std::process::exit(0)
}

fn main() {
    let mut s = workload::start();
    if raw::getsid(0).or_fail("getsid") != s.pid() {
        raw::setsid().or_fail("setsid");
    }
    raw::set_child_subreaper().or_fail("PR_SET_CHILD_SUBREAPER");
    let ((mut x1, l1), (mut x2, l2)) = (link("X1"), link("X2"));
    let sid = match raw::fork().or_fail("fork S") {
        raw::Forked::Child => session_leader(vec![(l1, false), (l2, true)], s.pid()),
        raw::Forked::Parent(pid) => pid,
    };
    for x in [&mut x1, &mut x2] {
        let line = x.line().or_fail(&format!("ready line of {}", x.name));
        let pid = line.strip_prefix("ready ").and_then(|p| p.parse().ok());
        x.pid = pid.ok_or(format!("unexpected line {line:?}")).or_fail(&x.name);
    }
    while raw::try_waitpid(sid).or_fail("reap S").is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    for x in [&x1, &x2] {
        let parent = std::fs::read_to_string(format!("/proc/{}/stat", x.pid)).or_fail("stat of a member");
        let ppid: i32 = parent.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
        s.checker.same(&format!("{} reparented to the root", x.name), &s.pid(), &ppid);
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("child subreaper", &Some(true), &raw::is_child_subreaper().ok());
    for x in [x1, x2] {
        c.ok(&format!("wake {}", x.name), raw::kill(x.pid, WAKE));
        let outside = (raw::getpgid(x.pid).ok(), raw::getsid(x.pid).ok());
        c.same(&format!("{}: getpgid, getsid from outside", x.name), &(Some(sid), Some(sid)), &outside);
        x.collect(c);
    }
    s.finish()
}
