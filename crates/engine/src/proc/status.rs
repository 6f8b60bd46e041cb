//! `/proc/PID/status`: `Key:\tvalue` lines; the fields dump needs are kept in a [`Status`].
//!
//! Every kept field is required: the kernel has written all of them since Linux 5.x, so a missing
//! one means the file is not a status file.

use std::collections::HashMap;
use std::path::Path;

use super::{parse_num, read_text, ProcError, ProcRoot};

/// The fields of `/proc/PID/status` that dump uses. Signal and capability sets are bit masks
/// (bit `n-1` for signal `n`, bit `c` for capability `c`).
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// Task name, with the kernel's `\n` and `\\` escapes undone.
    pub name: String,
    pub umask: u32,
    /// State letter: `R`, `S`, `D`, `T`, `t`, `Z`, ...
    pub state: char,
    pub tgid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub threads: u32,
    /// Signals pending for this thread.
    pub sig_pnd: u64,
    /// Signals pending for the whole thread group.
    pub shd_pnd: u64,
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub sig_cgt: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: bool,
    /// Seccomp mode: 0 off, 1 strict, 2 filter.
    pub seccomp: u32,
    /// Thread group id in each pid namespace, outermost first.
    pub ns_tgid: Vec<i32>,
    /// Thread id in each pid namespace, outermost first.
    pub ns_pid: Vec<i32>,
}

/// Parses `/proc/PID/status`.
pub fn status(root: &ProcRoot, pid: i32) -> Result<Status, ProcError> {
    let path = root.pid_path(pid, "status");
    let text = read_text(&path, "Name")?;
    let fields = Fields::new(&path, &text);
    Ok(Status {
        name: unescape(fields.get("Name")?.1),
        umask: fields.num("Umask", 8)?,
        state: fields.state()?,
        tgid: fields.num("Tgid", 10)?,
        ppid: fields.num("PPid", 10)?,
        tracer_pid: fields.num("TracerPid", 10)?,
        uid: fields.quad("Uid")?,
        gid: fields.quad("Gid")?,
        groups: fields.list("Groups")?,
        threads: fields.num("Threads", 10)?,
        sig_pnd: fields.num("SigPnd", 16)?,
        shd_pnd: fields.num("ShdPnd", 16)?,
        sig_blk: fields.num("SigBlk", 16)?,
        sig_ign: fields.num("SigIgn", 16)?,
        sig_cgt: fields.num("SigCgt", 16)?,
        cap_inh: fields.num("CapInh", 16)?,
        cap_prm: fields.num("CapPrm", 16)?,
        cap_eff: fields.num("CapEff", 16)?,
        cap_bnd: fields.num("CapBnd", 16)?,
        cap_amb: fields.num("CapAmb", 16)?,
        no_new_privs: fields.num::<u32>("NoNewPrivs", 10)? != 0,
        seccomp: fields.num("Seccomp", 10)?,
        ns_tgid: fields.list("NStgid")?,
        ns_pid: fields.list("NSpid")?,
    })
}

/// The lines of a status file by key, each with its line number.
struct Fields<'a> {
    path: &'a Path,
    by_key: HashMap<&'a str, (usize, &'a str)>,
}

impl<'a> Fields<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        let by_key = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| {
                let (key, value) = line.split_once(':')?;
                // The kernel writes exactly one tab after the colon; the name may begin with spaces.
                Some((key, (i + 1, value.strip_prefix('\t').unwrap_or(value))))
            })
            .collect();
        Fields { path, by_key }
    }

    /// (line number, raw value) of `key`.
    fn get(&self, key: &'static str) -> Result<(usize, &'a str), ProcError> {
        self.by_key.get(key).copied().ok_or_else(|| ProcError::Missing { path: self.path.to_path_buf(), field: key })
    }

    fn num<T: super::Num>(&self, key: &'static str, radix: u32) -> Result<T, ProcError> {
        let (line, value) = self.get(key)?;
        parse_num(self.path, line, key, value.trim(), radix)
    }

    fn list<T: super::Num>(&self, key: &'static str) -> Result<Vec<T>, ProcError> {
        let (line, value) = self.get(key)?;
        value.split_ascii_whitespace().map(|w| parse_num(self.path, line, key, w, 10)).collect()
    }

    fn quad(&self, key: &'static str) -> Result<[u32; 4], ProcError> {
        let (line, value) = self.get(key)?;
        let ids: Vec<u32> = self.list(key)?;
        ids.try_into().map_err(|_| ProcError::parse(self.path, line, key, value))
    }

    /// `State:\tS (sleeping)` → `S`.
    fn state(&self) -> Result<char, ProcError> {
        let (line, value) = self.get("State")?;
        value
            .chars()
            .next()
            .filter(char::is_ascii_alphabetic)
            .ok_or_else(|| ProcError::parse(self.path, line, "State", value))
    }
}

/// Undoes the escaping of the `Name` field, where the kernel writes a newline as `\n` and a
/// backslash as `\\`; other bytes are written as they are.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => out.extend(['\\', other]),
            None => out.push('\\'),
        }
    }
    out
}
