//! A tree whose root is the init of its own PID namespace, as `unshare -pf` makes it: the program
//! started by the harness unshares a PID namespace and forks the init (pid 1 there), then only
//! waits for it and exits with its status; the test checkpoints the init.
//!
//! The init forks an "orphaner", which forks an "orphan" and exits, so the orphan is reparented to
//! the init before the dump; then a "worker", which starts a second thread. Each records its ids
//! inside the namespace. After the wake: the init checks it is still pid 1, that a signal it sends
//! itself without a handler (SIGTERM) is ignored as the kernel does for an init, wakes the orphan
//! (which checks its pid and that its parent is pid 1, and exits 0 or 1) and the worker (which
//! checks its pid, its parent, and its thread's tid) and reaps both.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, TreeParent};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// How long the init waits for a child to end.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    match raw::unshare(libc::CLONE_NEWPID) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => workload::skip("unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN"),
        Err(e) => Err::<(), _>(e).or_fail("unshare(CLONE_NEWPID)"),
    }
    match raw::fork().or_fail("fork the init") {
        raw::Forked::Child => init(),
        raw::Forked::Parent(pid) => std::process::exit(match wait_for(pid, Duration::MAX) {
            Some(raw::Exit::Code(c)) => c,
            _ => 1,
        }),
    }
}

/// Reaps `pid` (waiting at most `timeout`); None if it did not end in time.
fn wait_for(pid: i32, timeout: Duration) -> Option<raw::Exit> {
    let start = Instant::now();
    loop {
        match raw::try_waitpid(pid) {
            Ok(Some(exit)) => return Some(exit),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

fn init() -> ! {
    let mut s = workload::start();
    s.checker.same("init's pid in its namespace", &1, &s.pid());
    let (go_r, go_w) = std::io::pipe().or_fail("orphan's wake pipe");
    let orphaner = match raw::fork().or_fail("fork the orphaner") {
        raw::Forked::Child => orphaner(go_r),
        raw::Forked::Parent(pid) => pid,
    };
    drop(go_r);
    let exit = wait_for(orphaner, CHILD_TIMEOUT);
    s.checker.same("orphaner's exit", &Some(raw::Exit::Code(0)), &exit);
    // Reparented to us when the orphaner exited; pids of a new namespace are given in order.
    let orphan = 3;
    let worker = workload::fork_child("worker", worker);
    worker.expect_line(&mut s.checker, "ready", "ready");
    s.ready();
    s.wait_for_wake();
    init_semantics(&mut s.checker);
    (&go_w).write_all(b"g").or_fail("waking the orphan");
    let exit = wait_for(orphan, CHILD_TIMEOUT);
    s.checker.same("orphan's exit (reaped by the init)", &Some(raw::Exit::Code(0)), &exit);
    worker.send("go\n").or_fail("waking the worker");
    worker.collect(&mut s.checker);
    s.finish()
}

fn init_semantics(c: &mut Checker) {
    raw::kill(1, libc::SIGTERM).or_fail("SIGTERM to itself");
    // A signal the init has no handler for is dropped, not queued: nothing pending, still alive.
    let pending = std::fs::read_to_string("/proc/thread-self/status").ok().and_then(|st| {
        st.lines()
            .find_map(|l| l.strip_prefix("ShdPnd:").map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(u64::MAX)))
    });
    c.same("shared pending signals after SIGTERM to itself", &Some(0), &pending);
}

fn orphaner(go: std::io::PipeReader) -> ! {
    match raw::fork() {
        Ok(raw::Forked::Child) => orphan(go),
        Ok(raw::Forked::Parent(_)) => std::process::exit(0),
        Err(_) => std::process::exit(1),
    }
}

fn orphan(mut go: std::io::PipeReader) -> ! {
    let pid = raw::raw_getpid();
    let mut byte = [0u8; 1];
    // Until the init wakes it (after the restore).
    let woke = go.read(&mut byte).is_ok_and(|n| n == 1);
    let ok = woke && pid == 3 && raw::raw_getpid() == pid && raw::raw_getppid() == 1;
    std::process::exit(if ok { 0 } else { 1 })
}

fn worker(link: TreeParent) -> i32 {
    let mut c = Checker::default();
    let (pid, ppid) = (raw::raw_getpid(), raw::raw_getppid());
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let (go_r, mut go_w) = std::io::pipe().or_fail("thread's wake pipe");
    let thread = std::thread::spawn(move || {
        let before = raw::raw_gettid();
        let _ = tid_tx.send(before);
        let mut byte = [0u8; 1];
        let _ = (&go_r).read(&mut byte);
        (before, raw::raw_gettid())
    });
    let tid = tid_rx.recv().or_fail("thread's tid");
    link.send("ready\n").or_fail("worker: ready");
    let go = link.line();
    c.check(go.as_deref().ok() == Some("go"), || format!("worker: wake line {go:?}"));
    c.same("worker: pid", &pid, &raw::raw_getpid());
    c.same("worker: parent", &(1, 1), &(ppid, raw::raw_getppid()));
    go_w.write_all(b"g").or_fail("waking the thread");
    let seen = thread.join().unwrap_or((0, 0));
    c.same("worker: thread's tid before and after", &(tid, tid), &seen);
    c.check(tid != pid && tid < 100, || format!("worker: thread tid {tid} is not an id of the namespace"));
    link.report(c)
}
