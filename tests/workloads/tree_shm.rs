//! A fork tree three levels deep whose processes talk only through one shared anonymous mapping
//! (`MAP_SHARED | MAP_ANONYMOUS`, 4 MiB) that the root maps before forking: the root forks two
//! children, each of which forks one grandchild (five processes), and no process has a pipe to
//! another. Each process owns a slot of the area (a counter, its pid, a report, and a pattern over
//! some 800 KiB) which it fills before the dump; the root waits for all five through a counter in
//! the area before READY. After the wake the root writes a "go" generation into the area's header
//! and signals its children, which signal theirs. Each process then checks the go generation and
//! every slot as it was written before the dump (the object came back whole), and, once all five
//! have checked (a counter in the area), increments its counter, rewrites its pattern with a new
//! seed, bumps the "done" counter, waits (at most 10 s) until all five are done and checks that
//! every slot shows the new values the others wrote after the restore (the five share one object
//! again, not copies). Each process below the root reaps its children and writes its failures
//! into its slot's report; the root reaps its children, checks the slots' pids and the never
//! written tail of the area (zero), reads every report and prints the verdict of the whole tree.
//!
//! `tree_shm private-copy` is the negative control: grandchild 1.0 swaps its view of the area for
//! a private copy before writing its new values, as a restore that gave each process its own copy
//! would; the root must then print FAIL.

use stasis_tests::raw::{self, Exit, Forked, SharedWords};
use stasis_tests::workload::{self, OrFail, ProcIds, Session, TREE_TIMEOUT, WAKE};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The processes, by their child indexes from the root; the index in this table is the slot.
const NODES: [&[usize]; 5] = [&[], &[0], &[0, 0], &[1], &[1, 0]];
/// The process that keeps a private copy in the `private-copy` run.
const PRIVATE_COPY_NODE: usize = 4;
/// Size of the shared area.
const AREA_LEN: usize = 4 << 20;
const PAGE_WORDS: usize = raw::PAGE / 8;
/// Words of one slot: the area after its header page, split evenly in whole pages.
const SLOT_WORDS: usize = (AREA_LEN / raw::PAGE - 1) / NODES.len() * PAGE_WORDS;
/// How long a process waits for the others to reach a step.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Header words (the area's first page).
const H_MAGIC: usize = 0;
const H_GO: usize = 1;
const H_READY: usize = 2;
const H_CHECKED: usize = 3;
const H_DONE: usize = 4;
const MAGIC: u64 = 0x7472_6565_5f73_686d;
/// The generation the root writes into the header after the wake.
const GO: u64 = 0x0060_0d00_0002;

/// Slot words: the slot's first page holds these, the pattern fills the rest.
const S_VALUE: usize = 0;
const S_PID: usize = 1;
/// The report's length in bytes plus one (0: no report yet).
const S_REPORT_LEN: usize = 2;
const S_REPORT: usize = 8;
const REPORT_MAX: usize = (PAGE_WORDS - S_REPORT) * 8;
const S_PATTERN: usize = PAGE_WORDS;

/// What a slot holds before the dump, and after its owner's update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gen {
    BeforeDump,
    AfterRestore,
}

fn name(n: usize) -> String {
    if n == 0 {
        return "root".into();
    }
    let idx: Vec<String> = NODES[n].iter().map(|i| i.to_string()).collect();
    format!("node {}", idx.join("."))
}

fn value(n: usize, gen: Gen) -> u64 {
    (n as u64 + 1) * 1_000 + 17 + (gen == Gen::AfterRestore) as u64
}

fn seed(n: usize, gen: Gen) -> u64 {
    0x5a3e_0000_0000 ^ ((n as u64 + 1) << 20) ^ if gen == Gen::AfterRestore { 0xa5a5 } else { 0x1111 }
}

/// The slots of the children of node `n`.
fn children(n: usize) -> Vec<usize> {
    let path = NODES[n];
    (0..NODES.len()).filter(|&k| NODES[k].len() == path.len() + 1 && NODES[k].starts_with(path)).collect()
}

/// The shared area: a header page, then one slot per process, then a tail never written.
struct Area(SharedWords);

impl Area {
    fn header(&self, i: usize) -> &AtomicU64 {
        &self.0.words()[i]
    }

    fn slot(&self, n: usize) -> &[AtomicU64] {
        let start = PAGE_WORDS + n * SLOT_WORDS;
        &self.0.words()[start..start + SLOT_WORDS]
    }

    fn tail(&self) -> &[AtomicU64] {
        &self.0.words()[PAGE_WORDS + NODES.len() * SLOT_WORDS..]
    }

    /// Writes slot `n`'s pattern and counter of generation `gen`.
    fn fill(&self, n: usize, gen: Gen) {
        let slot = self.slot(n);
        for (i, w) in slot[S_PATTERN..].iter().enumerate() {
            w.store(workload::pattern_word(seed(n, gen), i), Relaxed);
        }
        slot[S_VALUE].store(value(n, gen), SeqCst);
    }

    /// Checks slot `n` holds generation `gen`.
    fn check_slot(&self, n: usize, gen: Gen, problems: &mut Vec<String>) {
        let slot = self.slot(n);
        let got = slot[S_VALUE].load(SeqCst);
        if got != value(n, gen) {
            problems.push(format!("counter of {} {gen:?}: want {}, got {got}", name(n), value(n, gen)));
        }
        let words = &slot[S_PATTERN..];
        let off =
            words.iter().enumerate().position(|(i, w)| w.load(Relaxed) != workload::pattern_word(seed(n, gen), i));
        if let Some(i) = off {
            problems.push(format!("pattern of {} {gen:?} differs at word {i} of {}", name(n), words.len()));
        }
    }

    /// Bumps the header counter `h` and waits until every process bumped it.
    fn barrier(&self, h: usize, what: &str, problems: &mut Vec<String>) {
        self.header(h).fetch_add(1, SeqCst);
        if let Err(got) = self.wait_count(h) {
            problems.push(format!("only {got} of {} processes {what} within {STEP_TIMEOUT:?}", NODES.len()));
        }
    }

    /// Waits until the header counter `h` counts every process; `Err(count)` on timeout.
    fn wait_count(&self, h: usize) -> Result<(), u64> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let got = self.header(h).load(SeqCst);
            if got == NODES.len() as u64 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(got);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Writes `problems` as slot `n`'s report (truncated to the room it has).
    fn write_report(&self, n: usize, problems: &[String]) {
        let text = problems.join("; ");
        let bytes = &text.as_bytes()[..text.len().min(REPORT_MAX)];
        let slot = self.slot(n);
        for (chunk, w) in bytes.chunks(8).zip(&slot[S_REPORT..]) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            w.store(u64::from_le_bytes(word), Relaxed);
        }
        slot[S_REPORT_LEN].store(bytes.len() as u64 + 1, SeqCst);
    }

    /// Slot `n`'s report, `None` if none was written.
    fn report(&self, n: usize) -> Option<String> {
        let slot = self.slot(n);
        let len = (slot[S_REPORT_LEN].load(SeqCst) as usize).checked_sub(1)?.min(REPORT_MAX);
        let bytes: Vec<u8> = slot[S_REPORT..].iter().flat_map(|w| w.load(Relaxed).to_le_bytes()).take(len).collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Before the dump: fills slot `n` and forks the children of node `n`; returns their slots and
/// pids.
fn setup(n: usize, area: &Area, private_copy: Option<usize>) -> Vec<(usize, i32)> {
    area.slot(n)[S_PID].store(raw::raw_getpid() as u64, SeqCst);
    area.fill(n, Gen::BeforeDump);
    children(n).into_iter().map(|k| (k, spawn(k, area, private_copy))).collect()
}

/// Forks node `k`, which runs [`node`] and exits with its code (3 if it panics).
fn spawn(k: usize, area: &Area, private_copy: Option<usize>) -> i32 {
    match raw::fork().or_fail(&format!("fork {}", name(k))) {
        Forked::Child => {
            let run = std::panic::AssertUnwindSafe(|| node(k, area, private_copy));
            std::process::exit(std::panic::catch_unwind(run).unwrap_or(3))
        }
        Forked::Parent(pid) => pid,
    }
}

/// After the wake, in every process: checks every slot as written before the dump, writes the
/// new values into its own slot, and checks every slot shows the others' new values.
fn exchange(n: usize, area: &Area, private_copy: bool, problems: &mut Vec<String>) {
    for k in 0..NODES.len() {
        area.check_slot(k, Gen::BeforeDump, problems);
    }
    area.barrier(H_CHECKED, "checked the slots written before the dump", problems);
    if private_copy {
        if let Err(e) = area.0.keep_private_copy() {
            problems.push(format!("keep a private copy: {e}"));
        }
    }
    area.fill(n, Gen::AfterRestore);
    area.barrier(H_DONE, "wrote their new values", problems);
    for k in 0..NODES.len() {
        area.check_slot(k, Gen::AfterRestore, problems);
    }
}

/// Wakes the children `kids`.
fn wake(kids: &[(usize, i32)], problems: &mut Vec<String>) {
    for &(k, pid) in kids {
        if let Err(e) = raw::kill(pid, WAKE) {
            problems.push(format!("wake {} (pid {pid}): {e}", name(k)));
        }
    }
}

/// Reaps the children `kids`, which must exit 0.
fn reap(kids: &[(usize, i32)], problems: &mut Vec<String>) {
    for &(k, pid) in kids {
        match workload::wait_exit_within(pid, TREE_TIMEOUT) {
            Ok(Some(Exit::Code(0))) => {}
            Ok(Some(exit)) => problems.push(format!("{} (pid {pid}) ended with {exit:?}", name(k))),
            Ok(None) => {
                let _ = raw::kill(pid, libc::SIGKILL);
                problems.push(format!("{} (pid {pid}) did not exit within {TREE_TIMEOUT:?}", name(k)));
            }
            Err(e) => problems.push(format!("waitpid {} (pid {pid}): {e}", name(k))),
        }
    }
}

/// The failures the session recorded (pid, tid, blocked mask around the wait), as one problem.
fn session_checks(s: Session, problems: &mut Vec<String>) {
    if !s.into_checker().passed() {
        problems.push("pid, tid or blocked mask changed (session checks)".into());
    }
}

/// A process below the root: returns its exit code after writing its report.
fn node(n: usize, area: &Area, private_copy: Option<usize>) -> i32 {
    let mut s = workload::start();
    let ids = ProcIds::own().or_fail("process ids");
    let kids = setup(n, area, private_copy);
    area.header(H_READY).fetch_add(1, SeqCst);
    s.wait_for_wake();
    let mut problems = Vec::new();
    wake(&kids, &mut problems);
    match ProcIds::own() {
        Ok(now) if now == ids => {}
        now => problems.push(format!("pid, parent, group, session: before {ids:?}, after {now:?}")),
    }
    let go = area.header(H_GO).load(SeqCst);
    if go != GO {
        problems.push(format!("go generation in the header: want {GO:#x}, got {go:#x}"));
    }
    exchange(n, area, private_copy == Some(n), &mut problems);
    reap(&kids, &mut problems);
    session_checks(s, &mut problems);
    area.write_report(n, &problems);
    i32::from(!problems.is_empty())
}

/// The root's checks after its children ended: the pids in the slots, the tail, every report.
fn check_tree(area: &Area, pids: &[u64], problems: &mut Vec<String>) {
    let now: Vec<u64> = (0..NODES.len()).map(|k| area.slot(k)[S_PID].load(SeqCst)).collect();
    if now != pids {
        problems.push(format!("pids in the slots: before the dump {pids:?}, after {now:?}"));
    }
    if let Some(i) = area.tail().iter().position(|w| w.load(Relaxed) != 0) {
        problems.push(format!("the area's tail, never written, is not zero at word {i}"));
    }
    for k in 1..NODES.len() {
        match area.report(k) {
            None => problems.push(format!("{}: no report in its slot", name(k))),
            Some(text) if text.is_empty() => {}
            Some(text) => problems.push(format!("{}: {text}", name(k))),
        }
    }
}

fn main() {
    let private_copy = match std::env::args().nth(1).as_deref() {
        None => None,
        Some("private-copy") => Some(PRIVATE_COPY_NODE),
        Some(other) => Err(format!("unknown argument {other:?}")).or_fail("arguments"),
    };
    let mut s = workload::start();
    let area = Area(SharedWords::anon(AREA_LEN).or_fail("mmap MAP_SHARED | MAP_ANONYMOUS"));
    area.header(H_MAGIC).store(MAGIC, SeqCst);
    let kids = setup(0, &area, private_copy);
    area.header(H_READY).fetch_add(1, SeqCst);
    area.wait_count(H_READY).map_err(|got| format!("{got} of {} ready", NODES.len())).or_fail("processes ready");
    let pids: Vec<u64> = (0..NODES.len()).map(|k| area.slot(k)[S_PID].load(SeqCst)).collect();
    let below: Vec<i32> = pids[1..].iter().map(|&p| p as i32).collect();
    let awake = workload::wait_processes_in(&below, &['S'], Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("processes not asleep at READY (pid, state): {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    area.header(H_GO).store(GO, SeqCst);
    let mut problems = Vec::new();
    wake(&kids, &mut problems);
    let magic = area.header(H_MAGIC).load(SeqCst);
    if magic != MAGIC {
        problems.push(format!("magic in the header: want {MAGIC:#x}, got {magic:#x}"));
    }
    exchange(0, &area, false, &mut problems);
    reap(&kids, &mut problems);
    check_tree(&area, &pids, &mut problems);
    for p in problems {
        s.checker.check(false, || p);
    }
    s.finish()
}
