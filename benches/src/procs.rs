//! Processes the bench did not start itself (restored ones, the children of a tree) and image
//! directories: killing pids, waiting for `/proc/PID` to vanish, listing a process's children and
//! reading its state, measuring the disk usage of a directory the way `du` does.
//!
//! A restored process is not the bench's child (its parent was the restoring tool, which exited), so
//! it is signalled with kill(1) and reaped by PID 1, which may take a second or two. So are the
//! children of a tree once their parent is gone.

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
    #[error("kill -KILL of {count} pids failed ({status}): {stderr}")]
    KillAll { count: usize, status: ExitStatus, stderr: String },
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

/// Sends SIGKILL to every pid of `pids` with one kill(1), in their order; fails if any of them
/// could not be signalled (the others are signalled all the same).
pub fn kill_all(pids: &[i32]) -> Result<(), ProcError> {
    let Some(&first) = pids.first() else {
        return Ok(());
    };
    let out = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(i32::to_string))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProcError::Spawn { pid: first, source })?;
    if !out.status.success() {
        return Err(ProcError::KillAll {
            count: pids.len(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// The children of `pid`'s main thread: the pids in `/proc/PID/task/PID/children`.
pub fn children(pid: i32) -> io::Result<Vec<i32>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
    parse_pids(&text)
}

/// The pids of a `children` file: numbers separated by blanks.
fn parse_pids(text: &str) -> io::Result<Vec<i32>> {
    text.split_whitespace()
        .map(|word| word.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("pid {word:?}"))))
        .collect()
}

/// The state letter of `pid` (`R`, `S`, `D`, `Z`, ...), from `/proc/PID/stat`.
pub fn state(pid: i32) -> io::Result<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_state(&stat).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no state in /proc/PID/stat"))
}

/// The state field of a `/proc/PID/stat` text: the first word after the command's closing `)`
/// (the command itself may hold blanks and parentheses).
fn parse_state(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().next()?.chars().next()
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

/// Waits until every pid of `pids` is gone, within `timeout` for all of them together.
pub fn wait_all_gone(pids: &[i32], timeout: Duration) -> Result<(), ProcError> {
    let start = Instant::now();
    for &pid in pids {
        wait_gone(pid, timeout.saturating_sub(start.elapsed()))
            .map_err(|_| ProcError::StillThere { pid, waited: timeout })?;
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
    fn children_and_state_of_a_process() {
        // The children file lists what the main thread started: here the shell's, not a test thread's.
        let mut shell = Command::new("sh").args(["-c", "sleep 100 & sleep 100 & wait"]).spawn().unwrap();
        let pid = shell.id() as i32;
        let start = Instant::now();
        let mut kids = children(pid).unwrap();
        while kids.len() < 2 || kids.iter().any(|&k| state(k).ok() != Some('S')) {
            assert!(start.elapsed() < Duration::from_secs(10), "children {kids:?} never sleep");
            thread::sleep(Duration::from_millis(5));
            kids = children(pid).unwrap();
        }
        assert_eq!(children(kids[0]).unwrap(), Vec::<i32>::new());
        kids.push(pid);
        kill_all(&kids).unwrap();
        shell.wait().unwrap();
        wait_all_gone(&kids, Duration::from_secs(10)).unwrap();
        assert!(state(pid).is_err() && children(pid).is_err());
    }

    #[test]
    fn parse_children_and_stat() {
        assert_eq!(parse_pids("12 345 6 ").unwrap(), vec![12, 345, 6]);
        assert_eq!(parse_pids("").unwrap(), Vec::<i32>::new());
        assert!(parse_pids("12 x").is_err());
        assert_eq!(parse_state("42 (a) b)) S 1 42 42 0 -1"), Some('S'));
        assert_eq!(parse_state("42 (sleep) Z 1"), Some('Z'));
        assert_eq!(parse_state("42 (sleep"), None);
    }

    #[test]
    fn kill_all_of_nothing_and_of_missing_pids() {
        kill_all(&[]).unwrap();
        let err = kill_all(&[999_999_998, 999_999_999]).unwrap_err();
        assert!(err.to_string().starts_with("kill -KILL of 2 pids failed"), "{err}");
        let err = wait_all_gone(&[i32::try_from(std::process::id()).unwrap()], Duration::ZERO).unwrap_err();
        assert!(err.to_string().ends_with("still exists 0ns after it was killed"), "{err}");
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
