//! A reader outside the tree: a pipe whose write end a workload holds (as its stdout and stderr,
//! the way a supervisor, a CI runner or a shell pipeline starts programs) and whose read end a
//! thread of the test copies into a log file. The test keeps a copy of the write end, which it
//! hands to `stasis restore` with `--inherit-fd fd[N]:pipe:[INODE]` so that what the restored
//! tree writes still reaches the same reader.

use super::dir::TestDir;
use std::io::{PipeWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long the reader waits for the last writer to close the pipe once the test is done.
const EOF_TIMEOUT: Duration = Duration::from_secs(30);

/// The fd number stasis is given the test's write end as (`--inherit-fd fd[N]:...`).
pub const INHERITED_FD: i32 = 7;

/// The read end's copier and the test's own write end.
pub struct OutsideReader {
    key: String,
    ours: PipeWriter,
    text: Receiver<String>,
}

impl OutsideReader {
    /// A pipe whose read end a thread copies into `log` (registered with `dir`).
    pub fn new(dir: &TestDir, log: &Path) -> OutsideReader {
        dir.watch_log(log);
        let (reader, ours) = std::io::pipe().unwrap_or_else(|e| dir.fail(&format!("pipe: {e}")));
        let ino = reader
            .as_fd()
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata())
            .unwrap_or_else(|e| dir.fail(&format!("fstat the pipe: {e}")))
            .ino();
        let out = std::fs::File::create(log).unwrap_or_else(|e| dir.fail(&format!("{}: {e}", log.display())));
        let (tx, text) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(copy(reader, out));
        });
        OutsideReader { key: format!("pipe:[{ino}]"), ours, text }
    }

    /// The pipe's `--inherit-fd` key, `pipe:[INODE]`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `--inherit-fd` value handing in the test's write end as stasis' fd [`INHERITED_FD`].
    pub fn inherit_arg(&self) -> String {
        format!("fd[{INHERITED_FD}]:{}", self.key)
    }

    /// The test's write end (to pass to stasis as [`INHERITED_FD`]).
    pub fn ours(&self) -> BorrowedFd<'_> {
        self.ours.as_fd()
    }

    /// A write end for stdout or stderr of a workload (a duplicate of the test's: one open file
    /// description).
    pub fn stdio(&self) -> Stdio {
        self.ours.try_clone().map(Stdio::from).expect("dup the write end")
    }

    /// Closes the test's write end and waits for every other writer to close theirs; what the
    /// reader read, or an error if a writer still holds the pipe after a while.
    pub fn finish(self) -> Result<String, String> {
        drop(self.ours);
        match self.text.recv_timeout(EOF_TIMEOUT) {
            Ok(text) => Ok(text),
            Err(RecvTimeoutError::Timeout) => Err(format!("{} still has a writer after {EOF_TIMEOUT:?}", self.key)),
            Err(RecvTimeoutError::Disconnected) => Err(format!("the reader of {} failed", self.key)),
        }
    }
}

/// Copies `reader` to `out` until end of file; everything read, as text.
fn copy(mut reader: std::io::PipeReader, mut out: std::fs::File) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        if out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}
