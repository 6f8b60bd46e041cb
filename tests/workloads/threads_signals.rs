//! Per-thread signal state survives in a process of five threads: each thread's own alternate
//! signal stack (a different size each) and thread-directed pending signals. Thread 0 blocks
//! SIGUSR2 and SIGRTMIN+1 itself; the main thread then sends it SIGUSR2 with tgkill and two
//! SIGRTMIN+1 with values through rt_tgsigqueueinfo, so they are pending on thread 0 only, and
//! SIGRTMIN+2 to the process with kill while every thread blocks it (shared pending). After the
//! wake-up every thread checks sigpending (thread 0 sees its three, the others only the shared
//! one), its sigaltstack, and that a SA_ONSTACK handler (SIGURG, tgkill to itself) runs on its
//! own alternate stack; thread 0 dequeues its signals with sigtimedwait (code, sender, values in
//! order). The main thread blocks SIGWINCH (which has a handler) after starting the threads and
//! sends it to itself, so it is pending on the main thread only: no other thread may run its
//! handler; the main thread then dequeues it and the shared one.

use stasis_tests::raw::{self, AltStack, Mapping, SigSet};
use stasis_tests::workload::{self, Checker, OrFail};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

const THREADS: usize = 4;
const REPORT_TIMEOUT: Duration = Duration::from_secs(20);
const VALUES: [u64; 2] = [0xfeed_0001, 0xfeed_0002];

/// What every thread knows about the process.
struct Common {
    pid: i32,
    rt: i32,
    released: Mutex<bool>,
    cv: Condvar,
    /// Serialises the SIGURG deliveries, whose record is process-wide.
    urg: Mutex<()>,
}

fn alt_size(i: usize) -> usize {
    32 * 1024 + i * 4096
}

/// Maps an alternate stack of `size` bytes, makes it this thread's and returns what
/// sigaltstack reports.
fn own_altstack(size: usize) -> AltStack {
    let alt: &'static Mapping =
        Box::leak(Box::new(Mapping::anon(size, libc::PROT_READ | libc::PROT_WRITE).or_fail("mmap altstack")));
    raw::set_altstack(alt).or_fail("sigaltstack");
    let got = raw::get_altstack().or_fail("sigaltstack query");
    if got.sp != alt.addr() || got.size != size {
        Err::<(), _>(format!("{got:?}")).or_fail("sigaltstack reports another stack");
    }
    got
}

/// Learns the si_code of a tgkill'ed signal on this kernel (SIGPWR, blocked meanwhile).
fn probe_tkill_code(pid: i32) -> i32 {
    let set = SigSet::of(&[libc::SIGPWR]);
    raw::sigprocmask(libc::SIG_BLOCK, set).or_fail("block SIGPWR");
    raw::tgkill(pid, raw::raw_gettid(), libc::SIGPWR).or_fail("tgkill SIGPWR");
    let info = raw::sigtimedwait(set, Duration::ZERO).or_fail("sigtimedwait SIGPWR");
    raw::sigprocmask(libc::SIG_UNBLOCK, set).or_fail("unblock SIGPWR");
    info.code
}

fn wait_release(common: &Common) {
    let mut released = common.released.lock().unwrap_or_else(PoisonError::into_inner);
    while !*released {
        released = common.cv.wait(released).unwrap_or_else(PoisonError::into_inner);
    }
}

/// Checks the alternate stack is still `alt` and a SA_ONSTACK handler runs on it.
fn check_altstack(c: &mut Checker, common: &Common, alt: &AltStack) {
    let none = AltStack { sp: 0, size: 0, flags: -1 };
    c.same("sigaltstack", alt, &raw::get_altstack().unwrap_or(none));
    let _serial = common.urg.lock().unwrap_or_else(PoisonError::into_inner);
    let before = raw::handler_record(libc::SIGURG).count;
    c.ok("tgkill SIGURG", raw::tgkill(common.pid, raw::raw_gettid(), libc::SIGURG));
    let rec = raw::handler_record(libc::SIGURG);
    c.same("SIGURG handler runs", &(before + 1), &rec.count);
    let range = alt.sp as u64..(alt.sp + alt.size) as u64;
    c.check(range.contains(&rec.sp), || {
        format!("SIGURG handler (SA_ONSTACK) ran at sp {:#x}, not in {range:x?}", rec.sp)
    });
}

fn dequeue(c: &mut Checker, sig: i32, code: i32, pid: i32, value: Option<u64>) {
    match raw::sigtimedwait(SigSet::of(&[sig]), Duration::ZERO) {
        Ok(info) => {
            c.same(&format!("signal {sig} si_code"), &code, &info.code);
            c.same(&format!("signal {sig} si_pid"), &pid, &info.pid);
            if let Some(v) = value {
                c.same(&format!("signal {sig} si_value"), &format!("{v:#x}"), &format!("{:#x}", info.value));
            }
        }
        Err(e) => c.check(false, || format!("signal {sig} not pending after restore: {e}")),
    }
}

/// Thread 0's pending signals: its own three plus the shared one, dequeued in order.
fn check_own_pending(c: &mut Checker, common: &Common, tkill_code: i32) {
    let (rt, pid) = (common.rt, common.pid);
    let want = SigSet::of(&[libc::SIGUSR2, rt + 1, rt + 2]);
    c.same("sigpending", &want, &raw::sigpending().unwrap_or_default());
    dequeue(c, libc::SIGUSR2, tkill_code, pid, None);
    dequeue(c, rt + 1, libc::SI_QUEUE, pid, Some(VALUES[0]));
    dequeue(c, rt + 1, libc::SI_QUEUE, pid, Some(VALUES[1]));
    let third = raw::sigtimedwait(SigSet::of(&[libc::SIGUSR2, rt + 1]), Duration::ZERO);
    c.check(third.is_err(), || format!("a third thread-directed signal: {third:?}"));
    c.same("sigpending after dequeueing", &SigSet::of(&[rt + 2]), &raw::sigpending().unwrap_or_default());
}

fn worker(i: usize, common: Arc<Common>, setup: Sender<(usize, i32)>, reports: Sender<(usize, Checker)>) {
    let alt = own_altstack(alt_size(i));
    let mut tkill_code = 0;
    if i == 0 {
        tkill_code = probe_tkill_code(common.pid);
        raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[libc::SIGUSR2, common.rt + 1])).or_fail("block");
    }
    let mask = raw::blocked_mask();
    setup.send((i, raw::raw_gettid())).or_fail("announce");
    wait_release(&common);
    let mut c = Checker::default();
    c.same("blocked mask", &mask, &raw::blocked_mask());
    if i == 0 {
        check_own_pending(&mut c, &common, tkill_code);
    } else {
        c.same("sigpending", &SigSet::of(&[common.rt + 2]), &raw::sigpending().unwrap_or_default());
    }
    check_altstack(&mut c, &common, &alt);
    let winch = raw::handler_record(libc::SIGWINCH).count;
    c.check(winch == 0, || format!("SIGWINCH, pending on the main thread only, ran a handler {winch} times"));
    // The main thread gone means it already failed; nothing is left to tell.
    let _ = reports.send((i, c));
}

/// Starts the threads; returns their handles and tids.
fn spawn(common: &Arc<Common>, reports: &Sender<(usize, Checker)>) -> (Vec<std::thread::JoinHandle<()>>, Vec<i32>) {
    let (setup_tx, setup_rx) = mpsc::channel();
    let handles = (0..THREADS)
        .map(|i| {
            let (common, setup, reports) = (common.clone(), setup_tx.clone(), reports.clone());
            std::thread::spawn(move || worker(i, common, setup, reports))
        })
        .collect();
    let mut tids = vec![0; THREADS];
    for _ in 0..THREADS {
        let (i, tid) = setup_rx.recv_timeout(REPORT_TIMEOUT).or_fail("thread setup");
        tids[i] = tid;
    }
    (handles, tids)
}

/// Makes the signals pending: three on thread 0, one on the process.
fn queue_pending(common: &Common, t0: i32) {
    let (pid, rt) = (common.pid, common.rt);
    raw::tgkill(pid, t0, libc::SIGUSR2).or_fail("tgkill SIGUSR2");
    for v in VALUES {
        raw::tgsigqueue(pid, t0, rt + 1, v).or_fail("rt_tgsigqueueinfo");
    }
    raw::kill(pid, rt + 2).or_fail("kill SIGRTMIN+2");
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
    let (pid, rt) = (s.pid(), raw::sigrtmin());
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[rt + 2])).or_fail("block SIGRTMIN+2");
    raw::set_recording_handler(libc::SIGURG, libc::SA_ONSTACK, SigSet::empty()).or_fail("SIGURG handler");
    raw::set_recording_handler(libc::SIGWINCH, 0, SigSet::empty()).or_fail("SIGWINCH handler");
    let tkill_code = probe_tkill_code(pid);
    let main_alt = own_altstack(alt_size(THREADS));
    let common = Arc::new(Common { pid, rt, released: Mutex::new(false), cv: Condvar::new(), urg: Mutex::new(()) });
    let (report_tx, report_rx) = mpsc::channel();
    let (handles, tids) = spawn(&common, &report_tx);
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[libc::SIGWINCH])).or_fail("block SIGWINCH in main");
    raw::tgkill(pid, s.tid(), libc::SIGWINCH).or_fail("tgkill SIGWINCH to main");
    queue_pending(&common, tids[0]);
    let awake = workload::wait_threads_sleeping(&tids, Duration::from_secs(5));
    if !awake.is_empty() {
        s.checker.note(format!("threads not asleep at READY (tid, state): {awake:?}"));
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("Threads in /proc/self/status", &Some(format!("{}", THREADS + 1)), &workload::own_status("Threads").ok());
    *common.released.lock().unwrap_or_else(PoisonError::into_inner) = true;
    common.cv.notify_all();
    collect(c, &report_rx, &tids);
    c.same("main: sigpending", &SigSet::of(&[libc::SIGWINCH, rt + 2]), &raw::sigpending().unwrap_or_default());
    dequeue(c, libc::SIGWINCH, tkill_code, pid, None);
    dequeue(c, rt + 2, libc::SI_USER, pid, None);
    c.same("main: sigpending after dequeueing", &SigSet::empty(), &raw::sigpending().unwrap_or_default());
    check_altstack(c, &common, &main_alt);
    for (i, h) in handles.into_iter().enumerate() {
        let joined = raw::timed_join(h, Duration::from_secs(10));
        c.check(joined.is_ok(), || format!("join of thread {i} (tid {}): {joined:?}", tids[i]));
    }
    s.finish()
}
