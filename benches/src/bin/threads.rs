//! `stasis-bench-threads N`: starts N-1 threads beside the main one (N in all), each writing one
//! page of its own heap memory and then blocked in a wait on a Condvar that is never signalled;
//! prints `READY` once every thread waits, and sleeps until killed. The workload of the threads
//! part of `stasis-bench`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use stasis_bench::threads::MAX_THREADS;
use stasis_bench::workload::READY;

/// Stack of each extra thread: small, since the threads only wait.
const STACK_BYTES: usize = 64 * 1024;
/// Heap memory each extra thread writes and keeps.
const PAGE: usize = 4096;

/// What the threads report to and wait on.
#[derive(Default)]
struct Gate {
    /// Extra threads that hold their memory and are about to wait (the count is raised under the
    /// lock, which the thread's wait then releases, so once the main thread sees the count under
    /// the lock, every counted thread waits).
    waiting: Mutex<u32>,
    /// Signalled by each thread as it counts itself.
    counted: Condvar,
    /// Never signalled: what the threads wait on.
    never: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, u32> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = match args.as_slice() {
        [count] => match count.parse::<u32>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) => n,
            _ => return usage(&format!("N must be a number from 1 to {MAX_THREADS}, not {count:?}")),
        },
        _ => return usage("expected one argument"),
    };
    let gate = Arc::new(Gate::default());
    for index in 1..threads {
        let gate = Arc::clone(&gate);
        let spawned = thread::Builder::new()
            .name(format!("bench-{index}"))
            .stack_size(STACK_BYTES)
            .spawn(move || wait_forever(&gate, index));
        if let Err(e) = spawned {
            eprintln!("stasis-bench-threads: cannot start thread {index} of {threads}: {e}");
            return ExitCode::FAILURE;
        }
    }
    wait_for_all(&gate, threads - 1);
    let mut out = std::io::stdout();
    if writeln!(out, "{READY}").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// An extra thread: writes its page, counts itself, and waits for good.
fn wait_forever(gate: &Gate, index: u32) {
    let page = vec![index.to_le_bytes()[0] | 1; PAGE];
    let mut waiting = gate.lock();
    *waiting += 1;
    gate.counted.notify_one();
    loop {
        // Spurious wake-ups return here; nothing ever signals `never`.
        waiting = gate.never.wait(waiting).unwrap_or_else(PoisonError::into_inner);
        std::hint::black_box(&page);
    }
}

/// Waits until `extra` threads have counted themselves.
fn wait_for_all(gate: &Gate, extra: u32) {
    let mut waiting = gate.lock();
    while *waiting < extra {
        waiting = gate.counted.wait(waiting).unwrap_or_else(PoisonError::into_inner);
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("stasis-bench-threads: {problem}\nusage: stasis-bench-threads N");
    ExitCode::from(2)
}
