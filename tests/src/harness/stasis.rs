//! Running the `stasis` binary: locating it next to the test executable, `dump` and `restore`
//! with logs in the test directory, each bounded by a timeout.

use super::dir::{tail, TestDir};
use crate::raw::{self, Exit};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one stasis command may run.
pub const STASIS_TIMEOUT: Duration = Duration::from_secs(180);

/// The stasis binary.
#[derive(Clone, Debug)]
pub struct Stasis {
    bin: PathBuf,
}

/// The outcome of one stasis command.
#[derive(Debug)]
pub struct CmdResult {
    /// The command line, for messages.
    pub cmdline: String,
    /// How it ended (`Signal(9)` after a timeout).
    pub exit: Exit,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
    /// The `-o` log file.
    pub log: PathBuf,
    /// Whether the command was killed for taking longer than the timeout.
    pub timed_out: bool,
}

impl CmdResult {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// A multi-line description: command, exit, stderr, log tail.
    pub fn describe(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<no log: {e}>"));
        format!(
            "`{}` ended with {:?}{}\n--- stderr:\n{}\n--- stdout:\n{}\n--- {} (last 40 lines):\n{}",
            self.cmdline,
            self.exit,
            if self.timed_out { " (timed out, killed)" } else { "" },
            tail(&self.stderr, 30),
            tail(&self.stdout, 10),
            self.log.display(),
            tail(&log, 40)
        )
    }

    /// The contents of the `-o` log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Stasis {
    /// `target/<profile>/stasis`, derived from the test executable in `target/<profile>/deps/`.
    ///
    /// # Panics
    /// If the binary is missing.
    pub fn locate() -> Stasis {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| if deps.ends_with("deps") { deps.parent() } else { Some(deps) })
            .expect("test executable has a parent");
        let bin = profile_dir.join("stasis");
        if !bin.is_file() {
            panic!("{} is missing: build it first: cargo build --workspace", bin.display());
        }
        Stasis { bin }
    }

    /// The binary path.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A command for `stasis <args>` (no stdio set; only stdio is inherited).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        raw::stdio_only_on_spawn(&mut cmd);
        cmd
    }

    /// `stasis dump -t PID -D images -o <dir>/dump.N.log -vv <extra>` with `env` added.
    pub fn dump(&self, dir: &TestDir, pid: i32, images: &Path, extra: &[&str], env: &[(&str, &str)]) -> CmdResult {
        std::fs::create_dir_all(images).ok();
        let log = dir.unique("dump", "log");
        let mut args: Vec<OsString> = vec!["dump".into(), "-t".into(), pid.to_string().into()];
        args.extend(["-D".into(), images.into(), "-o".into(), log.clone().into(), "-vv".into()]);
        args.extend(extra.iter().map(OsString::from));
        let mut cmd = self.command();
        cmd.args(&args).envs(env.iter().copied());
        run(dir, &mut cmd, "dump", log)
    }

    /// The arguments of `stasis restore -D images -o log -vv [-d] --pidfile pidfile <extra>`.
    pub fn restore_args(images: &Path, log: &Path, pidfile: &Path, detach: bool, extra: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["restore".into(), "-D".into(), images.into()];
        args.extend(["-o".into(), log.into(), "-vv".into()]);
        if detach {
            args.push("-d".into());
        }
        args.extend(["--pidfile".into(), pidfile.into()]);
        args.extend(extra.iter().map(OsString::from));
        args
    }

    /// `stasis restore -D images -d --pidfile <dir>/restore.N.pid -o <dir>/restore.N.log -vv`;
    /// returns the result and the pidfile path.
    pub fn restore_detached(
        &self,
        dir: &TestDir,
        images: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (CmdResult, PathBuf) {
        let log = dir.unique("restore", "log");
        let pidfile = log.with_extension("pid");
        let mut cmd = self.command();
        cmd.args(Self::restore_args(images, &log, &pidfile, true, extra)).envs(env.iter().copied());
        (run(dir, &mut cmd, "restore", log), pidfile)
    }

    /// [`Stasis::restore_detached`] with our `fd` given to stasis as its fd `target` (for
    /// `--inherit-fd fd[target]:...`).
    pub fn restore_detached_passing(
        &self,
        dir: &TestDir,
        images: &Path,
        extra: &[&str],
        fd: std::os::fd::BorrowedFd<'_>,
        target: i32,
    ) -> (CmdResult, PathBuf) {
        let log = dir.unique("restore", "log");
        let pidfile = log.with_extension("pid");
        let mut cmd = self.command();
        raw::pass_fd_on_spawn(&mut cmd, fd, target);
        cmd.args(Self::restore_args(images, &log, &pidfile, true, extra));
        (run(dir, &mut cmd, "restore", log), pidfile)
    }
}

/// Runs `cmd` with stdin /dev/null and stdout/stderr captured to files, within STASIS_TIMEOUT.
fn run(dir: &TestDir, cmd: &mut Command, what: &str, log: PathBuf) -> CmdResult {
    dir.watch_log(&log);
    let out_path = log.with_extension("stdout");
    let err_path = log.with_extension("stderr");
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"));
    let cmdline = format!("{cmd:?}").replace('"', "");
    let mut child = cmd.spawn().unwrap_or_else(|e| dir.fail(&format!("spawn stasis {what}: {e}")));
    let (exit, timed_out) = wait_child(&mut child, STASIS_TIMEOUT);
    CmdResult {
        cmdline,
        exit,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        log,
        timed_out,
    }
}

/// Waits for `child` up to `timeout`, killing it on timeout; returns the exit and whether it
/// timed out.
pub fn wait_child(child: &mut std::process::Child, timeout: Duration) -> (Exit, bool) {
    let deadline = Instant::now() + timeout;
    let pid = child.id() as i32;
    loop {
        match raw::try_waitpid(pid) {
            Ok(Some(exit)) => return (exit, false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(exit)) = raw::try_waitpid(pid) {
                        return (exit, true);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                return (Exit::Signal(libc::SIGKILL), true);
            }
            Err(e) => panic!("waitpid stasis {pid}: {e}"),
        }
    }
}
