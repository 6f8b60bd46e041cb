//! A daemon after the classic double fork: the launcher forks M and waits for it; M calls setsid
//! (it leads a new session and group) and forks D, then exits; the launcher then exits too. D, the
//! daemon, is left in session M and group M, whose leader is dead, and its parent is the nearest
//! child subreaper (the test process) or init. D records its ids once M's pid is free (so its
//! parent is the final one), fills a heap buffer, prints `DAEMON <pid>` and READY, and tells the
//! launcher through a pipe (which it then closes), so that the launcher exits only after READY.
//! After the wake D checks its pid, session and group (M's pid), its parent (as recorded), that
//! M's pid names no process (`kill(M, 0)` fails with ESRCH), and the heap buffer.
//!
//! `daemon wrong-session` is the negative control: D expects to lead its own session, which it
//! does not, so it must FAIL naming `getsid(0)`.

use stasis_tests::raw::{self, Forked};
use stasis_tests::workload::{self, Checker, OrFail, ProcIds, TREE_TIMEOUT};
use std::io::{PipeReader, PipeWriter, Write as _};

const SEED: u64 = 0xdae0_0001;
const HEAP_LEN: usize = 300_000;

/// The launcher: forks M with the write end of `ready`, waits for M's exit and D's ready line,
/// then exits (0, or 1 after a FAIL line).
fn launcher(wrong_session: bool) -> ! {
    let (ready_r, ready_w) = std::io::pipe().or_fail("pipe from the daemon");
    match raw::fork().or_fail("fork M") {
        Forked::Child => {
            drop(ready_r);
            leader(ready_w, wrong_session)
        }
        Forked::Parent(m) => {
            drop(ready_w);
            let exit = workload::wait_exit_within(m, TREE_TIMEOUT).or_fail("waitpid M");
            if exit != Some(raw::Exit::Code(0)) {
                workload::say(&format!("FAIL: setup: M (pid {m}) ended with {exit:?}"));
                std::process::exit(1);
            }
            wait_ready_line(&ready_r)
        }
    }
}

/// Reads the daemon's ready line and exits 0, or prints FAIL and exits 1.
fn wait_ready_line(ready: &PipeReader) -> ! {
    match workload::read_line_within(ready, TREE_TIMEOUT) {
        Ok(line) if line == "ready" => std::process::exit(0),
        other => {
            workload::say(&format!("FAIL: setup: ready line from the daemon: {other:?}"));
            std::process::exit(1)
        }
    }
}

/// M: leads a new session, forks D and exits.
fn leader(ready: PipeWriter, wrong_session: bool) -> ! {
    let m = raw::setsid().or_fail("setsid in M");
    match raw::fork().or_fail("fork D") {
        Forked::Child => daemon(m, ready, wrong_session),
        Forked::Parent(_) => std::process::exit(0),
    }
}

/// Waits until `pid` names no process (ESRCH from `kill(pid, 0)`).
fn wait_gone(pid: i32) -> Result<(), String> {
    let deadline = std::time::Instant::now() + TREE_TIMEOUT;
    while !is_gone(pid) {
        if std::time::Instant::now() > deadline {
            return Err(format!("pid {pid} still exists after {TREE_TIMEOUT:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

/// Whether `kill(pid, 0)` fails with ESRCH.
fn is_gone(pid: i32) -> bool {
    raw::kill(pid, 0).is_err_and(|e| e.raw_os_error() == Some(libc::ESRCH))
}

/// D: waits for M to be gone, sets up, says ready, waits for the wake and checks.
fn daemon(m: i32, ready: PipeWriter, wrong_session: bool) -> ! {
    let mut s = workload::start();
    wait_gone(m).or_fail("M gone");
    let ids = ProcIds::own().or_fail("process ids");
    let mut heap = vec![0u8; HEAP_LEN];
    workload::pattern_fill(&mut heap, SEED);
    workload::say(&format!("DAEMON {}", s.pid()));
    s.ready();
    (&ready).write_all(b"ready\n").or_fail("ready line to the launcher");
    drop(ready);
    s.wait_for_wake();
    let sid = if wrong_session { s.pid() } else { m };
    check(&mut s.checker, m, sid, ids);
    let off = workload::pattern_mismatch(&heap, SEED);
    s.checker.check(off.is_none(), || format!("heap buffer differs at {off:?}"));
    s.finish()
}

/// Checks the session (`sid`) and group (M's pid `m`), the ids recorded before the wait, and
/// that `m` names no process.
fn check(c: &mut Checker, m: i32, sid: i32, recorded: ProcIds) {
    c.same("getsid(0)", &Ok(sid), &raw::getsid(0).map_err(|e| e.to_string()));
    c.same("getpgrp()", &Ok(m), &raw::getpgid(0).map_err(|e| e.to_string()));
    c.same("pid, parent, group, session", &Some(recorded), &ProcIds::own().ok());
    c.check(is_gone(m), || {
        let state = workload::process_state(m);
        format!("the session leader's pid {m} names a process (kill(M, 0): {:?}, state {state:?})", raw::kill(m, 0))
    });
}

fn main() {
    let wrong_session = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("wrong-session") => true,
        Some(other) => Err(format!("unknown argument {other:?}")).or_fail("arguments"),
    };
    launcher(wrong_session)
}
