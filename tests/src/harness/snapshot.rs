//! What the harness compares before dump and after restore: `/proc/PID/maps` (adjacent entries
//! with identical attributes merged), selected `/proc/PID/status` lines, and every fd's link
//! target and `fdinfo` pos and flags (kernel object numbers such as pipe inodes replaced by their
//! order of appearance, pty numbers by `*`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

/// The `/proc/PID/status` fields compared.
pub const STATUS_KEYS: &[&str] = &[
    "Name",
    "Umask",
    "State",
    "Uid",
    "Gid",
    "Groups",
    "NoNewPrivs",
    "Seccomp",
    "SigBlk",
    "SigIgn",
    "SigCgt",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "ShdPnd",
    "SigPnd",
];

/// One process's observable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Normalised, merged maps lines.
    pub maps: Vec<String>,
    /// `key: value` lines of STATUS_KEYS.
    pub status: Vec<String>,
    /// `fd N -> target pos P flags F` lines.
    pub fds: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Vma {
    start: u64,
    end: u64,
    perms: String,
    offset: u64,
    dev: String,
    inode: u64,
    path: String,
}

impl Vma {
    fn parse(line: &str) -> Option<Vma> {
        let mut it = line.split_whitespace();
        let (range, perms, offset, dev, inode) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
        let (s, e) = range.split_once('-')?;
        Some(Vma {
            start: u64::from_str_radix(s, 16).ok()?,
            end: u64::from_str_radix(e, 16).ok()?,
            perms: perms.into(),
            offset: u64::from_str_radix(offset, 16).ok()?,
            dev: dev.into(),
            inode: inode.parse().ok()?,
            path: it.collect::<Vec<_>>().join(" "),
        })
    }

    fn is_file(&self) -> bool {
        self.inode != 0
    }

    /// Whether `next` continues this entry with identical attributes.
    fn continues(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.perms == next.perms
            && self.dev == next.dev
            && self.inode == next.inode
            && self.path == next.path
            && (!self.is_file() || self.offset + (self.end - self.start) == next.offset)
    }

    fn line(&self) -> String {
        // Anonymous offsets are the kernel's page offset at creation, not an attribute.
        let offset = if self.is_file() { self.offset } else { 0 };
        format!(
            "{:x}-{:x} {} {:08x} {} {} {}",
            self.start, self.end, self.perms, offset, self.dev, self.inode, self.path
        )
    }
}

/// Parses and merges maps text.
pub fn normalize_maps(text: &str) -> Vec<String> {
    let mut merged: Vec<Vma> = Vec::new();
    for vma in text.lines().filter_map(Vma::parse) {
        match merged.last_mut() {
            Some(last) if last.continues(&vma) => last.end = vma.end,
            _ => merged.push(vma),
        }
    }
    merged.iter().map(Vma::line).collect()
}

/// The STATUS_KEYS lines of status text, whitespace normalised.
///
/// A stopped task (`State: T`) that was stopped inside `sigsuspend` shows its temporary mask; once
/// restored it shows its real one until it runs and enters `sigsuspend` again, so `SigBlk` is left
/// out for stopped tasks (the workloads check their mask themselves once continued).
pub fn select_status(text: &str) -> Vec<String> {
    let stopped = text.lines().any(|l| l.starts_with("State:") && l.contains('T'));
    STATUS_KEYS
        .iter()
        .filter(|key| !(stopped && **key == "SigBlk"))
        .filter_map(|key| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(|v| format!("{key}: {}", v.split_whitespace().collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// Replaces kernel object numbers in fd targets with stable ids.
struct TargetNormalizer {
    ids: BTreeMap<String, usize>,
}

impl TargetNormalizer {
    fn normalize(&mut self, target: &str) -> String {
        if let Some(rest) = target.strip_prefix("/dev/pts/") {
            if rest.chars().all(|c| c.is_ascii_digit()) {
                return "/dev/pts/*".into();
            }
        }
        // An O_TMPFILE file is named after its inode, which a restore makes anew.
        if let Some((dir, ino)) = target.strip_suffix(" (deleted)").and_then(|t| t.rsplit_once("/#")) {
            if !ino.is_empty() && ino.chars().all(|c| c.is_ascii_digit()) {
                let n = self.ids.len();
                let id = *self.ids.entry(target.to_string()).or_insert(n);
                return format!("{dir}/#tmpfile{id} (deleted)");
            }
        }
        if let Some((kind, obj)) = target.split_once(":[") {
            if obj.ends_with(']') && obj[..obj.len() - 1].chars().all(|c| c.is_ascii_digit()) {
                let n = self.ids.len();
                let id = *self.ids.entry(target.to_string()).or_insert(n);
                return format!("{kind}:#{id}");
            }
        }
        target.to_string()
    }
}

fn fdinfo_field(text: &str, key: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(|v| v.trim().to_string()).unwrap_or_default()
}

fn read_fds(pid: i32) -> io::Result<Vec<String>> {
    let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    let mut norm = TargetNormalizer { ids: BTreeMap::new() };
    let mut out = Vec::new();
    for fd in fds {
        let Ok(target) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) else { continue };
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        out.push(format!(
            "fd {fd} -> {} pos {} flags {}",
            norm.normalize(&target.to_string_lossy()),
            fdinfo_field(&info, "pos"),
            fdinfo_field(&info, "flags")
        ));
    }
    Ok(out)
}

impl Snapshot {
    /// Reads the state of `pid`.
    pub fn take(pid: i32) -> io::Result<Snapshot> {
        Ok(Snapshot {
            maps: normalize_maps(&std::fs::read_to_string(format!("/proc/{pid}/maps"))?),
            status: select_status(&std::fs::read_to_string(format!("/proc/{pid}/status"))?),
            fds: read_fds(pid)?,
        })
    }

    /// `None` if equal, else a readable diff per section.
    pub fn diff(&self, after: &Snapshot) -> Option<String> {
        let mut out = String::new();
        for (name, a, b) in [
            ("/proc/PID/maps", &self.maps, &after.maps),
            ("/proc/PID/status", &self.status, &after.status),
            ("/proc/PID/fd + fdinfo", &self.fds, &after.fds),
        ] {
            if a != b {
                let _ = writeln!(out, "--- {name} before dump\n+++ {name} after restore");
                out.push_str(&line_diff(a, b));
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// A unified-style diff of two line lists (LCS based): ` ` common, `-` before only, `+` after only.
pub fn line_diff(a: &[String], b: &[String]) -> String {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        }
    }
    out
}

/// In `snaps`, replace the inode of every mapping of an object restore makes anew (`... (deleted)`:
/// shared anonymous memory, memfds, unlinked files, SysV segments) by `deleted#N`, N numbering the
/// distinct inodes in order of appearance across all of `snaps`: the comparison then still sees
/// which mappings, in one process or several, share one object.
pub fn number_deleted(snaps: &mut [Snapshot]) {
    let mut inodes: Vec<String> = Vec::new();
    for line in snaps.iter_mut().flat_map(|s| s.maps.iter_mut()) {
        let fields: Vec<&str> = line.splitn(6, ' ').collect();
        if fields.len() == 6 && fields[5].ends_with(" (deleted)") {
            let n = inodes.iter().position(|i| i == fields[4]).unwrap_or_else(|| {
                inodes.push(fields[4].to_string());
                inodes.len() - 1
            });
            *line = [fields[..4].join(" "), format!("deleted#{n}"), fields[5].to_string()].join(" ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_adjacent_identical_entries() {
        let text = "1000-2000 rw-p 00000000 00:00 0 \n2000-3000 rw-p 00005000 00:00 0 \n\
                    3000-4000 r--p 00000000 08:01 12 /bin/x\n4000-5000 r--p 00001000 08:01 12 /bin/x\n\
                    5000-6000 r--p 00003000 08:01 12 /bin/x\n";
        assert_eq!(
            normalize_maps(text),
            [
                "1000-3000 rw-p 00000000 00:00 0 ",
                "3000-5000 r--p 00000000 08:01 12 /bin/x",
                "5000-6000 r--p 00003000 08:01 12 /bin/x",
            ]
        );
    }

    #[test]
    fn normalizes_object_numbers() {
        let mut n = TargetNormalizer { ids: BTreeMap::new() };
        assert_eq!(n.normalize("pipe:[77]"), "pipe:#0");
        assert_eq!(n.normalize("socket:[5]"), "socket:#1");
        assert_eq!(n.normalize("pipe:[77]"), "pipe:#0");
        assert_eq!(n.normalize("/dev/pts/3"), "/dev/pts/*");
        assert_eq!(n.normalize("anon_inode:[eventfd]"), "anon_inode:[eventfd]");
    }

    #[test]
    fn diff_marks_changes() {
        let a: Vec<String> = ["x", "y", "z"].map(String::from).into();
        let b: Vec<String> = ["x", "q", "z"].map(String::from).into();
        assert_eq!(line_diff(&a, &b), "  x\n+ q\n- y\n  z\n");
    }
}
