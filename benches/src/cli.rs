//! The command line of `stasis-bench`.

use std::path::PathBuf;

use clap::{value_parser, Parser, Subcommand};

/// Measure stasis dump and restore against the write and read limits of the same directory.
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
    /// The workload binary [default: `stasis-bench-memhog` beside this program].
    #[arg(long)]
    pub memhog: Option<PathBuf>,
    /// Measure only the limits (no stasis, no CRIU).
    #[arg(long)]
    pub limits_only: bool,
    /// Do not run CRIU even if it is installed and works.
    #[arg(long)]
    pub no_criu: bool,
}

/// Subcommands that the benchmark runs itself in a fresh process.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read FILE into freshly allocated memory and print the time of the read loop as JSON.
    #[command(name = "read-limit", hide = true)]
    ReadLimit {
        /// The file to read.
        file: PathBuf,
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
    fn hidden_read_limit_subcommand() {
        let cli = Cli::try_parse_from(["stasis-bench", "read-limit", "/tmp/f"]).unwrap();
        match cli.command {
            Some(Command::ReadLimit { file }) => assert_eq!(file, PathBuf::from("/tmp/f")),
            None => panic!("no subcommand"),
        }
    }

    #[test]
    fn zero_rounds_and_bad_sizes_are_usage_errors() {
        for args in [
            &["stasis-bench", "--rounds", "0"][..],
            &["stasis-bench", "--size-mib", "0"],
            &["stasis-bench", "--size-mib", "lots"],
            &["stasis-bench", "--frobnicate"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
