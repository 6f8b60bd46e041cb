//! Nested PID namespaces made inside the tree: the root (in the harness's PID namespace) unshares
//! a PID namespace and forks its init ("init1", pid 1 there), which unshares another and forks
//! "init2" (pid 1 in the second, pid 2 in the first): three levels from stasis's. Each of the root
//! and init1 keeps the namespace it unshared for its next children.
//!
//! After the wake the root checks that its next children still go to init1's namespace, and
//! wakes init1, which checks it is pid 1 and its next children go to init2's namespace, and wakes
//! init2, which checks it is pid 1 and sees no parent (its parent is outside its namespace).

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, TreeParent};

fn unshare_pid() {
    match raw::unshare(libc::CLONE_NEWPID) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => workload::skip("unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN"),
        Err(e) => Err::<(), _>(e).or_fail("unshare(CLONE_NEWPID)"),
    }
}

/// The caller's next children go to the PID namespace of `child` (its pid in stasis's namespace,
/// which is that of the /proc the workload sees).
fn check_for_children(c: &mut Checker, who: &str, child_outer: i32) {
    let mine = raw::ns_link(0, "pid_for_children").map_err(|e| e.to_string());
    let theirs = raw::ns_link(child_outer, "pid").map_err(|e| e.to_string());
    c.check(mine.is_ok() && mine == theirs, || {
        format!("{who}: next children's namespace {mine:?}, its init's {theirs:?}")
    });
}

/// The outer pid of our only child (from the /proc of stasis's namespace).
fn only_child_outer() -> i32 {
    let text = std::fs::read_to_string("/proc/thread-self/children").unwrap_or_default();
    text.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0)
}

fn main() {
    let mut s = workload::start();
    unshare_pid();
    let init1 = workload::fork_child("init1", init1);
    init1.expect_line(&mut s.checker, "ready", "ready");
    s.ready();
    s.wait_for_wake();
    check_for_children(&mut s.checker, "root", init1.pid);
    init1.send("go\n").or_fail("waking init1");
    init1.collect(&mut s.checker);
    s.finish();
}

fn init1(up: TreeParent) -> i32 {
    let mut c = Checker::default();
    c.same("init1: pid", &1, &raw::raw_getpid());
    unshare_pid();
    let init2 = workload::fork_child("init2", init2);
    init2.expect_line(&mut c, "ready", "ready");
    up.send("ready\n").or_fail("init1: ready");
    let go = up.line();
    c.check(go.as_deref().ok() == Some("go"), || format!("init1: wake line {go:?}"));
    c.same("init1: pid after", &1, &raw::raw_getpid());
    c.same("init1: init2's pid here", &2, &init2.pid);
    check_for_children(&mut c, "init1", only_child_outer());
    init2.send("go\n").or_fail("waking init2");
    init2.collect(&mut c);
    up.report(c)
}

fn init2(up: TreeParent) -> i32 {
    let mut c = Checker::default();
    let before = (raw::raw_getpid(), raw::raw_getppid());
    up.send("ready\n").or_fail("init2: ready");
    let go = up.line();
    c.check(go.as_deref().ok() == Some("go"), || format!("init2: wake line {go:?}"));
    c.same("init2: pid and parent before", &(1, 0), &before);
    c.same("init2: pid and parent after", &(1, 0), &(raw::raw_getpid(), raw::raw_getppid()));
    up.report(c)
}
