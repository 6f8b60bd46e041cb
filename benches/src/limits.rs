//! The physical limits a dump and a restore are measured against.
//!
//! - Write limit: `dd if=/dev/zero of=FILE bs=1M count=N` (page cache, no fsync), timed as a whole.
//! - Read limit: a fresh process (this program, re-executed with the hidden `read-limit` subcommand)
//!   reads FILE into a buffer allocated just before, timing only the read loop. A large zeroed `Vec`
//!   is fresh anonymous memory mapped lazily, so each page the read fills faults in, as the pages a
//!   restore fills do. A fresh process keeps the bench's own warm memory out of the measurement.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Errors of the limit measurements.
#[derive(Debug, Error)]
pub enum LimitsError {
    #[error("cannot run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("dd to {path} failed ({status}): {stderr}")]
    Dd { path: PathBuf, status: ExitStatus, stderr: String },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is too large to read into memory ({bytes} bytes)")]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("read-limit process for {path} failed ({status}): {stderr}")]
    Child { path: PathBuf, status: ExitStatus, stderr: String },
    #[error("read-limit process for {path} printed no timing: {stdout:?}")]
    Output {
        path: PathBuf,
        stdout: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What the read-limit process reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadTiming {
    /// Bytes read.
    pub bytes: u64,
    /// Time of the read loop alone.
    pub nanos: u64,
}

impl ReadTiming {
    /// The time of the read loop.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.nanos)
    }
}

/// Writes `mib` MiB of zeros to `path` with `dd` and returns the wall time of `dd`.
pub fn dd_write(path: &Path, mib: u64) -> Result<Duration, LimitsError> {
    let mut of = std::ffi::OsString::from("of=");
    of.push(path);
    let start = Instant::now();
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(of)
        .arg("bs=1M")
        .arg(format!("count={mib}"))
        .arg("status=none")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LimitsError::Spawn { program: "dd".into(), source })?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        return Err(LimitsError::Dd {
            path: path.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(elapsed)
}

/// Runs `exe read-limit path` in a fresh process and returns its timing.
pub fn read_limit(exe: &Path, path: &Path) -> Result<ReadTiming, LimitsError> {
    let out = Command::new(exe)
        .arg("read-limit")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LimitsError::Spawn { program: exe.to_owned(), source })?;
    if !out.status.success() {
        return Err(LimitsError::Child {
            path: path.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_json::from_str(stdout.trim()).map_err(|source| LimitsError::Output { path: path.to_owned(), stdout, source })
}

/// Reads the whole of `path` into freshly allocated memory, timing only the read loop. This is the
/// body of the `read-limit` subcommand.
pub fn read_into_fresh_memory(path: &Path) -> Result<ReadTiming, LimitsError> {
    let read_err = |source| LimitsError::Read { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let size = usize::try_from(len).map_err(|_| LimitsError::TooLarge { path: path.to_owned(), bytes: len })?;
    // One byte more than the file, so that the loop ends on a read of 0 bytes (end of file).
    let mut buf = vec![0u8; size + 1];
    let start = Instant::now();
    let mut filled = 0;
    loop {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
        if filled == buf.len() {
            break;
        }
    }
    let nanos = start.elapsed().as_nanos();
    std::hint::black_box(&buf);
    Ok(ReadTiming { bytes: filled as u64, nanos: u64::try_from(nanos).unwrap_or(u64::MAX) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("stasis-bench-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn dd_writes_the_requested_size_and_read_reads_it_back() {
        let path = scratch("dd.img");
        let took = dd_write(&path, 3).unwrap();
        assert!(took > Duration::ZERO);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);
        let timing = read_into_fresh_memory(&path).unwrap();
        assert_eq!(timing.bytes, 3 << 20);
        assert!(timing.nanos > 0);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn dd_to_a_missing_directory_fails_with_its_message() {
        let err = dd_write(Path::new("/nonexistent-stasis-dir/dd.img"), 1).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("dd to /nonexistent-stasis-dir/dd.img failed"), "{text}");
    }

    #[test]
    fn reading_a_missing_file_names_it() {
        let err = read_into_fresh_memory(Path::new("/nonexistent-stasis-file")).unwrap_err();
        assert_eq!(err.to_string(), "cannot read /nonexistent-stasis-file");
    }

    #[test]
    fn timing_round_trips_through_json() {
        let timing = ReadTiming { bytes: 1 << 30, nanos: 250_000_000 };
        let text = serde_json::to_string(&timing).unwrap();
        assert_eq!(serde_json::from_str::<ReadTiming>(&text).unwrap(), timing);
        assert_eq!(timing.duration(), Duration::from_millis(250));
    }
}
