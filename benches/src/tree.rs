//! The tree part of the benchmark: stasis dump and restore of `stasis-bench-tree N` (a root and N-1
//! sleeping children of it), and of the same program alone (N = 1) as the baseline, so that the
//! report can give the time per process, t(N) / N, and the time each added process costs,
//! (t(N) - t(1)) / (N - 1), and judge dump + restore per process against [`TARGET_PER_PROCESS`].
//!
//! One measurement: start the root, wait for `READY`, record the N-1 pids of
//! `/proc/ROOT/task/ROOT/children`, time `stasis dump -t ROOT -D DIR/tree-imgs/K --json` (the frozen time
//! from its report), reap the root, wait until every child has vanished (the dump killed them and
//! PID 1 reaps them), time `stasis restore -D DIR/tree-imgs/K -d --json`, check that the restored root
//! has N-1 children, kill every child and then the root, wait until all of them are gone. On an
//! error, the children recorded so far are killed too.
//!
//! Every measurement of a run writes its image to a directory of its own under `DIR/tree-imgs`, and
//! they are all deleted when the run ends ([`cleanup`]): deleting hundreds of image files between
//! rounds slows the next round's file creation on a filesystem that avoids recently freed inodes
//! (ext4 without a journal, as on the development VM, skips inodes freed in the last minute), which
//! is no part of what a checkpoint costs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::procs::{self, ProcError};
use crate::report::median;
use crate::stasis::{Stasis, StasisError};
use crate::threads::{Timing, TimingSamples, Timings};
use crate::tool::Tool;
use crate::workload::{Workload, WorkloadError, GONE_TIMEOUT, READY_TIMEOUT};

/// Most processes the workload starts (and `--tree` accepts).
pub const MAX_PROCESSES: u32 = 1024;
/// The target for dump + restore of the tree, per process: 5 ms.
pub const TARGET_PER_PROCESS: Duration = Duration::from_millis(5);
/// How long the killed processes of a tree may take to vanish, all together (PID 1 reaps them).
pub const TREE_GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of one tree measurement; they end the tree part of the benchmark.
#[derive(Debug, Error)]
pub enum TreeError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Stasis(#[from] StasisError),
    #[error(transparent)]
    Criu(#[from] crate::criu::CriuError),
    #[error(transparent)]
    Process(#[from] ProcError),
    #[error("cannot list the children of pid {pid}")]
    Children {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid} has {found} children {when}, expected {expected}")]
    ChildCount { pid: i32, when: &'static str, found: usize, expected: u32 },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The samples of the tree part, one entry per round.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TreeSamples {
    /// The tree of N processes.
    pub tree: TimingSamples,
    /// The root alone.
    pub baseline: TimingSamples,
    /// CRIU on the tree of N processes, in the same rounds (no frozen time).
    #[serde(default)]
    pub criu: TimingSamples,
    /// Why CRIU stopped being measured, if it failed.
    #[serde(default)]
    pub criu_error: Option<String>,
}

/// Medians of the tree part, the per-process costs derived from them, and the target.
#[derive(Debug, Clone, Serialize)]
pub struct TreeSummary {
    /// N, the processes of the measured tree.
    pub processes: u32,
    /// Medians for the tree of N processes.
    pub tree: Timings,
    /// Medians for the root alone.
    pub baseline: Timings,
    /// `tree / N`.
    pub per_process: Timings,
    /// `(tree - baseline) / (N - 1)`; `None` for N = 1.
    pub added_per_process: Option<Timings>,
    /// Median over the rounds of dump + restore of the tree, divided by N.
    pub dump_restore_per_process_secs: f64,
    /// The same for the root alone subtracted first and N - 1 processes; `None` for N = 1.
    pub added_dump_restore_per_process_secs: Option<f64>,
    /// [`TARGET_PER_PROCESS`] in seconds.
    pub target_per_process_secs: f64,
    /// Whether `dump_restore_per_process_secs` is under the target.
    pub within_target: bool,
    /// CRIU on the tree of N processes, and stasis over CRIU; `None` where CRIU was not measured.
    pub criu: Option<crate::report::VsCriu>,
    /// Why CRIU stopped being measured, if it failed.
    pub criu_error: Option<String>,
}

/// Median over the rounds of dump + restore; `None` without samples.
fn dump_restore_median(samples: &TimingSamples) -> Option<f64> {
    let sums: Vec<f64> = samples.dump_secs.iter().zip(&samples.restore_secs).map(|(d, r)| d + r).collect();
    median(&sums)
}

impl TreeSummary {
    /// Medians of `samples` for a tree of `processes`; `None` without samples of both.
    pub fn from_samples(samples: &TreeSamples, processes: u32) -> Option<Self> {
        let tree = samples.tree.medians()?;
        let baseline = samples.baseline.medians()?;
        let n = f64::from(processes.max(1));
        let added = |t: f64, b: f64| (t - b) / (n - 1.0);
        let both = dump_restore_median(&samples.tree)?;
        let both_baseline = dump_restore_median(&samples.baseline)?;
        let target = TARGET_PER_PROCESS.as_secs_f64();
        Some(Self {
            processes,
            tree,
            baseline,
            per_process: tree.zip(tree, |t, _| t / n),
            added_per_process: (processes > 1).then(|| tree.zip(baseline, added)),
            dump_restore_per_process_secs: both / n,
            added_dump_restore_per_process_secs: (processes > 1).then(|| added(both, both_baseline)),
            target_per_process_secs: target,
            within_target: both / n < target,
            criu: crate::report::VsCriu::of(&tree, &samples.criu),
            criu_error: samples.criu_error.clone(),
        })
    }
}

/// One round of the tree part: the root alone, then the tree of N processes.
/// Then CRIU on the tree, unless it is not given or failed before (its failure is recorded, and the
/// part goes on).
pub fn round(
    stasis: &Stasis,
    criu: Option<&crate::criu::Criu>,
    program: &Path,
    processes: u32,
    dir: &Path,
    samples: &mut TreeSamples,
) -> Result<(), TreeError> {
    let baseline = measure(Tool::Stasis(stasis), program, 1, dir)?;
    let tree = measure(Tool::Stasis(stasis), program, processes, dir)?;
    samples.baseline.push(baseline);
    samples.tree.push(tree);
    if let Some(criu) = criu.filter(|_| samples.criu_error.is_none()) {
        match measure(Tool::Criu(criu), program, processes, dir) {
            Ok(t) => samples.criu.push(t),
            Err(e) => samples.criu_error = Some(crate::error_chain(&e)),
        }
    }
    Ok(())
}

/// Pids the bench started indirectly (the children of a tree) and must not leave behind: killed
/// on drop, best effort, without waiting.
#[derive(Debug, Default)]
struct Orphans(Vec<i32>);

impl Drop for Orphans {
    fn drop(&mut self) {
        let _ = procs::kill_all(&self.0);
    }
}

/// Measurements so far in this run, for the name of each one's image directory.
static MEASUREMENTS: AtomicU32 = AtomicU32::new(0);

/// The directory under which every measurement of a run keeps its image.
fn images_dir(dir: &Path) -> PathBuf {
    dir.join("tree-imgs")
}

/// Deletes the images of every measurement of the run.
pub fn cleanup(dir: &Path) -> io::Result<()> {
    procs::remove(&images_dir(dir))
}

/// Dumps and restores one fresh tree of `program PROCESSES`.
pub fn measure(tool: Tool, program: &Path, processes: u32, dir: &Path) -> Result<Timing, TreeError> {
    let image = images_dir(dir).join(MEASUREMENTS.fetch_add(1, Ordering::Relaxed).to_string());
    let log = dir.join("tree.log");
    remove(&image)?;
    let mut workload = Workload::start(program, &processes.to_string(), &log)?;
    let root = workload.pid();
    // Declared after the workload, so dropped (the children killed) before the root is.
    let mut orphans = Orphans::default();
    let ready = workload.wait_ready(READY_TIMEOUT);
    orphans.0 = procs::children(root).unwrap_or_default();
    ready?;
    let children = expect_children(root, processes - 1, "before the dump")?;
    orphans.0.clone_from(&children);
    let (dump, frozen) = tool.dump::<TreeError>(root, &image)?;
    workload.reap(GONE_TIMEOUT)?;
    procs::wait_all_gone(&children, TREE_GONE_TIMEOUT)?;
    orphans.0.clear();
    let (restore, restored) = tool.restore::<TreeError>(&image)?;
    let checked = expect_children(restored, processes - 1, "after the restore");
    let mut all = procs::children(restored).unwrap_or_default();
    all.push(restored);
    orphans.0.clone_from(&all);
    procs::kill_all(&all)?;
    procs::wait_all_gone(&all, TREE_GONE_TIMEOUT)?;
    orphans.0.clear();
    checked?;
    remove(&log)?;
    Ok(Timing { dump, frozen, restore })
}

/// The children of `pid`; fails unless there are `expected` of them.
fn expect_children(pid: i32, expected: u32, when: &'static str) -> Result<Vec<i32>, TreeError> {
    let children = procs::children(pid).map_err(|source| TreeError::Children { pid, source })?;
    if u32::try_from(children.len()) != Ok(expected) {
        return Err(TreeError::ChildCount { pid, when, found: children.len(), expected });
    }
    Ok(children)
}

fn remove(path: &Path) -> Result<(), TreeError> {
    procs::remove(path).map_err(|source| TreeError::Remove { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> TreeSamples {
        TreeSamples {
            tree: TimingSamples {
                dump_secs: vec![0.20, 0.30, 0.25],
                frozen_secs: vec![0.10, 0.12, 0.11],
                restore_secs: vec![0.20, 0.26, 0.24],
            },
            baseline: TimingSamples {
                dump_secs: vec![0.02, 0.01, 0.03],
                frozen_secs: vec![0.01, 0.01, 0.01],
                restore_secs: vec![0.02, 0.02, 0.02],
            },
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn per_process_added_per_process_and_target() {
        let s = TreeSummary::from_samples(&samples(), 100).unwrap();
        assert_eq!(s.tree, Timings { dump_secs: 0.25, frozen_secs: 0.11, restore_secs: 0.24 });
        assert!(close(s.per_process.dump_secs, 0.0025));
        assert!(close(s.per_process.restore_secs, 0.0024));
        let added = s.added_per_process.unwrap();
        assert!(close(added.dump_secs, 0.23 / 99.0), "{added:?}");
        assert!(close(added.frozen_secs, 0.10 / 99.0), "{added:?}");
        // Per-round sums 0.40, 0.56, 0.49 and 0.04, 0.03, 0.05: medians 0.49 and 0.04.
        assert!(close(s.dump_restore_per_process_secs, 0.0049), "{s:?}");
        assert!(close(s.added_dump_restore_per_process_secs.unwrap(), 0.45 / 99.0), "{s:?}");
        assert_eq!(s.target_per_process_secs, 0.005);
        assert!(s.within_target);
        let s = TreeSummary::from_samples(&samples(), 90).unwrap();
        assert!(!s.within_target, "{s:?}");
    }

    #[test]
    fn one_process_has_no_added_cost_and_no_samples_no_summary() {
        let s = TreeSummary::from_samples(&samples(), 1).unwrap();
        assert!(s.added_per_process.is_none() && s.added_dump_restore_per_process_secs.is_none());
        assert_eq!(s.per_process, s.tree);
        let mut partial = samples();
        partial.tree = TimingSamples::default();
        assert!(TreeSummary::from_samples(&partial, 100).is_none());
    }

    #[test]
    fn child_count_mismatch_names_the_pid() {
        let me = i32::try_from(std::process::id()).unwrap();
        let err = expect_children(me, 4000, "now").unwrap_err();
        assert!(err.to_string().starts_with(&format!("pid {me} has ")), "{err}");
        assert!(err.to_string().ends_with("children now, expected 4000"), "{err}");
    }
}
