//! The cgroup directories of a tree (v2, each v1 hierarchy) and their settings (`pstree.img`).

use serde::Serialize;

/// The cgroup v2 directories of a tree: every directory from `root` (the deepest cgroup holding
/// all of the tree's tasks) down to each cgroup holding one of them, parents before children,
/// each with the settings the kernel had (see docs/image-format.md). The tasks' own cgroups are
/// `TaskCore::cgroup`, of each process and each thread.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CgroupSet {
    /// The common root, a path in the cgroup v2 hierarchy (`/a/b`); `--cgroup-root` replaces it.
    #[prost(string, tag = "1")]
    pub root: String,
    #[prost(message, repeated, tag = "2")]
    pub dirs: Vec<CgroupDir>,
    /// The same for each cgroup v1 hierarchy the tree's tasks are in (older images: none).
    #[prost(message, repeated, tag = "3")]
    pub v1: Vec<CgroupV1Set>,
}

/// The directories of one cgroup v1 hierarchy, as [`CgroupSet`] has them for v2: from `root` (the
/// deepest cgroup of the hierarchy holding all of the tree's tasks) down, with their settings.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CgroupV1Set {
    /// The hierarchy's controllers as `/proc/PID/cgroup` names them (`cpu,cpuacct`,
    /// `name=systemd`).
    #[prost(string, tag = "1")]
    pub controllers: String,
    #[prost(string, tag = "2")]
    pub root: String,
    #[prost(message, repeated, tag = "3")]
    pub dirs: Vec<CgroupDir>,
}

/// A task's cgroup in one cgroup v1 hierarchy (a line of `/proc/PID/task/TID/cgroup` other than
/// `0::`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CgroupV1Path {
    #[prost(string, tag = "1")]
    pub controllers: String,
    #[prost(string, tag = "2")]
    pub path: String,
}

/// One cgroup directory of a [`CgroupSet`] or a [`CgroupV1Set`].
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CgroupDir {
    /// Its path in the hierarchy, `root` or below it.
    #[prost(string, tag = "1")]
    pub path: String,
    /// Its interface files and their contents, in the order restore writes them (`cgroup.type`
    /// first, `cgroup.subtree_control` last); a file the kernel lacked is absent.
    #[prost(message, repeated, tag = "2")]
    pub settings: Vec<CgroupSetting>,
}

/// One interface file of a cgroup and its contents (trimmed).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CgroupSetting {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}
