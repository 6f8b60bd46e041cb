//! Running `stasis dump` and `stasis restore` and reading their `--json` reports.
//!
//! `stasis dump -t PID -D DIR --json` prints a `DumpReport` whose `frozen` field is a duration as
//! `{"secs": .., "nanos": ..}`; `stasis restore -D DIR -d --json` prints a `RestoreReport` whose
//! `pid` field is the restored root. Both commands are timed as a whole (wall time).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use thiserror::Error;

/// Errors of running stasis.
#[derive(Debug, Error)]
pub enum StasisError {
    #[error("cannot run {program} (build it with `cargo build --release -p stasis-cli`)")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`stasis {command}` failed ({status}): {stderr}")]
    Failed { command: String, status: ExitStatus, stderr: String },
    #[error("`stasis {command}` printed no JSON report (stdout {stdout:?}, stderr {stderr:?})")]
    Report {
        command: String,
        stdout: String,
        stderr: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The fields of stasis' dump report the bench uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct DumpReport {
    /// Time from the freeze to the kill of the process.
    pub frozen: Duration,
}

/// The fields of stasis' restore report the bench uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RestoreReport {
    /// The restored root.
    pub pid: i32,
}

/// One timed dump.
#[derive(Debug, Clone, Copy)]
pub struct DumpRun {
    /// Wall time of the command.
    pub wall: Duration,
    pub report: DumpReport,
}

/// One timed restore.
#[derive(Debug, Clone, Copy)]
pub struct RestoreRun {
    /// Wall time of the command.
    pub wall: Duration,
    pub report: RestoreReport,
}

/// The stasis binary.
#[derive(Debug, Clone)]
pub struct Stasis {
    program: PathBuf,
    /// Dumps with `--compress` (page files in zstd frames).
    compress: bool,
}

impl Stasis {
    /// A stasis binary at `program`.
    pub fn new(program: &Path) -> Self {
        Self { program: program.to_owned(), compress: false }
    }

    /// The stasis binary at `program`, dumping with `--compress`.
    pub fn compressing(program: &Path) -> Self {
        Self { program: program.to_owned(), compress: true }
    }

    /// `stasis dump -t PID -D DIR --json` (which kills the process), with `--compress` if so made.
    pub fn dump(&self, pid: i32, dir: &Path) -> Result<DumpRun, StasisError> {
        let pid = pid.to_string();
        let mut args = vec!["dump".as_ref(), "-t".as_ref(), pid.as_ref(), "-D".as_ref(), dir.as_os_str()];
        if self.compress {
            args.push("--compress".as_ref());
        }
        let (wall, report) = self.run(&args)?;
        Ok(DumpRun { wall, report })
    }

    /// `stasis restore -D DIR -d --json`.
    pub fn restore(&self, dir: &Path) -> Result<RestoreRun, StasisError> {
        let args = ["restore".as_ref(), "-D".as_ref(), dir.as_os_str(), "-d".as_ref()];
        let (wall, report) = self.run(&args)?;
        Ok(RestoreRun { wall, report })
    }

    /// Runs stasis with `args` and `--json`, times it and parses its report.
    fn run<T: DeserializeOwned>(&self, args: &[&std::ffi::OsStr]) -> Result<(Duration, T), StasisError> {
        let command = args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ");
        let start = Instant::now();
        let out = Command::new(&self.program)
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| StasisError::Spawn { program: self.program.clone(), source })?;
        let wall = start.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if !out.status.success() {
            return Err(StasisError::Failed { command, status: out.status, stderr });
        }
        match parse_report(&stdout) {
            Ok(report) => Ok((wall, report)),
            Err(source) => Err(StasisError::Report { command, stdout, stderr, source }),
        }
    }
}

/// Parses a JSON report: the whole of `stdout`, or else its last non-empty line (in case something
/// was printed before the report).
pub fn parse_report<T: DeserializeOwned>(stdout: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(stdout).or_else(|whole| match stdout.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => serde_json::from_str(last).map_err(|_| whole),
        None => Err(whole),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_report_frozen_time() {
        let json = r#"{"pid":42,"frozen":{"secs":1,"nanos":500000000},"total":{"secs":2,"nanos":0},
                       "pages":262144,"image_bytes":1073741824,"left_running":false}"#;
        let report: DumpReport = parse_report(json).unwrap();
        assert_eq!(report.frozen, Duration::from_millis(1500));
    }

    #[test]
    fn restore_report_pid_after_other_output() {
        let out = "restoring...\n{\"pid\":4242,\"total\":{\"secs\":0,\"nanos\":7},\"pages\":3}\n\n";
        let report: RestoreReport = parse_report(out).unwrap();
        assert_eq!(report.pid, 4242);
    }

    #[test]
    fn empty_output_is_an_error() {
        assert!(parse_report::<RestoreReport>("").is_err());
        assert!(parse_report::<DumpReport>("{\"pid\":1}").is_err());
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let stasis = Stasis::new(Path::new("/nonexistent/stasis"));
        let err = stasis.restore(Path::new("/tmp")).unwrap_err();
        assert!(err.to_string().starts_with("cannot run /nonexistent/stasis"), "{err}");
    }

    #[test]
    fn a_failing_command_reports_status_and_stderr() {
        let stasis = Stasis::new(Path::new("false"));
        let err = stasis.dump(1, Path::new("/tmp/img")).unwrap_err();
        assert!(err.to_string().starts_with("`stasis dump -t 1 -D /tmp/img` failed (exit status: 1)"), "{err}");
    }
}
