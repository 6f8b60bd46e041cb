//! cgroups: the cgroup v2 membership of every task (each process and each thread), the settings of
//! the tree's own cgroups, their making again at restore as `--manage-cgroups` says, and the
//! freezer of `--freeze-cgroup` (see [`freezer`]).
//!
//! Dump reads `/proc/PID/task/TID/cgroup` of every task into its `TaskCore::cgroup`, and the
//! settings of every directory from the tasks' common root down to each task's cgroup into a
//! [`CgroupSet`] (`pstree.img`): the interface files of [`SETTINGS`] that exist, an absent one
//! skipped. A task in a cgroup v1 hierarchy (a controller or a named one such as `name=systemd`)
//! other than stasis's own there is refused by name: only v2 is restored.
//!
//! Restore ([`restore::Placement`]) makes and sets the directories before the root is created,
//! then puts each process in its cgroup (`cgroup.procs`) right after its creation and each thread
//! in its own (`cgroup.threads`) right after its creation, both before any of their code runs. The
//! directories it made are removed again if the restore fails.

pub mod freezer;
pub mod restore;

use crate::error::{Error, Result};
use crate::proc::ProcRoot;
use stasis_image::model::{CgroupDir, CgroupSet, CgroupSetting};
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
/// goes to (`--cgroup-root PATH`, a path in the v2 hierarchy).
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub mode: Mode,
    pub root: Option<String>,
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

/// The cgroup v2 path of task `tid` of process `pid` (its `0::` line), empty if it has none.
pub fn task_cgroup(root: &ProcRoot, pid: Pid, tid: Pid) -> Result<String> {
    let path = root.pid_path(pid.0, &format!("task/{tid}/cgroup"));
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    Ok(v2_line(&text).unwrap_or("").to_string())
}

/// The root of the cgroup namespace of `pid` (one not ours): its cgroup v2 path as we see it, less
/// the part its own namespace shows it (read by a thread that entered the namespace). A process
/// whose cgroup is outside its namespace's root (moved out after the unshare: `/..` inside) is
/// refused by name.
pub fn ns_root(pid: Pid) -> Result<String> {
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
    ns_root_of(full, seen).ok_or_else(|| Error::Unsupported {
        pid,
        what: format!("a cgroup ({full}) outside the root of its cgroup namespace (it sees {seen})"),
    })
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

/// Refuse process `pid` if it is in a cgroup v1 hierarchy somewhere other than stasis (whose
/// `/proc/self/cgroup` is `ours`): its v1 membership would be lost.
pub fn check_v1(root: &ProcRoot, pid: Pid, ours: &str) -> Result<()> {
    let path = root.pid_path(pid.0, "cgroup");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    for line in text.lines().filter(|l| !l.starts_with("0::")) {
        let Some((_, rest)) = line.split_once(':') else { continue };
        let Some((hierarchy, cgroup)) = rest.split_once(':') else { continue };
        let same = ours.lines().filter_map(|l| l.split_once(':')).any(|(_, r)| r == rest);
        if !same {
            let what = format!(
                "membership of cgroup v1 hierarchy {hierarchy} (cgroup {cgroup}, not stasis's; only cgroup v2 is restored)"
            );
            return Err(Error::Unsupported { pid, what });
        }
    }
    Ok(())
}

/// The cgroups of the tree whose tasks are in `cgroups` (v2 paths, empty ones skipped), with their
/// settings read under `mount`; `None` if no task is in one.
pub fn dump_set(mount: &Path, cgroups: &[&str]) -> Option<CgroupSet> {
    let paths: Vec<Vec<&str>> = cgroups.iter().filter(|c| !c.is_empty()).map(|c| components(c)).collect();
    let first = paths.first()?;
    let common = paths.iter().fold(first.len(), |n, p| n.min(p.iter().zip(first).take_while(|(a, b)| a == b).count()));
    let mut dirs: BTreeSet<Vec<&str>> = BTreeSet::new();
    for p in &paths {
        // The hierarchy's root is neither made nor set.
        for depth in common.max(1)..=p.len() {
            dirs.insert(p[..depth].to_vec());
        }
    }
    let dirs = dirs
        .into_iter()
        .map(|c| {
            let path = format!("/{}", c.join("/"));
            CgroupDir { settings: read_settings(&dir_of(mount, &path)), path }
        })
        .collect();
    Some(CgroupSet { root: format!("/{}", first[..common].join("/")), dirs })
}

fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// The [`SETTINGS`] files of the cgroup directory `dir` that exist and can be read.
fn read_settings(dir: &Path) -> Vec<CgroupSetting> {
    SETTINGS
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
