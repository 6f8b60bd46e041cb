//! Seccomp, checked by the restored processes themselves. Mode (argument 1):
//! - `filter`: the root sets no_new_privs and installs filter A (`getppid` fails with errno 42),
//!   forks child K, which adds filter D (`times` fails with 45), starts thread T (which inherits
//!   A: one filter for both threads), then adds filter B (`getpgrp` fails with 43, with the log
//!   flag) for itself alone. After the wake each task checks which calls fail with which errno and
//!   its `Seccomp`/`Seccomp_filters` lines; then the root installs filter E (`getpgid` fails with
//!   46) with TSYNC, which succeeds only if T's filter is still one of the root's own chain (shared,
//!   not a copy), and T must see E.
//! - `strict`: child S enters strict mode and blocks in `read` on a pipe from the root; after the
//!   wake the root checks S is in mode 1 and writes a byte; S (which may only read, write and exit)
//!   checks the byte and its heap and writes `ok`, then `exit`s 0. Killed by its mode, it would end
//!   by SIGKILL instead.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, TreeChild, TreeParent, WAKE};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

const HEAP_SEED: u64 = 0x5ecc_0001;
const HEAP_LEN: usize = 100_000;

/// The errno each call fails with for a task (None: it must not fail with a filter's errno).
struct Expect {
    getppid: Option<i64>,
    getpgrp: Option<i64>,
    times: Option<i64>,
    filters: u32,
}

/// Checks the calls of `e` in the calling thread, and its `/proc/thread-self/status`.
fn check_calls(c: &mut Checker, who: &str, e: &Expect) {
    for (name, nr, want) in [
        ("getppid", libc::SYS_getppid, e.getppid),
        ("getpgrp", libc::SYS_getpgrp, e.getpgrp),
        ("times", libc::SYS_times, e.times),
    ] {
        let got = raw::raw_syscall0(nr);
        match want {
            Some(errno) => c.same(&format!("{who}: {name}() under its filters"), &-errno, &got),
            None => c.check(got >= 0, || format!("{who}: {name}() returned {got}, want success")),
        }
    }
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string());
    c.same(&format!("{who}: Seccomp"), &Some("2".to_string()), &field("Seccomp:"));
    c.same(&format!("{who}: Seccomp_filters"), &Some(e.filters.to_string()), &field("Seccomp_filters:"));
}

/// Child K: filter D on top of the inherited A.
fn child_k(parent: TreeParent) -> i32 {
    let mut s = workload::start();
    raw::seccomp_errno_filter(libc::SYS_times, 45, 0).or_fail("filter D");
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    let e = Expect { getppid: Some(42), getpgrp: None, times: Some(45), filters: 2 };
    check_calls(&mut s.checker, "K", &e);
    parent.report(s.into_checker())
}

/// Thread T: on each request, checks its calls (and after the root's TSYNC, filter E).
fn thread_t(requests: mpsc::Receiver<bool>, results: mpsc::Sender<Checker>) {
    while let Ok(after_tsync) = requests.recv() {
        let mut c = Checker::default();
        if after_tsync {
            c.same("T: getpgid() under the root's TSYNC filter E", &-46, &raw::raw_syscall0(libc::SYS_getpgid));
        } else {
            let e = Expect { getppid: Some(42), getpgrp: None, times: None, filters: 1 };
            check_calls(&mut c, "T", &e);
        }
        if results.send(c).is_err() {
            return;
        }
    }
}

fn filter_mode() {
    let mut s = workload::start();
    raw::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).or_fail("PR_SET_NO_NEW_PRIVS");
    raw::seccomp_errno_filter(libc::SYS_getppid, 42, 0).or_fail("filter A");
    let k = workload::fork_child("K", child_k);
    let (req_tx, req_rx) = mpsc::channel();
    let (res_tx, res_rx) = mpsc::channel();
    let t = std::thread::spawn(move || thread_t(req_rx, res_tx));
    raw::seccomp_errno_filter(libc::SYS_getpgrp, 43, raw::SECCOMP_FILTER_FLAG_LOG).or_fail("filter B");
    let line = k.line().or_fail("ready line of K");
    s.checker.same("ready line of K", &format!("ready {}", k.pid), &line);
    let awake = workload::wait_processes_in(&[k.pid], &['S'], Duration::from_secs(5));
    s.checker.check(awake.is_empty(), || format!("K not asleep before READY: {awake:?}"));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    check_calls(c, "root", &Expect { getppid: Some(42), getpgrp: Some(43), times: None, filters: 2 });
    let ask = |after_tsync: bool, c: &mut Checker| {
        req_tx.send(after_tsync).or_fail("request to T");
        let got = res_rx.recv_timeout(Duration::from_secs(20)).or_fail("result of T");
        c.absorb("thread", got);
    };
    ask(false, c);
    let sync = raw::seccomp_errno_filter(libc::SYS_getpgid, 46, raw::SECCOMP_FILTER_FLAG_TSYNC);
    c.check(matches!(sync, Ok(0)), || {
        format!("filter E with TSYNC: {sync:?} (a positive value: the thread that has other filters)")
    });
    ask(true, c);
    drop(req_tx);
    c.ok("join T", raw::timed_join(t, Duration::from_secs(20)));
    c.ok("wake K", raw::kill(k.pid, WAKE));
    k.collect(c);
    s.finish()
}

/// Child S: strict mode, then only raw read, write and exit.
fn child_s(parent: TreeParent) -> i32 {
    let mut heap = vec![0u8; HEAP_LEN];
    workload::pattern_fill(&mut heap, HEAP_SEED);
    parent.send("ready\n").or_fail("ready line");
    let (down, up) = (parent.down.as_raw_fd(), parent.up.as_raw_fd());
    raw::seccomp_strict().or_fail("strict mode");
    let mut byte = [0u8; 1];
    let n = raw::raw_read(down, &mut byte);
    let ok = n == 1 && byte[0] == b'x' && workload::pattern_mismatch(&heap, HEAP_SEED).is_none();
    raw::raw_write(up, if ok { b"ok\n" } else { b"bad\n" });
    raw::raw_exit(if ok { 0 } else { 1 })
}

fn strict_mode() {
    let mut s = workload::start();
    let child: TreeChild = workload::fork_child("S", child_s);
    let line = child.line().or_fail("ready line of S");
    s.checker.same("ready line of S", &"ready".to_string(), &line);
    let awake = workload::wait_processes_in(&[child.pid], &['S'], Duration::from_secs(5));
    s.checker.check(awake.is_empty(), || format!("S not asleep before READY: {awake:?}"));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.pid)).unwrap_or_default();
    let mode = status.lines().find_map(|l| l.strip_prefix("Seccomp:")).map(|v| v.trim().to_string());
    c.same("Seccomp of S", &Some("1".to_string()), &mode);
    c.ok("byte to S", child.send("x"));
    child.expect_line(c, "answer of S", "ok");
    let exit = workload::wait_exit_within(child.pid, workload::TREE_TIMEOUT);
    c.check(matches!(exit, Ok(Some(raw::Exit::Code(0)))), || format!("exit of S: {exit:?}, want Code(0)"));
    s.finish()
}

fn main() {
    match workload::arg(1, String::from("filter")).as_str() {
        "filter" => filter_mode(),
        "strict" => strict_mode(),
        other => workload::skip(&format!("unknown mode {other}")),
    }
}
