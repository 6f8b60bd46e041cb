//! Pseudo-terminals for the shell-job test: the workload's stdio is a pty slave before the dump,
//! and `stasis restore --shell-job` runs with its stdio on a second pty, which the restored
//! workload inherits. A background thread collects everything written to each master.

use super::flow::Case;
use super::process::{Running, EXIT_TIMEOUT, READY_TIMEOUT};
use super::stasis::{wait_child, Stasis, STASIS_TIMEOUT};
use crate::raw::{self, Exit};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A pty pair whose master output is collected in the background.
pub struct Pty {
    slave: Option<OwnedFd>,
    text: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Pty {
    /// Opens a pty pair and starts collecting the master's output.
    pub fn open() -> std::io::Result<Pty> {
        let (master, slave) = raw::openpty()?;
        let text = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (text.clone(), stop.clone());
        let reader = std::thread::spawn(move || collect(master, &t, &s));
        Ok(Pty { slave: Some(slave), text, stop, reader: Some(reader) })
    }

    /// Sets the slave as stdin, stdout and stderr of `cmd`.
    pub fn attach(&self, cmd: &mut Command) -> std::io::Result<()> {
        let slave = self.slave.as_ref().expect("slave still open");
        let dup = || slave.try_clone().map(Stdio::from);
        cmd.stdin(dup()?).stdout(dup()?).stderr(dup()?);
        Ok(())
    }

    /// Closes our copy of the slave (after the child got its own).
    pub fn close_slave(&mut self) {
        self.slave = None;
    }

    /// Everything read from the master so far, with `\r` removed.
    pub fn text(&self) -> String {
        let bytes = self.text.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    /// Waits until a line equal to `line` was read.
    pub fn wait_for_line(&self, line: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.text().lines().any(|l| l == line) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("no line {line:?} on the pty within {timeout:?}; got {:?}", self.text()))
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn collect(master: OwnedFd, text: &Mutex<Vec<u8>>, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut file = File::from(master);
    while !stop.load(Ordering::SeqCst) {
        if !raw::poll_readable(file.as_fd(), 50).unwrap_or(false) {
            continue;
        }
        match file.read(&mut buf) {
            Ok(n) if n > 0 => text.lock().map(|mut t| t.extend_from_slice(&buf[..n])).unwrap_or(()),
            // EIO: no slave open (yet, or any more); poll keeps reporting the hangup.
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The last non-empty line of `text`.
fn last_line(text: &str) -> &str {
    text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// Runs the `tty` workload as a shell job on a pty: standalone (READY, wake, PASS on the same pty)
/// or, with `checkpoint`, dumped with `--shell-job` and restored with `--shell-job` by a
/// `stasis restore -d` whose stdio is a second pty, on which the verdict must then appear.
pub fn shell_job(case: &Case, checkpoint: bool) {
    let fail = |m: String| -> ! { case.fail(&m) };
    let mut pty1 = Pty::open().unwrap_or_else(|e| fail(format!("openpty: {e}")));
    let mut cmd = case.workload.command(&case.dir);
    pty1.attach(&mut cmd).unwrap_or_else(|e| fail(format!("pty stdio: {e}")));
    let mut run =
        Running::spawn(&mut cmd, case.workload.name(), None, true).unwrap_or_else(|e| fail(format!("spawn: {e}")));
    pty1.close_slave();
    pty1.wait_for_line("READY", READY_TIMEOUT).unwrap_or_else(|e| fail(e));
    if !checkpoint {
        run.signal(libc::SIGUSR1).unwrap_or_else(|e| fail(format!("SIGUSR1: {e}")));
        let exit = run.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|e| fail(e));
        return check_tty_verdict(case, exit, &pty1.text());
    }
    let before = case.settled_snapshot(run.pid());
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--shell-job"]);
    case.reap_dumped(&mut run);
    let mut pty2 = Pty::open().unwrap_or_else(|e| fail(format!("openpty: {e}")));
    let restored = restore_on_pty(case, &images, &pty2, run.pid());
    pty2.close_slave();
    let mut restored = Running::adopt(restored, case.workload.name(), None, true);
    case.compare(&before, restored.pid());
    restored.signal(libc::SIGUSR1).unwrap_or_else(|e| fail(format!("SIGUSR1: {e}")));
    let exit = restored.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|e| fail(e));
    // Give the collector a moment to read the last bytes.
    let _ = pty2.wait_for_line("PASS", Duration::from_secs(2));
    check_tty_verdict(case, exit, &pty2.text());
}

fn restore_on_pty(case: &Case, images: &std::path::Path, pty: &Pty, pid: i32) -> i32 {
    let log = case.dir.unique("restore", "log");
    case.dir.watch_log(&log);
    let pidfile = log.with_extension("pid");
    let mut cmd = case.stasis().command();
    cmd.args(Stasis::restore_args(images, &log, &pidfile, true, &["--shell-job"]));
    pty.attach(&mut cmd).unwrap_or_else(|e| case.fail(&format!("pty stdio: {e}")));
    let mut child = cmd.spawn().unwrap_or_else(|e| case.fail(&format!("spawn stasis restore: {e}")));
    let (exit, timed_out) = wait_child(&mut child, STASIS_TIMEOUT);
    if exit != Exit::Code(0) {
        case.fail(&format!(
            "restore --shell-job ended with {exit:?} (timed out: {timed_out}); its terminal showed {:?}",
            pty.text()
        ));
    }
    let text = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let restored: i32 = text.trim().parse().unwrap_or_else(|_| case.fail(&format!("pidfile holds {text:?}")));
    if restored != pid {
        case.fail(&format!("restored pid {restored}, expected {pid}"));
    }
    restored
}

fn check_tty_verdict(case: &Case, exit: Exit, text: &str) {
    if exit != Exit::Code(0) || last_line(text) != "PASS" {
        case.fail(&format!("tty workload ended with {exit:?}; terminal output:\n{text}"));
    }
}
