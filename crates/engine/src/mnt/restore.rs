//! The tree's mount namespace made again (see the module docs of [`super`]), on the calling
//! thread, which then goes back to stasis's namespace, its root and its working directory.
//!
//! The copies of paths outside the namespace (the root mount from `--root` or stasis's root,
//! `host` and `external` mounts) are made first, in stasis's namespace. Then the thread unshares a
//! new mount namespace (every mount private), attaches the root copy, makes it the root
//! (`pivot_root`, the old root detached) and makes every other mount in order: attached at its
//! mount point, its propagation set (a new peer group for the first member of one, the others
//! copies of a member; a copy of an outside path whose group or master was outside the namespace
//! stays a peer or becomes a slave of that path's group), a new tmpfs filled, its flags set;
//! unbindable mounts last.

use super::tmpfs;
use crate::error::{Error, Result};
use stasis_image::model::{Mount, MountNs};
use stasis_sys::mount::{self as sysmnt, Propagation};
use stasis_sys::{Pid, SysError};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Every `MOUNT_ATTR_*` bit the image holds: cleared, then set as the image says.
const ALL_ATTRS: u64 = sysmnt::ATTR_RDONLY
    | sysmnt::ATTR_NOSUID
    | sysmnt::ATTR_NODEV
    | sysmnt::ATTR_NOEXEC
    | sysmnt::ATTR_ATIME_MASK
    | sysmnt::ATTR_NODIRATIME
    | sysmnt::ATTR_NOSYMFOLLOW;

/// The restored namespace, which the calling thread enters for what must be done inside it.
pub struct Built {
    ns: OwnedFd,
    pid: i32,
    mounts: Vec<Mount>,
    /// The outside path each mount is a copy of.
    paths: Vec<Option<PathBuf>>,
    /// How many of `mounts` are made.
    done: usize,
}

impl Built {
    /// Run `f` on the calling thread inside the restored namespace (its root that of the
    /// namespace), then back in stasis's.
    pub fn inside<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let back = Back::keep(self.pid)?;
        sysmnt::enter_ns(self.ns.as_fd()).map_err(Error::sys(self.pid, "entering its mount namespace"))?;
        let out = f();
        drop(back);
        out
    }
}

/// The calling thread's mount namespace and working directory, gone back to when dropped.
struct Back {
    ns: OwnedFd,
    cwd: File,
    pid: i32,
}

impl Back {
    fn keep(pid: i32) -> Result<Back> {
        let ns = File::open("/proc/thread-self/ns/mnt").map_err(Error::io("/proc/thread-self/ns/mnt"))?;
        let cwd = File::open(".").map_err(Error::io("."))?;
        Ok(Back { ns: ns.into(), cwd, pid })
    }

    /// The calling thread back in the kept namespace for a while (dropping `self` goes back too).
    fn enter(&self) -> Result<()> {
        sysmnt::enter_ns(self.ns.as_fd()).map_err(Error::sys(self.pid, "going back to stasis's mount namespace"))
    }
}

impl Drop for Back {
    fn drop(&mut self) {
        let back = sysmnt::enter_ns(self.ns.as_fd()).and_then(|()| sysmnt::fchdir(self.cwd.as_fd()));
        if let Err(e) = back {
            // The thread would go on in the tree's mount namespace.
            panic!("pid {}: could not go back to stasis's mount namespace: {e}", self.pid);
        }
    }
}

fn step(pid: i32, what: String) -> impl FnOnce(SysError) -> Error {
    move |source| Error::Step {
        pid: Pid(pid),
        what,
        source: Box::new(Error::Sys { pid: Pid(pid), what: "a mount call", source }),
    }
}

fn incompatible(what: String) -> Error {
    Error::Incompatible { file: "pstree.img".into(), what }
}

/// The path outside the namespace a `root`, `host` or `external` mount is a copy of.
fn outside_path(m: &Mount, opts: &crate::RestoreOptions) -> Result<Option<PathBuf>> {
    Ok(match m.how.as_str() {
        "root" => match &opts.root {
            Some(root) => Some(root.clone()),
            None if m.bind_of == 1 => Some("/".into()),
            None => {
                return Err(incompatible(format!(
                    "the root mount of the tree's mount namespace ({} {}, root {}) was not stasis's root: give it with --root PATH",
                    m.fstype, m.source, m.root
                )))
            }
        },
        "host" => {
            check_host(m)?;
            Some(PathBuf::from(&m.point))
        }
        "external" => match opts.ext_mount_map.iter().find(|(key, _)| *key == m.external_key) {
            Some((_, path)) => Some(path.clone()),
            None if m.external_auto && opts.ext_mount_auto => Some(PathBuf::from(&m.external_key)),
            None => {
                let auto = match m.external_auto {
                    true => ", or --ext-mount-map auto for that same path here",
                    false => "",
                };
                return Err(incompatible(format!(
                    "the mount at {} is external ({}): give it with --external mnt[{}]:PATH{auto}",
                    m.point, m.external_key, m.external_key
                )));
            }
        },
        _ => None,
    })
}

/// The copy of `path` that restore makes for mount `m`, whose peer group or master was outside the
/// namespace, joins the group of `path`'s mount: that mount must be shared (for a peer group) or
/// shared or a slave (for a master), or the copy would be private.
fn check_outside_group(m: &Mount, path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(path).map_err(Error::io(path))?;
    let fdinfo = format!("/proc/self/fdinfo/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    let text = std::fs::read_to_string(&fdinfo).map_err(Error::io(&fdinfo))?;
    let id = text.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse::<u32>().ok());
    let table = std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::io("/proc/self/mountinfo"))?;
    let host = super::parse(&table).map_err(|line| incompatible(format!("/proc/self/mountinfo: {line:?}")))?;
    let Some(h) = host.iter().find(|h| Some(h.id) == id) else {
        return Err(incompatible(format!("{}: its mount is not in stasis's mount namespace", path.display())));
    };
    let (want, ok) = match m.shared_outside {
        true => ("shared", h.shared != 0),
        false => ("shared or a slave", h.shared != 0 || h.master != 0),
    };
    if ok {
        return Ok(());
    }
    Err(incompatible(format!(
        "the mount at {} was in a peer group outside its namespace (shared:{} master:{}), but the mount at {} that \
         {} is copied from is private: it must be {want}",
        m.point,
        m.shared,
        m.master,
        h.point,
        path.display()
    )))
}

/// A `host` mount is still one of stasis's at the same point, of the same type and root.
fn check_host(m: &Mount) -> Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(Error::io("/proc/self/mountinfo"))?;
    let host = super::parse(&text).map_err(|line| incompatible(format!("/proc/self/mountinfo: {line:?}")))?;
    if host.iter().any(|h| h.point == m.point && h.fstype == m.fstype && h.root == m.root) {
        return Ok(());
    }
    Err(incompatible(format!(
        "the mount at {} was a copy of stasis's own ({}, root {}), which is no longer there",
        m.point, m.fstype, m.root
    )))
}

/// The superblock options of a new mount as `fsconfig` takes them (`rw` dropped: the flags are
/// per mount; `ro` too: a read-only superblock is made so once filled, see [`make`]).
fn fs_options(options: &str) -> Vec<(String, Option<String>)> {
    options
        .split(',')
        .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
        .map(|o| match o.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (o.to_string(), None),
        })
        .collect()
}

/// Make the namespace `ns` of the tree of root `pid` (see the module docs).
pub fn build(ns: &MountNs, pid: i32, opts: &crate::RestoreOptions) -> Result<Built> {
    let mounts = &ns.mounts;
    if mounts.first().map(|m| m.how.as_str()) != Some("root")
        && mounts.first().map(|m| m.how.as_str()) != Some("external")
    {
        return Err(incompatible("the first mount of the mount namespace is not its root".into()));
    }
    let paths: Vec<Option<PathBuf>> = mounts.iter().map(|m| outside_path(m, opts)).collect::<Result<_>>()?;
    for (m, path) in mounts.iter().zip(&paths) {
        if let Some(path) = path.as_deref().filter(|_| m.shared_outside || m.master_outside) {
            check_outside_group(m, path)?;
        }
    }
    let root_copy = copy(pid, &mounts[0], paths[0].as_deref())?.expect("the root mount is a copy");
    let back = Back::keep(pid)?;
    sysmnt::unshare_ns().map_err(Error::sys(pid, "making its mount namespace"))?;
    let ns =
        File::open("/proc/thread-self/ns/mnt").map(OwnedFd::from).map_err(Error::io("/proc/thread-self/ns/mnt"))?;
    let slash = Path::new("/");
    sysmnt::set_attr(slash, 0, 0, Some(Propagation::Private), true)
        .map_err(Error::sys(pid, "making the copied mounts private"))?;
    // The root copy goes over /proc of the copy of stasis's namespace, then becomes its root.
    let staging = Path::new("/proc");
    sysmnt::attach(root_copy.as_fd(), staging).map_err(step(pid, "the root mount".into()))?;
    // A slave of a group outside (`--enable-external-masters`) stays one: its copy is a peer or a
    // slave of that group (pivot_root refuses only a shared root).
    let own = if mounts[0].master_outside { Propagation::Slave } else { Propagation::Private };
    sysmnt::set_attr(staging, 0, 0, Some(own), false).map_err(step(pid, "the root mount".into()))?;
    std::env::set_current_dir(staging).map_err(Error::io(staging))?;
    sysmnt::pivot_here().map_err(step(pid, "the root of its mount namespace".into()))?;
    std::env::set_current_dir(slash).map_err(Error::io(slash))?;
    set_flags(pid, &mounts[0], slash)?;
    // A proc of the root's PID namespace, and what comes after it, once the root exists.
    let later = mounts.iter().position(|m| m.proc_of_tree).unwrap_or(mounts.len());
    let mut built = Built { ns, pid, mounts: mounts.clone(), paths, done: 1 };
    built.make_up_to(&back, later, None)?;
    drop(back);
    log::info!("pid {pid}: mount namespace made again ({later} of {} mounts before the root exists)", mounts.len());
    Ok(built)
}

/// A copy of the outside `path` of mount `m` (made in the calling thread's namespace).
fn copy(pid: i32, m: &Mount, path: Option<&Path>) -> Result<Option<OwnedFd>> {
    let Some(path) = path else { return Ok(None) };
    let what = format!("a copy of {} for the mount at {}", path.display(), m.point);
    sysmnt::clone_tree(path).map(Some).map_err(step(pid, what))
}

impl Built {
    /// Make the mounts from `self.done` up to `end` (the calling thread in the namespace; `back`
    /// its way to stasis's, where outside copies are made); `pidns`: the root's PID namespace, for
    /// a proc of it.
    fn make_up_to(&mut self, back: &Back, end: usize, pidns: Option<&OwnedFd>) -> Result<()> {
        let pid = self.pid;
        for i in self.done..end {
            let m = &self.mounts[i];
            // Made at its turn (mountinfo lists mounts in the order they were made), in stasis's
            // namespace, where its path is.
            let outside = match &self.paths[i] {
                Some(path) => back.enter().and_then(|()| copy(pid, m, Some(path))).and_then(|fd| {
                    sysmnt::enter_ns(self.ns.as_fd()).map_err(Error::sys(pid, "entering its mount namespace"))?;
                    Ok(fd)
                })?,
                None => None,
            };
            make(pid, m, &self.mounts[..i], outside, pidns.filter(|_| m.proc_of_tree))?;
        }
        self.done = end;
        Ok(())
    }

    /// Every mount is made but those only [`Built::finish`] can make.
    pub fn whole(&self) -> bool {
        self.done == self.mounts.len()
    }

    /// Once the root `child` exists (in its PID namespace): the mounts left (see [`build`]),
    /// then the unbindable flags.
    pub fn finish(&mut self, child: Pid) -> Result<()> {
        let pidns = match self.done < self.mounts.len() {
            true => {
                let path = format!("/proc/{child}/ns/pid");
                Some(File::open(&path).map(OwnedFd::from).map_err(Error::io(path))?)
            }
            false => None,
        };
        let back = Back::keep(self.pid)?;
        sysmnt::enter_ns(self.ns.as_fd()).map_err(Error::sys(self.pid, "entering its mount namespace"))?;
        self.make_up_to(&back, self.mounts.len(), pidns.as_ref())?;
        for m in self.mounts.iter().filter(|m| m.unbindable) {
            sysmnt::set_attr(Path::new(&m.point), 0, 0, Some(Propagation::Unbindable), false)
                .map_err(step(self.pid, format!("the mount at {} as unbindable", m.point)))?;
        }
        Ok(())
    }
}

/// Make mount `m` (`before`: the mounts made already; `copy`: its copy of an outside path).
fn make(pid: i32, m: &Mount, before: &[Mount], copy: Option<OwnedFd>, pidns: Option<&OwnedFd>) -> Result<()> {
    let point = Path::new(&m.point);
    let what = |doing: &str| format!("the {} mount at {} ({doing})", m.fstype, m.point);
    let fd = match (m.how.as_str(), copy) {
        (_, Some(fd)) => fd,
        ("new", None) => {
            sysmnt::new_fs(&m.fstype, &m.source, &fs_options(&m.options), pidns.map(|fd| ("pidns", fd.as_fd())))
                .map_err(step(pid, what(&format!("a new superblock with options {}", m.options))))?
        }
        ("bind", None) => {
            let src = before.iter().find(|b| b.id == m.bind_of).ok_or_else(|| {
                incompatible(format!(
                    "the mount at {} is a copy of mount {}, which is not before it",
                    m.point, m.bind_of
                ))
            })?;
            let sub = if src.root == "/" { m.root.as_str() } else { &m.root[src.root.len()..] };
            let from = Path::new(&src.point).join(sub.trim_start_matches('/'));
            sysmnt::clone_tree(&from).map_err(step(pid, what(&format!("a copy of {}", from.display()))))?
        }
        (how, None) => return Err(incompatible(format!("the mount at {}: unknown kind {how:?}", m.point))),
    };
    sysmnt::attach(fd.as_fd(), point).map_err(step(pid, what("attaching it")))?;
    // A copy of an outside path is a peer of that path's mount already: it keeps that group when
    // the namespace shared one with the outside (`shared_outside`), or becomes its slave.
    let joined = (m.shared != 0 && before.iter().any(|b| b.shared == m.shared)) || m.master != 0 || m.shared_outside;
    let mut props = Vec::new();
    if !joined {
        props.push(Propagation::Private);
    }
    if m.master != 0 {
        props.push(Propagation::Slave);
    }
    if m.shared != 0 {
        props.push(Propagation::Shared);
    }
    for p in props {
        sysmnt::set_attr(point, 0, 0, Some(p), false).map_err(step(pid, what(&format!("propagation {p:?}"))))?;
    }
    if m.how == "new" && m.fstype == "tmpfs" {
        tmpfs::restore(point, &m.contents)?;
    }
    if m.how == "new" && m.options.split(',').any(|o| o == "ro") {
        sysmnt::superblock_read_only(point).map_err(step(pid, what("its superblock read-only")))?;
    }
    set_flags(pid, m, point)
}

fn set_flags(pid: i32, m: &Mount, point: &Path) -> Result<()> {
    sysmnt::set_attr(point, m.attrs, ALL_ATTRS, None, false)
        .map_err(step(pid, format!("the flags of the mount at {}", m.point)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_options_become_fsconfig_keys() {
        let o = fs_options("rw,size=64k,mode=700,inode64");
        assert_eq!(
            o,
            [("size".into(), Some("64k".into())), ("mode".into(), Some("700".into())), ("inode64".into(), None)]
        );
    }
}
