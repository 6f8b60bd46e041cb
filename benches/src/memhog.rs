//! The workload of the benchmark: `stasis-bench-memhog SIZE_MIB` writes a pattern into SIZE MiB of
//! anonymous memory, prints `READY` and sleeps until killed. [`fill`] is its pattern; [`Memhog`] is
//! the bench's handle on one running copy.
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

/// Page size the pattern stamps.
const PAGE: usize = 4096;
/// Byte the pattern fills pages with (not zero, so no page of the workload is a zero page).
pub const FILL_BYTE: u8 = 0xa5;
/// What the workload prints once its memory is written.
pub const READY: &str = "READY";

/// Errors of the workload handle.
#[derive(Debug, Error)]
pub enum MemhogError {
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

/// Fills `buf` with the workload pattern: [`FILL_BYTE`] everywhere, and the page's index in the
/// first 8 bytes of each page.
pub fn fill(buf: &mut [u8]) {
    buf.fill(FILL_BYTE);
    for (index, page) in buf.chunks_mut(PAGE).enumerate() {
        let stamp = (index as u64).to_le_bytes();
        let n = page.len().min(stamp.len());
        page[..n].copy_from_slice(&stamp[..n]);
    }
}

/// Whether `buf` holds the pattern [`fill`] writes.
pub fn check(buf: &[u8]) -> bool {
    buf.chunks(PAGE).enumerate().all(|(index, page)| {
        let stamp = (index as u64).to_le_bytes();
        let n = page.len().min(stamp.len());
        page[..n] == stamp[..n] && page[n..].iter().all(|&b| b == FILL_BYTE)
    })
}

/// A running workload started by the bench. Dropping it kills and reaps the process if it still
/// runs, so an error path never leaves one behind.
#[derive(Debug)]
pub struct Memhog {
    child: Option<Child>,
    pid: i32,
    log: PathBuf,
}

impl Memhog {
    /// Starts `program SIZE_MIB` with stdout to `log`.
    pub fn start(program: &Path, mib: u64, log: &Path) -> Result<Self, MemhogError> {
        let out = File::create(log).map_err(|source| MemhogError::Log { path: log.to_owned(), source })?;
        let child = Command::new(program)
            .arg(mib.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| MemhogError::Spawn { program: program.to_owned(), source })?;
        let pid = i32::try_from(child.id()).expect("pids fit in i32");
        Ok(Self { child: Some(child), pid, log: log.to_owned() })
    }

    /// The workload's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the workload has printed [`READY`].
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), MemhogError> {
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.lines().any(|line| line == READY) {
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                return Err(MemhogError::Exited { pid: self.pid, status });
            }
            if start.elapsed() > timeout {
                return Err(MemhogError::NotReady { pid: self.pid, waited: timeout });
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reaps the workload after a dump killed it, so that its pid is free for the restore. Fails if
    /// it still runs after `timeout`.
    pub fn reap(mut self, timeout: Duration) -> Result<ExitStatus, MemhogError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if start.elapsed() > timeout {
                return Err(MemhogError::StillRunning { pid: self.pid, waited: timeout });
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>, MemhogError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        child.try_wait().map_err(|source| MemhogError::Wait { pid: self.pid, source })
    }
}

impl Drop for Memhog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort: the process may already be gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_stamps_every_page_and_check_sees_changes() {
        let mut buf = vec![0u8; 5 * PAGE + 100];
        fill(&mut buf);
        assert!(check(&buf));
        assert_eq!(&buf[PAGE..PAGE + 8], &1u64.to_le_bytes());
        assert_eq!(buf[3 * PAGE + 9], FILL_BYTE);
        buf[2 * PAGE + 100] = 0;
        assert!(!check(&buf));
    }

    #[test]
    fn pattern_on_a_short_last_page() {
        let mut buf = vec![0u8; PAGE + 3];
        fill(&mut buf);
        assert!(check(&buf));
        assert_eq!(&buf[PAGE..], &[1, 0, 0]);
    }
}
