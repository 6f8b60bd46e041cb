//! `/proc/PID/fdinfo/FD`: `pos`, `flags` (octal) and `mnt_id`, then lines that depend on the kind
//! of file (`eventfd-count`, `tfd` of an epoll, `inotify wd`, `lock`, ...), kept in order as
//! key/value pairs for the dumper of that kind to read.

use super::{parse_num, read_text, ProcError, ProcRoot};

/// The parsed `fdinfo` of one fd.
#[derive(Clone, Debug, PartialEq)]
pub struct FdInfo {
    /// File position.
    pub pos: u64,
    /// `O_*` flags of the open file description, plus `O_CLOEXEC` if the fd has `FD_CLOEXEC`.
    pub flags: u32,
    /// Mount id of the file (see `/proc/PID/mountinfo`).
    pub mnt_id: u64,
    /// Every other line, split at its first colon, the value with surrounding blanks removed
    /// (`("ino", "1038")`, `("eventfd-count", "5")`, ...); a line without a colon is a key with an
    /// empty value.
    pub extra: Vec<(String, String)>,
}

impl FdInfo {
    /// The value of the first extra line with key `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parses `/proc/PID/fdinfo/FD`.
pub fn fdinfo(root: &ProcRoot, pid: i32, fd: i32) -> Result<FdInfo, ProcError> {
    let path = root.pid_path(pid, &format!("fdinfo/{fd}"));
    let text = read_text(&path, "value")?;
    let (mut pos, mut flags, mut mnt_id) = (None, None, None);
    let mut extra = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        // Every line the kernel writes today has a colon; keep any other whole, as a key.
        let (key, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.trim();
        match key {
            "pos" => pos = Some(parse_num(&path, line_no, "pos", value, 10)?),
            "flags" => flags = Some(parse_num(&path, line_no, "flags", value, 8)?),
            "mnt_id" => mnt_id = Some(parse_num(&path, line_no, "mnt_id", value, 10)?),
            _ => extra.push((key.to_string(), value.to_string())),
        }
    }
    let missing = |field| ProcError::Missing { path: path.clone(), field };
    Ok(FdInfo {
        pos: pos.ok_or_else(|| missing("pos"))?,
        flags: flags.ok_or_else(|| missing("flags"))?,
        mnt_id: mnt_id.ok_or_else(|| missing("mnt_id"))?,
        extra,
    })
}
