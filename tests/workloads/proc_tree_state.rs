//! Per-process state of the processes below the root of a tree, restored with `-d`. The mode
//! (argument 1) picks what the root's child C has:
//! - `pdeathsig`: C arms a parent-death signal (SIGUSR2) against the root; after the restore
//!   (stasis exits at once with `-d`, but C's parent is the restored root) C must still have it
//!   armed, and the root is alive, so it must not have fired.
//! - `tstp`: C leads a process group of its own (in the root's session, so the group is not
//!   orphaned and SIGTSTP stops it); the root stops C with SIGTSTP (default disposition) and sees
//!   the stop with `waitpid(WUNTRACED)`. After the wake the root must see C stopped (state `T`), by
//!   SIGTSTP if a stop is reported (`waitid(WSTOPPED | WNOWAIT)`: the restored stop is reported to
//!   the parent again, with its signal; without a restore none is), then continues it with SIGCONT
//!   and collects its report.
//! - `loginuid`: the root sets its audit login uid (`/proc/self/loginuid`) before it forks C, which
//!   sets another; after the wake each checks its own (the session ids the kernel assigned with
//!   them are only noted: a new one is assigned when the uid is set again).
//!
//! C reports its checks to the root, which prints the verdict.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, ProcIds, TreeChild, TreeParent, WAKE};
use std::time::Duration;

/// C in mode `pdeathsig`: arms SIGUSR2, waits for the wake, checks it is still armed.
fn armed_child(parent: TreeParent) -> i32 {
    let mut s = workload::start();
    raw::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR2 as u64, 0).or_fail("PR_SET_PDEATHSIG");
    let ids = ProcIds::own().or_fail("process ids");
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("pid, parent, group, session", &Some(ids), &ProcIds::own().ok());
    c.same("parent-death signal", &Some(libc::SIGUSR2), &raw::get_pdeathsig().ok());
    parent.report(s.into_checker())
}

/// Login uids of the root and of C in mode `loginuid` (unlikely to be anyone's).
const ROOT_LOGINUID: u32 = 4_100_000_001;
const CHILD_LOGINUID: u32 = 4_100_000_002;

fn audit(what: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/{what}")).ok().map(|s| s.trim().to_string())
}

/// Sets this process's audit login uid.
fn set_loginuid(uid: u32) {
    std::fs::write("/proc/self/loginuid", uid.to_string()).or_fail("write /proc/self/loginuid");
}

/// Checks the login uid is `uid`, and notes whether the session id is still `session`.
fn check_loginuid(c: &mut Checker, uid: u32, session: &Option<String>) {
    c.same("/proc/self/loginuid", &Some(uid.to_string()), &audit("loginuid"));
    let now = audit("sessionid");
    if now != *session {
        c.note(format!("audit session id {session:?} before the dump, {now:?} after"));
    }
}

/// C in mode `loginuid`: sets its own login uid, waits, checks it.
fn loginuid_child(parent: TreeParent) -> i32 {
    let mut s = workload::start();
    set_loginuid(CHILD_LOGINUID);
    let session = audit("sessionid");
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    check_loginuid(&mut s.checker, CHILD_LOGINUID, &session);
    parent.report(s.into_checker())
}

/// C in mode `tstp`: waits for the wake (it is stopped and continued meanwhile), checks its ids.
fn plain_child(parent: TreeParent) -> i32 {
    let mut s = workload::start();
    raw::setpgid(0, 0).or_fail("setpgid");
    let ids = ProcIds::own().or_fail("process ids");
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    s.checker.same("pid, parent, group, session", &Some(ids), &ProcIds::own().ok());
    parent.report(s.into_checker())
}

/// After the wake in mode `tstp`: C must be stopped by SIGTSTP, then it is continued and woken.
fn release_tstp(c: &mut Checker, child: &TreeChild) {
    c.same("state of C after the restore", &Some('T'), &workload::process_state(child.pid).ok());
    // Without a restore in between, the stop was reported already (before READY): none is waiting.
    let reported = raw::peek_stop(child.pid);
    c.check(matches!(reported, Ok(None | Some(libc::SIGTSTP))), || {
        format!("signal that stopped C (waitid WSTOPPED): {reported:?}, want SIGTSTP ({})", libc::SIGTSTP)
    });
    c.ok("SIGCONT to C", raw::kill(child.pid, libc::SIGCONT));
    c.ok("wake C", raw::kill(child.pid, WAKE));
}

fn main() {
    let mode = workload::arg(1, String::from("pdeathsig"));
    let mut s = workload::start();
    if mode == "loginuid" {
        if audit("loginuid").is_none() {
            workload::skip("no /proc/self/loginuid (a kernel without audit support)");
        }
        set_loginuid(ROOT_LOGINUID);
    }
    let session = audit("sessionid");
    let child = match mode.as_str() {
        "pdeathsig" => workload::fork_child("C", armed_child),
        "loginuid" => workload::fork_child("C", loginuid_child),
        "tstp" => workload::fork_child("C", plain_child),
        other => workload::skip(&format!("unknown mode {other}")),
    };
    let line = child.line().or_fail("ready line of C");
    s.checker.same("ready line of C", &format!("ready {}", child.pid), &line);
    let awake = workload::wait_processes_in(&[child.pid], &['S'], Duration::from_secs(5));
    s.checker.check(awake.is_empty(), || format!("C not asleep before READY (pid, state): {awake:?}"));
    if mode == "tstp" {
        raw::kill(child.pid, libc::SIGTSTP).or_fail("SIGTSTP");
        let sig = raw::wait_stopped(child.pid).or_fail("waitpid WUNTRACED");
        s.checker.same("signal that stopped C before the dump", &libc::SIGTSTP, &sig);
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    if mode == "loginuid" {
        check_loginuid(c, ROOT_LOGINUID, &session);
    }
    if mode == "tstp" {
        release_tstp(c, &child);
    } else {
        c.ok("wake C", raw::kill(child.pid, WAKE));
    }
    child.collect(c);
    s.finish()
}
