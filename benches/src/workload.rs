//! The bench's handle on one running workload program (`stasis-bench-memhog SIZE_MIB` or
//! `stasis-bench-threads N`): start it with one argument, wait until it prints [`READY`], reap it
//! after a dump killed it. Dropping the handle kills and reaps a workload that still runs.
//!
//! The workload's stdout goes to a log file (a regular file, which a single-process dump supports;
//! a pipe to the bench would not be), stdin and stderr to `/dev/null`. The bench polls the log for
//! `READY`. The log must stay in place until the image is restored, since the restored process
//! reopens it.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;

/// What a workload prints once it is set up.
pub const READY: &str = "READY";
/// How long a workload may take to set up (the memory workload writes all its memory first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a killed process may take to be reaped.
pub const GONE_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the workload handle.
#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("cannot create the workload log {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the workload {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot wait for workload pid {pid}")]
    Wait {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("workload pid {pid} exited before it was ready ({status})")]
    Exited { pid: i32, status: ExitStatus },
    #[error("workload pid {pid} was not ready after {waited:?}")]
    NotReady { pid: i32, waited: Duration },
    #[error("workload pid {pid} still runs {waited:?} after the dump that should have killed it")]
    StillRunning { pid: i32, waited: Duration },
}

/// A running workload started by the bench. Dropping it kills and reaps the process if it still
/// runs, so an error path never leaves one behind.
#[derive(Debug)]
pub struct Workload {
    child: Option<Child>,
    pid: i32,
    log: PathBuf,
}

impl Workload {
    /// Starts `program ARG` with stdout to `log`.
    pub fn start(program: &Path, arg: &str, log: &Path) -> Result<Self, WorkloadError> {
        let out = File::create(log).map_err(|source| WorkloadError::Log { path: log.to_owned(), source })?;
        let child = Command::new(program)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| WorkloadError::Spawn { program: program.to_owned(), source })?;
        let pid = i32::try_from(child.id()).expect("pids fit in i32");
        Ok(Self { child: Some(child), pid, log: log.to_owned() })
    }

    /// The workload's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the workload has printed [`READY`].
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), WorkloadError> {
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.lines().any(|line| line == READY) {
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                return Err(WorkloadError::Exited { pid: self.pid, status });
            }
            if start.elapsed() > timeout {
                return Err(WorkloadError::NotReady { pid: self.pid, waited: timeout });
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reaps the workload after a dump killed it, so that its pid is free for the restore. Fails if
    /// it still runs after `timeout`.
    pub fn reap(mut self, timeout: Duration) -> Result<ExitStatus, WorkloadError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if start.elapsed() > timeout {
                return Err(WorkloadError::StillRunning { pid: self.pid, waited: timeout });
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, WorkloadError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        child.try_wait().map_err(|source| WorkloadError::Wait { pid: self.pid, source })
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort: the process may already be gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
