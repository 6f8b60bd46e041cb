//! Helpers for the fdinfo lines several kinds of fd share (inotify, fanotify and epoll items):
//! the `key:value` fields of a line, hexadecimal fields, the mounts a file handle's device may be
//! found on, and the path of the file a handle names. Device numbers as `stat` and fdinfo show
//! them ([`major`], [`minor`]) are here too, for the device and terminal kinds.

use crate::error::{Error, Result};
use stasis_sys::watch::open_by_handle_at;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// The major number of a device number as `stat` gives it.
pub fn major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

/// The minor number of a device number as `stat` gives it.
pub fn minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

/// The `key:value` (or `key: value`) fields of an fdinfo line; a word without a colon is a key with an
/// empty value.
pub fn fields(line: &str) -> HashMap<&str, &str> {
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
pub fn hex(f: &HashMap<&str, &str>, key: &str) -> Option<u64> {
    f.get(key).and_then(|v| u64::from_str_radix(v, 16).ok())
}

/// The mounts of this process (`/proc/self/mountinfo`): (mount id, device as the kernel encodes it
/// in fdinfo `sdev`, root within the filesystem, mount point).
pub fn mounts() -> Result<Vec<(u64, u64, String, String)>> {
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
pub fn handle_path(f: &HashMap<&str, &str>) -> Result<Option<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
