//! `stasis`: checkpoint and restore Linux process trees.
//!
//! ```text
//! stasis check   [--json]
//! stasis dump    -t PID -D DIR [-R] [-j] [--fsync] [-o LOG] [-v...] [--json]
//! stasis restore -D DIR [-d] [--pidfile FILE] [-j] [-o LOG] [-v...] [--json]
//! stasis show    DIR [--json]
//! ```
//!
//! # Exit status
//! - `0`: success (for `check`: every required kernel feature is present).
//! - `1`: the operation failed (for `check`: a required feature is missing). The error is printed
//!   on stderr as `stasis: error: <cause>: <cause of that>...`; with `--json`, stdout also gets
//!   `{"error": "<the same chain>"}`.
//! - `2`: usage error (unknown option, missing argument), reported by the argument parser.
//! - `restore` without `-d` exits with the restored process's own status once it ends: its exit
//!   code, or 128 + the signal number if a signal killed it (as a shell reports it).

mod check;
mod dump;
mod logger;
mod progress;
mod restore;
mod show;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Checkpoint and restore Linux process trees.
#[derive(Parser, Debug)]
#[command(name = "stasis", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Probe the kernel and CPU for the features stasis uses.
    Check(check::CheckArgs),
    /// Checkpoint a process tree into an image directory.
    Dump(dump::DumpArgs),
    /// Restore a process tree from an image directory.
    Restore(restore::RestoreArgs),
    /// Print the contents of an image directory.
    Show(show::ShowArgs),
}

/// Logging options shared by `dump` and `restore`.
#[derive(Args, Debug)]
struct LogArgs {
    /// Append the log to LOG instead of writing it to stderr.
    #[arg(short = 'o', long = "log-file", value_name = "LOG")]
    log_file: Option<PathBuf>,
    /// More log output: -v info, -vv debug, -vvv trace (default: warnings and errors).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (json, log) = match &cli.command {
        Command::Check(a) => (a.json, None),
        Command::Dump(a) => (a.json, Some(&a.log)),
        Command::Restore(a) => (a.json, Some(&a.log)),
        Command::Show(a) => (a.json, None),
    };
    let log_file = log.and_then(|l| l.log_file.clone());
    let verbose = log.map_or(0, |l| l.verbose);
    let result = logger::init(log_file.as_deref(), verbose).and_then(|()| run(cli.command));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let chain = format!("{err:#}");
            if log_file.is_some() {
                // The log file gets the error too; on stderr it is printed once, below.
                log::error!("{chain}");
            }
            if json {
                print_json(&serde_json::json!({ "error": chain }));
            }
            eprintln!("stasis: error: {chain}");
            ExitCode::from(1)
        }
    }
}

/// Runs one command; `Ok` carries the exit status.
fn run(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Check(a) => check::run(&a),
        Command::Dump(a) => dump::run(&a),
        Command::Restore(a) => restore::run(&a),
        Command::Show(a) => show::run(&a),
    }
}

/// Prints one JSON value on stdout.
fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("a JSON value always serializes");
    let mut out = std::io::stdout().lock();
    // Nothing sensible is left to do when stdout is gone (a closed pipe).
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_criu_style_flags() {
        let cli = Cli::try_parse_from([
            "stasis", "dump", "-t", "42", "-D", "/tmp/img", "-R", "-j", "-o", "log", "-vv", "--json",
        ])
        .expect("dump flags");
        let Command::Dump(d) = cli.command else { panic!("not dump") };
        assert_eq!((d.tree, d.leave_running, d.shell_job, d.json), (42, true, true, true));
        assert_eq!((d.log.verbose, d.log.log_file), (2, Some(PathBuf::from("log"))));

        let cli = Cli::try_parse_from(["stasis", "restore", "-D", "d", "-d", "--pidfile", "p"]).expect("restore flags");
        let Command::Restore(r) = cli.command else { panic!("not restore") };
        assert!(r.restore_detached && !r.shell_job);
        assert_eq!(r.pidfile, Some(PathBuf::from("p")));
    }

    #[test]
    fn parses_ext_unix_sk() {
        let cli = Cli::try_parse_from(["stasis", "dump", "-t", "1", "-D", "d", "--ext-unix-sk"]).expect("dump");
        let Command::Dump(d) = cli.command else { panic!("not dump") };
        assert!(d.ext_unix_sk);
        let cli = Cli::try_parse_from(["stasis", "restore", "-D", "d", "--ext-unix-sk"]).expect("restore");
        let Command::Restore(r) = cli.command else { panic!("not restore") };
        assert!(r.ext_unix_sk);
    }

    #[test]
    fn rejects_bad_usage() {
        for args in [
            &["stasis", "dump", "-D", "d"][..],
            &["stasis", "dump", "-t", "0", "-D", "d"],
            &["stasis", "dump", "-t", "x", "-D", "d"],
            &["stasis", "restore"],
            &["stasis", "show"],
            &["stasis", "frobnicate"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("usage error");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
