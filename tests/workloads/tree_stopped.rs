//! A child stopped by SIGSTOP at checkpoint time is still stopped after restore: the root forks
//! a child S (which records SIGCONT with a handler) and a child R, stops S with kill(S, SIGSTOP)
//! and waits for the stop (waitpid WUNTRACED). After the wake the root checks that S is in state
//! `T` (/proc/S/stat), sends it SIGUSR1 and checks it stays stopped, then continues it with
//! SIGCONT; S checks that SIGCONT arrived, its ids and its heap, and reports. R, never stopped,
//! checks the same.

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, Checker, OrFail, ProcIds, TreeChild, TreeParent, WAKE};
use std::time::Duration;

const SEED_S: u64 = 0x5707_0001;
const SEED_R: u64 = 0x5707_0002;
const HEAP_LEN: usize = 200_000;

/// A child: fills a heap buffer, says ready, waits, checks and reports. `stopped` says whether
/// the root stops it (then it must see SIGCONT).
fn child(seed: u64, stopped: bool, parent: TreeParent) -> i32 {
    let mut s = workload::start();
    raw::set_recording_handler(libc::SIGCONT, libc::SA_RESTART, SigSet::empty()).or_fail("SIGCONT handler");
    let ids = ProcIds::own().or_fail("process ids");
    let mut heap = vec![0u8; HEAP_LEN];
    workload::pattern_fill(&mut heap, seed);
    parent.send(&format!("ready {}\n", s.pid())).or_fail("ready line");
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("pid, parent, group, session", &Some(ids), &ProcIds::own().ok());
    let off = workload::pattern_mismatch(&heap, seed);
    c.check(off.is_none(), || format!("heap buffer differs at {off:?}"));
    let conts = raw::handler_record(libc::SIGCONT).count;
    if stopped {
        c.check(conts >= 1, || "SIGCONT handler never ran".into());
        if conts > 1 {
            c.note(format!("SIGCONT handler ran {conts} times"));
        }
    } else {
        c.same("SIGCONT handler runs", &0, &conts);
    }
    parent.report(s.into_checker())
}

/// Waits up to `timeout` for `pid` to leave state `T`; returns the last state seen.
fn continued_within(pid: i32, timeout: Duration) -> Option<char> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let state = workload::process_state(pid).ok();
        if state != Some('T') || std::time::Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// After the wake: S must still be stopped, stay stopped with SIGUSR1 pending, and run on with
/// SIGCONT.
fn release_stopped(c: &mut Checker, s: &TreeChild) {
    c.same("state of the stopped child after restore", &Some('T'), &workload::process_state(s.pid).ok());
    c.ok("SIGUSR1 to the stopped child", raw::kill(s.pid, WAKE));
    std::thread::sleep(Duration::from_millis(100));
    c.same("state of the stopped child with SIGUSR1 pending", &Some('T'), &workload::process_state(s.pid).ok());
    c.ok("SIGCONT to the stopped child", raw::kill(s.pid, libc::SIGCONT));
    let state = continued_within(s.pid, Duration::from_secs(5));
    c.check(matches!(state, Some('S' | 'R' | 'Z')), || format!("stopped child after SIGCONT: state {state:?}"));
}

fn main() {
    let mut s = workload::start();
    let stopped = workload::fork_child("stopped child S", |link| child(SEED_S, true, link));
    let running = workload::fork_child("running child R", |link| child(SEED_R, false, link));
    for kid in [&stopped, &running] {
        kid.line().or_fail(&format!("ready line of {}", kid.name));
    }
    let awake = workload::wait_processes_in(&[stopped.pid, running.pid], &['S'], Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("processes not asleep before SIGSTOP (pid, state): {awake:?}"));
    }
    raw::kill(stopped.pid, libc::SIGSTOP).or_fail("SIGSTOP");
    let sig = raw::wait_stopped(stopped.pid).or_fail("waitpid WUNTRACED");
    if sig != libc::SIGSTOP {
        workload::say(&format!("FAIL: setup: child stopped by signal {sig}"));
        std::process::exit(2);
    }
    let state = workload::process_state(stopped.pid).or_fail("state of the stopped child");
    s.checker.same("state of the stopped child before the dump", &'T', &state);
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the running child", raw::kill(running.pid, WAKE));
    release_stopped(c, &stopped);
    stopped.collect(c);
    running.collect(c);
    s.finish()
}
