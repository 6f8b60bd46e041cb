//! inotify instances and their watches.
//!
//! Dump reads each watch from fdinfo (`inotify wd:.. ino:.. sdev:.. mask:.. ... f_handle:..`, numbers
//! in hex) and finds the watched file's path from its file handle (`open_by_handle_at` on a mount of
//! its filesystem, then the `/proc/self/fd` link), checked against its inode number. Events queued and
//! not read yet are refused (reading them would take them from the process).
//!
//! Restore makes the instance in the controller and adds the watches by path, in the order of their
//! watch descriptors. The kernel hands descriptors out in sequence, so a watch that comes out with a
//! smaller descriptor than it had is removed and added again until it has its own; the `IN_IGNORED`
//! events these removals queue are read off before the next watch.

use super::Probe;
use crate::error::{Error, Result};
use crate::proc::FdInfo;
use stasis_image::model::{FileKind, InotifyFile, InotifyWatch};
use stasis_sys::watch::{bytes_queued, inotify_add_watch, inotify_init, inotify_rm_watch, open_by_handle_at};
use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bits of a watch's mask `inotify_add_watch` takes back.
const MASK_BITS: u32 = libc::IN_ALL_EVENTS | libc::IN_ONLYDIR | libc::IN_EXCL_UNLINK | libc::IN_ONESHOT;

/// The `key:value` (or `key: value`) fields of an fdinfo line; a word without a colon is a key with an
/// empty value.
pub(super) fn fields(line: &str) -> HashMap<&str, &str> {
    let mut out = HashMap::new();
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.next() {
        match w.split_once(':') {
            Some((k, "")) => {
                let v = words.next_if(|n| !n.contains(':')).unwrap_or("");
                out.insert(k, v);
            }
            Some((k, v)) => {
                out.insert(k, v);
            }
            None => {
                out.insert(w, "");
            }
        }
    }
    out
}

/// A hexadecimal field of `f`.
pub(super) fn hex(f: &HashMap<&str, &str>, key: &str) -> Option<u64> {
    f.get(key).and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// The mounts of this process (`/proc/self/mountinfo`): (mount id, device as the kernel encodes it
/// in fdinfo `sdev`, root within the filesystem, mount point).
pub(super) fn mounts() -> Result<Vec<(u64, u64, String, String)>> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        if w.len() < 5 {
            continue;
        }
        let Some((maj, min)) = w[2].split_once(':') else { continue };
        let (Ok(id), Ok(maj), Ok(min)) = (w[0].parse::<u64>(), maj.parse::<u64>(), min.parse::<u64>()) else {
            continue;
        };
        out.push((id, (maj << 20) | min, unescape(w[3]), unescape(w[4])));
    }
    Ok(out)
}

/// mountinfo escapes blanks and backslashes as octal (`\040`).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The path of the file a fdinfo line (`ino`, `sdev`, `fhandle-bytes`, `fhandle-type`, `f_handle`)
/// names, if it can be found and is still that inode.
pub(super) fn handle_path(f: &HashMap<&str, &str>) -> Result<Option<String>> {
    let (Some(ino), Some(sdev), Some(htype), Some(text)) =
        (hex(f, "ino"), hex(f, "sdev"), hex(f, "fhandle-type"), f.get("f_handle"))
    else {
        return Ok(None);
    };
    let bytes: Option<Vec<u8>> =
        (0..text.len() / 2).map(|i| text.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    let Some(bytes) = bytes else { return Ok(None) };
    // Mounts of the whole filesystem first: a handle opened through a bind mount of a subtree may
    // name a file outside it.
    let mut candidates: Vec<_> = mounts()?.into_iter().filter(|m| m.1 == sdev).collect();
    candidates.sort_by_key(|m| m.2 != "/");
    for (_, _, _, point) in candidates {
        let Ok(mount) = std::fs::File::open(&point) else { continue };
        let Ok(fd) = open_by_handle_at(mount.as_fd(), htype as i32, &bytes, libc::O_PATH) else { continue };
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        let Ok(path) = std::fs::read_link(&link) else { continue };
        let path = path.to_string_lossy().into_owned();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == ino) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Refuse an instance with events not read yet.
pub(super) fn check_empty(p: &Probe, what: &str) -> Result<()> {
    let n = bytes_queued(p.file).map_err(Error::sys(p.pid.0, "reading the bytes queued"))?;
    if n > 0 {
        return Err(p.unsupported(format!("{what} with {n} bytes of events not read yet")));
    }
    Ok(())
}

pub fn dump(p: &Probe) -> Result<FileKind> {
    check_empty(p, "inotify instance")?;
    let info = p.fdinfo()?;
    let mut watches = Vec::new();
    for line in watch_lines(&info) {
        let f = fields(&line);
        let (Some(wd), Some(ino), Some(mask)) = (hex(&f, "wd"), hex(&f, "ino"), hex(&f, "mask")) else {
            return Err(p.unsupported(format!("inotify watch the kernel shows as '{line}'")));
        };
        let Some(path) = handle_path(&f)? else {
            return Err(p.unsupported(format!("inotify watch {wd} on inode {ino} whose path cannot be found")));
        };
        watches.push(InotifyWatch { wd: wd as i32, mask: mask as u32, path, ino });
    }
    watches.sort_by_key(|w| w.wd);
    Ok(FileKind::Inotify(InotifyFile { watches }))
}

/// The watch lines of an inotify instance's fdinfo, whole again (`inotify wd:1 ino:...`).
fn watch_lines(info: &FdInfo) -> Vec<String> {
    info.extra.iter().filter(|(k, _)| k == "inotify wd").map(|(k, v)| format!("{k}:{v}")).collect()
}

/// A new inotify instance with the watches of `i`, each with its descriptor.
pub fn open(i: &InotifyFile, flags: u32) -> Result<OwnedFd> {
    let io = |path: &str| {
        let path = path.to_string();
        move |e: stasis_sys::SysError| Error::Io { path: path.into(), source: e.source }
    };
    let fd = inotify_init(libc::IN_CLOEXEC | libc::IN_NONBLOCK).map_err(io("anon_inode:inotify"))?;
    let mut sorted: Vec<&InotifyWatch> = i.watches.iter().collect();
    sorted.sort_by_key(|w| w.wd);
    for w in sorted {
        let path = Path::new(&w.path);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.ino() != w.ino => {
                log::warn!(
                    "inotify watch {}: {} is another file than at dump (inode {} -> {})",
                    w.wd,
                    w.path,
                    w.ino,
                    m.ino()
                )
            }
            _ => {}
        }
        loop {
            let got = inotify_add_watch(fd.as_fd(), path, (w.mask & MASK_BITS) | libc::IN_DONT_FOLLOW)
                .map_err(io(&w.path))?;
            if got == w.wd {
                break;
            }
            if got > w.wd {
                return Err(Error::Incompatible {
                    file: "files.img".into(),
                    what: format!("inotify watch on {}: descriptor {got} given, {} wanted", w.path, w.wd),
                });
            }
            inotify_rm_watch(fd.as_fd(), got).map_err(io(&w.path))?;
            drain(fd.as_fd());
        }
    }
    if flags & libc::O_NONBLOCK as u32 == 0 {
        stasis_sys::fd::set_status_flags(fd.as_fd(), libc::O_RDONLY).map_err(io("anon_inode:inotify"))?;
    }
    Ok(fd)
}

/// Read off (non-blocking) the events queued in our instance: those of the watches we removed.
fn drain(fd: BorrowedFd<'_>) {
    let Ok(dup) = fd.try_clone_to_owned() else { return };
    let mut f = std::fs::File::from(dup);
    let mut buf = [0u8; 4096];
    while f.read(&mut buf).is_ok_and(|n| n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A watch line of an inotify fdinfo on Linux 6.18 (the watch_inotify workload).
    const WATCH: &str = "inotify wd:4 ino:99c178 sdev:fe00000 mask:4 ignored_mask:0 fhandle-bytes:8 \
fhandle-type:1 f_handle:78c199006335fb19";

    #[test]
    fn fields_of_a_watch_line() {
        let info = FdInfo { pos: 0, flags: 0, mnt_id: 1, extra: vec![("inotify wd".into(), WATCH[11..].into())] };
        let lines = watch_lines(&info);
        assert_eq!(lines, [WATCH]);
        let f = fields(&lines[0]);
        assert_eq!(
            (hex(&f, "wd"), hex(&f, "ino"), hex(&f, "sdev"), hex(&f, "mask")),
            (Some(4), Some(0x99c178), Some(0xfe00000), Some(4))
        );
        assert_eq!(f.get("f_handle"), Some(&"78c199006335fb19"));
        assert!(f.contains_key("inotify"));
    }

    #[test]
    fn fields_with_a_blank_after_the_colon() {
        let f = fields("tfd:        9 events:       19 data:               c4  pos:0 ino:e2a79 sdev:f");
        assert_eq!((f["tfd"], f["events"], f["data"], f["pos"], f["sdev"]), ("9", "19", "c4", "0", "f"));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/mnt/a\\040b\\134c"), "/mnt/a b\\c");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
