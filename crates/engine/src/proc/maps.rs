//! `/proc/PID/maps` and `/proc/PID/smaps`: one [`MapEntry`] per VMA, in address order.
//!
//! A line reads `start-end perms offset major:minor inode [name]`. The name starts after the run of
//! spaces that pads the inode column and runs to the end of the line, so it may contain spaces; a
//! trailing ` (deleted)` is removed and recorded in [`MapEntry::deleted`]. In `smaps` each such line is
//! followed by `Key: value` lines, of which only `VmFlags` and `KernelPageSize` are kept.

use std::path::Path;

use super::{parse_num, read_text, ProcError, ProcRoot};

/// One virtual memory area of a process.
#[derive(Clone, Debug, PartialEq)]
pub struct MapEntry {
    pub start: u64,
    /// Exclusive end.
    pub end: u64,
    /// `libc::PROT_READ | PROT_WRITE | PROT_EXEC` bits.
    pub prot: u32,
    /// `s` in the permissions column (`MAP_SHARED`); `p` is private.
    pub shared: bool,
    /// Offset in the mapped file (0 for anonymous areas).
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// A path, `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, `[vvar_vclock]`, `[vsyscall]`, `[anon:NAME]`,
    /// or empty for an anonymous area.
    pub name: String,
    /// The name ended with ` (deleted)`; the suffix is removed from `name`.
    pub deleted: bool,
    /// The `VmFlags` of `smaps`; empty when read from `maps`.
    pub vm_flags: VmFlags,
    /// `KernelPageSize` of `smaps` in bytes (4096 but for hugetlb areas); zero when read from `maps`.
    pub kernel_page_size: u64,
}

impl MapEntry {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True for an empty range (never produced by the kernel).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// The two-letter `VmFlags` of `smaps` (`rd wr ex sh mr mw me ms gd ...`), in the kernel's order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct VmFlags(pub Vec<[u8; 2]>);

impl VmFlags {
    /// True if the two-letter flag `flag` (e.g. `"gd"` for a stack guard area) is set.
    pub fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|f| f.as_slice() == flag.as_bytes())
    }
}

/// The areas of `pid` from `/proc/PID/smaps`, with their `VmFlags`.
pub fn smaps(root: &ProcRoot, pid: i32) -> Result<Vec<MapEntry>, ProcError> {
    let path = root.pid_path(pid, "smaps");
    let text = read_text(&path, "name")?;
    let mut out: Vec<MapEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        match smaps_key(line) {
            None => out.push(parse_line(&path, lineno, line)?),
            Some(("VmFlags", value)) => {
                let entry = out
                    .last_mut()
                    .ok_or_else(|| ProcError::Missing { path: path.clone(), field: "mapping line before VmFlags" })?;
                entry.vm_flags = parse_vm_flags(&path, lineno, value)?;
            }
            Some(("KernelPageSize", value)) => {
                let entry = out.last_mut().ok_or_else(|| ProcError::Missing {
                    path: path.clone(),
                    field: "mapping line before KernelPageSize",
                })?;
                entry.kernel_page_size = page_size(&path, lineno, value)?;
            }
            Some(_) => {}
        }
    }
    Ok(out)
}

/// The area of `pid` that holds `addr`, with its `VmFlags`, from `/proc/PID/smaps`; reading stops
/// there (the kernel builds the text of the areas after it only if they are read).
pub fn smaps_at(root: &ProcRoot, pid: i32, addr: u64) -> Result<Option<MapEntry>, ProcError> {
    use std::io::BufRead;
    let path = root.pid_path(pid, "smaps");
    let read = |source| ProcError::Read { path: path.clone(), source };
    let file = std::fs::File::open(&path).map_err(read)?;
    let mut found: Option<MapEntry> = None;
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = String::from_utf8_lossy(&line.map_err(read)?).into_owned();
        match (smaps_key(&line), found.as_mut()) {
            (None, None) => {
                let e = parse_line(&path, i + 1, &line)?;
                if e.start <= addr && addr < e.end {
                    found = Some(e);
                } else if e.start > addr {
                    return Ok(None);
                }
            }
            (None, Some(_)) => break,
            (Some(("KernelPageSize", value)), Some(e)) => e.kernel_page_size = page_size(&path, i + 1, value)?,
            (Some(("VmFlags", value)), Some(e)) => {
                e.vm_flags = parse_vm_flags(&path, i + 1, value)?;
                break;
            }
            (Some(_), _) => {}
        }
    }
    Ok(found)
}

/// The areas of `pid` from `/proc/PID/maps`; `vm_flags` is left empty.
pub fn maps(root: &ProcRoot, pid: i32) -> Result<Vec<MapEntry>, ProcError> {
    let path = root.pid_path(pid, "maps");
    let text = read_text(&path, "name")?;
    text.lines().enumerate().map(|(i, line)| parse_line(&path, i + 1, line)).collect()
}

/// `Some((key, value))` for an smaps attribute line (`Rss:   4 kB`), `None` for a mapping line,
/// whose first word is an address range and never ends with a colon.
fn smaps_key(line: &str) -> Option<(&str, &str)> {
    let first = line.split(' ').next().unwrap_or("");
    let key = first.strip_suffix(':')?;
    Some((key, line[first.len()..].trim()))
}

/// `KernelPageSize` (`4 kB`) in bytes.
fn page_size(path: &Path, line: usize, value: &str) -> Result<u64, ProcError> {
    let kb = value.strip_suffix(" kB").unwrap_or(value).trim();
    Ok(parse_num::<u64>(path, line, "KernelPageSize", kb, 10)? * 1024)
}

fn parse_vm_flags(path: &Path, line: usize, value: &str) -> Result<VmFlags, ProcError> {
    value
        .split_ascii_whitespace()
        .map(|w| <[u8; 2]>::try_from(w.as_bytes()).map_err(|_| ProcError::parse(path, line, "VmFlags", w)))
        .collect::<Result<Vec<_>, _>>()
        .map(VmFlags)
}

/// Parses one mapping line.
fn parse_line(path: &Path, line: usize, text: &str) -> Result<MapEntry, ProcError> {
    let mut cols = text.splitn(6, ' ');
    let mut col =
        |field| cols.next().filter(|c| !c.is_empty()).ok_or_else(|| ProcError::parse(path, line, field, text));
    let range = col("address range")?;
    let perms = col("permissions")?;
    let offset = col("offset")?;
    let dev = col("device")?;
    let inode = col("inode")?;
    let rest = cols.next().unwrap_or("").trim_start_matches(' ');

    let (start, end) = range.split_once('-').ok_or_else(|| ProcError::parse(path, line, "address range", range))?;
    let (major, minor) = dev.split_once(':').ok_or_else(|| ProcError::parse(path, line, "device", dev))?;
    let (prot, shared) = parse_perms(perms).ok_or_else(|| ProcError::parse(path, line, "permissions", perms))?;
    let (name, deleted) = match rest.strip_suffix(" (deleted)") {
        Some(n) => (n, true),
        None => (rest, false),
    };
    Ok(MapEntry {
        start: parse_num(path, line, "start address", start, 16)?,
        end: parse_num(path, line, "end address", end, 16)?,
        prot,
        shared,
        offset: parse_num(path, line, "offset", offset, 16)?,
        dev_major: parse_num(path, line, "device major", major, 16)?,
        dev_minor: parse_num(path, line, "device minor", minor, 16)?,
        inode: parse_num(path, line, "inode", inode, 10)?,
        name: name.to_string(),
        deleted,
        vm_flags: VmFlags::default(),
        kernel_page_size: 0,
    })
}

/// `rwxp` → (PROT_* bits, shared).
fn parse_perms(perms: &str) -> Option<(u32, bool)> {
    let b = perms.as_bytes();
    if b.len() != 4 {
        return None;
    }
    let bit = |c: u8, want: u8, prot: i32| match c {
        _ if c == want => Some(prot as u32),
        b'-' => Some(0),
        _ => None,
    };
    let prot =
        bit(b[0], b'r', libc::PROT_READ)? | bit(b[1], b'w', libc::PROT_WRITE)? | bit(b[2], b'x', libc::PROT_EXEC)?;
    let shared = match b[3] {
        b's' => true,
        b'p' => false,
        _ => return None,
    };
    Some((prot, shared))
}
