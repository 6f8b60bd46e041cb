//! The physical limits a dump and a restore are measured against.
//!
//! - Write limit: `dd if=/dev/zero of=FILE bs=1M count=N` (page cache, no fsync), timed as a whole.
//! - Read limit: a fresh process (this program, re-executed with the hidden `read-limit` subcommand)
//!   reads FILE into a buffer allocated just before, timing only the read loop. A large zeroed `Vec`
//!   is fresh anonymous memory mapped lazily, so each page the read fills faults in, as the pages a
//!   restore fills do. A fresh process keeps the bench's own warm memory out of the measurement.
//!   Four ways are measured each round, and the limit of the round is the fastest: one `read` loop
//!   over the whole file, one thread per CPU each `pread`ing its share, and both again with the
//!   buffer (each share) populated first with `MADV_POPULATE_WRITE`, timed too ([`READ_METHODS`]):
//!   the pages are then allocated in one call instead of faulted in one by one during the copy,
//!   which was 1.2x to 1.35x faster on the 2-CPU machine of the bench docs (an earlier, loaded
//!   measurement found it slower, so both stay measured). Left out: `process_vm_writev` from a
//!   mapping of the file (slower there). Huge pages are left out on purpose: a restore must give
//!   the process the 4 KiB pages it had (its areas were not `MADV_HUGEPAGE`).

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

/// The ways of reading into fresh memory measured for the read limit: (name, threads, populate
/// first), 0 threads being one per CPU; populating the buffer first (`MADV_POPULATE_WRITE`) saves
/// the page faults the copy would take one page at a time.
pub const READ_METHODS: [(&str, usize, bool); 4] = [
    ("read", 1, false),
    ("parallel pread", 0, false),
    ("populate + read", 1, true),
    ("parallel populate + pread", 0, true),
];

/// The threads of a `READ_METHODS` entry: `threads`, or one per CPU for 0.
pub fn method_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Runs `exe read-limit path --threads N [--populate]` in a fresh process and returns its timing.
pub fn read_limit(exe: &Path, path: &Path, threads: usize, populate: bool) -> Result<ReadTiming, LimitsError> {
    let out = Command::new(exe)
        .arg("read-limit")
        .arg(path)
        .arg("--threads")
        .arg(threads.to_string())
        .args(populate.then_some("--populate"))
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

/// Reads the whole of `path` into freshly allocated memory on `threads` threads (each `pread`ing an
/// equal share, in page multiples), timing from the first read to the last thread's end. This is
/// the body of the `read-limit` subcommand with `--threads` above 1.
/// With `populate`, each thread first populates its share (`MADV_POPULATE_WRITE`), timed too.
pub fn pread_into_fresh_memory(path: &Path, threads: usize, populate: bool) -> Result<ReadTiming, LimitsError> {
    use std::os::unix::fs::FileExt;
    if threads <= 1 {
        return read_into_fresh_memory(path, populate);
    }
    let read_err = |source| LimitsError::Read { path: path.to_owned(), source };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let size = usize::try_from(len).map_err(|_| LimitsError::TooLarge { path: path.to_owned(), bytes: len })?;
    let mut buf = vec![0u8; size];
    let share = size.div_ceil(threads).div_ceil(4096) * 4096;
    let start = Instant::now();
    let results: Vec<io::Result<()>> = std::thread::scope(|scope| {
        let file = &file;
        let handles: Vec<_> = buf
            .chunks_mut(share.max(1))
            .enumerate()
            .map(|(i, chunk)| {
                scope.spawn(move || {
                    if populate {
                        stasis_sys::mem::populate_write(chunk)?;
                    }
                    file.read_exact_at(chunk, (i * share) as u64)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("reader panicked")))).collect()
    });
    let nanos = start.elapsed().as_nanos();
    results.into_iter().collect::<io::Result<()>>().map_err(read_err)?;
    std::hint::black_box(&buf);
    Ok(ReadTiming { bytes: size as u64, nanos: u64::try_from(nanos).unwrap_or(u64::MAX) })
}

/// Reads the whole of `path` into freshly allocated memory, timing only the read loop (and, with
/// `populate`, the `MADV_POPULATE_WRITE` of the buffer before it). This is the body of the
/// `read-limit` subcommand.
pub fn read_into_fresh_memory(path: &Path, populate: bool) -> Result<ReadTiming, LimitsError> {
    let read_err = |source| LimitsError::Read { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let size = usize::try_from(len).map_err(|_| LimitsError::TooLarge { path: path.to_owned(), bytes: len })?;
    // One byte more than the file, so that the loop ends on a read of 0 bytes (end of file).
    let mut buf = vec![0u8; size + 1];
    let start = Instant::now();
    if populate {
        stasis_sys::mem::populate_write(&mut buf).map_err(read_err)?;
    }
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
        let timing = read_into_fresh_memory(&path, false).unwrap();
        assert_eq!(timing.bytes, 3 << 20);
        assert!(timing.nanos > 0);
        let timing = read_into_fresh_memory(&path, true).unwrap();
        assert_eq!(timing.bytes, 3 << 20);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn parallel_pread_reads_every_byte() {
        let path = scratch("par.img");
        std::fs::write(&path, (0..3 * 4096 + 5).map(|i| (i % 251) as u8).collect::<Vec<u8>>()).unwrap();
        let timing = pread_into_fresh_memory(&path, 2, false).unwrap();
        assert_eq!(timing.bytes, 3 * 4096 + 5);
        let timing = pread_into_fresh_memory(&path, 2, true).unwrap();
        assert_eq!(timing.bytes, 3 * 4096 + 5);
        assert!(method_threads(0) >= 1);
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
        let err = read_into_fresh_memory(Path::new("/nonexistent-stasis-file"), false).unwrap_err();
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
