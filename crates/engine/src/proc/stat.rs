//! `/proc/PID/stat`: one line of space-separated fields numbered 1..52 in proc(5).
//!
//! Field 2 is the task name in parentheses, written raw: it may contain spaces, parentheses and
//! even newlines, so it runs from the first `(` to the last `)` of the file.

use std::path::Path;

use super::{parse_num, read_text, Num, ProcError, ProcRoot};

/// The fields of `/proc/PID/stat` that dump uses (proc(5) field numbers in brackets).
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    /// (1)
    pub pid: i32,
    /// (2) task name, without the parentheses.
    pub comm: String,
    /// (3)
    pub state: char,
    /// (4)
    pub ppid: i32,
    /// (5) process group id.
    pub pgrp: i32,
    /// (6) session id.
    pub session: i32,
    /// (7) controlling terminal: minor in bits 31..20 and 7..0, major in bits 15..8.
    pub tty_nr: u32,
    /// (8) foreground process group of the controlling terminal (-1: none).
    pub tpgid: i32,
    /// (9) kernel `PF_*` flags.
    pub flags: u32,
    /// (20)
    pub num_threads: i64,
    /// (26)
    pub start_code: u64,
    /// (27)
    pub end_code: u64,
    /// (28)
    pub start_stack: u64,
    /// (45)
    pub start_data: u64,
    /// (46)
    pub end_data: u64,
    /// (47)
    pub start_brk: u64,
    /// (48)
    pub arg_start: u64,
    /// (49)
    pub arg_end: u64,
    /// (50)
    pub env_start: u64,
    /// (51)
    pub env_end: u64,
    /// (52) exit status in `waitpid` form.
    pub exit_code: i32,
}

/// Parses `/proc/PID/stat`.
pub fn stat(root: &ProcRoot, pid: i32) -> Result<Stat, ProcError> {
    let path = root.pid_path(pid, "stat");
    let text = read_text(&path, "comm")?;
    let bad = |field, value: &str| ProcError::parse(&path, 1, field, value);
    let open = text.find(" (").ok_or_else(|| bad("comm", &text))?;
    let close = text.rfind(") ").ok_or_else(|| bad("comm", &text))?;
    if close < open {
        return Err(bad("comm", &text));
    }
    let rest: Vec<&str> = text[close + 2..].split_ascii_whitespace().collect();
    let f = Fields { path: &path, rest: &rest };
    Ok(Stat {
        pid: parse_num(&path, 1, "pid", &text[..open], 10)?,
        comm: text[open + 2..close].to_string(),
        state: f.state()?,
        ppid: f.num(4, "ppid")?,
        pgrp: f.num(5, "pgrp")?,
        session: f.num(6, "session")?,
        // tty_nr is printed as a signed int; the kernel's dev_t fits in 32 bits.
        tty_nr: f.num::<i32>(7, "tty_nr")? as u32,
        tpgid: f.num(8, "tpgid")?,
        flags: f.num(9, "flags")?,
        num_threads: f.num(20, "num_threads")?,
        start_code: f.num(26, "startcode")?,
        end_code: f.num(27, "endcode")?,
        start_stack: f.num(28, "startstack")?,
        start_data: f.num(45, "start_data")?,
        end_data: f.num(46, "end_data")?,
        start_brk: f.num(47, "start_brk")?,
        arg_start: f.num(48, "arg_start")?,
        arg_end: f.num(49, "arg_end")?,
        env_start: f.num(50, "env_start")?,
        env_end: f.num(51, "env_end")?,
        exit_code: f.num(52, "exit_code")?,
    })
}

/// The fields after the task name; field number `n` (from 3) is `rest[n - 3]`.
struct Fields<'a> {
    path: &'a Path,
    rest: &'a [&'a str],
}

impl Fields<'_> {
    fn word(&self, n: usize, field: &'static str) -> Result<&str, ProcError> {
        self.rest.get(n - 3).copied().ok_or_else(|| ProcError::Missing { path: self.path.to_path_buf(), field })
    }

    fn num<T: Num>(&self, n: usize, field: &'static str) -> Result<T, ProcError> {
        parse_num(self.path, 1, field, self.word(n, field)?, 10)
    }

    fn state(&self) -> Result<char, ProcError> {
        let word = self.word(3, "state")?;
        let mut chars = word.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => Ok(c),
            _ => Err(ProcError::parse(self.path, 1, "state", word)),
        }
    }
}
