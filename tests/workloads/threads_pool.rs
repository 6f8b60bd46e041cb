//! A pool of 16 threads besides the main thread survives, each with its own state: a counter in
//! a thread-local, a pattern in a heap buffer of its own size, its name (PR_SET_NAME), its blocked
//! mask (thread i also blocks SIGRTMIN+i%4) and its tid. The threads wait in four ways, four of
//! each: a Mutex+Condvar wait, a raw FUTEX_WAIT without timeout, a loop of nanosleep, and a
//! blocking read on a pipe whose both ends the process holds. After the wake-up the main thread
//! checks `Threads: 17` and the task list, releases every thread (notify, futex wake, a flag, one
//! byte per reader); each checks its state against what it recorded, increments its counter and
//! reports; the main thread checks the reports and joins every thread (the join returns only if
//! the kernel clears the tid word at exit, so clear_child_tid must have been restored).

use stasis_tests::raw::{self, SigSet};
use stasis_tests::workload::{self, Checker, OrFail};
use std::cell::Cell;
use std::io::{PipeReader, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

const THREADS: usize = 16;
const WAKE_BYTE: u8 = 0x5a;
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// How a thread waits for the release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    Condvar,
    Futex,
    Sleep,
    Pipe,
}

impl Wait {
    fn of(i: usize) -> Wait {
        [Wait::Condvar, Wait::Futex, Wait::Sleep, Wait::Pipe][i % 4]
    }
}

/// What the threads wait on.
struct Shared {
    released: Mutex<bool>,
    cv: Condvar,
    futex: AtomicU32,
    stop_sleeping: AtomicBool,
    pipe: PipeReader,
}

/// What a thread sends back after its checks.
struct Report {
    index: usize,
    tid: i32,
    counter: u64,
    checker: Checker,
}

fn counter_start(i: usize) -> u64 {
    1_000 * i as u64 + 7
}

fn seed(i: usize) -> u64 {
    0x7000_0000 + i as u64
}

fn buf_len(i: usize) -> usize {
    4096 * (i + 1) + 123 * i
}

fn name(i: usize) -> String {
    format!("pool-{i:02}-{:?}", Wait::of(i)).chars().take(15).collect()
}

fn wait_condvar(shared: &Shared) {
    let mut released = shared.released.lock().unwrap_or_else(PoisonError::into_inner);
    while !*released {
        released = shared.cv.wait(released).unwrap_or_else(PoisonError::into_inner);
    }
}

fn wait_futex(shared: &Shared, c: &mut Checker) {
    let mut early = 0;
    while shared.futex.load(Ordering::SeqCst) == 0 {
        match raw::futex_wait(&shared.futex, 0) {
            Ok(()) => early += 1,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {}
            Err(e) => c.check(false, || format!("futex wait: {e}")),
        }
    }
    if early > 1 {
        c.note(format!("FUTEX_WAIT returned {early} times"));
    }
}

fn wait_sleep(shared: &Shared, c: &mut Checker) {
    let mut naps = 0u64;
    while !shared.stop_sleeping.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        naps += 1;
    }
    c.check(naps > 0, || "never slept".into());
}

fn wait_pipe(shared: &Shared, c: &mut Checker) {
    let mut byte = [0u8; 1];
    let mut eintr = 0;
    let n = loop {
        match (&shared.pipe).read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => eintr += 1,
            other => break other,
        }
    };
    c.same("read() EINTR count", &0, &eintr);
    match n {
        Ok(n) => c.same("bytes read", &[WAKE_BYTE][..], &byte[..n]),
        Err(e) => c.check(false, || format!("read: {e}")),
    }
}

/// One pool thread: set up, announce the tid, wait, verify, count, report.
fn worker(i: usize, shared: Arc<Shared>, setup: Sender<(usize, i32)>, reports: Sender<Report>) {
    let tid = raw::raw_gettid();
    raw::set_comm(&name(i)).or_fail("PR_SET_NAME");
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[raw::sigrtmin() + (i % 4) as i32])).or_fail("block RT");
    let mask = raw::blocked_mask();
    COUNTER.with(|c| c.set(counter_start(i)));
    let mut buf = vec![0u8; buf_len(i)];
    workload::pattern_fill(&mut buf, seed(i));
    let mut c = Checker::default();
    setup.send((i, tid)).or_fail("announce tid");
    match Wait::of(i) {
        Wait::Condvar => wait_condvar(&shared),
        Wait::Futex => wait_futex(&shared, &mut c),
        Wait::Sleep => wait_sleep(&shared, &mut c),
        Wait::Pipe => wait_pipe(&shared, &mut c),
    }
    c.same("thread-local counter", &counter_start(i), &COUNTER.with(|c| c.get()));
    let off = workload::pattern_mismatch(&buf, seed(i));
    c.check(off.is_none(), || format!("heap buffer of {} bytes differs at {off:?}", buf.len()));
    c.same("gettid()", &tid, &raw::raw_gettid());
    c.same("name in /proc/self/task/TID/comm", &Some(name(i)), &workload::thread_comm(tid).ok());
    c.same("name from PR_GET_NAME", &Some(name(i)), &raw::get_comm().ok());
    c.same("blocked mask", &mask, &raw::blocked_mask());
    COUNTER.with(|c| c.set(c.get() + 1));
    let counter = COUNTER.with(|c| c.get());
    // The main thread gone means it already failed; nothing is left to tell.
    let _ = reports.send(Report { index: i, tid: raw::raw_gettid(), counter, checker: c });
}

/// Starts the pool; returns the handles and every thread's tid (by index).
fn spawn_pool(shared: &Arc<Shared>, reports: &Sender<Report>) -> (Vec<std::thread::JoinHandle<()>>, Vec<i32>) {
    let (setup_tx, setup_rx) = mpsc::channel();
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (shared, setup, reports) = (shared.clone(), setup_tx.clone(), reports.clone());
            std::thread::spawn(move || worker(i, shared, setup, reports))
        })
        .collect();
    let mut tids = vec![0; THREADS];
    for _ in 0..THREADS {
        let (i, tid) = setup_rx.recv_timeout(REPORT_TIMEOUT).or_fail("thread setup");
        tids[i] = tid;
    }
    (handles, tids)
}

/// Releases every thread, each in the way it waits.
fn release(shared: &Shared, writer: &mut std::io::PipeWriter, c: &mut Checker) {
    *shared.released.lock().unwrap_or_else(PoisonError::into_inner) = true;
    shared.cv.notify_all();
    shared.futex.store(1, Ordering::SeqCst);
    c.ok("FUTEX_WAKE", raw::futex_wake(&shared.futex, i32::MAX));
    shared.stop_sleeping.store(true, Ordering::SeqCst);
    let readers = (0..THREADS).filter(|&i| Wait::of(i) == Wait::Pipe).count();
    c.ok("write the pipe", writer.write_all(&vec![WAKE_BYTE; readers]));
}

/// Collects every thread's report and checks its counter and tid.
fn collect(c: &mut Checker, reports: &Receiver<Report>, tids: &[i32]) {
    let mut seen = [false; THREADS];
    for _ in 0..THREADS {
        let Ok(r) = reports.recv_timeout(REPORT_TIMEOUT) else {
            let missing: Vec<usize> = (0..THREADS).filter(|&i| !seen[i]).collect();
            c.check(false, || format!("threads {missing:?} did not report within {REPORT_TIMEOUT:?}"));
            return;
        };
        seen[r.index] = true;
        let who = format!("thread {} ({:?}, tid {})", r.index, Wait::of(r.index), tids[r.index]);
        c.same(&format!("{who}: tid reported"), &tids[r.index], &r.tid);
        c.same(&format!("{who}: counter after increment"), &(counter_start(r.index) + 1), &r.counter);
        c.absorb(&who, r.checker);
    }
}

fn main() {
    let mut s = workload::start();
    let (reader, mut writer) = std::io::pipe().or_fail("pipe");
    let shared = Arc::new(Shared {
        released: Mutex::new(false),
        cv: Condvar::new(),
        futex: AtomicU32::new(0),
        stop_sleeping: AtomicBool::new(false),
        pipe: reader,
    });
    let (report_tx, report_rx) = mpsc::channel();
    let (handles, tids) = spawn_pool(&shared, &report_tx);
    let awake = workload::wait_threads_sleeping(&tids, Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("threads not asleep at READY (tid, state): {awake:?}"));
    }
    let tasks = workload::own_threads().or_fail("/proc/self/task");
    workload::own_status("Threads")
        .and_then(|n| if n == "17" { Ok(()) } else { Err(std::io::Error::other(n)) })
        .or_fail("Threads: 17 before READY");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("Threads in /proc/self/status", &Some("17".to_string()), &workload::own_status("Threads").ok());
    c.same("tids in /proc/self/task", &Some(tasks), &workload::own_threads().ok());
    release(&shared, &mut writer, c);
    collect(c, &report_rx, &tids);
    for (i, h) in handles.into_iter().enumerate() {
        let joined = raw::timed_join(h, JOIN_TIMEOUT);
        c.check(joined.is_ok(), || format!("join of thread {i} (tid {}): {joined:?}", tids[i]));
    }
    c.same("Threads after the joins", &Some("1".to_string()), &workload::own_status("Threads").ok());
    s.finish()
}
