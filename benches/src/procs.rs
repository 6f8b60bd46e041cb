//! Processes the bench did not start itself (restored ones) and image directories: killing a pid,
//! waiting for `/proc/PID` to vanish, measuring the disk usage of a directory the way `du` does.
//!
//! A restored process is not the bench's child (its parent was the restoring tool, which exited), so
//! it is signalled with kill(1) and reaped by PID 1, which may take a second or two.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Errors of the process and directory helpers.
#[derive(Debug, Error)]
pub enum ProcError {
    #[error("cannot run kill for pid {pid}")]
    Spawn {
        pid: i32,
        #[source]
        source: io::Error,
    },
    #[error("kill -KILL {pid} failed ({status}): {stderr}")]
    Kill { pid: i32, status: ExitStatus, stderr: String },
    #[error("pid {pid} still exists {waited:?} after it was killed")]
    StillThere { pid: i32, waited: Duration },
    #[error("cannot measure the disk usage of {path}")]
    Usage {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Sends SIGKILL to `pid` with kill(1).
pub fn kill(pid: i32) -> Result<(), ProcError> {
    let out = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProcError::Spawn { pid, source })?;
    if !out.status.success() {
        return Err(ProcError::Kill {
            pid,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Whether `/proc/PID` exists (a zombie counts as existing).
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The threads of `pid`: the entries of `/proc/PID/task`.
pub fn task_count(pid: i32) -> io::Result<usize> {
    std::fs::read_dir(format!("/proc/{pid}/task"))?.try_fold(0, |n, entry| entry.map(|_| n + 1))
}

/// Waits until `/proc/PID` is gone, that is until the process has been reaped.
pub fn wait_gone(pid: i32, timeout: Duration) -> Result<(), ProcError> {
    let start = Instant::now();
    while exists(pid) {
        if start.elapsed() > timeout {
            return Err(ProcError::StillThere { pid, waited: timeout });
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Kills `pid` and waits until it is gone.
pub fn kill_and_wait_gone(pid: i32, timeout: Duration) -> Result<(), ProcError> {
    kill(pid)?;
    wait_gone(pid, timeout)
}

/// Bytes of disk that `path` and everything under it occupy (allocated blocks, as `du` counts them;
/// symbolic links are not followed).
pub fn disk_usage(path: &Path) -> Result<u64, ProcError> {
    let usage_err = |source| ProcError::Usage { path: path.to_owned(), source };
    let meta = std::fs::symlink_metadata(path).map_err(usage_err)?;
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(usage_err)? {
            total += disk_usage(&entry.map_err(usage_err)?.path())?;
        }
    }
    Ok(total)
}

/// The fds above 2 of this process that children inherit (not close-on-exec), each with what it
/// points to. Such an fd, handed to the bench by whatever started it, reaches the workload too, and
/// stasis cannot checkpoint every kind of fd (pipes, for one).
pub fn inherited_fds() -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return Vec::new();
    };
    let mut fds: Vec<(i32, String)> = dir
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd: i32 = entry.file_name().to_str()?.parse().ok()?;
            let info = std::fs::read_to_string(entry.path()).ok()?;
            (fd > 2 && inheritable(&info)).then(|| {
                let target = std::fs::read_link(format!("/proc/self/fd/{fd}"));
                (fd, target.map(|t| t.display().to_string()).unwrap_or_default())
            })
        })
        .collect();
    fds.sort();
    fds
}

/// Whether an fdinfo text shows an fd without `O_CLOEXEC` (octal 02000000 in its `flags:` line).
fn inheritable(fdinfo: &str) -> bool {
    const O_CLOEXEC: u32 = 0o2000000;
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|flags| flags & O_CLOEXEC == 0)
}

/// Removes `path` (a file or a directory tree) if it exists.
pub fn remove(path: &Path) -> io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_allocated_blocks_recursively() {
        let dir = std::env::temp_dir().join(format!("stasis-bench-du-{}", std::process::id()));
        remove(&dir).unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::write(dir.join("sub/b"), vec![2u8; 64 * 1024]).unwrap();
        let usage = disk_usage(&dir).unwrap();
        assert!(usage >= 128 * 1024, "{usage}");
        assert!(usage < 1024 * 1024, "{usage}");
        remove(&dir).unwrap();
        assert!(!dir.exists());
        remove(&dir).unwrap();
    }

    #[test]
    fn kill_and_wait_gone_for_a_child() {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(exists(pid));
        kill(pid).unwrap();
        child.wait().unwrap();
        wait_gone(pid, Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn task_count_of_a_single_threaded_child() {
        let mut child = Command::new("sleep").arg("100").spawn().unwrap();
        let pid = child.id() as i32;
        assert_eq!(task_count(pid).unwrap(), 1);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(task_count(999_999_999).is_err());
    }

    #[test]
    fn fdinfo_flags() {
        assert!(inheritable("pos:\t0\nflags:\t0100000\nmnt_id:\t21\n"));
        assert!(!inheritable("pos:\t0\nflags:\t02100002\nmnt_id:\t21\n"));
        assert!(!inheritable("pos:\t0\n"));
    }

    #[test]
    fn the_bench_own_files_are_not_inherited() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let listed = inherited_fds();
        assert!(listed.iter().all(|(_, target)| !target.ends_with("/status")), "{listed:?}");
        drop(file);
    }

    #[test]
    fn killing_a_missing_pid_fails_and_names_it() {
        // Above the default and usual pid_max, so no process has it.
        let err = kill(999_999_999).unwrap_err();
        assert!(err.to_string().starts_with("kill -KILL 999999999 failed"), "{err}");
    }
}
