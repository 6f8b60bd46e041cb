//! Parsers of the `/proc` files that dump reads: `maps`/`smaps`, `status`, `stat`, `fdinfo`, the fd,
//! task and namespace links, `auxv`, `personality`, `comm` and the `cwd`/`root`/`exe` links.
//!
//! Every parser takes a [`ProcRoot`], so unit tests point it at a directory of fixture files laid out
//! like `/proc` (`ROOT/PID/smaps`, ...). The parsers only read; none of them touches the process.
//! Errors name the file and, for text files, the line and the field that did not parse.

mod fdinfo;
pub mod fdinfo_fields;
mod maps;
mod stat;
mod status;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use fdinfo::{fdinfo, FdInfo};
pub use maps::{maps, smaps, smaps_at, MapEntry, VmFlags};
pub use stat::{stat, Stat};
pub use status::{status, Status};

/// Where the proc filesystem is mounted: `/proc` normally, a fixture directory in tests.
#[derive(Clone, Debug)]
pub struct ProcRoot(PathBuf);

impl ProcRoot {
    /// A proc tree rooted at `p` (a directory holding `PID/...` entries).
    pub fn new(p: impl Into<PathBuf>) -> Self {
        ProcRoot(p.into())
    }

    /// The system's `/proc`.
    pub fn system() -> Self {
        ProcRoot::new("/proc")
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `ROOT/PID/rel`; an empty `rel` gives `ROOT/PID`.
    pub fn pid_path(&self, pid: i32, rel: &str) -> PathBuf {
        let dir = self.0.join(pid.to_string());
        if rel.is_empty() {
            dir
        } else {
            dir.join(rel)
        }
    }
}

impl Default for ProcRoot {
    fn default() -> Self {
        ProcRoot::system()
    }
}

/// A `/proc` file could not be read or did not have the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// Reading a file or listing a directory failed.
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading a symbolic link failed.
    #[error("cannot read link {}", .path.display())]
    Readlink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A field did not parse; `line` counts from 1 (binary files and one-line files use 1).
    #[error("{}:{line}: bad {field} {value:?}", .path.display())]
    Parse { path: PathBuf, line: usize, field: &'static str, value: String },
    /// A field the kernel always writes was not there.
    #[error("{}: no {field} field", .path.display())]
    Missing { path: PathBuf, field: &'static str },
}

impl ProcError {
    /// True when the file or the process is gone (the task exited or never existed), as opposed to
    /// a file that exists but did not parse.
    pub fn is_not_found(&self) -> bool {
        match self {
            ProcError::Read { source, .. } | ProcError::Readlink { source, .. } => {
                source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH)
            }
            _ => false,
        }
    }

    fn parse(path: &Path, line: usize, field: &'static str, value: &str) -> Self {
        ProcError::Parse { path: path.to_path_buf(), line, field, value: value.to_string() }
    }
}

/// Reads a whole file as bytes.
fn read_bytes(path: &Path) -> Result<Vec<u8>, ProcError> {
    fs::read(path).map_err(|source| ProcError::Read { path: path.to_path_buf(), source })
}

/// Reads a whole file that the kernel writes as text; bytes that are not UTF-8 are a parse error of
/// `field` on the line where they occur (a file name in `maps`, a task name in `status`).
fn read_text(path: &Path, field: &'static str) -> Result<String, ProcError> {
    let bytes = read_bytes(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
        let start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let end = bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| at + i);
        let shown = String::from_utf8_lossy(&bytes[start..end]);
        ProcError::parse(path, line, field, &shown)
    })
}

fn read_link(path: &Path) -> Result<PathBuf, ProcError> {
    fs::read_link(path).map_err(|source| ProcError::Readlink { path: path.to_path_buf(), source })
}

/// The numeric entries of a directory (`fd/`, `task/`), sorted.
fn numeric_entries(dir: &Path) -> Result<Vec<i32>, ProcError> {
    let read_err = |source| ProcError::Read { path: dir.to_path_buf(), source };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let n = name.parse::<i32>().map_err(|_| ProcError::parse(dir, 1, "entry", &name))?;
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

/// The open fds of `pid` with their link targets (`/proc/PID/fd/N`), sorted by fd. Targets of
/// anonymous files read like `anon_inode:[eventfd]`, `pipe:[1234]`, `socket:[5678]`. An fd closed
/// between the listing and its readlink is left out (a frozen process closes none).
pub fn fds(root: &ProcRoot, pid: i32) -> Result<Vec<(i32, PathBuf)>, ProcError> {
    let dir = root.pid_path(pid, "fd");
    let mut out = Vec::new();
    for fd in numeric_entries(&dir)? {
        match read_link(&dir.join(fd.to_string())) {
            Ok(target) => out.push((fd, target)),
            // Closed since the listing: only a running process (or our own listing fd) does that.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The auxiliary vector of `pid` as native-endian words, cut after the `AT_NULL` pair (inclusive).
pub fn auxv(root: &ProcRoot, pid: i32) -> Result<Vec<u64>, ProcError> {
    let path = root.pid_path(pid, "auxv");
    let bytes = read_bytes(&path)?;
    if !bytes.len().is_multiple_of(16) {
        let len = bytes.len().to_string();
        return Err(ProcError::parse(&path, 1, "length", &len));
    }
    let mut words = Vec::with_capacity(bytes.len() / 8);
    for pair in bytes.chunks_exact(16) {
        let key = u64::from_ne_bytes(pair[..8].try_into().expect("8 bytes"));
        let val = u64::from_ne_bytes(pair[8..].try_into().expect("8 bytes"));
        words.extend([key, val]);
        if key == 0 {
            return Ok(words);
        }
    }
    Err(ProcError::Missing { path, field: "AT_NULL" })
}

/// The threads of `pid` (`/proc/PID/task`): `pid` itself first, then the others in ascending order.
pub fn threads(root: &ProcRoot, pid: i32) -> Result<Vec<i32>, ProcError> {
    let mut tids = numeric_entries(&root.pid_path(pid, "task"))?;
    if let Some(i) = tids.iter().position(|&t| t == pid) {
        tids.remove(i);
        tids.insert(0, pid);
    }
    Ok(tids)
}

/// The children of all threads of `pid` (union of `/proc/PID/task/*/children`), sorted, without
/// duplicates.
pub fn children(root: &ProcRoot, pid: i32) -> Result<Vec<i32>, ProcError> {
    let mut out = Vec::new();
    for tid in threads(root, pid)? {
        let path = root.pid_path(pid, &format!("task/{tid}/children"));
        let text = match read_text(&path, "children") {
            Ok(text) => text,
            // The thread exited since the listing (never in a frozen tree).
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        for word in text.split_ascii_whitespace() {
            let child = word.parse::<i32>().map_err(|_| ProcError::parse(&path, 1, "pid", word))?;
            out.push(child);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The inode of namespace `ns` of `pid`, from the link `ns/NAME` that reads `NAME:[INODE]`
/// (`pid_for_children` reads `pid:[...]`).
pub fn ns_inode(root: &ProcRoot, pid: i32, ns: &str) -> Result<u64, ProcError> {
    let path = root.pid_path(pid, &format!("ns/{ns}"));
    let target = read_link(&path)?;
    let text = target.to_string_lossy();
    text.split_once(":[")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| ProcError::parse(&path, 1, "namespace link", &text))
}

/// The execution domain of `pid` (`/proc/PID/personality`, hexadecimal).
pub fn personality(root: &ProcRoot, pid: i32) -> Result<u32, ProcError> {
    let path = root.pid_path(pid, "personality");
    let text = read_text(&path, "personality")?;
    let word = text.trim();
    u32::from_str_radix(word, 16).map_err(|_| ProcError::parse(&path, 1, "personality", word))
}

/// The resource limits of `pid` (`/proc/PID/limits`), `(soft, hard)` by `RLIMIT_*` number in the
/// kernel's order, `u64::MAX` for unlimited. Read from outside: no injected `prlimit64` per limit.
pub fn limits(root: &ProcRoot, pid: i32) -> Result<Vec<(u64, u64)>, ProcError> {
    let path = root.pid_path(pid, "limits");
    let text = read_text(&path, "limits")?;
    let value = |line: usize, word: Option<&str>| match word {
        Some("unlimited") => Ok(u64::MAX),
        Some(w) => w.parse().map_err(|_| ProcError::parse(&path, line, "limit", w)),
        None => Err(ProcError::parse(&path, line, "limit", "")),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        // The name column is 26 characters wide and holds spaces.
        let mut words = line.get(26..).unwrap_or("").split_whitespace();
        out.push((value(i + 1, words.next())?, value(i + 1, words.next())?));
    }
    Ok(out)
}

/// The task name of `pid` (`/proc/PID/comm` without its newline; up to 15 bytes, any characters).
pub fn comm(root: &ProcRoot, pid: i32) -> Result<String, ProcError> {
    let path = root.pid_path(pid, "comm");
    let text = read_text(&path, "comm")?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// The kernel function `pid` waits in (`/proc/PID/wchan`); `?` when it cannot be read.
pub fn wchan(root: &ProcRoot, pid: i32) -> String {
    std::fs::read_to_string(root.pid_path(pid, "wchan")).map_or_else(|_| "?".into(), |w| w.trim().to_string())
}

/// The target of the link `rel` of `pid` (`cwd`, `root`, `exe`). A deleted target keeps the
/// kernel's ` (deleted)` suffix.
pub fn link(root: &ProcRoot, pid: i32, rel: &str) -> Result<PathBuf, ProcError> {
    read_link(&root.pid_path(pid, rel))
}

/// Parses `value` as a number of type `T` with `radix`, or names `field` at `line` of `path`.
fn parse_num<T: Num>(path: &Path, line: usize, field: &'static str, value: &str, radix: u32) -> Result<T, ProcError> {
    T::from_radix(value, radix).ok_or_else(|| ProcError::parse(path, line, field, value))
}

/// The integer types the parsers read.
trait Num: Sized {
    fn from_radix(s: &str, radix: u32) -> Option<Self>;
}

macro_rules! impl_num {
    ($($t:ty),*) => {$(
        impl Num for $t {
            fn from_radix(s: &str, radix: u32) -> Option<Self> {
                <$t>::from_str_radix(s, radix).ok()
            }
        }
    )*};
}
impl_num!(i32, i64, u32, u64);

#[cfg(test)]
mod tests;
