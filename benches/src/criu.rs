//! CRIU on the same workload, where it is installed and works: `criu check` decides, and its reason
//! is reported when it does not (Debian 12's criu 3.17, for one, fails on Linux 6.18's vDSO layout).
//!
//! The workload runs in the bench's session, so both commands get `--shell-job`; the restored pid
//! comes from `--pidfile`. Each command logs to `dump.log` / `restore.log` in the image directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Errors of running CRIU.
#[derive(Debug, Error)]
pub enum CriuError {
    #[error("cannot run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`criu {command}` failed ({status}), see {log}")]
    Failed { command: &'static str, status: ExitStatus, log: PathBuf },
    #[error("cannot create the image directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the pid file {path} of `criu restore`")]
    PidFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the pid file {path} of `criu restore` holds {text:?}, not a pid")]
    BadPid { path: PathBuf, text: String },
}

/// Whether CRIU can be measured here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// `criu` at this path passed `criu check`.
    Available(PathBuf),
    /// Why not.
    Unavailable(String),
}

/// Runs `criu check` with `program`, or else with `criu` on PATH.
pub fn probe(program: Option<&Path>) -> Availability {
    let Some(program) = program.map(Path::to_owned).or_else(|| find_on_path("criu")) else {
        return Availability::Unavailable(
            "criu is not on PATH: give --criu PATH, or let scripts/bench.sh --build-criu DIR build CRIU 4.2".into(),
        );
    };
    match Command::new(&program).arg("check").stdin(Stdio::null()).output() {
        Err(e) => Availability::Unavailable(format!("cannot run {}: {e}", program.display())),
        Ok(out) if out.status.success() => Availability::Available(program),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            Availability::Unavailable(format!(
                "`criu check` failed ({}): {}",
                out.status,
                last.unwrap_or("no message").trim()
            ))
        }
    }
}

/// The first executable file called `name` in the directories of PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// One timed restore.
#[derive(Debug, Clone, Copy)]
pub struct RestoreRun {
    /// Wall time of the command.
    pub wall: Duration,
    /// The restored root.
    pub pid: i32,
}

/// A working CRIU binary.
#[derive(Debug, Clone)]
pub struct Criu {
    program: PathBuf,
}

impl Criu {
    /// CRIU at `program`.
    pub fn new(program: &Path) -> Self {
        Self { program: program.to_owned() }
    }

    /// `criu dump -t PID -D DIR --shell-job` (which kills the process), timed.
    pub fn dump(&self, pid: i32, dir: &Path) -> Result<Duration, CriuError> {
        std::fs::create_dir_all(dir).map_err(|source| CriuError::Dir { path: dir.to_owned(), source })?;
        let pid = pid.to_string();
        self.run("dump", &["-t", &pid], dir)
    }

    /// `criu restore -D DIR -d --shell-job --pidfile DIR/restore.pid`, timed.
    pub fn restore(&self, dir: &Path) -> Result<RestoreRun, CriuError> {
        let pidfile = dir.join("restore.pid");
        let pidfile_arg = pidfile.to_string_lossy().into_owned();
        let wall = self.run("restore", &["-d", "--pidfile", &pidfile_arg], dir)?;
        let text =
            std::fs::read_to_string(&pidfile).map_err(|source| CriuError::PidFile { path: pidfile.clone(), source })?;
        let pid = text.trim().parse().map_err(|_| CriuError::BadPid { path: pidfile.clone(), text: text.clone() })?;
        Ok(RestoreRun { wall, pid })
    }

    fn run(&self, command: &'static str, args: &[&str], dir: &Path) -> Result<Duration, CriuError> {
        let log = format!("{command}.log");
        let start = Instant::now();
        let status = Command::new(&self.program)
            .arg(command)
            .args(args)
            .arg("-D")
            .arg(dir)
            .args(["--shell-job", "-o", &log])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|source| CriuError::Spawn { program: self.program.clone(), source })?;
        let wall = start.elapsed();
        if !status.success() {
            return Err(CriuError::Failed { command, status, log: dir.join(log) });
        }
        Ok(wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_on_path_and_not_a_made_up_name() {
        assert!(find_on_path("sh").is_some());
        assert_eq!(find_on_path("stasis-no-such-program-xyz"), None);
    }

    #[test]
    fn a_missing_program_is_named() {
        let reason = match probe(Some(Path::new("/nonexistent/criu"))) {
            Availability::Unavailable(reason) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason.starts_with("cannot run /nonexistent/criu"), "{reason}");
    }

    #[test]
    fn probe_gives_a_reason_when_unavailable() {
        if let Availability::Unavailable(reason) = probe(None) {
            assert!(!reason.is_empty());
        }
    }
}
