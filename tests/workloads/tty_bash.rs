//! An interactive bash on a pty, driven by this process as its terminal: before the dump bash
//! sets a variable and starts a background job (`sleep 1000 &`); after the restore it still has the
//! variable, `jobs` lists the job, `fg` brings it to the foreground, ^Z typed on the terminal stops
//! it, `bg` continues it, and bash ends cleanly. Arguments: how many free pty indices to leave below
//! its own (see `raw::high_pty`), 0 by default; `readline` to let bash edit its input with readline
//! (which turns off canonical mode and echo while it reads), `--noediting` otherwise. Skips if
//! there is no /bin/bash.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const PROMPT: &str = "bash$ ";

/// The terminal side: the master, and what bash wrote since the last [`Term::send`].
struct Term {
    master: std::fs::File,
    seen: String,
}

impl Term {
    fn send(&mut self, text: &[u8]) -> std::io::Result<()> {
        self.seen.clear();
        self.master.write_all(text)
    }

    /// Reads until `want` has come; the text so far either way.
    fn until(&mut self, want: &str) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        while !self.seen.contains(want) {
            let left = deadline.saturating_duration_since(Instant::now()).as_millis() as i32;
            if left == 0 || !raw::poll_readable(self.master.as_fd(), left).unwrap_or(false) {
                return Err(format!("want {want:?}, got {:?}", self.seen));
            }
            let mut buf = [0u8; 1024];
            match self.master.read(&mut buf) {
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("want {want:?}, got {:?} then {e}", self.seen)),
            }
        }
        Ok(self.seen.clone())
    }

    /// Types `line`, then expects `want` and the prompt after it.
    fn run(&mut self, ck: &mut Checker, line: &str, want: &str) {
        if let Err(e) = self.send(line.as_bytes()) {
            ck.check(false, || format!("typing {line:?}: {e}"));
            return;
        }
        let got = self.until(want).and_then(|_| self.until(PROMPT));
        ck.check(got.is_ok(), || format!("after {line:?}: {}", got.unwrap_err()));
    }
}

fn main() {
    let mut s = workload::start();
    if !std::path::Path::new("/bin/bash").exists() {
        println!("SKIP: no /bin/bash");
        return;
    }
    let below = workload::arg(1, 0);
    let (m, name): (OwnedFd, String) = raw::high_pty(below).or_fail("open a pty");
    let index = raw::pty_index(m.as_fd()).or_fail("TIOCGPTN");
    let editing = workload::mode(2, &["readline"]).is_some();
    let mut cmd = Command::new("/bin/bash");
    // Long options first: bash takes them only before the one-letter ones.
    cmd.args(["--norc", "--noprofile"]).env("PS1", PROMPT).env("TERM", "dumb");
    if !editing {
        cmd.arg("--noediting");
    }
    cmd.arg("-i");
    raw::session_on_terminal(&mut cmd, &name).or_fail("set up the terminal");
    let mut bash = cmd.spawn().or_fail("start bash");
    let mut term = Term { master: std::fs::File::from(m), seen: String::new() };
    term.until(PROMPT).or_fail("first prompt");
    let mut ck = Checker::default();
    term.run(&mut ck, "X=set-before-the-dump\n", "");
    term.run(&mut ck, "sleep 1000 &\n", "[1] ");
    if !ck.passed() {
        Err::<(), _>(format!("{:?}", term.seen)).or_fail("bash before the dump");
    }
    s.ready();
    s.wait_for_wake();

    let ck = &mut s.checker;
    ck.same("pty index", &index, &raw::pty_index(term.master.as_fd()).unwrap_or(-1));
    term.run(ck, "echo \"X is $X\"\n", "X is set-before-the-dump");
    term.run(ck, "jobs\n", "Running");
    ck.ok("type fg", term.send(b"fg\n"));
    ck.check(term.until("sleep 1000\r\n").is_ok(), || format!("fg: {:?}", term.seen));
    std::thread::sleep(Duration::from_millis(200));
    ck.ok("type ^Z", term.send(&[0x1a]));
    let stopped = term.until("Stopped").and_then(|_| term.until(PROMPT));
    ck.check(stopped.is_ok(), || format!("^Z: {}", stopped.unwrap_err()));
    term.run(ck, "bg\n", "sleep 1000 &");
    term.run(ck, "jobs\n", "Running");
    term.run(ck, "kill %1; wait %1; echo \"killed $?\"\n", "killed 143");
    ck.ok("type exit", term.send(b"exit 7\n"));
    let deadline = Instant::now() + WAIT;
    let mut end = None;
    while end.is_none() && Instant::now() < deadline {
        end = bash.try_wait().ok().flatten().map(|st| st.code());
        std::thread::sleep(Duration::from_millis(20));
    }
    if end.is_none() {
        let _ = bash.kill();
    }
    let _ = bash.wait();
    ck.same("bash's exit", &Some(Some(7)), &end);
    s.finish()
}
