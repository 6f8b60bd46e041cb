//! Per-thread kernel registrations survive in a process of six threads. Every thread (the main
//! one too) checks after the restore: its thread-local word and buffer, its fs base and thread
//! pointer, its own gs base (a different value per thread), glibc's rseq registration (the
//! kernel updates the area's cpu_id when the thread moves between CPUs, and rseq() with glibc's
//! arguments fails with EBUSY), its robust futex list head (get_robust_list) and its
//! clear-child-tid address (PR_GET_TID_ADDRESS). One more thread holds a robust mutex across the
//! dump and exits holding it after the restore: the main thread's lock must return EOWNERDEAD,
//! which only the kernel's walk of the restored robust list produces. Every thread exits after
//! the restore and is joined with a timeout; the join returns only because the kernel clears the
//! tid word at exit, so clear_child_tid must have been restored; a thread that exited before the
//! dump is joined after the restore too. Finally a thread started after
//! the restore must get glibc's rseq and robust list registrations.

use stasis_tests::raw::{self, RobustMutex};
use stasis_tests::workload::{self, Checker, OrFail};
use std::cell::{Cell, RefCell};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

const THREADS: usize = 4;
const GS_BASE: u64 = 0x0000_5a5a_1234_0000;
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);
const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static TL_WORD: Cell<u64> = const { Cell::new(0) };
    static TL_BUF: RefCell<[u8; 4096]> = const { RefCell::new([0; 4096]) };
}

/// What one thread recorded before the dump.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recorded {
    fs: u64,
    tp: u64,
    gs: u64,
    rseq: Option<(u64, u32)>,
    robust_list: (u64, usize),
    /// `None` when the kernel lacks PR_GET_TID_ADDRESS.
    tid_address: Option<u64>,
}

/// What the threads wait on.
struct Common {
    released: Mutex<bool>,
    cv: Condvar,
    robust: RobustMutex,
}

fn word(i: usize) -> u64 {
    0x7157_0000_0000_0000 + i as u64
}

fn tid_address() -> Option<u64> {
    match raw::get_tid_address() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => None,
        other => Some(other.or_fail("PR_GET_TID_ADDRESS")),
    }
}

/// Sets this thread's TLS and gs base (thread `i`) and records what must survive.
fn set_up(i: usize) -> Recorded {
    TL_WORD.with(|w| w.set(word(i)));
    TL_BUF.with(|b| workload::pattern_fill(&mut b.borrow_mut()[..], word(i)));
    let gs = GS_BASE + (i as u64) * 0x1000;
    raw::set_gs_base(gs).or_fail("arch_prctl(ARCH_SET_GS)");
    match raw::rseq_probe_glibc() {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        other => Err::<(), _>(format!("{other:?}")).or_fail("rseq probe before dump, not EBUSY"),
    }
    Recorded {
        fs: raw::fs_base().or_fail("arch_prctl(ARCH_GET_FS)"),
        tp: raw::thread_pointer(),
        gs,
        rseq: raw::glibc_rseq_area(),
        robust_list: raw::get_robust_list().or_fail("get_robust_list"),
        tid_address: tid_address(),
    }
}

/// Moves the thread across the allowed CPUs and checks rseq's cpu_id follows.
fn check_cpu_id_follows(c: &mut Checker) {
    let Some(cpus) = c.ok("sched_getaffinity", raw::get_affinity()) else { return };
    if cpus.len() < 2 {
        return;
    }
    for &cpu in cpus.iter().take(2) {
        if c.ok("sched_setaffinity", raw::set_affinity(&[cpu])).is_none() {
            return;
        }
        std::thread::yield_now();
        let id = raw::rseq_cpu_id();
        c.check(id == Some(cpu as u32), || format!("rseq cpu_id {id:?} on cpu {cpu}: kernel not updating it"));
    }
    c.ok("sched_setaffinity", raw::set_affinity(&cpus));
}

/// Checks this thread (`i`) against what it recorded.
fn verify(c: &mut Checker, i: usize, rec: &Recorded) {
    c.same("thread-local word", &word(i), &TL_WORD.with(|w| w.get()));
    let buf_ok = TL_BUF.with(|b| workload::pattern_mismatch(&b.borrow()[..], word(i)).is_none());
    c.check(buf_ok, || "thread-local buffer differs".into());
    let now = Recorded {
        fs: raw::fs_base().unwrap_or(0),
        tp: raw::thread_pointer(),
        gs: raw::gs_base().unwrap_or(0),
        rseq: raw::glibc_rseq_area(),
        robust_list: raw::get_robust_list().unwrap_or((0, 0)),
        tid_address: rec.tid_address.and_then(|_| raw::get_tid_address().ok()),
    };
    c.same("fs base", &rec.fs, &now.fs);
    c.same("thread pointer (fs:0)", &rec.tp, &now.tp);
    c.same("gs base", &rec.gs, &now.gs);
    c.same("glibc rseq area", &rec.rseq, &now.rseq);
    c.same("robust list head, length", &rec.robust_list, &now.robust_list);
    c.same("clear-child-tid address", &rec.tid_address, &now.tid_address);
    check_cpu_id_follows(c);
    match raw::rseq_probe_glibc() {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
        Ok(()) => c.check(false, || "rseq was not registered after restore (the probe registered it)".into()),
        Err(e) => c.check(false, || format!("rseq probe: {e} (registered with other arguments?)")),
    }
}

fn wait_release(common: &Common) {
    let mut released = common.released.lock().unwrap_or_else(PoisonError::into_inner);
    while !*released {
        released = common.cv.wait(released).unwrap_or_else(PoisonError::into_inner);
    }
}

fn worker(i: usize, common: Arc<Common>, setup: Sender<(usize, i32)>, reports: Sender<(usize, Checker)>) {
    let rec = set_up(i + 1);
    setup.send((i, raw::raw_gettid())).or_fail("announce");
    wait_release(&common);
    let mut c = Checker::default();
    verify(&mut c, i + 1, &rec);
    // The main thread gone means it already failed; nothing is left to tell.
    let _ = reports.send((i, c));
}

/// The robust mutex holder: locks it, announces itself, waits, and exits still holding it.
fn holder(common: Arc<Common>, setup: Sender<(usize, i32)>) {
    match common.robust.lock_within(LOCK_TIMEOUT) {
        Ok(false) => {}
        other => Err::<(), _>(format!("{other:?}")).or_fail("lock the robust mutex"),
    }
    setup.send((THREADS, raw::raw_gettid())).or_fail("announce");
    wait_release(&common);
}

type Handles = Vec<std::thread::JoinHandle<()>>;

/// Starts the threads and the holder (last); returns their handles and tids.
fn spawn(common: &Arc<Common>, reports: &Sender<(usize, Checker)>) -> (Handles, Vec<i32>) {
    let (setup_tx, setup_rx) = mpsc::channel();
    let mut handles: Handles = (0..THREADS)
        .map(|i| {
            let (common, setup, reports) = (common.clone(), setup_tx.clone(), reports.clone());
            std::thread::spawn(move || worker(i, common, setup, reports))
        })
        .collect();
    let (common, setup) = (common.clone(), setup_tx.clone());
    handles.push(std::thread::spawn(move || holder(common, setup)));
    let mut tids = vec![0; THREADS + 1];
    for _ in 0..=THREADS {
        let (i, tid) = setup_rx.recv_timeout(REPORT_TIMEOUT).or_fail("thread setup");
        tids[i] = tid;
    }
    (handles, tids)
}

fn collect(c: &mut Checker, reports: &Receiver<(usize, Checker)>, tids: &[i32]) {
    for _ in 0..THREADS {
        match reports.recv_timeout(REPORT_TIMEOUT) {
            Ok((i, thread)) => c.absorb(&format!("thread {i} (tid {})", tids[i]), thread),
            Err(e) => return c.check(false, || format!("a thread did not report: {e}")),
        }
    }
}

/// Takes the mutex the holder died with: EOWNERDEAD proves its robust list was walked.
fn check_robust(c: &mut Checker, robust: &RobustMutex) {
    match robust.lock_within(LOCK_TIMEOUT) {
        Ok(true) => {
            c.ok("pthread_mutex_consistent", robust.make_consistent());
            c.ok("unlock the robust mutex", robust.unlock());
        }
        Ok(false) => c.check(false, || "robust mutex: locked without EOWNERDEAD after its owner exited".into()),
        Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => c.check(false, || {
            "robust mutex: its owner exited holding it and it was never marked (robust list not restored?)".into()
        }),
        Err(e) => c.check(false, || format!("robust mutex lock: {e}")),
    }
}

/// A thread that exits before the dump and is joined only after the restore.
fn exited_thread() -> std::thread::JoinHandle<()> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || tx.send(raw::raw_gettid()).or_fail("announce"));
    let tid = rx.recv_timeout(REPORT_TIMEOUT).or_fail("exiting thread");
    let deadline = std::time::Instant::now() + REPORT_TIMEOUT;
    while workload::own_threads().or_fail("/proc/self/task").contains(&tid) {
        if std::time::Instant::now() > deadline {
            Err::<(), _>(format!("tid {tid}")).or_fail("the exiting thread is still there");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    handle
}

/// A thread started after the restore gets glibc's registrations: rseq and a robust list.
fn check_new_thread(c: &mut Checker) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut t = Checker::default();
        match raw::rseq_probe_glibc() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            other => t.check(false, || format!("rseq probe: {other:?}, not EBUSY")),
        }
        let robust = raw::get_robust_list();
        t.check(matches!(robust, Ok((head, _)) if head != 0), || format!("robust list: {robust:?}"));
        // The main thread gone means it already failed; nothing is left to tell.
        let _ = tx.send(t);
    });
    match rx.recv_timeout(REPORT_TIMEOUT) {
        Ok(t) => c.absorb("thread started after the restore", t),
        Err(e) => c.check(false, || format!("a thread started after the restore did not report: {e}")),
    }
    let joined = raw::timed_join(handle, Duration::from_secs(10));
    c.check(joined.is_ok(), || format!("join of the thread started after the restore: {joined:?}"));
}

fn main() {
    let mut s = workload::start();
    if raw::glibc_rseq_area().is_none() {
        workload::skip("glibc did not register rseq (__rseq_size is 0)");
    }
    let rec = set_up(0);
    if rec.tid_address.is_none() {
        s.checker.note("PR_GET_TID_ADDRESS unsupported: clear-child-tid address not compared".into());
    }
    let robust = RobustMutex::new().or_fail("robust mutex");
    let common = Arc::new(Common { released: Mutex::new(false), cv: Condvar::new(), robust });
    let (report_tx, report_rx) = mpsc::channel();
    let (handles, tids) = spawn(&common, &report_tx);
    let exited = exited_thread();
    let awake = workload::wait_threads_sleeping(&tids, Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("threads not asleep at READY (tid, state): {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    verify(c, 0, &rec);
    *common.released.lock().unwrap_or_else(PoisonError::into_inner) = true;
    common.cv.notify_all();
    collect(c, &report_rx, &tids);
    for (i, h) in handles.into_iter().enumerate() {
        let joined = raw::timed_join(h, Duration::from_secs(10));
        c.check(joined.is_ok(), || format!("join of thread {i} (tid {}): {joined:?}", tids[i]));
    }
    let joined = raw::timed_join(exited, Duration::from_secs(10));
    c.check(joined.is_ok(), || format!("join of the thread that exited before the dump: {joined:?}"));
    check_robust(c, &common.robust);
    check_new_thread(c);
    s.finish()
}
