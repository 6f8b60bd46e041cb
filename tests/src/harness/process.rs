//! Workload descriptions and running processes: spawning with the protocol's stdio, waiting for
//! `READY`, waking, reaping with timeouts, and killing whatever is left on drop.

use super::dir::{tail, TestDir};
use crate::raw::{self, Exit};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a workload may take to print READY.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a woken workload may take to verify and exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A workload program and how to run it.
#[derive(Clone, Debug)]
pub struct Workload {
    name: String,
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    self_finishing: bool,
    mixed_stdio: bool,
    shell_job: bool,
    user: Option<(u32, u32)>,
}

impl Workload {
    /// A workload `name` whose program is `bin` (see the `workload!` macro).
    pub fn new(name: &str, bin: impl AsRef<Path>) -> Workload {
        Workload {
            name: name.to_string(),
            bin: bin.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            self_finishing: false,
            mixed_stdio: false,
            shell_job: false,
            user: None,
        }
    }

    /// Adds a command line argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Workload {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Workload {
        self.env.push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// The workload finishes by itself (it blocks in the call it tests): it is never sent SIGUSR1.
    pub fn self_finishing(mut self) -> Workload {
        self.self_finishing = true;
        self
    }

    /// stdin from a regular file, stdout to the log, stderr to /dev/null (instead of stdin from
    /// /dev/null and stdout and stderr sharing the log).
    pub fn mixed_stdio(mut self) -> Workload {
        self.mixed_stdio = true;
        self
    }

    /// Run like a shell job: in its own process group inside the test's session, instead of in a
    /// new session.
    pub fn shell_job(mut self) -> Workload {
        self.shell_job = true;
        self
    }

    /// Run as user `uid` and group `gid` (no supplementary groups) instead of the test's root.
    pub fn user(mut self, uid: u32, gid: u32) -> Workload {
        self.user = Some((uid, gid));
        self
    }

    /// The workload's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the workload is woken with SIGUSR1.
    pub fn wakes(&self) -> bool {
        !self.self_finishing
    }

    /// The command running the workload in `dir` (cwd and `STASIS_WORKDIR` = `dir/work`), in a
    /// new session (or a new process group for a shell job), as its user if one was set, with no
    /// stdio set.
    pub fn command(&self, dir: &TestDir) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args).current_dir(dir.work()).env("STASIS_WORKDIR", dir.work());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        if self.shell_job {
            cmd.process_group(0);
        } else {
            raw::setsid_on_spawn(&mut cmd);
        }
        raw::stdio_only_on_spawn(&mut cmd);
        cmd
    }

    /// Spawns the workload with its output in `dir/<name>.log` and waits for READY. `None` when
    /// the workload printed SKIP (the reason is printed to stderr as `skipped: ...`).
    pub fn start(&self, dir: &TestDir) -> Option<Running> {
        let log = dir.unique(&self.name, "log");
        dir.watch_log(&log);
        let mut cmd = self.command(dir);
        let out = File::create(&log).expect("create workload log");
        let err: Stdio = if self.mixed_stdio { Stdio::null() } else { out.try_clone().expect("dup log").into() };
        let stdin: Stdio = if self.mixed_stdio {
            let input = dir.work().join("stdin.txt");
            std::fs::write(&input, "input for the workload\n").expect("write stdin file");
            File::open(&input).expect("open stdin file").into()
        } else {
            Stdio::null()
        };
        cmd.stdin(stdin).stdout(out).stderr(err);
        let run = Running::spawn(&mut cmd, &self.name, Some(log), self.wakes())
            .unwrap_or_else(|e| dir.fail(&format!("spawn {}: {e}", self.bin.display())));
        self.ready(dir, run)
    }

    /// Spawns the workload with stdin from /dev/null and `stdout` and `stderr` as given, whose
    /// text someone else copies to `log` (see [`super::OutsideReader`]), without waiting for it.
    pub fn spawn_with(&self, dir: &TestDir, stdout: Stdio, stderr: Stdio, log: &Path) -> Running {
        let mut cmd = self.command(dir);
        cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        Running::spawn(&mut cmd, &self.name, Some(log.to_path_buf()), self.wakes())
            .unwrap_or_else(|e| dir.fail(&format!("spawn {}: {e}", self.bin.display())))
    }

    /// [`Workload::spawn_with`], then waits for READY; `None` when the workload printed SKIP.
    pub fn start_with(&self, dir: &TestDir, stdout: Stdio, stderr: Stdio, log: &Path) -> Option<Running> {
        let run = self.spawn_with(dir, stdout, stderr, log);
        self.ready(dir, run)
    }

    /// `run` once it printed READY; `None` (and the skip recorded) when it printed SKIP.
    fn ready(&self, dir: &TestDir, run: Running) -> Option<Running> {
        match run.wait_ready(READY_TIMEOUT) {
            Ok(None) => Some(run),
            Ok(Some(reason)) => {
                super::skip(&format!("{}: {reason}", self.name));
                None
            }
            Err(e) => dir.fail(&e),
        }
    }
}

/// A process the test is responsible for: its child, or one it adopted as child subreaper.
/// Killed (with its process group) and reaped on drop unless it was reaped before.
pub struct Running {
    pid: i32,
    name: String,
    log: Option<PathBuf>,
    wakes: bool,
    reaped: bool,
}

impl Running {
    /// Spawns `cmd` and takes responsibility for the child.
    pub fn spawn(cmd: &mut Command, name: &str, log: Option<PathBuf>, wakes: bool) -> std::io::Result<Running> {
        let child = cmd.spawn()?;
        Ok(Running::adopt(child.id() as i32, name, log, wakes))
    }

    /// Takes responsibility for `pid` (a restored workload that became our child).
    pub fn adopt(pid: i32, name: &str, log: Option<PathBuf>, wakes: bool) -> Running {
        Running { pid, name: name.to_string(), log, wakes, reaped: false }
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The workload name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log path, if output goes to a file.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The workload's output so far.
    pub fn log_text(&self) -> String {
        self.log.as_ref().map(|p| std::fs::read_to_string(p).unwrap_or_default()).unwrap_or_default()
    }

    /// Waits for `READY` (Ok(None)) or `SKIP: reason` (Ok(Some(reason))) in the log.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Option<String>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            for line in text.lines() {
                if line == "READY" {
                    return Ok(None);
                }
                if let Some(reason) = line.strip_prefix("SKIP: ") {
                    return Ok(Some(reason.to_string()));
                }
            }
            if text.lines().any(|l| l.starts_with("FAIL")) || !self.exists() {
                return Err(format!("{} (pid {}) failed before READY:\n{}", self.name, self.pid, tail(&text, 20)));
            }
            if Instant::now() > deadline {
                return Err(format!("{} (pid {}) not READY after {timeout:?}", self.name, self.pid));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `/proc/PID` exists and is not a zombie.
    pub fn exists(&self) -> bool {
        proc_state(self.pid).is_some_and(|(state, _)| state != 'Z')
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: i32) -> std::io::Result<()> {
        raw::kill(self.pid, sig)
    }

    /// Reaps the process if it ended.
    pub fn try_exit(&mut self) -> Result<Option<Exit>, String> {
        if self.reaped {
            return Err(format!("{} (pid {}) was already reaped", self.name, self.pid));
        }
        let r = raw::try_waitpid(self.pid).map_err(|e| format!("waitpid {} (pid {}): {e}", self.name, self.pid))?;
        self.reaped = r.is_some();
        Ok(r)
    }

    /// Waits up to `timeout` for the process to end and reaps it; kills it on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Exit, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.try_exit()? {
                return Ok(exit);
            }
            if Instant::now() > deadline {
                let state = proc_state(self.pid);
                self.kill_and_reap();
                return Err(format!(
                    "{} (pid {}) did not exit within {timeout:?} (state, tracer: {state:?}); killed it",
                    self.name, self.pid
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wakes the workload (SIGUSR1 unless it finishes by itself), waits for it to exit and checks
    /// exit code 0 and a last line `PASS`.
    pub fn finish(&mut self, timeout: Duration) -> Result<(), String> {
        if self.wakes {
            self.signal(libc::SIGUSR1).map_err(|e| format!("SIGUSR1 to {} (pid {}): {e}", self.name, self.pid))?;
        }
        let exit = self.wait_exit(timeout)?;
        self.check_verdict(exit)
    }

    /// Checks that `exit` is code 0 and the log's last line is `PASS`.
    pub fn check_verdict(&self, exit: Exit) -> Result<(), String> {
        let text = self.log_text();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        if exit == Exit::Code(0) && last == "PASS" {
            return Ok(());
        }
        Err(format!(
            "{} (pid {}) ended with {exit:?}, last line {last:?}; output:\n{}",
            self.name,
            self.pid,
            tail(&text, 30)
        ))
    }

    /// Kills the process (and its process group) and reaps it (best effort, bounded).
    pub fn kill_and_reap(&mut self) {
        if self.reaped {
            return;
        }
        let _ = raw::kill(-self.pid, libc::SIGKILL);
        let _ = raw::kill(self.pid, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match raw::try_waitpid(self.pid) {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        self.reaped = true;
    }

    /// Marks the process as reaped by someone else (e.g. `stasis restore` without `-d`).
    pub fn forget(&mut self) {
        self.reaped = true;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// The state letter and TracerPid of `pid` from `/proc/PID/status`, `None` if it does not exist.
pub fn proc_state(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
    let state = field("State:")?.chars().next()?;
    let tracer = field("TracerPid:")?.parse().ok()?;
    Some((state, tracer))
}

/// The pids of `root` and every process below it (zombies included), root first, the rest sorted.
pub fn tree_pids(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        let mut kids: Vec<i32> = parents.iter().filter(|&&(_, pp)| pp == parent).map(|&(p, _)| p).collect();
        kids.sort_unstable();
        tree.extend(kids);
        i += 1;
    }
    tree[1..].sort_unstable();
    tree
}
