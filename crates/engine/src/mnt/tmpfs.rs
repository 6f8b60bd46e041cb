//! A new tmpfs's whole contents: read at the dump from a detached copy of the mount (made in the
//! tree's namespace, so the mounts over it do not hide what lies under them), written again at
//! restore into the new superblock before anything is mounted over it.
//!
//! Directories, regular files (their data extents only: holes stay holes), symlinks, hard links,
//! FIFOs and device nodes, with their modes, owners and times (a symlink's times are not kept).
//! A socket file is refused by name.

use crate::error::{Error, Result};
use stasis_image::model::{DataExtent, Mount, TmpfsNode};
use stasis_sys::mount as sysmnt;
use stasis_sys::Pid;
use std::collections::HashMap;
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The device number mountinfo prints as `MAJOR:MINOR`.
pub(super) fn dev_of(text: &str) -> Option<u64> {
    let (major, minor) = text.split_once(':')?;
    Some(libc::makedev(major.parse().ok()?, minor.parse().ok()?))
}

/// A detached copy of the mount `m` of `pid`'s mount namespace, checked to be of its filesystem.
fn open_copy(pid: i32, m: &Mount) -> Result<OwnedFd> {
    let ns_path = format!("/proc/{pid}/ns/mnt");
    let ns = File::open(&ns_path).map_err(Error::io(&ns_path))?;
    let point = PathBuf::from(&m.point);
    let fd = std::thread::scope(|s| {
        s.spawn(|| {
            sysmnt::enter_ns(ns.as_fd())?;
            sysmnt::clone_tree(&point)
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
    .map_err(Error::sys(pid, "copying a tmpfs mount of its mount namespace"))?;
    let dev = File::from(fd.try_clone().map_err(Error::io(&m.point))?).metadata().map_err(Error::io(&m.point))?.dev();
    if Some(dev) != dev_of(&m.dev) {
        let what = format!("the tmpfs at {}: another mount hides it at the same mount point", m.point);
        return Err(Error::Unsupported { pid: Pid(pid), what });
    }
    Ok(fd)
}

/// The contents of the tmpfs mount `m` of the tree of root `pid`.
pub(super) fn dump(pid: i32, m: &Mount) -> Result<Vec<TmpfsNode>> {
    let fd = open_copy(pid, m)?;
    let base = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let mut out = Vec::new();
    let mut seen: HashMap<u64, String> = HashMap::new();
    let mut dirs = vec![String::new()];
    while let Some(rel) = dirs.pop() {
        let path = if rel.is_empty() { base.clone() } else { base.join(&rel) };
        out.push(node(pid, m, &path, &rel, &mut seen)?);
        let mut names: Vec<_> =
            fs::read_dir(&path).map_err(Error::io(&path))?.collect::<Result<_, _>>().map_err(Error::io(&path))?;
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if e.file_type().map_err(Error::io(e.path()))?.is_dir() {
                dirs.push(child);
            } else {
                out.push(node(pid, m, &e.path(), &child, &mut seen)?);
            }
        }
    }
    drop(fd);
    let bytes: usize = out.iter().flat_map(|n| &n.data).map(|d| d.data.len()).sum();
    log::info!("pid {pid}: tmpfs at {}: {} entries, {bytes} bytes of data", m.point, out.len());
    Ok(out)
}

fn node(pid: i32, m: &Mount, path: &Path, rel: &str, seen: &mut HashMap<u64, String>) -> Result<TmpfsNode> {
    let meta = fs::symlink_metadata(path).map_err(Error::io(path))?;
    let ft = meta.file_type();
    let ns = |s: i64, n: i64| s * 1_000_000_000 + n;
    let mut n = TmpfsNode {
        path: rel.to_string(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        atime_ns: ns(meta.atime(), meta.atime_nsec()),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        ..Default::default()
    };
    if ft.is_socket() {
        let what = format!("the socket file {rel} in the tmpfs at {}", m.point);
        return Err(Error::Unsupported { pid: Pid(pid), what });
    }
    if ft.is_symlink() {
        n.target = fs::read_link(path).map_err(Error::io(path))?.to_string_lossy().into_owned();
    } else if ft.is_char_device() || ft.is_block_device() {
        n.rdev = meta.rdev();
    } else if ft.is_file() {
        if meta.nlink() > 1 {
            if let Some(first) = seen.get(&meta.ino()) {
                n.link_of = first.clone();
                return Ok(n);
            }
            seen.insert(meta.ino(), rel.to_string());
        }
        n.size = meta.size();
        let file = File::open(path).map_err(Error::io(path))?;
        let ranges = crate::files::ghost::data_ranges(&file, n.size)
            .map_err(Error::sys(pid, "finding the data of a file of a tmpfs"))?;
        for (start, end) in ranges {
            let mut data = vec![0; (end - start) as usize];
            file.read_exact_at(&mut data, start).map_err(Error::io(path))?;
            n.data.push(DataExtent { offset: start, data });
        }
    }
    Ok(n)
}

/// Write `nodes` into the directory `top` (the new tmpfs's root, mounted there): every entry
/// first, then owners and modes, then times (a directory's after what it holds).
pub(super) fn restore(top: &Path, nodes: &[TmpfsNode]) -> Result<()> {
    let at = |n: &TmpfsNode| if n.path.is_empty() { top.to_path_buf() } else { top.join(&n.path) };
    for n in nodes {
        let path = at(n);
        let kind = n.mode & libc::S_IFMT;
        let made = if n.path.is_empty() {
            Ok(())
        } else if !n.link_of.is_empty() {
            fs::hard_link(top.join(&n.link_of), &path)
        } else if kind == libc::S_IFDIR {
            fs::create_dir(&path)
        } else if kind == libc::S_IFLNK {
            std::os::unix::fs::symlink(&n.target, &path)
        } else if kind == libc::S_IFREG {
            write_file(&path, n)
        } else {
            stasis_sys::fd::mknod(&path, n.mode, n.rdev).map_err(|e| e.source)
        };
        made.map_err(Error::io(&path))?;
    }
    for n in nodes.iter().filter(|n| n.link_of.is_empty()) {
        let path = at(n);
        std::os::unix::fs::lchown(&path, Some(n.uid), Some(n.gid)).map_err(Error::io(&path))?;
        if n.mode & libc::S_IFMT != libc::S_IFLNK {
            fs::set_permissions(&path, fs::Permissions::from_mode(n.mode & 0o7777)).map_err(Error::io(&path))?;
        }
    }
    for n in nodes
        .iter()
        .rev()
        .filter(|n| n.link_of.is_empty() && matches!(n.mode & libc::S_IFMT, libc::S_IFDIR | libc::S_IFREG))
    {
        let path = at(n);
        let time = |ns: i64| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
        let times = fs::FileTimes::new().set_accessed(time(n.atime_ns)).set_modified(time(n.mtime_ns));
        File::open(&path).and_then(|f| f.set_times(times)).map_err(Error::io(&path))?;
    }
    Ok(())
}

fn write_file(path: &Path, n: &TmpfsNode) -> std::io::Result<()> {
    let f = fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    for d in &n.data {
        f.write_all_at(&d.data, d.offset)?;
    }
    f.set_len(n.size)
}
