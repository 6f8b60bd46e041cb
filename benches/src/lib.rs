//! `stasis-bench`: measures `stasis dump` and `stasis restore` of a process holding 1 GiB of memory,
//! and beside them the physical limits of the same machine and directory, measured in the same run:
//!
//! - the write limit: `dd` of the same number of bytes from `/dev/zero` to a file in the directory
//!   (page cache, no fsync);
//! - the read limit: a fresh process reading that file into freshly allocated anonymous memory, so
//!   that every page it reads into faults in, as every page a restore fills does.
//!
//! Rounds interleave the limits with stasis (and CRIU where it works), so that a slow moment of the
//! machine hits both sides; the report gives medians and the ratios dump / write limit and
//! restore / read limit, beside the targets (1.5x and 2x).
//!
//! Each round also dumps and restores a process of N threads (100 by default) and the same program
//! with one thread, and the report gives the time per process, per thread (t(N) / N) and per added
//! thread ((t(N) - t(1)) / (N - 1)); and dumps and restores a tree of N processes (100 by default,
//! a root and its children) and the root alone, and the report gives the same per process, with
//! dump + restore per process against the target of 5 ms.
//!
//! Modules:
//! - [`cli`]: the command line.
//! - [`limits`]: the two limits.
//! - [`workload`]: the handle on a running workload program.
//! - [`memhog`]: the memory pattern of the memory workload.
//! - [`threads`]: the threads part (a process with N threads, and with one).
//! - [`tree`]: the tree part (a tree of N processes, and a root alone).
//! - [`stasis`] and [`criu`]: running the two tools and reading their results; [`tool`]: either.
//! - [`procs`]: killing a pid, waiting for it to vanish, disk usage of an image.
//! - [`run`]: the rounds.
//! - [`migrate`]: `stasis-bench migrate`, the downtime of a live migration beside its limit.
//! - [`report`]: medians, ratios, the table and the JSON.

pub mod cli;
pub mod criu;
pub mod limits;
pub mod memhog;
pub mod migrate;
pub mod procs;
pub mod report;
pub mod run;
pub mod stasis;
pub mod threads;
pub mod tool;
pub mod tree;
pub mod workload;

/// Formats an error with its chain of sources, `outer: inner: innermost`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
