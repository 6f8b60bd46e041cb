//! Zombie children the parent has not reaped: the root forks two children that exit at once (codes
//! 7 and 0), one killed by SIGTERM, one killed by SIGKILL, one that leads a process group of its
//! own and one that leads a session of its own before they exit (codes 3 and 4), and one live child
//! that leads a process group of its own and waits for the wake; then one more that joins the live
//! child's group before it exits (code 5: a zombie in a group led by its sibling). Before READY the root waits until the six are zombies and checks their
//! status without reaping them (`waitid(WNOWAIT)`). After the wake it checks each is still a zombie
//! (`/proc/Z/stat` says `Z`) with the same status, process group and session, reaps it (`waitpid(WNOHANG)`, which must find it at once), wakes and
//! collects the live child, and checks no child is left. An optional argument changes the exit
//! code the root expects of the first zombie (to show a wrong status makes it FAIL).

use stasis_tests::raw::{self, Exit};
use stasis_tests::workload::{self, Checker, OrFail, TreeChild, TreeParent, WAKE};
use std::time::Duration;

/// A child that dies before READY and stays unreaped.
struct Zombie {
    name: &'static str,
    pid: i32,
    exit: Exit,
    /// Process group and session (`/proc/Z/stat`) before READY.
    ids: Option<(i32, i32)>,
}

/// A child that exits at once with `code`.
fn exits_with(code: i32) -> impl FnOnce(TreeParent) -> i32 {
    move |_| code
}

/// A child that kills itself with SIGTERM (default disposition: it dies of it).
fn killed_by_sigterm(_: TreeParent) -> i32 {
    let _ = raw::kill(raw::raw_getpid(), libc::SIGTERM);
    loop {
        raw::pause();
    }
}

/// A child that kills itself with SIGKILL.
fn killed_by_sigkill(_: TreeParent) -> i32 {
    let _ = raw::kill(raw::raw_getpid(), libc::SIGKILL);
    loop {
        raw::pause();
    }
}

/// A child that leads a process group of its own, then exits with 3.
fn group_leader(_: TreeParent) -> i32 {
    match raw::setpgid(0, 0) {
        Ok(()) => 3,
        Err(_) => 100,
    }
}

/// A child that leads a session of its own, then exits with 4.
fn session_leader(_: TreeParent) -> i32 {
    match raw::setsid() {
        Ok(_) => 4,
        Err(_) => 100,
    }
}

/// Process group and session of `pid` (`/proc/PID/stat` fields 5 and 6; zombies too).
fn group_and_session(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// The live child: waits for the wake and reports.
fn live(parent: TreeParent) -> i32 {
    let mut s = workload::start();
    raw::setpgid(0, 0).or_fail("setpgid of the live child");
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    parent.report(s.into_checker())
}

/// Forks the three children that die; each keeps only its pid (the pipes are closed).
fn make_zombies() -> Vec<Zombie> {
    let zombie = |name, exit, child: TreeChild| Zombie { name, pid: child.pid, exit, ids: None };
    vec![
        zombie("exit 7", Exit::Code(7), workload::fork_child("exit 7", exits_with(7))),
        zombie("exit 0", Exit::Code(0), workload::fork_child("exit 0", exits_with(0))),
        zombie("sigterm", Exit::Signal(libc::SIGTERM), workload::fork_child("sigterm", killed_by_sigterm)),
        zombie("sigkill", Exit::Signal(libc::SIGKILL), workload::fork_child("sigkill", killed_by_sigkill)),
        zombie("group leader", Exit::Code(3), workload::fork_child("group leader", group_leader)),
        zombie("session leader", Exit::Code(4), workload::fork_child("session leader", session_leader)),
    ]
}

/// Checks that `z` is a zombie with its status, reaps it, and checks it is gone.
fn check_and_reap(c: &mut Checker, z: &Zombie) {
    let state = workload::process_state(z.pid);
    c.check(matches!(state, Ok('Z')), || format!("{} (pid {}): /proc state {state:?}, want 'Z'", z.name, z.pid));
    let peeked = raw::peek_exit(z.pid);
    c.check(matches!(peeked, Ok(Some(e)) if e == z.exit), || {
        format!("{} (pid {}): waitid(WNOWAIT) {peeked:?}, want {:?}", z.name, z.pid, z.exit)
    });
    c.same(&format!("{} (pid {}): process group and session", z.name, z.pid), &z.ids, &group_and_session(z.pid));
    let reaped = raw::try_waitpid(z.pid);
    c.check(matches!(reaped, Ok(Some(e)) if e == z.exit), || {
        format!("{} (pid {}): waitpid(WNOHANG) {reaped:?}, want {:?}", z.name, z.pid, z.exit)
    });
    let gone = !std::path::Path::new(&format!("/proc/{}", z.pid)).exists();
    c.check(gone, || format!("{} (pid {}) still in /proc after it was reaped", z.name, z.pid));
}

/// A child that joins the group its sibling `leader` leads, then exits with 5.
fn in_sibling_group(leader: i32) -> impl FnOnce(TreeParent) -> i32 {
    move |_| match raw::setpgid(0, leader) {
        Ok(()) => 5,
        Err(_) => 100,
    }
}

/// Before READY: every zombie is one, with its status, and the live child sleeps.
fn settle(c: &mut Checker, zombies: &mut [Zombie], live: &TreeChild) {
    let pids: Vec<i32> = zombies.iter().map(|z| z.pid).collect();
    let other = workload::wait_processes_in(&pids, &['Z'], Duration::from_secs(5));
    c.check(other.is_empty(), || format!("children not zombies before READY (pid, state): {other:?}"));
    let awake = workload::wait_processes_in(&[live.pid], &['S'], Duration::from_secs(5));
    c.check(awake.is_empty(), || format!("live child not asleep before READY (pid, state): {awake:?}"));
    for z in zombies {
        let peeked = raw::peek_exit(z.pid);
        c.check(matches!(peeked, Ok(Some(e)) if e == z.exit), || {
            format!("{} before READY: waitid(WNOWAIT) {peeked:?}, want {:?}", z.name, z.exit)
        });
        z.ids = group_and_session(z.pid);
        let own = match z.name {
            "group leader" => z.ids.is_some_and(|(pgid, sid)| pgid == z.pid && sid != z.pid),
            "session leader" => z.ids == Some((z.pid, z.pid)),
            "in its sibling's group" => z.ids.is_some_and(|(pgid, _)| pgid == live.pid),
            _ => z.ids.is_some_and(|(pgid, _)| pgid != z.pid),
        };
        c.check(own, || format!("{} before READY: process group and session {:?}", z.name, z.ids));
    }
}

fn main() {
    let mut s = workload::start();
    let mut zombies = make_zombies();
    let live = workload::fork_child("live child", live);
    let line = live.line().or_fail("ready line of the live child");
    s.checker.same("ready line of the live child", &format!("ready {}", live.pid), &line);
    let name = "in its sibling's group";
    let child = workload::fork_child(name, in_sibling_group(live.pid));
    zombies.push(Zombie { name, pid: child.pid, exit: Exit::Code(5), ids: None });
    settle(&mut s.checker, &mut zombies, &live);
    if !s.checker.passed() {
        s.finish();
    }
    // The exit code checked after the wake for the first zombie (7 unless given).
    zombies[0].exit = Exit::Code(workload::arg(1, 7));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    for z in &zombies {
        check_and_reap(c, z);
    }
    c.ok("wake the live child", raw::kill(live.pid, WAKE));
    live.collect(c);
    let left = raw::try_waitpid(-1);
    c.check(matches!(&left, Err(e) if e.raw_os_error() == Some(libc::ECHILD)), || {
        format!("a child is left after reaping all: waitpid(-1) {left:?}")
    });
    s.finish()
}
