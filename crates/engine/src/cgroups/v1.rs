//! cgroup v1 hierarchies (hybrid systems, and containers that runc puts in them): the cgroup of
//! every task in each hierarchy (`TaskCore::cgroups_v1`, process and thread), and per hierarchy
//! the tree's own directories with the settings of [`SETTINGS`] ([`CgroupV1Set`]). Restore
//! ([`super::restore::Placement`]) finds each hierarchy mounted here by its controllers, makes and
//! sets the directories as the mode says, and puts each task in its cgroup (`cgroup.procs`; a
//! thread in another cgroup than its process through `tasks`) before any of its code runs.

use super::{read_files, tree_of};
use crate::error::{Error, Result};
use crate::proc::ProcRoot;
use stasis_image::model::{CgroupDir, CgroupV1Path, CgroupV1Set};
use stasis_sys::Pid;
use std::path::PathBuf;

/// The settings saved per controller, in the order restore writes them: a cpuset's cpus and mems
/// first (no task may join a cpuset without them), a memory limit before the memory+swap one.
/// `devices.list` is written back as `devices.deny`/`devices.allow` rules.
pub const SETTINGS: [(&str, &str); 13] = [
    ("cpuset", "cpuset.cpus"),
    ("cpuset", "cpuset.mems"),
    ("cpu", "cpu.shares"),
    ("cpu", "cpu.cfs_period_us"),
    ("cpu", "cpu.cfs_quota_us"),
    ("memory", "memory.limit_in_bytes"),
    ("memory", "memory.memsw.limit_in_bytes"),
    ("memory", "memory.soft_limit_in_bytes"),
    ("memory", "memory.swappiness"),
    ("blkio", "blkio.weight"),
    ("pids", "pids.max"),
    ("net_cls", "net_cls.classid"),
    ("devices", "devices.list"),
];

/// The cgroup v1 lines of `/proc/PID/task/TID/cgroup` of task `tid` of process `pid`.
pub fn task_paths(root: &ProcRoot, pid: Pid, tid: Pid) -> Result<Vec<CgroupV1Path>> {
    let path = root.pid_path(pid.0, &format!("task/{tid}/cgroup"));
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    Ok(parse(&text))
}

/// The v1 lines (`ID:CONTROLLERS:PATH`, ID not 0) of a `cgroup` file.
pub fn parse(text: &str) -> Vec<CgroupV1Path> {
    text.lines()
        .filter(|l| !l.starts_with("0:"))
        .filter_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            Some(CgroupV1Path { controllers: controllers.to_string(), path: path.to_string() })
        })
        .collect()
}

/// Leave out of `tasks` (every task of the tree) the hierarchies where each task is in stasis's own
/// cgroup (`ours`: the text of our `/proc/self/cgroup`): membership the tree inherited, which a
/// restore leaves to the restoring stasis's (as before v1 was saved), so that a restore in a place
/// without that hierarchy (a mount namespace that hides it) is not refused for it.
pub fn drop_inherited(tasks: &mut [&mut Vec<CgroupV1Path>], ours: &str) {
    let hierarchies: Vec<String> =
        hierarchies(tasks.iter().flat_map(|t| t.iter())).into_iter().map(str::to_string).collect();
    for h in hierarchies {
        let Some(mine) = path_in(ours, &h) else { continue };
        let inherited = tasks.iter().all(|t| t.iter().filter(|p| p.controllers == h).all(|p| p.path == mine));
        if inherited {
            tasks.iter_mut().for_each(|t| t.retain(|p| p.controllers != h));
        }
    }
}

/// The tree's directories of every hierarchy its tasks (`tasks`: each task's v1 paths) are in,
/// with their settings where the hierarchy is mounted here.
pub fn dump_sets(tasks: &[&[CgroupV1Path]]) -> Vec<CgroupV1Set> {
    hierarchies(tasks.iter().flat_map(|t| t.iter()))
        .into_iter()
        .filter_map(|controllers| {
            let paths: Vec<&str> = tasks
                .iter()
                .flat_map(|t| t.iter().filter(|p| p.controllers == controllers).map(|p| p.path.as_str()))
                .collect();
            let (root, dirs) = tree_of(&paths)?;
            let mount = mount_of(controllers);
            if mount.is_none() {
                log::warn!("cgroup v1 hierarchy {controllers} is not mounted here: its settings are not saved");
            }
            let names = settings_of(controllers);
            let dirs = dirs
                .into_iter()
                .map(|path| CgroupDir {
                    settings: mount.as_ref().map_or_else(Vec::new, |m| read_files(&super::dir_of(m, &path), &names)),
                    path,
                })
                .collect();
            Some(CgroupV1Set { controllers: controllers.to_string(), root, dirs })
        })
        .collect()
}

/// The hierarchies (their controllers) that `paths` name, each once, sorted.
pub fn hierarchies<'a>(paths: impl Iterator<Item = &'a CgroupV1Path>) -> Vec<&'a str> {
    let mut out: Vec<&str> = paths.map(|p| p.controllers.as_str()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The [`SETTINGS`] files of the hierarchy of `controllers`.
fn settings_of(controllers: &str) -> Vec<&'static str> {
    let has: Vec<&str> = controllers.split(',').collect();
    SETTINGS.iter().filter(|(c, _)| has.contains(c)).map(|(_, f)| *f).collect()
}

/// Where the hierarchy of `controllers` (`cpu,cpuacct`, `name=systemd`) is mounted here, its root
/// mounted (`/proc/self/mountinfo`); `None` if it is not.
pub fn mount_of(controllers: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_in(&text, controllers)
}

/// [`mount_of`] over the text of a `mountinfo` file.
pub(crate) fn mount_in(mountinfo: &str, controllers: &str) -> Option<PathBuf> {
    let want: Vec<&str> = controllers.split(',').collect();
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let (fstype, options) = {
            let r: Vec<&str> = right.split(' ').collect();
            (*r.first()?, *r.get(2)?)
        };
        let options: Vec<&str> = options.split(',').collect();
        let root_mounted = fields.get(3) == Some(&"/");
        let mount = fields.get(4)?;
        (fstype == "cgroup" && root_mounted && want.iter().all(|c| options.contains(c))).then(|| PathBuf::from(mount))
    })
}

/// The hierarchy's line in a `cgroup` file's text (`text`): the cgroup there.
pub fn path_in<'a>(text: &'a str, controllers: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (c, path) = rest.split_once(':')?;
        (c == controllers).then_some(path)
    })
}

/// The writes that put back a saved `devices.list` (`value`): everything allowed (`a *:* rwm`), or
/// everything denied then each listed rule allowed.
pub fn device_rules(value: &str) -> Vec<(&'static str, String)> {
    if value.trim() == "a *:* rwm" {
        return vec![("devices.allow", "a".to_string())];
    }
    let mut rules = vec![("devices.deny", "a".to_string())];
    rules.extend(value.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| ("devices.allow", l.to_string())));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_lines_are_parsed_and_the_v2_one_left_out() {
        let text = "9:name=systemd:/ctr\n4:cpu,cpuacct:/a/b\n0::/ctr\n";
        let got: Vec<(String, String)> = parse(text).into_iter().map(|p| (p.controllers, p.path)).collect();
        assert_eq!(got, [("name=systemd".into(), "/ctr".into()), ("cpu,cpuacct".into(), "/a/b".into())]);
        assert_eq!(path_in(text, "cpu,cpuacct"), Some("/a/b"));
        assert_eq!(path_in(text, "cpu"), None);
    }

    #[test]
    fn a_hierarchy_where_every_task_is_in_our_cgroup_is_left_out() {
        let p = |c: &str, path: &str| CgroupV1Path { controllers: c.into(), path: path.into() };
        let mut a = vec![p("pids", "/"), p("memory", "/job")];
        let mut b = vec![p("pids", "/"), p("memory", "/")];
        let ours = "8:pids:/\n4:memory:/\n0::/\n";
        drop_inherited(&mut [&mut a, &mut b], ours);
        assert_eq!(a, [p("memory", "/job")]);
        assert_eq!(b, [p("memory", "/")], "kept where another task is elsewhere");
    }

    #[test]
    fn a_hierarchy_is_found_by_its_controllers_where_its_root_is_mounted() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
32 25 0:28 /sub /mnt/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
        assert_eq!(mount_in(info, "cpu,cpuacct"), Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(mount_in(info, "name=systemd"), Some(PathBuf::from("/sys/fs/cgroup/systemd")));
        assert_eq!(mount_in(info, "memory"), None);
    }

    #[test]
    fn device_rules_deny_all_then_allow_each_listed_one() {
        assert_eq!(device_rules("a *:* rwm"), [("devices.allow", "a".to_string())]);
        let rules = device_rules("c 1:3 rwm\nc 5:0 rwm");
        assert_eq!(rules[0], ("devices.deny", "a".to_string()));
        assert_eq!(
            &rules[1..],
            [("devices.allow", "c 1:3 rwm".to_string()), ("devices.allow", "c 5:0 rwm".to_string())]
        );
    }

    #[test]
    fn each_hierarchy_gets_the_settings_of_its_controllers() {
        assert_eq!(settings_of("cpu,cpuacct"), ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"]);
        assert!(settings_of("name=systemd").is_empty());
    }
}
