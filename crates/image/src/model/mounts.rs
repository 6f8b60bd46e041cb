//! The mount namespace of a tree (in `pstree.img`): its mounts and the contents of its tmpfs mounts.

use super::*;
use serde::Serialize;

/// The mount namespace of a tree (every process of it is in it): its mounts as the root's
/// `/proc/PID/mountinfo` lists them, parents before children, the namespace's root mount first.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MountNs {
    /// The namespace's inode at dump time.
    #[prost(uint64, tag = "1")]
    pub inode: u64,
    #[prost(message, repeated, tag = "2")]
    pub mounts: Vec<Mount>,
}

/// One mount of a [`MountNs`] and how restore makes it again (`how`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Mount {
    /// Its mount id, and its parent's (the root mount's parent is outside the namespace).
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(uint32, tag = "2")]
    pub parent: u32,
    /// Where it is mounted, as the tree's root sees it.
    #[prost(string, tag = "3")]
    pub point: String,
    /// The directory (or file) of its filesystem at its root (`/` for a whole filesystem).
    #[prost(string, tag = "4")]
    pub root: String,
    #[prost(string, tag = "5")]
    pub fstype: String,
    #[prost(string, tag = "6")]
    pub source: String,
    /// The superblock's device (`MAJOR:MINOR`): mounts with the same one share a filesystem.
    #[prost(string, tag = "7")]
    pub dev: String,
    /// Per-mount flags as `mount_setattr` takes them (`MOUNT_ATTR_*`: ro, nosuid, nodev, noexec,
    /// the access-time mode, nodiratime, nosymfollow).
    #[prost(uint64, tag = "8")]
    pub attrs: u64,
    /// The superblock's options as mountinfo prints them (`rw,size=1024k,mode=755`).
    #[prost(string, tag = "9")]
    pub options: String,
    /// Its peer group when shared (`shared:N`), 0 otherwise.
    #[prost(uint32, tag = "10")]
    pub shared: u32,
    /// The peer group it receives propagation from when a slave (`master:N`), 0 otherwise.
    #[prost(uint32, tag = "11")]
    pub master: u32,
    #[prost(bool, tag = "12")]
    pub unbindable: bool,
    /// How restore makes it: `root` (the namespace's root: `--root`, or stasis's own root),
    /// `new` (a new superblock of `fstype` with `options`), `bind` (a copy of the mount `bind_of`,
    /// from its directory `root` relative to that mount's root), `host` (a copy of stasis's own
    /// mount at the same mount point, which it was a copy of at the dump: `unshare -m`),
    /// `external` (a copy of the path given at restore for `external_key`).
    #[prost(string, tag = "13")]
    pub how: String,
    #[prost(uint32, tag = "14")]
    pub bind_of: u32,
    /// `--external mnt[POINT]:KEY` at the dump: restore takes `--external mnt[KEY]:PATH`.
    #[prost(string, tag = "15")]
    pub external_key: String,
    /// A new tmpfs's whole contents, directories before what they hold (see [`TmpfsNode`]).
    #[prost(message, repeated, tag = "16")]
    pub contents: Vec<TmpfsNode>,
    /// A new proc of the root's own PID namespace: made once the root exists, with that namespace
    /// (`pidns`), as is every mount after it.
    #[prost(bool, tag = "17")]
    pub proc_of_tree: bool,
    /// Its peer group has mounts outside the namespace (`--enable-external-sharing`): restore
    /// keeps the copy it makes of an outside path a peer of that path's mount.
    #[prost(bool, tag = "580")]
    pub shared_outside: bool,
    /// Its master is a peer group outside the namespace (`--enable-external-masters`): restore
    /// makes the copy of an outside path a slave of that path's group.
    #[prost(bool, tag = "581")]
    pub master_outside: bool,
    /// An `external` mount the dump found by itself (`--ext-mount-map auto`): its filesystem was
    /// also mounted in stasis's namespace, and `external_key` is the path it had there. Restore
    /// with `--ext-mount-map auto` copies that path when no other is given for the key.
    #[prost(bool, tag = "582")]
    pub external_auto: bool,
}

/// One file, directory or symlink of a tmpfs, with its metadata.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TmpfsNode {
    /// Relative to the filesystem's root; empty for the root directory itself.
    #[prost(string, tag = "1")]
    pub path: String,
    /// `st_mode`: file type and permission bits (with setuid, setgid, sticky).
    #[prost(uint32, tag = "2")]
    pub mode: u32,
    #[prost(uint32, tag = "3")]
    pub uid: u32,
    #[prost(uint32, tag = "4")]
    pub gid: u32,
    /// Access and modification times, nanoseconds since the epoch.
    #[prost(int64, tag = "5")]
    pub atime_ns: i64,
    #[prost(int64, tag = "6")]
    pub mtime_ns: i64,
    /// A regular file's size, and the extents holding data (holes between them stay holes).
    #[prost(uint64, tag = "7")]
    pub size: u64,
    #[prost(message, repeated, tag = "8")]
    pub data: Vec<DataExtent>,
    /// A symlink's target.
    #[prost(string, tag = "9")]
    pub target: String,
    /// Another path of the same inode seen before (a hard link), relative to the root.
    #[prost(string, tag = "10")]
    pub link_of: String,
    /// A device node's device number.
    #[prost(uint64, tag = "11")]
    pub rdev: u64,
}
