//! A fork tree three levels deep: the root forks two children, each of which forks two
//! grandchildren (seven processes). Every process keeps a heap buffer with a pattern of its own, a
//! counter of its own, and the buffer the root filled before the first fork (shared
//! copy-on-write); every child has two pipes to its parent, each holding a line written before
//! the dump and read only after the wake. After the wake each process wakes its children, checks
//! its pid (raw system call), parent, process group and session against what it recorded (the
//! group and session are the root's), its memory and counter, the line its parent queued, then
//! collects its children's queued line, report and exit code, and reports to its parent; the root
//! prints the verdict of the whole tree.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail, ProcIds, TreeChild, TreeParent, WAKE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Children per process above the last level.
const FANOUT: usize = 2;
/// Levels below the root.
const DEPTH: usize = 2;
/// Size of the buffer the root fills before forking.
const FAMILY_LEN: usize = 3 * 65536 + 40;
const FAMILY_SEED: u64 = 0xfa31_1700;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A process's position: the child indexes from the root (empty for the root).
fn name(path: &[usize]) -> String {
    if path.is_empty() {
        return "root".into();
    }
    let idx: Vec<String> = path.iter().map(|i| i.to_string()).collect();
    format!("node {}", idx.join("."))
}

fn code(path: &[usize]) -> u64 {
    path.iter().fold(1, |acc, &i| acc * 10 + i as u64 + 1)
}

fn counter_start(path: &[usize]) -> u64 {
    code(path) * 1_000 + 17
}

fn seed(path: &[usize]) -> u64 {
    0x3000_0000 ^ code(path).wrapping_mul(0x0100_0193)
}

fn heap_len(path: &[usize]) -> usize {
    40_960 + 4_099 * code(path) as usize
}

/// The line a process queues to its parent before the dump.
fn hello(path: &[usize]) -> String {
    format!("hello from {} queued before the dump", name(path))
}

/// The line a parent queues to its child before the dump.
fn greeting(path: &[usize]) -> String {
    format!("greeting to {} queued before the dump", name(path))
}

/// What one process recorded before the dump and checks after.
struct Own {
    path: Vec<usize>,
    ids: ProcIds,
    heap: Vec<u8>,
}

impl Own {
    fn new(path: &[usize]) -> Own {
        COUNTER.store(counter_start(path), Ordering::SeqCst);
        let mut heap = vec![0u8; heap_len(path)];
        workload::pattern_fill(&mut heap, seed(path));
        Own { path: path.to_vec(), ids: ProcIds::own().or_fail("process ids"), heap }
    }

    /// Checks the ids (the parent unless this is the root, which never looks at its parent),
    /// the heap, the family buffer and the counter, then increments the counter.
    fn verify(&self, c: &mut Checker, family: &[u8]) {
        match ProcIds::own() {
            Ok(mut now) if self.path.is_empty() => {
                now.ppid = self.ids.ppid;
                c.same("pid, group, session", &self.ids, &now);
            }
            Ok(now) => c.same("pid, parent, group, session", &self.ids, &now),
            Err(e) => c.check(false, || format!("process ids: {e}")),
        }
        let off = workload::pattern_mismatch(&self.heap, seed(&self.path));
        c.check(off.is_none(), || format!("heap buffer of {} bytes differs at {off:?}", self.heap.len()));
        let off = workload::pattern_mismatch(family, FAMILY_SEED);
        c.check(off.is_none(), || format!("buffer filled by the root before fork differs at {off:?}"));
        let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
        c.same("counter after increment", &(counter_start(&self.path) + 1), &n);
    }
}

/// Forks the children of the process at `path` (none on the last level) and queues a greeting
/// to each.
fn fork_children(path: &[usize], family: &[u8]) -> Vec<(Vec<usize>, TreeChild)> {
    if path.len() == DEPTH {
        return Vec::new();
    }
    (0..FANOUT)
        .map(|i| {
            let child_path: Vec<usize> = path.iter().copied().chain([i]).collect();
            let p = child_path.clone();
            let child = workload::fork_child(&name(&p), |link| node(&p, link, family));
            child.send(&format!("{}\n", greeting(&child_path))).or_fail("queue greeting");
            (child_path, child)
        })
        .collect()
}

/// Waits for every child's `ready PIDS` line; returns the pids of the whole subtree below.
fn subtree_ready(children: &[(Vec<usize>, TreeChild)]) -> Vec<i32> {
    let mut pids = Vec::new();
    for (_, child) in children {
        let line = child.line().or_fail(&format!("ready line of {}", child.name));
        let list = line.strip_prefix("ready ").ok_or(format!("unexpected line {line:?}")).or_fail(&child.name);
        pids.extend(list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    pids
}

/// After the wake: wakes the children, checks this process, then collects each child's queued
/// line and report.
fn after_wake(own: &Own, c: &mut Checker, family: &[u8], children: Vec<(Vec<usize>, TreeChild)>) {
    for (_, child) in &children {
        c.ok(&format!("wake {}", child.name), raw::kill(child.pid, WAKE));
    }
    own.verify(c, family);
    for (path, child) in children {
        child.expect_line(c, "line queued before the dump", &hello(&path));
        child.collect(c);
    }
}

/// A process below the root.
fn node(path: &[usize], parent: TreeParent, family: &[u8]) -> i32 {
    let mut s = workload::start();
    let own = Own::new(path);
    let children = fork_children(path, family);
    let mut pids = vec![s.pid()];
    pids.extend(subtree_ready(&children));
    let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
    parent.send(&format!("ready {}\n{}\n", pids.join(" "), hello(path))).or_fail("ready line");
    s.wait_for_wake();
    let from_parent = parent.line();
    s.checker.same("line from the parent", &Some(greeting(path)), &from_parent.ok());
    after_wake(&own, &mut s.checker, family, children);
    parent.report(s.into_checker())
}

fn main() {
    let mut s = workload::start();
    let mut family = vec![0u8; FAMILY_LEN];
    workload::pattern_fill(&mut family, FAMILY_SEED);
    let own = Own::new(&[]);
    let children = fork_children(&[], &family);
    let pids = subtree_ready(&children);
    let awake = workload::wait_processes_in(&pids, &['S'], Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("processes not asleep at READY (pid, state): {awake:?}"));
    }
    s.checker.same("processes below the root", &(FANOUT + FANOUT * FANOUT), &pids.len());
    s.ready();
    s.wait_for_wake();
    after_wake(&own, &mut s.checker, &family, children);
    s.finish()
}
