//! The threads part of the benchmark: stasis dump and restore of `stasis-bench-threads N` (N threads,
//! each blocked in a Condvar wait with a page of its own), and of the same program with one thread
//! as the baseline, so that the report can give both the time per thread, t(N) / N, and the time
//! each added thread costs, (t(N) - t(1)) / (N - 1).
//!
//! One measurement: start the program, wait for `READY`, check that `/proc/PID/task` has N entries,
//! time `stasis dump -t PID -D DIR/thr-img --json` (the frozen time from its report), reap the
//! process, time `stasis restore -D DIR/thr-img -d --json`, check that the restored process has N
//! entries in `/proc/PID/task`, kill it and wait until `/proc/PID` is gone, delete the image.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::procs::{self, ProcError};
use crate::report::median;
use crate::stasis::{Stasis, StasisError};
use crate::tool::Tool;
use crate::workload::{Workload, WorkloadError, GONE_TIMEOUT, READY_TIMEOUT};

/// Most threads the workload starts (and `--threads` accepts).
pub const MAX_THREADS: u32 = 4096;

/// Errors of one threads measurement; they end the threads part of the benchmark.
#[derive(Debug, Error)]
pub enum ThreadsError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Stasis(#[from] StasisError),
    #[error(transparent)]
    Criu(#[from] crate::criu::CriuError),
    #[error(transparent)]
    Process(#[from] ProcError),
    #[error("cannot list the threads of pid {pid}")]
    Tasks {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid} has {found} threads {when}, expected {expected}")]
    TaskCount { pid: i32, when: &'static str, found: usize, expected: u32 },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The times of one program size, one entry per round.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TimingSamples {
    /// Wall time of `stasis dump`.
    pub dump_secs: Vec<f64>,
    /// Frozen time from the dump report.
    pub frozen_secs: Vec<f64>,
    /// Wall time of `stasis restore`.
    pub restore_secs: Vec<f64>,
}

/// The samples of the threads part.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ThreadsSamples {
    /// The program with N threads.
    pub process: TimingSamples,
    /// The program with one thread.
    pub baseline: TimingSamples,
    /// CRIU on the program with N threads, in the same rounds (no frozen time).
    #[serde(default)]
    pub criu: TimingSamples,
    /// Why CRIU stopped being measured, if it failed.
    #[serde(default)]
    pub criu_error: Option<String>,
}

/// Times of the three measured quantities (medians, or values derived from them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timings {
    pub dump_secs: f64,
    pub frozen_secs: f64,
    pub restore_secs: f64,
}

/// Medians of the threads part and the per-thread costs derived from them.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadsSummary {
    /// N, the threads of the measured process.
    pub threads: u32,
    /// Medians for the process with N threads.
    pub process: Timings,
    /// Medians for the process with one thread.
    pub baseline: Timings,
    /// `process / N`.
    pub per_thread: Timings,
    /// `(process - baseline) / (N - 1)`; `None` for N = 1.
    pub added_per_thread: Option<Timings>,
    /// CRIU on the process with N threads, and stasis over CRIU; `None` where CRIU was not measured.
    pub criu: Option<crate::report::VsCriu>,
    /// Why CRIU stopped being measured, if it failed.
    pub criu_error: Option<String>,
}

/// One dump and restore.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub dump: Duration,
    pub frozen: Duration,
    pub restore: Duration,
}

impl TimingSamples {
    /// Adds one measurement.
    pub fn push(&mut self, t: Timing) {
        self.dump_secs.push(t.dump.as_secs_f64());
        self.frozen_secs.push(t.frozen.as_secs_f64());
        self.restore_secs.push(t.restore.as_secs_f64());
    }

    /// The medians; `None` without samples.
    pub fn medians(&self) -> Option<Timings> {
        Some(Timings {
            dump_secs: median(&self.dump_secs)?,
            frozen_secs: median(&self.frozen_secs)?,
            restore_secs: median(&self.restore_secs)?,
        })
    }
}

impl Timings {
    /// Each time with `f` applied to it and the matching time of `other`.
    pub fn zip(self, other: Timings, f: impl Fn(f64, f64) -> f64) -> Timings {
        Timings {
            dump_secs: f(self.dump_secs, other.dump_secs),
            frozen_secs: f(self.frozen_secs, other.frozen_secs),
            restore_secs: f(self.restore_secs, other.restore_secs),
        }
    }
}

impl ThreadsSummary {
    /// Medians of `samples` for a process of `threads` threads; `None` without samples of both.
    pub fn from_samples(samples: &ThreadsSamples, threads: u32) -> Option<Self> {
        let process = samples.process.medians()?;
        let baseline = samples.baseline.medians()?;
        let n = f64::from(threads.max(1));
        let per_thread = process.zip(process, |t, _| t / n);
        let added_per_thread = (threads > 1).then(|| process.zip(baseline, |t, b| (t - b) / (n - 1.0)));
        let criu = crate::report::VsCriu::of(&process, &samples.criu);
        let criu_error = samples.criu_error.clone();
        Some(Self { threads, process, baseline, per_thread, added_per_thread, criu, criu_error })
    }
}

/// One round of the threads part: the one-thread baseline, then N threads; then CRIU on N threads,
/// unless it is not given or failed before (its failure is recorded, and the part goes on).
pub fn round(
    stasis: &Stasis,
    criu: Option<&crate::criu::Criu>,
    program: &Path,
    threads: u32,
    dir: &Path,
    samples: &mut ThreadsSamples,
) -> Result<(), ThreadsError> {
    let baseline = measure(Tool::Stasis(stasis), program, 1, dir)?;
    let process = measure(Tool::Stasis(stasis), program, threads, dir)?;
    samples.baseline.push(baseline);
    samples.process.push(process);
    if let Some(criu) = criu.filter(|_| samples.criu_error.is_none()) {
        match measure(Tool::Criu(criu), program, threads, dir) {
            Ok(t) => samples.criu.push(t),
            Err(e) => samples.criu_error = Some(crate::error_chain(&e)),
        }
    }
    Ok(())
}

/// Dumps and restores one fresh copy of `program THREADS` with `tool`.
pub fn measure(tool: Tool, program: &Path, threads: u32, dir: &Path) -> Result<Timing, ThreadsError> {
    let image = dir.join("thr-img");
    let log = dir.join("threads.log");
    remove(&image)?;
    let mut workload = Workload::start(program, &threads.to_string(), &log)?;
    workload.wait_ready(READY_TIMEOUT)?;
    let pid = workload.pid();
    expect_tasks(pid, threads, "before the dump")?;
    let (dump, frozen) = tool.dump::<ThreadsError>(pid, &image)?;
    workload.reap(GONE_TIMEOUT)?;
    let (restore, restored) = tool.restore::<ThreadsError>(&image)?;
    let checked = expect_tasks(restored, threads, "after the restore");
    procs::kill_and_wait_gone(restored, GONE_TIMEOUT)?;
    checked?;
    remove(&image)?;
    remove(&log)?;
    Ok(Timing { dump, frozen, restore })
}

/// Fails unless `/proc/PID/task` has `expected` entries.
fn expect_tasks(pid: i32, expected: u32, when: &'static str) -> Result<(), ThreadsError> {
    let found = procs::task_count(pid).map_err(|source| ThreadsError::Tasks { pid, source })?;
    if u32::try_from(found) != Ok(expected) {
        return Err(ThreadsError::TaskCount { pid, when, found, expected });
    }
    Ok(())
}

fn remove(path: &Path) -> Result<(), ThreadsError> {
    procs::remove(path).map_err(|source| ThreadsError::Remove { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> ThreadsSamples {
        ThreadsSamples {
            process: TimingSamples {
                dump_secs: vec![0.12, 0.10, 0.11],
                frozen_secs: vec![0.06, 0.05, 0.07],
                restore_secs: vec![0.30, 0.20, 0.25],
            },
            baseline: TimingSamples {
                dump_secs: vec![0.02, 0.01, 0.03],
                frozen_secs: vec![0.01, 0.01, 0.01],
                restore_secs: vec![0.05, 0.05, 0.05],
            },
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn per_thread_and_added_per_thread() {
        let s = ThreadsSummary::from_samples(&samples(), 101).unwrap();
        assert_eq!(s.process, Timings { dump_secs: 0.11, frozen_secs: 0.06, restore_secs: 0.25 });
        assert_eq!(s.baseline.dump_secs, 0.02);
        assert!(close(s.per_thread.dump_secs, 0.11 / 101.0));
        assert!(close(s.per_thread.restore_secs, 0.25 / 101.0));
        let added = s.added_per_thread.unwrap();
        assert!(close(added.dump_secs, 0.09 / 100.0), "{added:?}");
        assert!(close(added.frozen_secs, 0.05 / 100.0), "{added:?}");
        assert!(close(added.restore_secs, 0.20 / 100.0), "{added:?}");
    }

    #[test]
    fn one_thread_has_no_added_cost_and_no_samples_no_summary() {
        let s = ThreadsSummary::from_samples(&samples(), 1).unwrap();
        assert!(s.added_per_thread.is_none());
        assert_eq!(s.per_thread, s.process);
        let mut partial = samples();
        partial.baseline = TimingSamples::default();
        assert!(ThreadsSummary::from_samples(&partial, 100).is_none());
    }

    #[test]
    fn push_records_seconds() {
        let mut t = TimingSamples::default();
        let ms = Duration::from_millis;
        t.push(Timing { dump: ms(10), frozen: ms(5), restore: ms(20) });
        assert_eq!((t.dump_secs[0], t.frozen_secs[0], t.restore_secs[0]), (0.01, 0.005, 0.02));
    }

    #[test]
    fn task_count_mismatch_names_the_pid() {
        let me = i32::try_from(std::process::id()).unwrap();
        let err = expect_tasks(me, 4000, "now").unwrap_err();
        assert!(err.to_string().starts_with(&format!("pid {me} has ")), "{err}");
        assert!(err.to_string().ends_with("threads now, expected 4000"), "{err}");
    }
}
