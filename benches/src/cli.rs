//! The command line of `stasis-bench`.

use std::path::PathBuf;

use clap::{value_parser, Parser, Subcommand, ValueEnum};

use crate::threads::MAX_THREADS;
use crate::tree::MAX_PROCESSES;

/// Measure stasis dump and restore against the write and read limits of the same directory, per
/// thread on a process with many threads, and per process on a tree of processes.
#[derive(Debug, Parser)]
#[command(name = "stasis-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Directory for the dd file and the images (kept in page cache; files are deleted after use).
    #[arg(long, default_value = "/var/tmp/stasis-bench")]
    pub dir: PathBuf,
    /// Number of rounds; the report gives medians.
    #[arg(long, default_value_t = 5, value_parser = value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// Memory the workload holds, and bytes the limits move, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = value_parser!(u64).range(1..=65536))]
    pub size_mib: u64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The stasis binary [default: `stasis` beside this program].
    #[arg(long)]
    pub stasis: Option<PathBuf>,
    /// The memory workload binary [default: `stasis-bench-memhog` beside this program].
    #[arg(long)]
    pub memhog: Option<PathBuf>,
    /// Threads of the process the threads part dumps and restores (beside a one-thread baseline).
    #[arg(long, default_value_t = 100, value_parser = value_parser!(u32).range(2..=i64::from(MAX_THREADS)))]
    pub threads: u32,
    /// The threads workload binary [default: `stasis-bench-threads` beside this program].
    #[arg(long)]
    pub threads_program: Option<PathBuf>,
    /// Processes of the tree the tree part dumps and restores (beside the root alone).
    #[arg(long, default_value_t = 100, value_parser = value_parser!(u32).range(2..=i64::from(MAX_PROCESSES)))]
    pub tree: u32,
    /// The tree workload binary [default: `stasis-bench-tree` beside this program].
    #[arg(long)]
    pub tree_program: Option<PathBuf>,
    /// Run only one part of each round [default: all three].
    #[arg(long, value_enum, conflicts_with = "limits_only")]
    pub only: Option<Part>,
    /// Measure only the limits (no stasis, no CRIU).
    #[arg(long)]
    pub limits_only: bool,
    /// Do not run CRIU even if it is installed and works.
    #[arg(long)]
    pub no_criu: bool,
    /// The CRIU binary to measure beside stasis [default: `criu` on PATH]; `scripts/bench.sh
    /// --build-criu DIR` builds CRIU 4.2 from its source and passes it here.
    #[arg(long, conflicts_with = "no_criu")]
    pub criu: Option<PathBuf>,
}

/// A part of each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// The limits, then stasis (and CRIU) on the memory workload.
    Memory,
    /// Stasis on the threads workload, with N threads and with one.
    Threads,
    /// Stasis on the tree workload, with N processes and with one.
    Tree,
}

impl Part {
    /// The part's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Part::Memory => "memory",
            Part::Threads => "threads",
            Part::Tree => "tree",
        }
    }
}

/// Subcommands that the benchmark runs itself in a fresh process.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read FILE into freshly allocated memory and print the time of the read loop as JSON.
    #[command(name = "read-limit", hide = true)]
    ReadLimit {
        /// The file to read.
        file: PathBuf,
        /// Threads reading, each its share (1: one read loop).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Populate the buffer (`MADV_POPULATE_WRITE`) before reading, timed too.
        #[arg(long)]
        populate: bool,
    },
    /// The downtime of `stasis migrate` of a process holding --size-mib MiB that rewrites
    /// --rate-mib MiB/s, to `stasis serve` on loopback, beside its limit (needs root and unshare).
    Migrate {
        /// MiB per second the workload rewrites.
        #[arg(long, default_value_t = 64.0)]
        rate_mib: f64,
        /// The writing workload binary [default: `stasis-bench-writer` beside this program].
        #[arg(long)]
        writer: Option<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["stasis-bench"]).unwrap();
        assert_eq!(cli.dir, PathBuf::from("/var/tmp/stasis-bench"));
        assert_eq!(cli.rounds, 5);
        assert_eq!(cli.size_mib, 1024);
        assert!(!cli.json && !cli.limits_only && !cli.no_criu);
        assert_eq!((cli.threads, cli.tree, cli.only), (100, 100, None));
        assert!(cli.command.is_none());
    }

    #[test]
    fn options() {
        let cli = Cli::try_parse_from([
            "stasis-bench",
            "--dir",
            "/tmp/x",
            "--rounds",
            "3",
            "--size-mib",
            "64",
            "--json",
            "--stasis",
            "/bin/stasis",
            "--limits-only",
        ])
        .unwrap();
        assert_eq!(cli.dir, PathBuf::from("/tmp/x"));
        assert_eq!((cli.rounds, cli.size_mib), (3, 64));
        assert!(cli.json && cli.limits_only);
        assert_eq!(cli.stasis, Some(PathBuf::from("/bin/stasis")));
    }

    #[test]
    fn threads_options() {
        let cli = Cli::try_parse_from(["stasis-bench", "--threads", "8", "--only", "threads"]).unwrap();
        assert_eq!((cli.threads, cli.only), (8, Some(Part::Threads)));
        let cli = Cli::try_parse_from(["stasis-bench", "--only", "memory", "--threads-program", "/t"]).unwrap();
        assert_eq!((cli.only, cli.threads_program), (Some(Part::Memory), Some(PathBuf::from("/t"))));
    }

    #[test]
    fn tree_options() {
        let cli = Cli::try_parse_from(["stasis-bench", "--tree", "8", "--only", "tree"]).unwrap();
        assert_eq!((cli.tree, cli.only), (8, Some(Part::Tree)));
        let cli = Cli::try_parse_from(["stasis-bench", "--tree-program", "/t"]).unwrap();
        assert_eq!(cli.tree_program, Some(PathBuf::from("/t")));
        for part in [Part::Memory, Part::Threads, Part::Tree] {
            assert_eq!(part.to_possible_value().unwrap().get_name(), part.name());
        }
    }

    #[test]
    fn hidden_read_limit_subcommand() {
        let cli = Cli::try_parse_from(["stasis-bench", "read-limit", "/tmp/f"]).unwrap();
        match cli.command {
            Some(Command::ReadLimit { file, threads, populate }) => {
                assert_eq!((file, threads, populate), (PathBuf::from("/tmp/f"), 1, false))
            }
            _ => panic!("no read-limit subcommand"),
        }
    }

    #[test]
    fn zero_rounds_and_bad_sizes_are_usage_errors() {
        for args in [
            &["stasis-bench", "--rounds", "0"][..],
            &["stasis-bench", "--size-mib", "0"],
            &["stasis-bench", "--size-mib", "lots"],
            &["stasis-bench", "--frobnicate"],
            &["stasis-bench", "--threads", "1"],
            &["stasis-bench", "--threads", "4097"],
            &["stasis-bench", "--tree", "1"],
            &["stasis-bench", "--tree", "1025"],
            &["stasis-bench", "--only", "cpu"],
            &["stasis-bench", "--only", "threads", "--limits-only"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
