//! Per-thread scheduling attributes survive: each of four threads sets its own nice value,
//! scheduling policy (SCHED_OTHER, SCHED_BATCH, SCHED_IDLE), CPU affinity and timer slack, all of
//! which Linux keeps per thread; the main thread keeps its defaults. So do the per-thread traps:
//! thread 1 makes rdtsc raise SIGSEGV (`PR_SET_TSC`) and asks for early memory-error kills, thread
//! 2 for late ones, thread 3 for early ones, thread 0 and the main thread keep the defaults. After
//! the wake-up every thread (the main one too) checks its own values. Thread 1 reads no clock
//! (the vDSO's use rdtsc) once its mode is set.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

const THREADS: usize = 4;
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);

/// One thread's scheduling attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Attrs {
    nice: i32,
    policy: i32,
    cpus: Vec<usize>,
    slack_ns: i32,
    /// `PR_MCE_KILL_GET`: 0 late, 1 early, 2 the system's default.
    mce_kill: i32,
    /// `PR_GET_TSC`: 1 rdtsc allowed, 2 it raises SIGSEGV.
    tsc: i32,
}

impl Attrs {
    /// Thread `i`'s attributes, given the CPUs the process may use.
    fn of(i: usize, all: &[usize]) -> Attrs {
        Attrs {
            nice: 3 + 4 * i as i32,
            policy: [libc::SCHED_OTHER, libc::SCHED_BATCH, libc::SCHED_IDLE, libc::SCHED_BATCH][i % 4],
            cpus: vec![all[i % all.len()]],
            slack_ns: 70_000 + 1_000 * i as i32,
            mce_kill: [
                libc::PR_MCE_KILL_DEFAULT,
                libc::PR_MCE_KILL_EARLY,
                libc::PR_MCE_KILL_LATE,
                libc::PR_MCE_KILL_EARLY,
            ][i % 4],
            tsc: if i == 1 { libc::PR_TSC_SIGSEGV } else { libc::PR_TSC_ENABLE },
        }
    }

    fn current() -> std::io::Result<Attrs> {
        Ok(Attrs {
            nice: raw::get_nice()?,
            policy: raw::get_sched_policy()?,
            cpus: raw::get_affinity()?,
            slack_ns: raw::prctl(libc::PR_GET_TIMERSLACK, 0, 0)?,
            mce_kill: raw::prctl(libc::PR_MCE_KILL_GET, 0, 0)?,
            tsc: raw::get_tsc()?,
        })
    }

    /// Applies these attributes to the calling thread.
    fn apply(&self) {
        raw::set_sched_policy(self.policy).or_fail("sched_setscheduler");
        raw::set_nice(self.nice).or_fail("setpriority");
        raw::set_affinity(&self.cpus).or_fail("sched_setaffinity");
        raw::prctl(libc::PR_SET_TIMERSLACK, self.slack_ns as u64, 0).or_fail("PR_SET_TIMERSLACK");
        if self.mce_kill != libc::PR_MCE_KILL_DEFAULT {
            let set = (libc::PR_MCE_KILL_SET as u64, self.mce_kill as u64);
            raw::prctl(libc::PR_MCE_KILL, set.0, set.1).or_fail("PR_MCE_KILL");
        }
        raw::prctl(libc::PR_SET_TSC, self.tsc as u64, 0).or_fail("PR_SET_TSC");
    }
}

struct Common {
    released: Mutex<bool>,
    cv: Condvar,
}

fn wait_release(common: &Common) {
    let mut released = common.released.lock().unwrap_or_else(PoisonError::into_inner);
    while !*released {
        released = common.cv.wait(released).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Compares the calling thread's attributes with `want`, one by one.
fn compare(c: &mut Checker, want: &Attrs) {
    let Some(now) = c.ok("read the attributes", Attrs::current()) else { return };
    c.same("nice", &want.nice, &now.nice);
    c.same("scheduling policy", &want.policy, &now.policy);
    c.same("CPU affinity", &want.cpus, &now.cpus);
    c.same("timer slack (ns)", &want.slack_ns, &now.slack_ns);
    c.same("memory-error kill policy", &want.mce_kill, &now.mce_kill);
    c.same("rdtsc mode", &want.tsc, &now.tsc);
}

fn worker(i: usize, want: Attrs, common: Arc<Common>, setup: Sender<i32>, reports: Sender<(usize, Checker)>) {
    want.apply();
    let set = Attrs::current().or_fail("read back the attributes");
    if set != want {
        Err::<(), _>(format!("{set:?}, not {want:?}")).or_fail("attributes read back");
    }
    setup.send(raw::raw_gettid()).or_fail("announce");
    wait_release(&common);
    let mut c = Checker::default();
    compare(&mut c, &want);
    // The main thread gone means it already failed; nothing is left to tell.
    let _ = reports.send((i, c));
}

fn collect(c: &mut Checker, reports: &Receiver<(usize, Checker)>, tids: &[i32]) {
    for _ in 0..THREADS {
        match reports.recv_timeout(REPORT_TIMEOUT) {
            Ok((i, thread)) => c.absorb(&format!("thread {i} (tid {})", tids[i]), thread),
            Err(e) => return c.check(false, || format!("a thread did not report: {e}")),
        }
    }
}

fn main() {
    let mut s = workload::start();
    let all = raw::get_affinity().or_fail("sched_getaffinity");
    let main_attrs = Attrs::current().or_fail("main thread's attributes");
    let common = Arc::new(Common { released: Mutex::new(false), cv: Condvar::new() });
    let (setup_tx, setup_rx) = mpsc::channel();
    let (report_tx, report_rx) = mpsc::channel();
    let mut handles = Vec::new();
    let mut tids = Vec::new();
    for i in 0..THREADS {
        let (want, common, setup, reports) = (Attrs::of(i, &all), common.clone(), setup_tx.clone(), report_tx.clone());
        handles.push(std::thread::spawn(move || worker(i, want, common, setup, reports)));
        tids.push(setup_rx.recv_timeout(REPORT_TIMEOUT).or_fail("thread setup"));
    }
    let awake = workload::wait_threads_sleeping(&tids, Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("threads not asleep at READY (tid, state): {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    compare(c, &main_attrs);
    *common.released.lock().unwrap_or_else(PoisonError::into_inner) = true;
    common.cv.notify_all();
    collect(c, &report_rx, &tids);
    for (i, h) in handles.into_iter().enumerate() {
        let joined = raw::timed_join(h, Duration::from_secs(10));
        c.check(joined.is_ok(), || format!("join of thread {i} (tid {}): {joined:?}", tids[i]));
    }
    s.finish()
}
