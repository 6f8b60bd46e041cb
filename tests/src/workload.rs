//! The protocol every workload program follows, and helpers they share.
//!
//! A workload calls [`start`] first (it installs the SIGUSR1 handler and blocks SIGUSR1 so that no
//! wake-up can be lost), sets up its state, calls [`Session::ready`] (prints `READY`), then either
//! [`Session::wait_for_wake`] (sigsuspend until SIGUSR1) or blocks in the call it tests, verifies
//! its state into the session's [`Checker`], and ends with [`Session::finish`], which prints
//! `PASS` or `FAIL: <what differed>` as the last line and exits 0 or 1. A workload that cannot run
//! on this machine prints `SKIP: <reason>` instead of `READY` and exits 0.
//!
//! The session also checks what every workload must keep: its pid and tid (raw system calls, so no
//! C library cache hides a change) and the blocked signal mask around the wait.

use crate::raw;
use std::fmt::Debug;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// The signal the harness sends to wake a workload.
pub const WAKE: i32 = libc::SIGUSR1;

/// Collects verification failures and informational notes.
#[derive(Default)]
pub struct Checker {
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Checker {
    /// Records a failure described by `what()` unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }

    /// Records a failure if `before != after`.
    pub fn same<T: PartialEq + Debug + ?Sized>(&mut self, what: &str, before: &T, after: &T) {
        if before != after {
            self.failures.push(format!("{what}: before {before:?}, after {after:?}"));
        }
    }

    /// Unwraps `r`, recording a failure (and returning `None`) on error.
    pub fn ok<T>(&mut self, what: &str, r: io::Result<T>) -> Option<T> {
        r.map_err(|e| self.failures.push(format!("{what}: {e}"))).ok()
    }

    /// Records a note printed as an `INFO` line before the verdict.
    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    /// Whether nothing failed so far.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A running workload's protocol state.
pub struct Session {
    pid: i32,
    tid: i32,
    /// Verification results.
    pub checker: Checker,
}

/// Starts the protocol: SIGUSR1 gets the recording handler and is blocked.
pub fn start() -> Session {
    raw::set_recording_handler(WAKE, 0, raw::SigSet::empty()).or_fail("install SIGUSR1 handler");
    raw::sigprocmask(libc::SIG_BLOCK, raw::SigSet::of(&[WAKE])).or_fail("block SIGUSR1");
    Session { pid: raw::raw_getpid(), tid: raw::raw_gettid(), checker: Checker::default() }
}

impl Session {
    /// The pid recorded at start.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The tid recorded at start.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Tells the harness the state is set up.
    pub fn ready(&self) {
        say("READY");
    }

    /// Whether SIGUSR1 arrived.
    pub fn woke(&self) -> bool {
        raw::handler_record(WAKE).count > 0
    }

    /// Waits in `sigsuspend` (the current mask minus SIGUSR1) until SIGUSR1 arrived, then checks
    /// that the blocked mask is the one from before the wait.
    pub fn wait_for_wake(&mut self) {
        let mask = raw::blocked_mask();
        let mut returns = 0;
        while !self.woke() {
            raw::sigsuspend(mask.without(WAKE));
            returns += 1;
        }
        self.checker.same("blocked mask after sigsuspend", &mask, &raw::blocked_mask());
        if returns != 1 {
            self.checker.note(format!("sigsuspend returned {returns} times"));
        }
    }

    /// Checks pid and tid, prints the notes and the verdict, and exits 0 (PASS) or 1 (FAIL).
    pub fn finish(self) -> ! {
        self.finish_with(0)
    }

    /// Like [`Session::finish`] but exits with `pass_code` on PASS.
    pub fn finish_with(mut self, pass_code: i32) -> ! {
        self.checker.same("getpid()", &self.pid, &raw::raw_getpid());
        self.checker.same("gettid()", &self.tid, &raw::raw_gettid());
        for note in &self.checker.notes {
            say(&format!("INFO {note}"));
        }
        if self.checker.passed() {
            say("PASS");
            std::process::exit(pass_code);
        }
        say(&format!("FAIL: {}", self.checker.failures.join("; ")));
        std::process::exit(1);
    }
}

/// Prints one protocol line on stdout and flushes it.
pub fn say(line: &str) {
    let mut out = io::stdout().lock();
    // Nothing useful can be done if stdout is gone; the harness then sees no verdict.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Moves the workload into a network namespace of its own (`unshare(CLONE_NEWNET)`); skips where
/// that is not allowed, fails the setup on another error.
pub fn unshare_net() {
    match raw::unshare(libc::CLONE_NEWNET) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => skip("unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN"),
        Err(e) => Err::<(), _>(e).or_fail("unshare(CLONE_NEWNET)"),
    }
}

/// Prints `SKIP: <reason>` and exits 0.
pub fn skip(reason: &str) -> ! {
    say(&format!("SKIP: {reason}"));
    std::process::exit(0);
}

/// Ends a workload given a mode it does not know: `FAIL: setup: unknown mode ...`, exit 2 (never a
/// silent default that could pass).
pub fn unknown_mode(mode: &str, known: &str) -> ! {
    say(&format!("FAIL: setup: unknown mode {mode:?} (known: {known})"));
    std::process::exit(2)
}

/// Ends a workload whose setup failed: `FAIL: setup: ...`, exit 2.
pub trait OrFail<T> {
    /// The value, or exit with a setup failure naming `what`.
    fn or_fail(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> T {
        self.unwrap_or_else(|e| {
            say(&format!("FAIL: setup: {what}: {e}"));
            std::process::exit(2)
        })
    }
}

/// The directory the harness gave the workload for its files (`STASIS_WORKDIR`, else the cwd).
pub fn work_dir() -> PathBuf {
    std::env::var_os("STASIS_WORKDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().or_fail("current dir"))
}

/// The `n`-th positional argument parsed as `T`, or `default`.
/// Argument `n` parsed, or `default` when it is absent; one that does not parse ends the workload
/// with a setup failure (a typo must not run the default case and pass).
pub fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    match std::env::args().nth(n) {
        None => default,
        Some(a) => a.parse().unwrap_or_else(|_| unknown_mode(&a, &format!("argument {n} of another form"))),
    }
}

/// Argument `n` when it is one of `known`, `None` when it is absent; any other value ends the
/// workload with a setup failure.
pub fn mode(n: usize, known: &[&'static str]) -> Option<&'static str> {
    let a = std::env::args().nth(n)?;
    match known.iter().find(|k| **k == a) {
        Some(k) => Some(k),
        None => unknown_mode(&a, &known.join("|")),
    }
}

/// The 64-bit word at index `i` of the pattern `seed` (cheap enough for hundreds of MiB).
pub fn pattern_word(seed: u64, i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23) ^ seed
}

/// Fills `buf` with the pattern `seed`, byte `j` taken from word `j / 8`.
pub fn pattern_fill(buf: &mut [u8], seed: u64) {
    for (i, chunk) in buf.chunks_mut(8).enumerate() {
        let w = pattern_word(seed, i).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// The first offset where `buf` differs from the pattern `seed`.
pub fn pattern_mismatch(buf: &[u8], seed: u64) -> Option<usize> {
    buf.chunks(8).enumerate().find_map(|(i, chunk)| {
        let w = pattern_word(seed, i).to_le_bytes();
        (chunk != &w[..chunk.len()]).then(|| i * 8 + chunk.iter().zip(w).take_while(|(a, b)| *a == b).count())
    })
}

/// FNV-1a of `bytes`.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// Reads `len` bytes of this process's memory at `addr` through `/proc/self/mem` (works for
/// PROT_NONE and read-only pages too).
pub fn read_own_memory(addr: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut f = std::fs::File::open("/proc/self/mem")?;
    f.seek(SeekFrom::Start(addr))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// One line of `/proc/self/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// Permissions, e.g. `r-xp`.
    pub perms: String,
    /// File offset.
    pub offset: u64,
    /// Path or pseudo name (`[heap]`), empty for anonymous memory.
    pub path: String,
}

/// Parses `/proc/self/maps`.
pub fn own_maps() -> io::Result<Vec<MapEntry>> {
    let text = std::fs::read_to_string("/proc/self/maps")?;
    Ok(text.lines().filter_map(parse_map_line).collect())
}

fn parse_map_line(line: &str) -> Option<MapEntry> {
    let mut it = line.split_whitespace();
    let (range, perms, offset) = (it.next()?, it.next()?, it.next()?);
    let (_dev, _inode) = (it.next()?, it.next()?);
    let path = it.collect::<Vec<_>>().join(" ");
    let (s, e) = range.split_once('-')?;
    Some(MapEntry {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        perms: perms.to_string(),
        offset: u64::from_str_radix(offset, 16).ok()?,
        path,
    })
}

/// The maps entry containing `addr`.
pub fn own_map_at(addr: u64) -> Option<MapEntry> {
    own_maps().ok()?.into_iter().find(|m| m.start <= addr && addr < m.end)
}

/// The tids of this process's threads (`/proc/self/task`), sorted.
pub fn own_threads() -> io::Result<Vec<i32>> {
    let mut tids: Vec<i32> =
        std::fs::read_dir("/proc/self/task")?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    tids.sort_unstable();
    Ok(tids)
}

/// The name of thread `tid` of this process (`/proc/self/task/TID/comm`).
pub fn thread_comm(tid: i32) -> io::Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))?.trim_end().to_string())
}

/// The state letter of thread `tid` of this process (`/proc/self/task/TID/stat`, field 3).
pub fn thread_state(tid: i32) -> io::Result<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after.trim_start().chars().next().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

/// The value of the `key:` line of `/proc/self/status`, trimmed.
pub fn own_status(key: &str) -> io::Result<String> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    let prefix = format!("{key}:");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no {key} in /proc/self/status")))
}

/// Waits up to `timeout` until every thread of `tids` sleeps (state `S`), so that a workload
/// prints READY only once its threads are in their waits. Returns the threads still awake.
pub fn wait_threads_sleeping(tids: &[i32], timeout: std::time::Duration) -> Vec<(i32, char)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let awake: Vec<(i32, char)> =
            tids.iter().map(|&t| (t, thread_state(t).unwrap_or('?'))).filter(|&(_, s)| s != 'S').collect();
        if awake.is_empty() || std::time::Instant::now() > deadline {
            return awake;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

impl Checker {
    /// Moves the failures and notes of `other` (another thread's checker) into this one, each
    /// prefixed with `who`.
    pub fn absorb(&mut self, who: &str, other: Checker) {
        self.failures.extend(other.failures.into_iter().map(|f| format!("{who}: {f}")));
        self.notes.extend(other.notes.into_iter().map(|n| format!("{who}: {n}")));
    }
}

// Process trees: a workload made of several processes forks them with `fork_child`; each child
// reports to its parent through a pipe (`TreeParent::report`), and only the root prints the verdict.

/// How long a process of a tree workload waits for a line from a child, or for its exit.
pub const TREE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The line that ends a child's report.
const REPORT_END: &str = "END";

impl Session {
    /// Checks pid and tid like [`Session::finish`] and hands over the checker, for a process of a
    /// tree workload, which reports to its parent instead of printing a verdict.
    pub fn into_checker(mut self) -> Checker {
        self.checker.same("getpid()", &self.pid, &raw::raw_getpid());
        self.checker.same("gettid()", &self.tid, &raw::raw_gettid());
        self.checker
    }
}

impl Checker {
    /// The failures (`F text`) and notes (`N text`) as lines, for a report through a pipe.
    fn report_lines(&self) -> Vec<String> {
        let flat = |s: &String| s.replace('\n', " ");
        let failures = self.failures.iter().map(|f| format!("F {}", flat(f)));
        failures.chain(self.notes.iter().map(|n| format!("N {}", flat(n)))).collect()
    }

    /// Takes one line of a report made by `report_lines`, prefixed with `who`.
    fn absorb_report_line(&mut self, who: &str, line: &str) {
        match line.split_once(' ') {
            Some(("F", text)) => self.failures.push(format!("{who}: {text}")),
            Some(("N", text)) => self.notes.push(format!("{who}: {text}")),
            _ => self.failures.push(format!("{who}: malformed report line {line:?}")),
        }
    }
}

/// A child process of a tree workload, seen from its parent: its pid and the pipes between them.
pub struct TreeChild {
    /// Its name in messages.
    pub name: String,
    /// Its pid.
    pub pid: i32,
    /// The read end of the pipe from the child.
    pub up: std::io::PipeReader,
    /// The write end of the pipe to the child.
    pub down: std::io::PipeWriter,
}

/// A process of a tree workload, seen from itself: its ends of the pipes to its parent.
pub struct TreeParent {
    /// The write end of the pipe to the parent.
    pub up: std::io::PipeWriter,
    /// The read end of the pipe from the parent.
    pub down: std::io::PipeReader,
}

/// Forks a child named `name` that runs `body` with its ends of two new pipes and exits with the
/// code `body` returns (3 if it panics); the parent gets the other ends. Needs a
/// single-threaded process.
pub fn fork_child(name: &str, body: impl FnOnce(TreeParent) -> i32) -> TreeChild {
    let (up_r, up_w) = std::io::pipe().or_fail("pipe to the parent");
    let (down_r, down_w) = std::io::pipe().or_fail("pipe to the child");
    match raw::fork().or_fail(&format!("fork {name}")) {
        raw::Forked::Child => {
            drop((up_r, down_w));
            let link = TreeParent { up: up_w, down: down_r };
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(link))).unwrap_or(3);
            std::process::exit(code)
        }
        raw::Forked::Parent(pid) => TreeChild { name: name.to_string(), pid, up: up_r, down: down_w },
    }
}

/// Reads one line (without its newline) from `pipe`, a byte at a time so that nothing after it
/// is consumed, waiting at most `timeout` in all.
pub fn read_line_within(pipe: &std::io::PipeReader, timeout: std::time::Duration) -> io::Result<String> {
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + timeout;
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match raw::poll_readable(pipe.as_fd(), left.as_millis().min(i32::MAX as u128) as i32) {
            Ok(true) => {}
            Ok(false) => return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no line within {timeout:?}"))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut byte = [0u8; 1];
        match (&*pipe).read(&mut byte) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "pipe closed")),
            Ok(_) if byte[0] == b'\n' => return Ok(String::from_utf8_lossy(&line).into_owned()),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl TreeParent {
    /// Writes `text` (one or more `\n`-terminated lines) to the parent in one `write`.
    pub fn send(&self, text: &str) -> io::Result<()> {
        (&self.up).write_all(text.as_bytes())
    }

    /// Reads one line from the parent, waiting at most [`TREE_TIMEOUT`].
    pub fn line(&self) -> io::Result<String> {
        read_line_within(&self.down, TREE_TIMEOUT)
    }

    /// Sends the report of `checker` and returns the exit code to end with (0 if it passed).
    pub fn report(self, checker: Checker) -> i32 {
        let mut text: String = checker.report_lines().iter().map(|l| format!("{l}\n")).collect();
        text.push_str(REPORT_END);
        text.push('\n');
        // The parent gone means it failed already; nothing is left to tell.
        let _ = self.send(&text);
        if checker.passed() {
            0
        } else {
            1
        }
    }
}

impl TreeChild {
    /// Writes `text` (`\n`-terminated lines) to the child in one `write`.
    pub fn send(&self, text: &str) -> io::Result<()> {
        (&self.down).write_all(text.as_bytes())
    }

    /// Reads one line from the child, waiting at most [`TREE_TIMEOUT`].
    pub fn line(&self) -> io::Result<String> {
        read_line_within(&self.up, TREE_TIMEOUT)
    }

    /// Checks that the next line from the child is `want`.
    pub fn expect_line(&self, c: &mut Checker, what: &str, want: &str) {
        let got = self.line();
        c.check(got.as_deref().ok() == Some(want), || format!("{}: {what}: want {want:?}, got {got:?}", self.name));
    }

    /// Reads the child's report up to its end line, absorbs it, and reaps the child, which must
    /// have exited 0 if it passed and 1 if it failed.
    pub fn collect(self, c: &mut Checker) {
        let who = format!("{} (pid {})", self.name, self.pid);
        let mut failed = false;
        loop {
            match self.line() {
                Ok(l) if l == REPORT_END => break,
                Ok(l) => {
                    failed |= l.starts_with("F ");
                    c.absorb_report_line(&who, &l);
                }
                Err(e) => {
                    c.check(false, || format!("{who}: report: {e}"));
                    failed = true;
                    break;
                }
            }
        }
        let want = raw::Exit::Code(if failed { 1 } else { 0 });
        match wait_exit_within(self.pid, TREE_TIMEOUT) {
            Ok(Some(exit)) => c.same(&format!("{who}: exit"), &want, &exit),
            Ok(None) => {
                let _ = raw::kill(self.pid, libc::SIGKILL);
                c.check(false, || format!("{who}: did not exit within {TREE_TIMEOUT:?}"));
            }
            Err(e) => c.check(false, || format!("{who}: waitpid: {e}")),
        }
    }
}

/// Waits up to `timeout` for the child `pid` to end and reaps it; `None` if it did not end.
pub fn wait_exit_within(pid: i32, timeout: std::time::Duration) -> io::Result<Option<raw::Exit>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(exit) = raw::try_waitpid(pid)? {
            return Ok(Some(exit));
        }
        if std::time::Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The state letter of process `pid` (`/proc/PID/stat`, field 3).
pub fn process_state(pid: i32) -> io::Result<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after.trim_start().chars().next().ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

/// Waits up to `timeout` until every process of `pids` is in one of `states` (e.g. `S`), so
/// that a tree workload prints READY only once all its processes are in their waits. Returns
/// the processes in another state.
pub fn wait_processes_in(pids: &[i32], states: &[char], timeout: std::time::Duration) -> Vec<(i32, char)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let other: Vec<(i32, char)> =
            pids.iter().map(|&p| (p, process_state(p).unwrap_or('?'))).filter(|(_, s)| !states.contains(s)).collect();
        if other.is_empty() || std::time::Instant::now() > deadline {
            return other;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The process ids a process of a tree workload checks: its pid, parent, group and session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcIds {
    /// `getpid()` (raw system call).
    pub pid: i32,
    /// `getppid()` (raw system call).
    pub ppid: i32,
    /// `getpgid(0)`.
    pub pgid: i32,
    /// `getsid(0)`.
    pub sid: i32,
}

impl ProcIds {
    /// This process's ids now.
    pub fn own() -> io::Result<ProcIds> {
        Ok(ProcIds { pid: raw::raw_getpid(), ppid: raw::raw_getppid(), pgid: raw::getpgid(0)?, sid: raw::getsid(0)? })
    }
}

/// The value of `key` in `/proc/self/fdinfo/FD` (the text after `key:`, trimmed).
pub fn fdinfo_field(fd: impl std::os::fd::AsRawFd, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    text.lines().find_map(|l| l.split_once(':').filter(|(k, _)| *k == key).map(|(_, v)| v.trim().to_string()))
}
