//! cgroups: the cgroup v2 membership of every task (each process and each thread), the settings of
//! the tree's own cgroups, their making again at restore as `--manage-cgroups` says, and the
//! freezer of `--freeze-cgroup` (see [`freezer`]).
//!
//! Dump reads `/proc/PID/task/TID/cgroup` of every task into its `TaskCore::cgroup`, and the
//! settings of every directory from the tasks' common root down to each task's cgroup into a
//! [`CgroupSet`] (`pstree.img`): the interface files of [`SETTINGS`] that exist, an absent one
//! skipped. The same for each cgroup v1 hierarchy (a controller's, or a named one such as
//! `name=systemd`; see [`v1`]).
//!
//! Restore ([`restore::Placement`]) makes and sets the directories before the root is created,
//! then puts each process in its cgroup (`cgroup.procs`) right after its creation and each thread
//! in its own (`cgroup.threads`) right after its creation, both before any of their code runs. The
//! directories it made are removed again if the restore fails.

pub mod freezer;
pub mod restore;
pub mod v1;

use crate::error::{Error, Result};
use crate::proc::ProcRoot;
use stasis_image::model::{CgroupDir, CgroupSet, CgroupSetting, CgroupV1Path, TaskCore};
use stasis_sys::Pid;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The interface files saved for each cgroup, in the order restore writes them: the type first
/// (a threaded cgroup must be made threaded before anything else), the controllers enabled for
/// the children last (after the cgroup's own limits, before its children are made).
/// `cpu.weight.nice` is another view of `cpu.weight` and is not saved.
pub const SETTINGS: [&str; 15] = [
    "cgroup.type",
    "cgroup.max.depth",
    "cgroup.max.descendants",
    "cpuset.cpus",
    "cpuset.mems",
    "cpu.max",
    "cpu.weight",
    "io.weight",
    "memory.min",
    "memory.low",
    "memory.high",
    "memory.max",
    "memory.swap.max",
    "pids.max",
    "cgroup.subtree_control",
];

/// What restore does with the image's cgroups: CRIU's `--manage-cgroups` modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Cgroups are not touched: the tasks stay in stasis's cgroup (and dump saves none).
    Ignore,
    /// The cgroups must exist; the tasks join them; no setting is written.
    None,
    /// The cgroups must exist; their settings are written; the tasks join them.
    Props,
    /// Missing cgroups are made and set; existing ones are joined as they are (CRIU's default).
    #[default]
    Soft,
    /// Missing cgroups are made; every cgroup, existing or made, is set.
    Full,
    /// No cgroup of the image may exist: each is made and set, a failure fails the restore.
    Strict,
}

impl std::str::FromStr for Mode {
    type Err = String;

    /// CRIU's names; the empty string (`--manage-cgroups` alone) is `soft`.
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        Ok(match s {
            "ignore" => Mode::Ignore,
            "none" => Mode::None,
            "props" => Mode::Props,
            "" | "soft" => Mode::Soft,
            "full" => Mode::Full,
            "strict" => Mode::Strict,
            _ => return Err(format!("{s:?}: not a mode (none, props, soft, full, strict, ignore)")),
        })
    }
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Ignore => "ignore",
            Mode::None => "none",
            Mode::Props => "props",
            Mode::Soft => "soft",
            Mode::Full => "full",
            Mode::Strict => "strict",
        }
    }
}

/// The restore's cgroup options: the mode, and the place the dumped root of the tree's cgroups
/// goes to (`--cgroup-root PATH`: in the v2 hierarchy, and in each v1 one not given its own), and
/// per cgroup v1 controller (`--cgroup-root CONTROLLER:PATH`).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub mode: Mode,
    pub root: Option<String>,
    /// (controller, path): the root of the v1 hierarchy that has the controller.
    pub v1_roots: Vec<(String, String)>,
}

impl Options {
    /// The new root of the v1 hierarchy of `controllers` (`cpu,cpuacct`): the one given for any of
    /// its controllers, else the default root.
    pub fn root_of(&self, controllers: &str) -> Option<&str> {
        let mine = |c: &str| controllers.split(',').any(|h| h == c);
        self.v1_roots.iter().find(|(c, _)| mine(c)).map(|(_, p)| p.as_str()).or(self.root.as_deref())
    }
}

/// Where the cgroup v2 hierarchy is mounted here (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid system).
pub fn mount() -> Option<PathBuf> {
    stasis_sys::probe::cgroup2_mount().ok().flatten()
}

/// `path` (`/a/b`, absolute in the hierarchy) under the mount `mount`.
pub(crate) fn dir_of(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

/// The cgroups of task `tid` of process `pid` into its `core`: its v2 path (its `0::` line, empty
/// if it has none) and its cgroup in each v1 hierarchy.
pub fn dump_task(root: &ProcRoot, pid: Pid, tid: Pid, core: &mut TaskCore) -> Result<()> {
    let path = root.pid_path(pid.0, &format!("task/{tid}/cgroup"));
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    core.cgroup = v2_line(&text).unwrap_or("").to_string();
    core.cgroups_v1 = v1::parse(&text);
    Ok(())
}

/// The root of the cgroup namespace of `pid` (one not ours): its cgroup v2 path as we see it, less
/// the part its own namespace shows it (read by a thread that entered the namespace), and the same
/// in each cgroup v1 hierarchy. A process whose cgroup is outside its namespace's root (moved out
/// after the unshare: `/..` inside) is refused by name.
pub fn ns_root(pid: Pid) -> Result<(String, Vec<CgroupV1Path>)> {
    let path = format!("/proc/{pid}/cgroup");
    let read = || std::fs::read_to_string(&path);
    let outside = read().map_err(Error::io(&path))?;
    let inside = stasis_sys::ns::run_in(pid, stasis_sys::ns::Kind::Cgroup, read)
        .map_err(Error::sys(pid.0, "entering its cgroup namespace"))?
        .map_err(Error::io(&path))?;
    let (Some(full), Some(seen)) = (v2_line(&outside), v2_line(&inside)) else {
        let what = format!("a cgroup namespace of its own without a cgroup v2 line in {path}");
        return Err(Error::Unsupported { pid, what });
    };
    let outside_of = |full: &str, seen: &str| Error::Unsupported {
        pid,
        what: format!("a cgroup ({full}) outside the root of its cgroup namespace (it sees {seen})"),
    };
    let root = ns_root_of(full, seen).ok_or_else(|| outside_of(full, seen))?;
    let mut roots_v1 = Vec::new();
    for p in v1::parse(&outside) {
        let seen = v1::path_in(&inside, &p.controllers).unwrap_or("/");
        let path = ns_root_of(&p.path, seen).ok_or_else(|| outside_of(&p.path, seen))?;
        roots_v1.push(CgroupV1Path { controllers: p.controllers, path });
    }
    Ok((root, roots_v1))
}

/// The namespace root from a cgroup's `full` path and the path `seen` inside the namespace.
fn ns_root_of(full: &str, seen: &str) -> Option<String> {
    if seen == "/" {
        return Some(full.to_string());
    }
    if seen.starts_with("/..") {
        return None;
    }
    let root = full.strip_suffix(seen)?;
    Some(if root.is_empty() { "/".to_string() } else { root.to_string() })
}

fn v2_line(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The cgroups of the tree whose tasks are in `cgroups` (v2 paths, empty ones skipped), with their
/// settings read under `mount`; `None` if no task is in one.
pub fn dump_set(mount: &Path, cgroups: &[&str]) -> Option<CgroupSet> {
    let (root, dirs) = tree_of(cgroups)?;
    let dirs =
        dirs.into_iter().map(|path| CgroupDir { settings: read_settings(&dir_of(mount, &path)), path }).collect();
    Some(CgroupSet { root, dirs, v1: Vec::new() })
}

/// The common root of the cgroups `paths` (empty ones skipped) and every directory from it down to
/// each of them (the hierarchy's root left out: it is neither made nor set), parents first; `None`
/// if there is none.
pub(crate) fn tree_of(paths: &[&str]) -> Option<(String, Vec<String>)> {
    let paths: Vec<Vec<&str>> = paths.iter().filter(|c| !c.is_empty()).map(|c| components(c)).collect();
    let first = paths.first()?;
    let common = paths.iter().fold(first.len(), |n, p| n.min(p.iter().zip(first).take_while(|(a, b)| a == b).count()));
    let mut dirs: BTreeSet<Vec<&str>> = BTreeSet::new();
    for p in &paths {
        for depth in common.max(1)..=p.len() {
            dirs.insert(p[..depth].to_vec());
        }
    }
    let dirs = dirs.into_iter().map(|c| format!("/{}", c.join("/"))).collect();
    Some((format!("/{}", first[..common].join("/")), dirs))
}

fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// The [`SETTINGS`] files of the cgroup directory `dir` that exist and can be read.
fn read_settings(dir: &Path) -> Vec<CgroupSetting> {
    read_files(dir, &SETTINGS)
}

/// The files `names` of the cgroup directory `dir` that exist and can be read, trimmed.
pub(crate) fn read_files(dir: &Path, names: &[&str]) -> Vec<CgroupSetting> {
    names
        .iter()
        .filter_map(|name| match std::fs::read_to_string(dir.join(name)) {
            Ok(value) => Some(CgroupSetting { name: name.to_string(), value: value.trim().to_string() }),
            Err(e) => {
                log::debug!("{}/{name}: not saved ({e})", dir.display());
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
