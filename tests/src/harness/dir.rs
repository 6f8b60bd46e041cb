//! Per-test temporary directories (kept on failure for inspection) and tmpfs mounts.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory `/tmp/stasis-tests/<name>-<pid>-<n>` holding a test's logs, images and the
/// workload's files (under `work/`). Removed on drop unless the test is panicking or
/// `STASIS_TESTS_KEEP` is set.
pub struct TestDir {
    path: PathBuf,
    logs: RefCell<Vec<PathBuf>>,
}

impl TestDir {
    /// Creates the directory (and makes this process a child subreaper, see the module docs of
    /// `harness`).
    pub fn new(name: &str) -> TestDir {
        super::init();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let base = std::env::temp_dir().join("stasis-tests");
        let path = base.join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("work")).expect("create test dir");
        TestDir { path, logs: RefCell::new(Vec::new()) }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/rel`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// The workload's own directory (`STASIS_WORKDIR` and cwd of workloads).
    pub fn work(&self) -> PathBuf {
        self.path.join("work")
    }

    /// A path `stem.ext`, `stem.2.ext`, ... not used yet in this directory.
    pub fn unique(&self, stem: &str, ext: &str) -> PathBuf {
        (1..)
            .map(|i| match i {
                1 => self.join(&format!("{stem}.{ext}")),
                _ => self.join(&format!("{stem}.{i}.{ext}")),
            })
            .find(|p| !p.exists())
            .expect("some free name")
    }

    /// Registers a log file to print when the test fails.
    pub fn watch_log(&self, path: &Path) {
        self.logs.borrow_mut().push(path.to_path_buf());
    }

    /// Panics with `msg` followed by the tail of every watched log.
    pub fn fail(&self, msg: &str) -> ! {
        let mut out = format!("{msg}\n(test dir kept: {})", self.path.display());
        for log in self.logs.borrow().iter() {
            let text = std::fs::read_to_string(log).unwrap_or_else(|e| format!("<unreadable: {e}>"));
            let _ = write!(out, "\n----- {} (last 40 lines) -----\n{}", log.display(), tail(&text, 40));
        }
        panic!("{out}");
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("STASIS_TESTS_KEEP").is_some() {
            eprintln!("test dir kept: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A tmpfs mounted for one test; lazily unmounted on drop.
pub struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs with `options` (e.g. `ro` or `size=1m`) on `path` (created if missing).
    /// Errors carry the reason the mount failed, for the skip message.
    pub fn new(path: &Path, options: &str) -> Result<TmpfsMount, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t tmpfs -o {options} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(TmpfsMount { path: path.to_path_buf() })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
