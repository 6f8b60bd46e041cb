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

/// Prints `SKIP: <reason>` and exits 0.
pub fn skip(reason: &str) -> ! {
    say(&format!("SKIP: {reason}"));
    std::process::exit(0);
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
pub fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
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
