//! Probes of what the host offers around the processes: time namespaces and the cgroup v2
//! hierarchy.

use std::fs;
use std::path::{Path, PathBuf};

use super::Probed;

pub(super) fn probe_time_ns() -> Probed {
    match fs::read_link("/proc/self/ns/time") {
        Ok(target) => Probed::yes(format!("in {}", target.display())),
        Err(e) => Probed::no(format!("/proc/self/ns/time: {e}")),
    }
}

/// The cgroup2 mount in `/proc/self/mounts`: `/sys/fs/cgroup` on a unified system,
/// `/sys/fs/cgroup/unified` on a hybrid one (v1 controllers beside an empty v2 tree); `None` if
/// there is none.
pub fn cgroup2_mount() -> std::io::Result<Option<PathBuf>> {
    let mounts = fs::read_to_string("/proc/self/mounts")?;
    Ok(mounts.lines().find_map(|line| {
        let mut cols = line.split(' ');
        let point = cols.nth(1)?;
        (cols.next()? == "cgroup2").then(|| PathBuf::from(point))
    }))
}

/// Finds the cgroup2 mount ([`cgroup2_mount`]) and says which controllers it has.
pub(super) fn probe_cgroup_v2() -> (Probed, Option<PathBuf>) {
    let mount = match cgroup2_mount() {
        Ok(m) => m,
        Err(e) => return (Probed::no(format!("/proc/self/mounts: {e}")), None),
    };
    let Some(mount) = mount else {
        return (Probed::no("no cgroup2 mount"), None);
    };
    let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    let controllers = match controllers.trim() {
        "" => "no controllers".to_string(),
        list => format!("controllers: {list}"),
    };
    let layout = if mount == Path::new("/sys/fs/cgroup") { "unified" } else { "hybrid" };
    let detail = format!("{layout}, at {} ({controllers})", mount.display());
    (Probed::yes(detail), Some(mount))
}
