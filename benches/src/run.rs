//! The rounds of the benchmark. Each round measures, in this order, so that a slow moment of the
//! machine falls on the limits and the tools alike:
//!
//! 1. the write limit (`dd` to `DIR/dd.img`) and the read limit (a fresh process reading it back),
//!    then deletes the file;
//! 2. stasis: start the workload, wait for `READY`, `stasis dump` (which kills it), reap it, measure
//!    the image, `stasis restore -d`, kill the restored process and wait until it is gone, delete the
//!    image;
//! 3. CRIU, the same way, where it works;
//! 4. the threads part (see [`crate::threads`]): stasis on `stasis-bench-threads 1`, then on
//!    `stasis-bench-threads N`;
//! 5. the tree part (see [`crate::tree`]): stasis on `stasis-bench-tree 1`, then on
//!    `stasis-bench-tree N`.
//!
//! `--only memory` runs steps 1 to 3, `--only threads` step 4, `--only tree` step 5.
//!
//! Nothing is flushed or dropped from the page cache: the limits are page-cache limits.
//! A tool that fails is not run again; its failure is reported and the limits carry on.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::cli::Part;
use crate::criu::CriuError;
use crate::criu::{self, Availability, Criu};
use crate::error_chain;
use crate::limits::{self, LimitsError};
use crate::procs::{self, ProcError};
use crate::report::{Limits, Report, Samples, ThreadsOutcome, ToolOutcome, ToolSamples, ToolSummary, TreeOutcome};
use crate::stasis::{Stasis, StasisError};
use crate::threads::{self, ThreadsSamples, ThreadsSummary, TimingSamples};
use crate::tree::{self, TreeSamples, TreeSummary};
use crate::workload::{Workload, WorkloadError, GONE_TIMEOUT, READY_TIMEOUT};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub rounds: u32,
    pub size_mib: u64,
    /// This program, re-executed for the read limit.
    pub exe: PathBuf,
    /// The memory workload binary.
    pub memhog: PathBuf,
    /// Threads of the threads workload.
    pub threads: u32,
    /// The threads workload binary.
    pub threads_program: PathBuf,
    /// Processes of the tree workload.
    pub tree: u32,
    /// The tree workload binary.
    pub tree_program: PathBuf,
    /// Run only this part of each round; `None` runs all three.
    pub only: Option<Part>,
    /// The stasis binary; `None` measures the limits only.
    pub stasis: Option<PathBuf>,
    /// Whether to probe for and run CRIU.
    pub criu: bool,
    /// The CRIU binary; `None`: `criu` on PATH.
    pub criu_program: Option<PathBuf>,
}

/// Errors that stop the whole benchmark.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot create the bench directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("round {round}")]
    Limits {
        round: u32,
        #[source]
        source: LimitsError,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Errors of one tool's round; they end that tool's part of the benchmark.
#[derive(Debug, Error)]
pub enum RoundError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Stasis(#[from] StasisError),
    #[error(transparent)]
    Criu(#[from] CriuError),
    #[error(transparent)]
    Process(#[from] ProcError),
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A tool under measurement.
enum Tool {
    Stasis(Stasis),
    Criu(Criu),
}

/// One tool's state across rounds: measuring, or why not.
enum Track {
    Running(Tool, ToolSamples),
    Done(ToolOutcome),
}

/// The threads part's state across rounds: measuring, or why not.
enum ThreadsTrack {
    Running(Stasis, ThreadsSamples),
    Done(ThreadsOutcome),
}

/// The tree part's state across rounds: measuring, or why not.
enum TreeTrack {
    Running(Stasis, TreeSamples),
    Done(TreeOutcome),
}

impl Config {
    /// Whether the rounds run `part`.
    fn runs(&self, part: Part) -> bool {
        self.only.is_none_or(|only| only == part)
    }

    /// Why the rounds do not run `part`, if they do not.
    fn skips(&self, part: Part) -> Option<String> {
        match self.only {
            Some(only) if only != part => Some(format!("--only {}", only.name())),
            _ => self.stasis.is_none().then(|| "--limits-only".to_owned()),
        }
    }
}

/// Runs every round, writing one progress line per round to `progress`.
pub fn run(config: &Config, progress: &mut dyn Write) -> Result<Report, RunError> {
    std::fs::create_dir_all(&config.dir).map_err(|source| RunError::Dir { path: config.dir.clone(), source })?;
    if config.stasis.is_some() {
        warn_inherited_fds(progress);
    }
    let mut samples = Samples::default();
    let mut stasis = stasis_track(config, Stasis::new);
    let mut compressed = stasis_track(config, Stasis::compressing);
    let found = find_criu(config);
    if let Err(ToolOutcome::Unavailable { reason }) = &found {
        let _ = writeln!(progress, "CRIU is not measured: {reason}");
    }
    let mut criu = criu_track(config, &found);
    let criu_bin = found.as_ref().ok();
    let mut threads = threads_track(config);
    let mut tree = tree_track(config);
    for round in 1..=config.rounds {
        let mut parts = Vec::new();
        if config.runs(Part::Memory) {
            let (write, reads) = measure_limits(config, round)?;
            samples.write_limit_secs.push(write.as_secs_f64());
            let [single, parallel, populated, parallel_populated] = reads.map(|r| r.as_secs_f64());
            samples.read_single_secs.push(single);
            samples.read_parallel_secs.push(parallel);
            samples.read_populated_secs.push(populated);
            samples.read_parallel_populated_secs.push(parallel_populated);
            samples.read_limit_secs.push(single.min(parallel).min(populated).min(parallel_populated));
            parts.push(format!(
                "dd write {:.3} s, read {single:.3} s, parallel pread {parallel:.3} s, populated {populated:.3} s, \
                 parallel populated {parallel_populated:.3} s",
                write.as_secs_f64()
            ));
            parts.extend(step(&mut stasis, "stasis", config));
            parts.extend(step(&mut compressed, "stasis --compress", config));
            parts.extend(step(&mut criu, "criu", config));
        }
        parts.extend(threads_step(&mut threads, config, criu_bin));
        parts.extend(tree_step(&mut tree, config, criu_bin));
        let _ = writeln!(progress, "round {round}/{}: {}", config.rounds, parts.join(", "));
    }
    if config.runs(Part::Tree) {
        if let Err(e) = crate::tree::cleanup(&config.dir) {
            let _ = writeln!(progress, "warning: cannot delete the tree images under {}: {e}", config.dir.display());
        }
    }
    let limits = Limits::from_samples(&samples, config.size_mib);
    let (stasis, stasis_samples) = finish(stasis, limits.as_ref());
    let (stasis_compressed, compressed_samples) = finish(compressed, limits.as_ref());
    let (criu, criu_samples) = finish(criu, limits.as_ref());
    let (threads, threads_samples) = finish_threads(threads, config.threads);
    let (tree, tree_samples) = finish_tree(tree, config.tree);
    samples.stasis = stasis_samples;
    samples.stasis_compressed = compressed_samples;
    samples.criu = criu_samples;
    samples.threads = threads_samples;
    samples.tree = tree_samples;
    let memory_vs_criu = crate::report::VsCriu::of_tools(&stasis, &criu);
    Ok(Report {
        memory_vs_criu,
        dir: config.dir.clone(),
        rounds: config.rounds,
        size_mib: config.size_mib,
        limits,
        stasis,
        stasis_compressed,
        criu,
        threads,
        tree,
        samples,
    })
}

/// Warns about fds the workload would inherit from whatever started the bench.
fn warn_inherited_fds(progress: &mut dyn Write) {
    for (fd, target) in procs::inherited_fds() {
        let _ = writeln!(
            progress,
            "warning: fd {fd} ({target}) is not close-on-exec: the workload inherits it, and a dump may \
             refuse it (scripts/bench.sh closes such fds before it starts the bench)"
        );
    }
}

/// The memory part's stasis, made by `make` (plain, or compressing) from the binary.
fn stasis_track(config: &Config, make: fn(&Path) -> Stasis) -> Track {
    match (config.skips(Part::Memory), &config.stasis) {
        (None, Some(program)) => Track::Running(Tool::Stasis(make(program)), ToolSamples::default()),
        (reason, _) => Track::Done(ToolOutcome::Skipped { reason: reason.unwrap_or_default() }),
    }
}

/// CRIU, if it is to be measured and works here; else what the report says of it.
fn find_criu(config: &Config) -> Result<Criu, ToolOutcome> {
    if config.stasis.is_none() || !config.criu {
        let flag = if config.criu { "--limits-only" } else { "--no-criu" };
        return Err(ToolOutcome::Skipped { reason: flag.into() });
    }
    match criu::probe(config.criu_program.as_deref()) {
        Availability::Available(program) => Ok(Criu::new(&program)),
        Availability::Unavailable(reason) => Err(ToolOutcome::Unavailable { reason }),
    }
}

fn criu_track(config: &Config, found: &Result<Criu, ToolOutcome>) -> Track {
    if let Some(only) = config.only.filter(|&only| only != Part::Memory) {
        return Track::Done(ToolOutcome::Skipped { reason: format!("--only {}", only.name()) });
    }
    match found {
        Ok(criu) => Track::Running(Tool::Criu(criu.clone()), ToolSamples::default()),
        Err(outcome) => Track::Done(outcome.clone()),
    }
}

fn threads_track(config: &Config) -> ThreadsTrack {
    match (config.skips(Part::Threads), &config.stasis) {
        (None, Some(program)) => ThreadsTrack::Running(Stasis::new(program), ThreadsSamples::default()),
        (reason, _) => ThreadsTrack::Done(ThreadsOutcome::Skipped { reason: reason.unwrap_or_default() }),
    }
}

fn tree_track(config: &Config) -> TreeTrack {
    match (config.skips(Part::Tree), &config.stasis) {
        (None, Some(program)) => TreeTrack::Running(Stasis::new(program), TreeSamples::default()),
        (reason, _) => TreeTrack::Done(TreeOutcome::Skipped { reason: reason.unwrap_or_default() }),
    }
}

/// The write limit of one round and the time of each of [`limits::READ_METHODS`].
fn measure_limits(config: &Config, round: u32) -> Result<(Duration, [Duration; 4]), RunError> {
    let file = config.dir.join("dd.img");
    remove(&file)?;
    let limits_err = |source| RunError::Limits { round, source };
    let write = limits::dd_write(&file, config.size_mib).map_err(limits_err)?;
    let mut reads = [Duration::ZERO; 4];
    for (read, (_, threads, populate)) in reads.iter_mut().zip(limits::READ_METHODS) {
        let threads = limits::method_threads(threads);
        *read = limits::read_limit(&config.exe, &file, threads, populate).map_err(limits_err)?.duration();
    }
    remove(&file)?;
    Ok((write, reads))
}

/// Runs one round of a tool if it is still measuring; returns the progress text.
fn step(track: &mut Track, name: &str, config: &Config) -> Option<String> {
    let Track::Running(tool, samples) = track else {
        return None;
    };
    Some(match tool_round(tool, config, samples) {
        Ok(()) => format!(
            "{name} dump {:.3} s, restore {:.3} s",
            samples.dump_secs.last().copied().unwrap_or_default(),
            samples.restore_secs.last().copied().unwrap_or_default()
        ),
        Err(e) => {
            let error = error_chain(&e);
            *track = Track::Done(ToolOutcome::Failed { error: error.clone() });
            format!("{name} FAILED: {error}")
        }
    })
}

/// The progress text of a round that measured `many` beside a one-task `one`:
/// `MANY dump D s, restore R s (ONE d s, r s)`, from the last sample of each.
fn versus(many_label: &str, many: &TimingSamples, one_label: &str, one: &TimingSamples) -> String {
    let last = |v: &[f64]| v.last().copied().unwrap_or_default();
    format!(
        "{many_label} dump {:.3} s, restore {:.3} s ({one_label} {:.3} s, {:.3} s)",
        last(&many.dump_secs),
        last(&many.restore_secs),
        last(&one.dump_secs),
        last(&one.restore_secs)
    )
}

/// The progress text of CRIU's last sample in a threads or tree round, or of its failure.
fn criu_progress(criu: &TimingSamples, error: Option<&str>) -> String {
    match (criu.dump_secs.last(), criu.restore_secs.last(), error) {
        (_, _, Some(e)) => format!(", criu FAILED: {e}"),
        (Some(d), Some(r), None) => format!(", criu dump {d:.3} s, restore {r:.3} s"),
        _ => String::new(),
    }
}

/// Runs one round of the threads part if it is still measuring; returns the progress text.
fn threads_step(track: &mut ThreadsTrack, config: &Config, criu: Option<&Criu>) -> Option<String> {
    let ThreadsTrack::Running(stasis, samples) = track else {
        return None;
    };
    let n = config.threads;
    Some(match threads::round(stasis, criu, &config.threads_program, n, &config.dir, samples) {
        Ok(()) => {
            versus(&format!("{n} threads"), &samples.process, "1 thread", &samples.baseline)
                + &criu_progress(&samples.criu, samples.criu_error.as_deref())
        }
        Err(e) => {
            let error = error_chain(&e);
            *track = ThreadsTrack::Done(ThreadsOutcome::Failed { error: error.clone() });
            format!("threads FAILED: {error}")
        }
    })
}

/// Runs one round of the tree part if it is still measuring; returns the progress text.
fn tree_step(track: &mut TreeTrack, config: &Config, criu: Option<&Criu>) -> Option<String> {
    let TreeTrack::Running(stasis, samples) = track else {
        return None;
    };
    let n = config.tree;
    Some(match tree::round(stasis, criu, &config.tree_program, n, &config.dir, samples) {
        Ok(()) => {
            versus(&format!("tree of {n}"), &samples.tree, "1 process", &samples.baseline)
                + &criu_progress(&samples.criu, samples.criu_error.as_deref())
        }
        Err(e) => {
            let error = error_chain(&e);
            *track = TreeTrack::Done(TreeOutcome::Failed { error: error.clone() });
            format!("tree FAILED: {error}")
        }
    })
}

/// One dump and restore of a fresh workload.
fn tool_round(tool: &Tool, config: &Config, samples: &mut ToolSamples) -> Result<(), RoundError> {
    let image = config.dir.join("img");
    let log = config.dir.join("memhog.log");
    remove_in_round(&image)?;
    let mut hog = Workload::start(&config.memhog, &config.size_mib.to_string(), &log)?;
    hog.wait_ready(READY_TIMEOUT)?;
    let pid = hog.pid();
    let (dump, frozen) = match tool {
        Tool::Stasis(stasis) => {
            let run = stasis.dump(pid, &image)?;
            (run.wall, Some(run.report.frozen))
        }
        Tool::Criu(criu) => (criu.dump(pid, &image)?, None),
    };
    hog.reap(GONE_TIMEOUT)?;
    let image_bytes = procs::disk_usage(&image)?;
    let (restore, restored) = match tool {
        Tool::Stasis(stasis) => {
            let run = stasis.restore(&image)?;
            (run.wall, run.report.pid)
        }
        Tool::Criu(criu) => {
            let run = criu.restore(&image)?;
            (run.wall, run.pid)
        }
    };
    procs::kill_and_wait_gone(restored, GONE_TIMEOUT)?;
    remove_in_round(&image)?;
    remove_in_round(&log)?;
    samples.dump_secs.push(dump.as_secs_f64());
    samples.frozen_secs.extend(frozen.map(|f| f.as_secs_f64()));
    samples.restore_secs.push(restore.as_secs_f64());
    samples.image_bytes.push(image_bytes);
    Ok(())
}

/// A tool's outcome after the last round.
fn finish(track: Track, limits: Option<&Limits>) -> (ToolOutcome, ToolSamples) {
    match track {
        Track::Running(_, samples) => match limits.and_then(|l| ToolSummary::from_samples(&samples, l)) {
            Some(summary) => (ToolOutcome::Measured(summary), samples),
            None => (ToolOutcome::Failed { error: "no round completed".into() }, samples),
        },
        Track::Done(outcome) => (outcome, ToolSamples::default()),
    }
}

/// The threads part's outcome after the last round.
fn finish_threads(track: ThreadsTrack, threads: u32) -> (ThreadsOutcome, ThreadsSamples) {
    match track {
        ThreadsTrack::Running(_, samples) => match ThreadsSummary::from_samples(&samples, threads) {
            Some(summary) => (ThreadsOutcome::Measured(summary), samples),
            None => (ThreadsOutcome::Failed { error: "no round completed".into() }, samples),
        },
        ThreadsTrack::Done(outcome) => (outcome, ThreadsSamples::default()),
    }
}

/// The tree part's outcome after the last round.
fn finish_tree(track: TreeTrack, processes: u32) -> (TreeOutcome, TreeSamples) {
    match track {
        TreeTrack::Running(_, samples) => match TreeSummary::from_samples(&samples, processes) {
            Some(summary) => (TreeOutcome::Measured(summary), samples),
            None => (TreeOutcome::Failed { error: "no round completed".into() }, samples),
        },
        TreeTrack::Done(outcome) => (outcome, TreeSamples::default()),
    }
}

fn remove(path: &Path) -> Result<(), RunError> {
    procs::remove(path).map_err(|source| RunError::Remove { path: path.to_owned(), source })
}

fn remove_in_round(path: &Path) -> Result<(), RoundError> {
    procs::remove(path).map_err(|source| RoundError::Remove { path: path.to_owned(), source })
}
