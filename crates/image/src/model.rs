//! The record types stored in image files.
//!
//! Each type is a protobuf message (prost). Field numbers are part of the on-disk contract: never
//! reuse or renumber one; add new fields with new numbers. Every message also derives `Serialize` so
//! that `stasis show --json` prints exactly what the image holds.
//!
//! Which message lives in which file is fixed by [`crate::ImageKind`]; see `docs/image-format.md`.

use serde::Serialize;

/// `inventory.img`: the image's table of contents, written last (by rename) so that an image without
/// it is known to be incomplete.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Inventory {
    /// Format version of the image as a whole (major, minor).
    #[prost(uint32, tag = "1")]
    pub format_major: u32,
    #[prost(uint32, tag = "2")]
    pub format_minor: u32,
    /// Version of the stasis that wrote the image.
    #[prost(string, tag = "3")]
    pub tool_version: String,
    /// `uname -r` of the machine the image was taken on.
    #[prost(string, tag = "4")]
    pub kernel_release: String,
    /// XSAVE feature mask (XCR0) of the CPU the image was taken on; restore needs all of them.
    #[prost(uint64, tag = "5")]
    pub xfeatures: u64,
    /// The feature flags of the dump's CPU (`/proc/cpuinfo`); `restore --cpu-cap=cpu|ins` requires
    /// them (all of them, or those of instruction-set extensions).
    #[prost(string, repeated, tag = "11")]
    pub cpu_flags: Vec<String>,
    /// PID of the root of the checkpointed tree.
    #[prost(int32, tag = "6")]
    pub root_pid: i32,
    /// Every other file of the image with its size and checksum.
    #[prost(message, repeated, tag = "7")]
    pub files: Vec<FileDigest>,
    /// Wall-clock time of the checkpoint, milliseconds since the epoch.
    #[prost(uint64, tag = "8")]
    pub created_unix_ms: u64,
    #[prost(uint32, tag = "9")]
    pub page_size: u32,
    /// The dump was taken with `--shell-job`: terminal fds are external.
    #[prost(bool, tag = "10")]
    pub shell_job: bool,
    /// The network lock the dump left on the dumped connections (restore removes it).
    #[prost(message, optional, tag = "350")]
    pub network_lock: Option<NetworkLock>,
    /// A pre-dump: memory only (pages, page maps, layouts and the tree), the parent of a later
    /// dump made with `--prev-images-dir`; not restorable by itself.
    #[prost(bool, tag = "450")]
    pub pre_dump: bool,
    /// With a parent image (the `parent` symlink of the directory): that image's
    /// `created_unix_ms`, checked at restore so that a replaced parent is refused by name.
    #[prost(uint64, tag = "451")]
    pub parent_created_unix_ms: u64,
}

/// A firewall table dropping every packet of the dumped TCP connections, from the dump until the
/// restored tree runs, so that peers retransmit into silence instead of being reset.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct NetworkLock {
    /// `nftables`.
    #[prost(string, tag = "1")]
    pub method: String,
    /// The nftables table (family `inet`): `stasis-PID-MS`.
    #[prost(string, tag = "2")]
    pub table: String,
}

/// One file listed in the inventory.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileDigest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint64, tag = "2")]
    pub size: u64,
    /// xxh3-64 of the file's bytes; for a page file, of its chunk checksums (see `PageMap`).
    #[prost(uint64, tag = "3")]
    pub checksum: u64,
}

/// `pstree.img`: the processes of the image and how they relate.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PsTree {
    #[prost(message, repeated, tag = "1")]
    pub processes: Vec<ProcessEntry>,
    /// Process groups whose leader had exited (and was not a zombie of the tree): restore makes each
    /// again with a short-lived helper that takes the leader's PID and calls `setpgid(0, 0)`; the
    /// members join the group, then the helper exits and `parent` reaps it.
    #[prost(message, repeated, tag = "2")]
    pub group_helpers: Vec<LeaderHelper>,
    /// Sessions whose leader had exited, of processes whose parent `parent` is in another session
    /// (reparented to a child subreaper): a helper forked by `parent` with the leader's PID calls
    /// `setsid` and forks each such child of `parent` with CLONE_PARENT, then exits.
    #[prost(message, repeated, tag = "3")]
    pub session_helpers: Vec<LeaderHelper>,
    /// The namespaces of the tree other than stasis's (see [`Namespace`]).
    #[prost(message, repeated, tag = "500")]
    pub namespaces: Vec<Namespace>,
    /// The tree's own cgroup v2 directories with their settings (see [`CgroupSet`]); none when the
    /// dump was made with `--manage-cgroups=ignore` or the image is older.
    #[prost(message, optional, tag = "550")]
    pub cgroups: Option<CgroupSet>,
    /// The tree's own mount namespace (see [`MountNs`]); none when the tree is in stasis's.
    #[prost(message, optional, tag = "580")]
    pub mounts: Option<MountNs>,
}

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

/// A thread's syscall user dispatch (`struct ptrace_sud_config`): its mode (`PR_SYS_DISPATCH_*`),
/// the address of its selector byte, and the range of code whose system calls are never dispatched.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SyscallDispatch {
    #[prost(uint64, tag = "1")]
    pub mode: u64,
    #[prost(uint64, tag = "2")]
    pub selector: u64,
    #[prost(uint64, tag = "3")]
    pub offset: u64,
    #[prost(uint64, tag = "4")]
    pub len: u64,
}

/// A group or session leader that had exited, made again by a helper with its PID forked by
/// `parent` (see [`PsTree`]).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaderHelper {
    #[prost(int32, tag = "1")]
    pub pid: i32,
    #[prost(int32, tag = "2")]
    pub parent: i32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ProcessEntry {
    #[prost(int32, tag = "1")]
    pub pid: i32,
    #[prost(int32, tag = "2")]
    pub ppid: i32,
    #[prost(int32, tag = "3")]
    pub pgid: i32,
    #[prost(int32, tag = "4")]
    pub sid: i32,
    /// Thread ids, the main thread first.
    #[prost(int32, repeated, tag = "5")]
    pub threads: Vec<i32>,
    /// The process was stopped (SIGSTOP/SIGTSTP) when it was checkpointed.
    #[prost(bool, tag = "6")]
    pub stopped: bool,
    /// A zombie its parent had not reaped: it has no other image file, only `exit_status`.
    #[prost(bool, tag = "7")]
    pub zombie: bool,
    /// A zombie's status, as `waitpid` reports it.
    #[prost(int32, tag = "8")]
    pub exit_status: i32,
    /// What the process shares with its parent, `SHARES_*` bits (made by clone without CLONE_THREAD).
    #[prost(uint32, tag = "9")]
    pub shares: u32,
    /// The controlling terminal (`st_rdev` form; 0: none), from `/proc/PID/stat` field 7.
    #[prost(uint64, tag = "10")]
    pub ctty: u64,
    /// The foreground process group of the controlling terminal (`/proc/PID/stat` field 8; 0: none).
    #[prost(int32, tag = "11")]
    pub tty_fg_pgrp: i32,
    /// The signal that stopped a `stopped` process (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU); 0 in
    /// images made before it was saved, read as SIGSTOP.
    #[prost(int32, tag = "250")]
    pub stop_signal: i32,
    /// The process's id in each PID namespace from stasis's down, outermost first (`NStgid` of
    /// `/proc/PID/status`); empty when the process is in stasis's PID namespace.
    #[prost(int32, repeated, tag = "500")]
    pub nspid: Vec<i32>,
    /// Inode of the process's UTS namespace, 0 for stasis's own (see [`Namespace`]).
    #[prost(uint64, tag = "501")]
    pub uts_ns: u64,
    /// Inode of the process's IPC namespace, 0 for stasis's own.
    #[prost(uint64, tag = "502")]
    pub ipc_ns: u64,
    /// Inode of the process's PID namespace, 0 for stasis's own.
    #[prost(uint64, tag = "503")]
    pub pid_ns: u64,
    /// Inode of the process's network namespace, 0 for stasis's own.
    #[prost(uint64, tag = "504")]
    pub net_ns: u64,
    /// Inode of the PID namespace of the process's next children when it is not its own
    /// (`unshare(CLONE_NEWPID)`, then a fork: the init of that namespace is a child of it); 0
    /// otherwise.
    #[prost(uint64, tag = "505")]
    pub pid_ns_for_children: u64,
    /// Inode of the process's time namespace, 0 for stasis's own (only the root may have one).
    #[prost(uint64, tag = "506")]
    pub time_ns: u64,
    /// The process's cgroup namespace when it is not stasis's (its inode), 0 otherwise; only the
    /// root's may differ from its parent's (see [`Namespace::cgroup_root`]).
    #[prost(uint64, tag = "551")]
    pub cgroup_ns: u64,
}

/// A namespace of the tree other than stasis's: made again at restore by the first process of
/// `pstree.img` in it (the root at its creation, or a child created with `CLONE_NEW*` by a parent
/// in another namespace); the processes after it in the namespace inherit it from their parent.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Namespace {
    /// `uts`, `ipc`, `pid`, `net`, `time` or `cgroup`.
    #[prost(string, tag = "1")]
    pub kind: String,
    /// The namespace's inode at dump time: its id in `ProcessEntry::{uts,ipc,pid}_ns`.
    #[prost(uint64, tag = "2")]
    pub inode: u64,
    /// A UTS namespace's host name (`uname -n`).
    #[prost(string, tag = "3")]
    pub hostname: String,
    /// A UTS namespace's NIS domain name.
    #[prost(string, tag = "4")]
    pub domainname: String,
    /// A network namespace's devices, with their addresses.
    #[prost(message, repeated, tag = "5")]
    pub links: Vec<NetLink>,
    /// A network namespace's routes but those the kernel makes itself, as `ip route show` prints
    /// them, each after its family (`4 ` or `6 `): `ip -4 route replace` takes them back.
    #[prost(string, repeated, tag = "6")]
    pub routes: Vec<String>,
    /// A network namespace's writable `net.ipv4.*` and `net.ipv6.*` sysctls.
    #[prost(message, repeated, tag = "7")]
    pub sysctls: Vec<Sysctl>,
    /// A namespace outside the image (`--external net[INODE]:KEY`): nothing of it is saved, and
    /// restore joins the namespace given as `--inherit-fd fd[N]:KEY` or `--join-ns`.
    #[prost(string, tag = "8")]
    pub external_key: String,
    /// A time namespace's offsets (`/proc/PID/timens_offsets`): monotonic seconds and
    /// nanoseconds, boottime seconds and nanoseconds.
    #[prost(int64, repeated, tag = "9")]
    pub time_offsets: Vec<i64>,
    /// Kind `cgroup`: the namespace's root, a path in the cgroup v2 hierarchy as stasis sees it
    /// (the cgroup its creator was in when it unshared; `--cgroup-root` moves it as it moves the
    /// tasks' cgroups).
    #[prost(string, tag = "552")]
    pub cgroup_root: String,
    /// Kind `cgroup`: the namespace's root in each cgroup v1 hierarchy, as `cgroup_root` is in v2.
    #[prost(message, repeated, tag = "553")]
    pub cgroup_roots_v1: Vec<CgroupV1Path>,
    /// A network namespace's nftables tables (iptables-nft's among them) but the network locks of
    /// stasis, each as `nft list table` prints it, which `nft -f` loads back (empty: no table).
    #[prost(string, tag = "356")]
    pub nftables: String,
}

/// A network device of a network namespace of the tree.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct NetLink {
    #[prost(string, tag = "1")]
    pub name: String,
    /// `loopback` or `veth`.
    #[prost(string, tag = "2")]
    pub kind: String,
    /// Administratively up.
    #[prost(bool, tag = "3")]
    pub up: bool,
    #[prost(uint32, tag = "4")]
    pub mtu: u32,
    /// The hardware address (`aa:bb:...`), empty for the loopback.
    #[prost(string, tag = "5")]
    pub mac: String,
    /// A veth's peer outside the tree: its name there (`--external veth[NAME]:PEER`).
    #[prost(string, tag = "6")]
    pub peer: String,
    /// Addresses as `ADDRESS/PREFIX` (IPv6 link-local ones, which the kernel makes, are left out).
    #[prost(string, repeated, tag = "7")]
    pub addrs: Vec<String>,
}

/// A sysctl of a network namespace: its path below `/proc/sys/net/` and its value.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Sysctl {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `ProcessEntry::shares` bits: the address space (CLONE_VM), the fd table (CLONE_FILES), the fs
/// info: cwd, root, umask (CLONE_FS), the signal handlers (CLONE_SIGHAND).
pub const SHARES_VM: u32 = 1;
pub const SHARES_FILES: u32 = 2;
pub const SHARES_FS: u32 = 4;
pub const SHARES_SIGHAND: u32 = 8;

/// `core-PID.img`: the state of one task (registers, signals, credentials, limits, misc).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TaskCore {
    #[prost(int32, tag = "1")]
    pub pid: i32,
    #[prost(string, tag = "2")]
    pub comm: String,
    #[prost(message, optional, tag = "3")]
    pub regs: Option<GpRegs>,
    /// The `NT_X86_XSTATE` register set exactly as `PTRACE_GETREGSET` returned it.
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub xstate: Vec<u8>,
    /// Blocked signal mask.
    #[prost(uint64, tag = "5")]
    pub sigmask: u64,
    /// Every signal disposition, for signals 1..=64 except SIGKILL and SIGSTOP.
    #[prost(message, repeated, tag = "6")]
    pub sigactions: Vec<SigAction>,
    #[prost(message, optional, tag = "7")]
    pub altstack: Option<AltStack>,
    #[prost(message, repeated, tag = "8")]
    pub pending: Vec<PendingSignal>,
    #[prost(message, repeated, tag = "9")]
    pub itimers: Vec<ITimer>,
    #[prost(message, repeated, tag = "10")]
    pub rlimits: Vec<RLimit>,
    #[prost(message, optional, tag = "11")]
    pub creds: Option<Creds>,
    #[prost(message, optional, tag = "12")]
    pub rseq: Option<Rseq>,
    #[prost(uint32, tag = "13")]
    pub personality: u32,
    #[prost(uint32, tag = "14")]
    pub umask: u32,
    #[prost(bool, tag = "15")]
    pub no_new_privs: bool,
    #[prost(int32, tag = "16")]
    pub pdeathsig: i32,
    #[prost(int32, tag = "17")]
    pub dumpable: i32,
    #[prost(string, tag = "18")]
    pub cwd: String,
    #[prost(string, tag = "19")]
    pub root: String,
    #[prost(uint64, tag = "20")]
    pub timer_slack_ns: u64,
    /// `set_tid_address` value (`PR_GET_TID_ADDRESS`).
    #[prost(uint64, tag = "21")]
    pub clear_child_tid: u64,
    #[prost(uint64, tag = "22")]
    pub robust_list: u64,
    #[prost(uint64, tag = "23")]
    pub robust_list_len: u64,
    #[prost(bool, tag = "24")]
    pub thp_disabled: bool,
    /// Nice value (-20..=19).
    #[prost(int32, tag = "25")]
    pub nice: i32,
    /// CPU affinity mask as `sched_getaffinity` returned it.
    #[prost(bytes = "vec", tag = "26")]
    #[serde(serialize_with = "hex_bytes")]
    pub cpu_affinity: Vec<u8>,
    /// `/proc/PID/oom_score_adj`.
    #[prost(int32, tag = "27")]
    pub oom_score_adj: i32,
    /// The task's cgroup v2 path (`0::/...` in `/proc/PID/task/TID/cgroup`), of the main thread
    /// and of every other thread (older images: the main thread only); empty if none.
    #[prost(string, tag = "28")]
    pub cgroup: String,
    /// Its cgroup in each cgroup v1 hierarchy, of the main thread and of every other thread.
    #[prost(message, repeated, tag = "553")]
    pub cgroups_v1: Vec<CgroupV1Path>,
    /// Scheduling policy (`sched_getscheduler`, with SCHED_RESET_ON_FORK) and its static priority.
    #[prost(int32, tag = "29")]
    pub sched_policy: i32,
    #[prost(int32, tag = "30")]
    pub sched_priority: i32,
    /// The process is a child subreaper (`PR_SET_CHILD_SUBREAPER`): orphans below it become its
    /// children.
    #[prost(bool, tag = "32")]
    pub child_subreaper: bool,
    /// The thread's I/O priority (`ioprio_get`: class << 13 | level; 0: none of its own).
    #[prost(int32, tag = "254")]
    pub ioprio: i32,
    /// Main thread: the memory-error kill policy, `PR_MCE_KILL_GET` plus one (3, the default, when
    /// unset; 0 when not read, in older images).
    #[prost(int32, tag = "255")]
    pub mce_kill: i32,
    /// Main thread: `PR_GET_TSC` (1 rdtsc allowed, 2 it raises SIGSEGV; 0 when not read).
    #[prost(int32, tag = "256")]
    pub tsc_mode: i32,
    /// Main thread: CPUID faults (`arch_prctl(ARCH_SET_CPUID, 0)`).
    #[prost(bool, tag = "257")]
    pub cpuid_faulting: bool,
    /// Main thread: the process's memory-deny-write-execute flags (`PR_GET_MDWE`), set once its
    /// memory is restored.
    #[prost(uint32, tag = "258")]
    pub mdwe: u32,
    /// The thread's syscall user dispatch (`PR_SET_SYSCALL_USER_DISPATCH`), when on.
    #[prost(message, optional, tag = "259")]
    pub syscall_dispatch: Option<SyscallDispatch>,
    /// The process's POSIX timers (`timer_create`), main thread only.
    #[prost(message, repeated, tag = "31")]
    pub posix_timers: Vec<PosixTimer>,
    /// The task's seccomp mode (`/proc/PID/status` `Seccomp`): 0 off, 1 strict, 2 filter.
    #[prost(uint32, tag = "250")]
    pub seccomp_mode: u32,
    /// In filter mode, the task's chain of filters, the oldest (applied last) first
    /// (`PTRACE_SECCOMP_GET_FILTER`). Threads whose chains begin alike share those filters.
    #[prost(message, repeated, tag = "251")]
    pub seccomp_filters: Vec<SeccompFilter>,
    /// The audit login uid (`/proc/PID/loginuid`; 4294967295: unset), main thread only; none when
    /// the kernel has no audit support or the image is older.
    #[prost(uint32, optional, tag = "252")]
    pub loginuid: Option<u32>,
    /// The audit session id (`/proc/PID/sessionid`), which the kernel assigns itself: it is kept only
    /// when inherited (see docs/architecture.md).
    #[prost(uint32, optional, tag = "253")]
    pub audit_session: Option<u32>,
    /// A thread's id in each PID namespace from stasis's down, outermost first (`NSpid` of
    /// `/proc/PID/task/TID/status`); empty in stasis's PID namespace and for the main thread,
    /// whose ids are `ProcessEntry::nspid`.
    #[prost(int32, repeated, tag = "500")]
    pub nspid: Vec<i32>,
}

/// One seccomp filter of a task's chain.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SeccompFilter {
    /// The classic BPF program: `struct sock_filter` instructions (8 bytes each, at most 4096).
    #[prost(bytes = "vec", tag = "1")]
    pub program: Vec<u8>,
    /// Installed with `SECCOMP_FILTER_FLAG_LOG`.
    #[prost(bool, tag = "2")]
    pub log: bool,
}

/// General purpose registers, `struct user_regs_struct` of x86_64.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct GpRegs {
    #[prost(uint64, tag = "1")]
    pub r15: u64,
    #[prost(uint64, tag = "2")]
    pub r14: u64,
    #[prost(uint64, tag = "3")]
    pub r13: u64,
    #[prost(uint64, tag = "4")]
    pub r12: u64,
    #[prost(uint64, tag = "5")]
    pub rbp: u64,
    #[prost(uint64, tag = "6")]
    pub rbx: u64,
    #[prost(uint64, tag = "7")]
    pub r11: u64,
    #[prost(uint64, tag = "8")]
    pub r10: u64,
    #[prost(uint64, tag = "9")]
    pub r9: u64,
    #[prost(uint64, tag = "10")]
    pub r8: u64,
    #[prost(uint64, tag = "11")]
    pub rax: u64,
    #[prost(uint64, tag = "12")]
    pub rcx: u64,
    #[prost(uint64, tag = "13")]
    pub rdx: u64,
    #[prost(uint64, tag = "14")]
    pub rsi: u64,
    #[prost(uint64, tag = "15")]
    pub rdi: u64,
    #[prost(uint64, tag = "16")]
    pub orig_rax: u64,
    #[prost(uint64, tag = "17")]
    pub rip: u64,
    #[prost(uint64, tag = "18")]
    pub cs: u64,
    #[prost(uint64, tag = "19")]
    pub eflags: u64,
    #[prost(uint64, tag = "20")]
    pub rsp: u64,
    #[prost(uint64, tag = "21")]
    pub ss: u64,
    #[prost(uint64, tag = "22")]
    pub fs_base: u64,
    #[prost(uint64, tag = "23")]
    pub gs_base: u64,
    #[prost(uint64, tag = "24")]
    pub ds: u64,
    #[prost(uint64, tag = "25")]
    pub es: u64,
    #[prost(uint64, tag = "26")]
    pub fs: u64,
    #[prost(uint64, tag = "27")]
    pub gs: u64,
}

/// A kernel `struct sigaction` (x86_64 layout).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SigAction {
    #[prost(uint32, tag = "1")]
    pub signo: u32,
    #[prost(uint64, tag = "2")]
    pub handler: u64,
    #[prost(uint64, tag = "3")]
    pub flags: u64,
    #[prost(uint64, tag = "4")]
    pub restorer: u64,
    #[prost(uint64, tag = "5")]
    pub mask: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AltStack {
    #[prost(uint64, tag = "1")]
    pub sp: u64,
    #[prost(int32, tag = "2")]
    pub flags: i32,
    #[prost(uint64, tag = "3")]
    pub size: u64,
}

/// A queued signal, as `PTRACE_PEEKSIGINFO` returned it.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PendingSignal {
    /// Process-wide (shared) queue rather than the thread's own.
    #[prost(bool, tag = "1")]
    pub shared: bool,
    #[prost(int32, tag = "2")]
    pub signo: i32,
    /// The raw 128-byte `siginfo_t`.
    #[prost(bytes = "vec", tag = "3")]
    #[serde(serialize_with = "hex_bytes")]
    pub siginfo: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ITimer {
    /// ITIMER_REAL (0), ITIMER_VIRTUAL (1) or ITIMER_PROF (2).
    #[prost(int32, tag = "1")]
    pub which: i32,
    #[prost(int64, tag = "2")]
    pub interval_sec: i64,
    #[prost(int64, tag = "3")]
    pub interval_usec: i64,
    #[prost(int64, tag = "4")]
    pub value_sec: i64,
    #[prost(int64, tag = "5")]
    pub value_usec: i64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RLimit {
    #[prost(uint32, tag = "1")]
    pub resource: u32,
    #[prost(uint64, tag = "2")]
    pub cur: u64,
    #[prost(uint64, tag = "3")]
    pub max: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Creds {
    #[prost(uint32, tag = "1")]
    pub uid: u32,
    #[prost(uint32, tag = "2")]
    pub euid: u32,
    #[prost(uint32, tag = "3")]
    pub suid: u32,
    #[prost(uint32, tag = "4")]
    pub fsuid: u32,
    #[prost(uint32, tag = "5")]
    pub gid: u32,
    #[prost(uint32, tag = "6")]
    pub egid: u32,
    #[prost(uint32, tag = "7")]
    pub sgid: u32,
    #[prost(uint32, tag = "8")]
    pub fsgid: u32,
    #[prost(uint32, repeated, tag = "9")]
    pub groups: Vec<u32>,
    #[prost(uint64, tag = "10")]
    pub cap_inh: u64,
    #[prost(uint64, tag = "11")]
    pub cap_prm: u64,
    #[prost(uint64, tag = "12")]
    pub cap_eff: u64,
    #[prost(uint64, tag = "13")]
    pub cap_bnd: u64,
    #[prost(uint64, tag = "14")]
    pub cap_amb: u64,
    #[prost(uint32, tag = "15")]
    pub securebits: u32,
}

/// The task's rseq registration (`PTRACE_GET_RSEQ_CONFIGURATION`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Rseq {
    #[prost(uint64, tag = "1")]
    pub ptr: u64,
    #[prost(uint32, tag = "2")]
    pub len: u32,
    #[prost(uint32, tag = "3")]
    pub signature: u32,
}

/// `mm-PID.img`: the address space layout and the mm fields.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MmImage {
    #[prost(message, repeated, tag = "1")]
    pub vmas: Vec<Vma>,
    #[prost(message, optional, tag = "2")]
    pub fields: Option<MmFields>,
    /// The auxiliary vector as (key, value) words, as `/proc/PID/auxv` gives it.
    #[prost(uint64, repeated, tag = "3")]
    pub auxv: Vec<u64>,
    /// Path of `/proc/PID/exe`.
    #[prost(string, tag = "4")]
    pub exe_path: String,
    /// xxh3-64 of the vDSO text; restore needs the same vDSO.
    #[prost(uint64, tag = "5")]
    pub vdso_checksum: u64,
    /// Guard regions (`MADV_GUARD_INSTALL`): never read at dump, installed again at restore.
    #[prost(message, repeated, tag = "200")]
    pub guards: Vec<PageRun>,
    /// `mlockall` flags still in force for future mappings: `MCL_FUTURE` (2), with `MCL_ONFAULT` (4).
    #[prost(uint32, tag = "201")]
    pub mlock_future: u32,
    /// `membarrier` registrations, the `MEMBARRIER_CMD_REGISTER_*` bits
    /// `MEMBARRIER_CMD_GET_REGISTRATIONS` returns.
    #[prost(uint32, tag = "202")]
    pub membarrier: u32,
    /// KSM merges every area of the process (`prctl(PR_SET_MEMORY_MERGE, 1)`).
    #[prost(bool, tag = "203")]
    pub ksm_merge_any: bool,
}

/// What backs a memory area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration, Serialize)]
#[repr(i32)]
pub enum VmaKind {
    /// Private anonymous memory (also `[heap]` and `[stack]`, see `Vma::name`).
    Anon = 0,
    /// A file mapping (private or shared).
    File = 1,
    /// Shared anonymous memory.
    SharedAnon = 2,
    Vdso = 3,
    Vvar = 4,
    VvarVclock = 5,
    Vsyscall = 6,
    /// An attached SysV shared memory segment (`inode` is its id).
    SysvShm = 7,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Vma {
    #[prost(uint64, tag = "1")]
    pub start: u64,
    #[prost(uint64, tag = "2")]
    pub end: u64,
    /// PROT_* bits.
    #[prost(uint32, tag = "3")]
    pub prot: u32,
    /// MAP_SHARED (1) or MAP_PRIVATE (2), plus MAP_GROWSDOWN where the area grows down and
    /// MAP_NORESERVE where it is not accounted (`nr` in VmFlags).
    #[prost(uint32, tag = "4")]
    pub flags: u32,
    #[prost(enumeration = "VmaKind", tag = "5")]
    pub kind: i32,
    /// The name `/proc/PID/maps` shows: a path, `[heap]`, `[stack]`, `[anon:NAME]`, or empty.
    #[prost(string, tag = "6")]
    pub name: String,
    /// File offset of `start`.
    #[prost(uint64, tag = "7")]
    pub offset: u64,
    #[prost(uint64, tag = "8")]
    pub dev: u64,
    #[prost(uint64, tag = "9")]
    pub inode: u64,
    /// madvise state to reapply, `MADV_BIT_*` bits.
    #[prost(uint32, tag = "10")]
    pub madvise: u32,
    /// `mlock`ed (`lo` in VmFlags).
    #[prost(bool, tag = "11")]
    pub locked: bool,
    /// A mapping of an unlinked file or memfd: restore maps the file made again from `files.img`
    /// (the entry whose `ino` is `inode`).
    #[prost(bool, tag = "12")]
    pub ghost: bool,
    /// The most access the area allows (`mr`, `mw`, `me` in VmFlags) as PROT_* bits: what
    /// `mprotect` may grant. A shared file mapping has PROT_WRITE here when its file was open for
    /// writing; restore opens the file so again. Zero in images made before this field: the
    /// protection then stands for it.
    #[prost(uint32, tag = "200")]
    pub may: u32,
    /// A `MAP_DROPPABLE` area (`dp`): its pages may be dropped under memory pressure.
    #[prost(bool, tag = "201")]
    pub droppable: bool,
    /// `mlock2(MLOCK_ONFAULT)`: locked as pages fault in (`lf`), with `locked`.
    #[prost(bool, tag = "202")]
    pub lock_on_fault: bool,
    /// The area had a guard region once (`gu` in VmFlags, Linux 6.18: the kernel never clears it).
    #[prost(bool, tag = "203")]
    pub maybe_guard: bool,
    /// A hugetlb area (`ht` in VmFlags: MAP_HUGETLB): its page size in bytes (smaps
    /// `KernelPageSize`, 2 MiB or 1 GiB), also in `flags` as `MAP_HUGETLB | log2(size) <<
    /// MAP_HUGE_SHIFT`. Its pages are saved and filled in whole huge pages. Zero for other areas.
    #[prost(uint64, tag = "240")]
    pub hugetlb_page_size: u64,
}

/// `Vma::madvise` bits.
pub const MADV_BIT_DONTFORK: u32 = 1;
pub const MADV_BIT_DONTDUMP: u32 = 2;
pub const MADV_BIT_HUGEPAGE: u32 = 4;
pub const MADV_BIT_NOHUGEPAGE: u32 = 8;
pub const MADV_BIT_WIPEONFORK: u32 = 16;
pub const MADV_BIT_MERGEABLE: u32 = 32;
pub const MADV_BIT_SEQUENTIAL: u32 = 64;
pub const MADV_BIT_RANDOM: u32 = 128;

/// The mm fields `prctl(PR_SET_MM_MAP)` sets.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MmFields {
    #[prost(uint64, tag = "1")]
    pub start_code: u64,
    #[prost(uint64, tag = "2")]
    pub end_code: u64,
    #[prost(uint64, tag = "3")]
    pub start_data: u64,
    #[prost(uint64, tag = "4")]
    pub end_data: u64,
    #[prost(uint64, tag = "5")]
    pub start_brk: u64,
    #[prost(uint64, tag = "6")]
    pub brk: u64,
    #[prost(uint64, tag = "7")]
    pub start_stack: u64,
    #[prost(uint64, tag = "8")]
    pub arg_start: u64,
    #[prost(uint64, tag = "9")]
    pub arg_end: u64,
    #[prost(uint64, tag = "10")]
    pub env_start: u64,
    #[prost(uint64, tag = "11")]
    pub env_end: u64,
}

/// `pagemap-PID.img`: which pages `pages-PID.img` holds, in file order.
///
/// The page file holds the pages of `runs` back to back, starting at `PAGE_DATA_OFFSET`. Its data is
/// checksummed in chunks of `chunk_size` bytes (the last one may be shorter).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PageMap {
    #[prost(message, repeated, tag = "1")]
    pub runs: Vec<PageRun>,
    #[prost(uint64, tag = "2")]
    pub chunk_size: u64,
    #[prost(uint64, repeated, tag = "3")]
    pub chunk_checksums: Vec<u64>,
    /// Sum of `nr_pages` over `runs`.
    #[prost(uint64, tag = "4")]
    pub total_pages: u64,
    /// Pages a child still shares copy-on-write with its parent: not in the page file; restore keeps
    /// them shared by forking the child from its restored parent.
    #[prost(message, repeated, tag = "5")]
    pub inherited: Vec<PageRun>,
    /// Pages present at the dump but not written since the parent image (`parent` symlink): their
    /// bytes are in the parent's page file, or in its parent's (restore follows the chain).
    #[prost(message, repeated, tag = "452")]
    pub in_parent: Vec<PageRun>,
    /// Ranges whose writes were tracked from this dump on (userfaultfd write-protect), for the next
    /// incremental dump; informational.
    #[prost(message, repeated, tag = "453")]
    pub tracked: Vec<PageRun>,
    /// Pages of `runs` punched out of the page file (`--auto-dedup`, `stasis dedup`) because a
    /// newer image of the chain holds them: holes that read as zeros (the chunk checksums are of
    /// the zeros). Restore of this image itself, or an in-parent page resolved to one, is refused.
    #[prost(message, repeated, tag = "620")]
    pub punched: Vec<PageRun>,
    /// How the page file's data is stored: 0 raw pages, 1 zstd frames, one per chunk
    /// (`--compress`; see `stasis_image::compress`).
    #[prost(int32, tag = "621")]
    pub compression: i32,
    /// With `compression`: the size in bytes of each chunk's frame, in file order (frame k starts
    /// at 4096 plus the sizes of the frames before it).
    #[prost(uint64, repeated, tag = "622")]
    pub frame_sizes: Vec<u64>,
}

/// Consecutive pages starting at `vaddr`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PageRun {
    #[prost(uint64, tag = "1")]
    pub vaddr: u64,
    #[prost(uint64, tag = "2")]
    pub nr_pages: u64,
}

/// `fds-PID.img`: the process's fd table.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FdTable {
    #[prost(message, repeated, tag = "1")]
    pub fds: Vec<FdEntry>,
    /// File locks (`--file-locks`) this process takes again at restore, through its fds: its own
    /// POSIX locks, and the flock, OFD locks and leases of descriptions it holds that it took (or,
    /// if their taker is not in the tree, that it was the first process found holding).
    #[prost(message, repeated, tag = "150")]
    pub locks: Vec<FileLock>,
}

/// What owns a file lock and how it is taken (`flock(2)`, `fcntl(2)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration, Serialize)]
#[repr(i32)]
pub enum LockKind {
    /// `flock`: the open file description's.
    Flock = 0,
    /// `fcntl(F_SETLK)`: the process's.
    Posix = 1,
    /// `fcntl(F_OFD_SETLK)`: the open file description's.
    Ofd = 2,
    /// `fcntl(F_SETLEASE)`: the open file description's.
    Lease = 3,
}

/// One file lock, as `/proc/PID/fdinfo/FD` shows it (`lock:` lines).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileLock {
    #[prost(enumeration = "LockKind", tag = "1")]
    pub kind: i32,
    /// The fd of the process to take it through.
    #[prost(int32, tag = "2")]
    pub fd: i32,
    /// Exclusive (`F_WRLCK`, `LOCK_EX`), else shared (`F_RDLCK`, `LOCK_SH`).
    #[prost(bool, tag = "3")]
    pub write: bool,
    /// Byte range of a POSIX or OFD lock: first byte, and length (0: to the end of the file).
    #[prost(uint64, tag = "4")]
    pub start: u64,
    #[prost(uint64, tag = "5")]
    pub len: u64,
    /// The pid the kernel showed for it (-1 for OFD locks), for messages.
    #[prost(int32, tag = "6")]
    pub pid: i32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FdEntry {
    #[prost(int32, tag = "1")]
    pub fd: i32,
    /// `FileEntry::id` of the open file description.
    #[prost(uint32, tag = "2")]
    pub file_id: u32,
    #[prost(bool, tag = "3")]
    pub cloexec: bool,
}

/// `files.img`: every open file description of the image, each once.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileTable {
    #[prost(message, repeated, tag = "1")]
    pub files: Vec<FileEntry>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileEntry {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    /// Open flags (`O_*`, as fdinfo shows them, without O_CLOEXEC).
    #[prost(uint32, tag = "2")]
    pub flags: u32,
    #[prost(oneof = "FileKind", tags = "3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 101, 350, 351, 352")]
    pub kind: Option<FileKind>,
    /// Who gets the description's I/O signals (`F_GETOWN_EX`) and which signal (`F_GETSIG`);
    /// absent when neither is set.
    #[prost(message, optional, tag = "100")]
    pub owner: Option<FileOwner>,
}

/// The owner of an open file description's I/O signals (`fcntl(2)` `F_SETOWN_EX`, `F_SETSIG`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileOwner {
    /// `F_OWNER_TID` (0), `F_OWNER_PID` (1) or `F_OWNER_PGRP` (2).
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The thread, process or process group; 0 for none.
    #[prost(int32, tag = "2")]
    pub pid: i32,
    /// The signal sent instead of SIGIO (`F_SETSIG`); 0 for SIGIO.
    #[prost(int32, tag = "3")]
    pub signal: i32,
}

#[derive(Clone, PartialEq, prost::Oneof, Serialize)]
pub enum FileKind {
    #[prost(message, tag = "3")]
    Regular(RegularFile),
    #[prost(message, tag = "4")]
    Directory(DirectoryFile),
    #[prost(message, tag = "5")]
    CharDevice(CharDevice),
    #[prost(message, tag = "6")]
    Terminal(Terminal),
    #[prost(message, tag = "7")]
    Pipe(PipeEnd),
    #[prost(message, tag = "14")]
    Epoll(EpollFile),
    #[prost(message, tag = "15")]
    Inotify(InotifyFile),
    #[prost(message, tag = "16")]
    Fanotify(FanotifyFile),
    #[prost(message, tag = "17")]
    Fifo(FifoFile),
    #[prost(message, tag = "9")]
    EventFd(EventFd),
    #[prost(message, tag = "10")]
    SignalFd(SignalFd),
    #[prost(message, tag = "11")]
    TimerFd(TimerFd),
    #[prost(message, tag = "12")]
    PidFd(PidFd),
    #[prost(message, tag = "13")]
    Mqueue(Mqueue),
    #[prost(message, tag = "8")]
    UnixSocket(UnixSocket),
    #[prost(message, tag = "18")]
    Pty(PtyFile),
    #[prost(message, tag = "350")]
    InetSocket(InetSocket),
    #[prost(message, tag = "351")]
    NetlinkSocket(NetlinkSocket),
    #[prost(message, tag = "352")]
    PacketSocket(PacketSocket),
    #[prost(message, tag = "101")]
    ProcFile(ProcFile),
}

/// A packet socket (`packet(7)`): its type, protocol, interface, fanout group, memberships and
/// options.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PacketSocket {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// `SOCK_RAW` (3) or `SOCK_DGRAM` (2).
    #[prost(uint32, tag = "2")]
    pub sock_type: u32,
    /// The protocol the socket was made with and the one it is bound to, in network byte order
    /// (`htons(ETH_P_ALL)` ...).
    #[prost(uint32, tag = "3")]
    pub protocol: u32,
    #[prost(uint32, tag = "4")]
    pub bound_protocol: u32,
    /// The bound interface, 0 for every interface.
    #[prost(int32, tag = "5")]
    pub ifindex: i32,
    /// `PACKET_FANOUT` as `getsockopt` reads it (id, type and flags), 0 for none.
    #[prost(uint32, tag = "6")]
    pub fanout: u32,
    /// `PACKET_ADD_MEMBERSHIP`s, as `packet_diag` lists them.
    #[prost(message, repeated, tag = "7")]
    pub memberships: Vec<PacketMembership>,
    /// Integer options by name (`PACKET_AUXDATA`, `PACKET_VERSION` ...).
    #[prost(message, repeated, tag = "8")]
    pub options: Vec<SockOpt>,
    #[prost(int32, tag = "9")]
    pub rcvbuf: i32,
    #[prost(int32, tag = "10")]
    pub sndbuf: i32,
    /// The socket-level (`SOL_SOCKET`) settings that are not integers: linger, timeouts, device,
    /// filter (absent in images made before them: nothing set).
    #[prost(message, optional, tag = "399")]
    pub socket: Option<SocketLevel>,
}

/// One `PACKET_ADD_MEMBERSHIP` of a packet socket.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PacketMembership {
    #[prost(uint32, tag = "1")]
    pub ifindex: u32,
    /// How many times it was added.
    #[prost(uint32, tag = "2")]
    pub count: u32,
    /// `PACKET_MR_MULTICAST` (0), `PACKET_MR_PROMISC` (1), `PACKET_MR_ALLMULTI` (2), `PACKET_MR_UNICAST` (3).
    #[prost(uint32, tag = "3")]
    pub kind: u32,
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub address: Vec<u8>,
}

/// A netlink socket (`netlink(7)`): its protocol, port id, groups, default destination and options.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct NetlinkSocket {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// `SOCK_RAW` (3) or `SOCK_DGRAM` (2).
    #[prost(uint32, tag = "2")]
    pub sock_type: u32,
    /// `NETLINK_ROUTE` (0), `NETLINK_SOCK_DIAG` (4), `NETLINK_KOBJECT_UEVENT` (15) ...
    #[prost(uint32, tag = "3")]
    pub protocol: u32,
    /// The bound port id; 0 for a socket never bound (nor autobound by a send).
    #[prost(uint32, tag = "4")]
    pub portid: u32,
    /// Every group joined, by number (1 is the first).
    #[prost(uint32, repeated, tag = "5")]
    pub groups: Vec<u32>,
    /// The default destination set with `connect` (port id, group bitmap), 0 for none.
    #[prost(uint32, tag = "6")]
    pub dst_portid: u32,
    #[prost(uint32, tag = "7")]
    pub dst_groups: u32,
    /// Integer options by name (`NETLINK_EXT_ACK`, `SO_PASSCRED` ...), as `getsockopt` read them.
    #[prost(message, repeated, tag = "8")]
    pub options: Vec<SockOpt>,
    /// `SO_RCVBUF`, `SO_SNDBUF` as `getsockopt` reports them.
    #[prost(int32, tag = "9")]
    pub rcvbuf: i32,
    #[prost(int32, tag = "10")]
    pub sndbuf: i32,
    /// The socket-level settings that are not integers (see [`PacketSocket::socket`]).
    #[prost(message, optional, tag = "399")]
    pub socket: Option<SocketLevel>,
}

/// The socket-level (`SOL_SOCKET`) settings of a packet or netlink socket that are not integer
/// options (those are in the socket's `options`); an IP socket keeps the same in its own fields.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SocketLevel {
    /// `SO_LINGER`: -1 when off, else the seconds.
    #[prost(int32, tag = "1")]
    pub linger: i32,
    /// `SO_RCVTIMEO`, `SO_SNDTIMEO` in microseconds, 0 for none.
    #[prost(uint64, tag = "2")]
    pub rcvtimeo_us: u64,
    #[prost(uint64, tag = "3")]
    pub sndtimeo_us: u64,
    /// `SO_BINDTODEVICE`, empty for none.
    #[prost(string, tag = "4")]
    pub bound_device: String,
    /// The classic BPF program (`SO_ATTACH_FILTER`, read back with `SO_GET_FILTER`), 8 bytes per
    /// `struct sock_filter`; empty for none.
    #[prost(bytes = "vec", tag = "5")]
    #[serde(serialize_with = "hex_bytes")]
    pub filter: Vec<u8>,
    /// `SO_LOCK_FILTER`.
    #[prost(bool, tag = "6")]
    pub filter_locked: bool,
    /// Options that are not `int`s (`SO_TXTIME`, `SO_MAX_PACING_RATE`), by name, as read.
    #[prost(message, repeated, tag = "7")]
    pub bytes_options: Vec<SockOptBytes>,
}

/// One socket option whose value is not an `int`, as `getsockopt` returned it.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SockOptBytes {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "hex_bytes")]
    pub value: Vec<u8>,
}

/// A file of a process's `/proc/PID/` directory, or a namespace fd (nsfs, `TYPE:[INODE]`, as
/// `/proc/PID/ns/NAME` opens one), opened again at restore as `/proc/PID/REST` once process `pid`
/// exists (it may be a process of the image, made later than the holder).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ProcFile {
    /// The process (or thread) whose directory it is in.
    #[prost(int32, tag = "1")]
    pub pid: i32,
    /// The path below `/proc/PID`, starting with `/` (`/status`, `/ns/net`).
    #[prost(string, tag = "2")]
    pub rest: String,
    /// The file offset.
    #[prost(uint64, tag = "3")]
    pub pos: u64,
    /// Of a namespace fd: the namespace's inode at dump (0 for other files).
    #[prost(uint64, tag = "4")]
    pub ns_ino: u64,
}

/// One end of a pipe. Both ends of a pipe share `pipe_id`; the data buffered in the pipe is stored
/// once, with its read end.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PipeEnd {
    /// The pipe's inode number at dump time (`pipe:[N]`).
    #[prost(uint64, tag = "1")]
    pub pipe_id: u64,
    #[prost(bool, tag = "2")]
    pub read_end: bool,
    /// Capacity in bytes (`F_GETPIPE_SZ`).
    #[prost(uint32, tag = "3")]
    pub capacity: u32,
    /// Bytes queued in the pipe (read end only).
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    /// `pipe:[N]`, as /proc shows it.
    #[prost(string, tag = "5")]
    pub name: String,
    /// The other end was closed by every process, in the tree and outside (no writer of a read end:
    /// a read gives EOF once the data is read; no reader of a write end: a write gives EPIPE).
    #[prost(bool, tag = "100")]
    pub peer_closed: bool,
    /// The other end is open, but outside the dumped tree: restore gives a fresh pipe (whose other
    /// end nobody holds) unless `--inherit-fd` hands in a descriptor for this end.
    #[prost(bool, tag = "101")]
    pub external: bool,
    /// The sizes of the packets `data` holds, in order, when the pipe is in packet mode (written
    /// through an O_DIRECT end: each write one packet, each read at most one); empty otherwise.
    #[prost(uint32, repeated, tag = "102")]
    pub packets: Vec<u32>,
}

/// A UNIX domain socket (`unix(7)`). Sockets refer to each other by their inode number at dump time
/// (`ino`, `peer`, `icons`); the messages queued on a socket are stored with it, the files in flight
/// in them as ids of other entries of `files.img`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct UnixSocket {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_SEQPACKET` (5).
    #[prost(uint32, tag = "2")]
    pub sock_type: u32,
    /// `TCP_ESTABLISHED` (1), `TCP_CLOSE` (7) or `TCP_LISTEN` (10), as `unix_diag` reports it.
    #[prost(uint32, tag = "3")]
    pub state: u32,
    /// The address: empty if unnamed, a leading NUL byte for an abstract name, else a path.
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub name: Vec<u8>,
    /// Inode of the peer (0: none, or a peer that is closed).
    #[prost(uint64, tag = "5")]
    pub peer: u64,
    /// The peer is outside the dumped tree (`--ext-unix-sk`): restore connects to `peer_name`.
    #[prost(bool, tag = "6")]
    pub external_peer: bool,
    #[prost(bytes = "vec", tag = "7")]
    #[serde(serialize_with = "hex_bytes")]
    pub peer_name: Vec<u8>,
    /// Listening socket: its backlog, and the inodes of the client sockets whose connections wait to
    /// be accepted, oldest first; 0 for a connection whose client was closed since.
    #[prost(uint32, tag = "8")]
    pub backlog: u32,
    #[prost(uint64, repeated, tag = "9")]
    pub icons: Vec<u64>,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2).
    #[prost(uint32, tag = "10")]
    pub shutdown: u32,
    /// The receive queue, oldest first.
    #[prost(message, repeated, tag = "11")]
    pub queue: Vec<UnixMessage>,
    #[prost(message, optional, tag = "12")]
    pub options: Option<SocketOptions>,
    /// A path name: the socket file's mode, owner and group, and whether it was still there at dump
    /// (a program may unlink it while the socket stays bound).
    #[prost(uint32, tag = "13")]
    pub path_mode: u32,
    #[prost(uint32, tag = "14")]
    pub path_uid: u32,
    #[prost(uint32, tag = "15")]
    pub path_gid: u32,
    #[prost(bool, tag = "16")]
    pub path_present: bool,
    /// A relative path name: the absolute directory it is relative to (found at dump as the working
    /// directory of the process holding the socket, checked against the socket file's inode).
    #[prost(string, tag = "17")]
    pub bind_dir: String,
}

/// An IPv4 or IPv6 TCP socket (`tcp(7)`): unbound, bound, listening or established; or a UDP or
/// UDP-Lite socket (`udp(7)`, `udplite(7)`): unbound, bound or connected (state 1). Addresses are
/// text (`127.0.0.1`, `::1`, `::ffff:127.0.0.1`); an unbound socket has port 0.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct InetSocket {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// `AF_INET` (2) or `AF_INET6` (10).
    #[prost(uint32, tag = "2")]
    pub family: u32,
    /// `SOCK_STREAM` (1), `SOCK_DGRAM` (2) or `SOCK_RAW` (3).
    #[prost(uint32, tag = "3")]
    pub sock_type: u32,
    /// `IPPROTO_TCP` (6), `IPPROTO_UDP` (17) or `IPPROTO_UDPLITE` (136); any for a raw socket.
    #[prost(uint32, tag = "4")]
    pub protocol: u32,
    /// `TCP_ESTABLISHED` (1), `TCP_CLOSE` (7) or `TCP_LISTEN` (10).
    #[prost(uint32, tag = "5")]
    pub state: u32,
    #[prost(string, tag = "6")]
    pub local_addr: String,
    #[prost(uint32, tag = "7")]
    pub local_port: u32,
    #[prost(string, tag = "8")]
    pub remote_addr: String,
    #[prost(uint32, tag = "9")]
    pub remote_port: u32,
    /// A listener's backlog (`listen(2)`).
    #[prost(uint32, tag = "10")]
    pub backlog: u32,
    /// Integer options by name (`SO_REUSEADDR`, `TCP_NODELAY`, `IPV6_V6ONLY`, ...), each as
    /// `getsockopt` read it; restore sets those that differ from a new socket's.
    #[prost(message, repeated, tag = "11")]
    pub options: Vec<SockOpt>,
    /// `SO_LINGER`: -1 when off, else the seconds.
    #[prost(int32, tag = "12")]
    pub linger: i32,
    /// `SO_RCVTIMEO`, `SO_SNDTIMEO` in microseconds, 0 for none.
    #[prost(uint64, tag = "13")]
    pub rcvtimeo_us: u64,
    #[prost(uint64, tag = "14")]
    pub sndtimeo_us: u64,
    /// `TCP_CONGESTION`.
    #[prost(string, tag = "15")]
    pub congestion: String,
    /// `SO_BINDTODEVICE`, empty for none.
    #[prost(string, tag = "16")]
    pub bound_device: String,
    /// `SO_RCVBUF`, `SO_SNDBUF` as `getsockopt` reports them (the kernel doubles what was set).
    #[prost(int32, tag = "17")]
    pub rcvbuf: i32,
    #[prost(int32, tag = "18")]
    pub sndbuf: i32,
    /// An established connection (`--tcp-established`): what `TCP_REPAIR` read.
    #[prost(message, optional, tag = "19")]
    pub tcp: Option<TcpConnection>,
    /// A UDP or UDP-Lite socket: the datagrams queued unread, oldest first.
    #[prost(message, repeated, tag = "350")]
    pub datagrams: Vec<Datagram>,
    /// `RCV_SHUTDOWN` (1) and `SEND_SHUTDOWN` (2), as `inet_diag` reports them.
    #[prost(uint32, tag = "351")]
    pub shutdown: u32,
    /// The classic BPF program attached with `SO_ATTACH_FILTER` (read back with `SO_GET_FILTER`),
    /// 8 bytes per `struct sock_filter`; empty for none.
    #[prost(bytes = "vec", tag = "352")]
    #[serde(serialize_with = "hex_bytes")]
    pub filter: Vec<u8>,
    /// `SO_LOCK_FILTER`: the filter cannot be changed.
    #[prost(bool, tag = "353")]
    pub filter_locked: bool,
    /// Multicast groups joined (UDP), each on its interface.
    #[prost(message, repeated, tag = "354")]
    pub memberships: Vec<Membership>,
    /// A raw ICMP socket's type filter (`ICMP_FILTER`, 4 bytes; `ICMPV6_FILTER`, 32 bytes).
    #[prost(bytes = "vec", tag = "355")]
    #[serde(serialize_with = "hex_bytes")]
    pub icmp_filter: Vec<u8>,
    /// Options that are not `int`s (`SO_TXTIME`, `SO_MAX_PACING_RATE`, `IP_LOCAL_PORT_RANGE`
    /// read whole), by name, as read.
    #[prost(message, repeated, tag = "399")]
    pub bytes_options: Vec<SockOptBytes>,
}

/// A multicast group a socket joined (`IP_ADD_MEMBERSHIP`, `MCAST_JOIN_GROUP` ...), with its
/// source filter (`MCAST_MSFILTER`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Membership {
    /// The group address, as text.
    #[prost(string, tag = "1")]
    pub group: String,
    /// The interface index.
    #[prost(uint32, tag = "2")]
    pub ifindex: u32,
    /// `MCAST_INCLUDE` (only `sources`) rather than `MCAST_EXCLUDE` (all but `sources`).
    #[prost(bool, tag = "3")]
    pub include: bool,
    #[prost(string, repeated, tag = "4")]
    pub sources: Vec<String>,
}

/// One datagram queued on a UDP or UDP-Lite socket, with its source.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Datagram {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    /// The source address (text, as `local_addr`) and port.
    #[prost(string, tag = "2")]
    pub source_addr: String,
    #[prost(uint32, tag = "3")]
    pub source_port: u32,
}

/// One integer socket option.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SockOpt {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int32, tag = "2")]
    pub value: i32,
}

/// The state of an established TCP connection, read in repair mode (`TCP_REPAIR`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TcpConnection {
    /// Sequence number of the first byte of `send_queue` (the oldest not acknowledged).
    #[prost(uint32, tag = "1")]
    pub send_seq: u32,
    /// Sequence number of the first byte of `recv_queue` (the oldest not read).
    #[prost(uint32, tag = "2")]
    pub recv_seq: u32,
    /// Written and not acknowledged, sent or not; the last `unsent` bytes were never sent.
    #[prost(bytes = "vec", tag = "3")]
    #[serde(serialize_with = "hex_bytes")]
    pub send_queue: Vec<u8>,
    #[prost(uint32, tag = "4")]
    pub unsent: u32,
    /// Received and not read.
    #[prost(bytes = "vec", tag = "5")]
    #[serde(serialize_with = "hex_bytes")]
    pub recv_queue: Vec<u8>,
    /// `TCP_MAXSEG` of the connection.
    #[prost(uint32, tag = "6")]
    pub mss: u32,
    /// Negotiated options (`tcpi_options`): window scaling with both scales, SACK, timestamps.
    #[prost(bool, tag = "7")]
    pub wscale_ok: bool,
    #[prost(uint32, tag = "8")]
    pub snd_wscale: u32,
    #[prost(uint32, tag = "9")]
    pub rcv_wscale: u32,
    #[prost(bool, tag = "10")]
    pub sack: bool,
    #[prost(bool, tag = "11")]
    pub timestamps: bool,
    /// `TCP_TIMESTAMP`: the connection's timestamp clock.
    #[prost(uint32, tag = "12")]
    pub timestamp: u32,
    /// `TCP_REPAIR_WINDOW`.
    #[prost(uint32, tag = "13")]
    pub snd_wl1: u32,
    #[prost(uint32, tag = "14")]
    pub snd_wnd: u32,
    #[prost(uint32, tag = "15")]
    pub max_window: u32,
    #[prost(uint32, tag = "16")]
    pub rcv_wnd: u32,
    #[prost(uint32, tag = "17")]
    pub rcv_wup: u32,
}

/// One message (datagram, seqpacket record, or run of stream bytes) in a socket's receive queue.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct UnixMessage {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    /// Files in flight with it (`SCM_RIGHTS`): ids in `files.img`.
    #[prost(uint32, repeated, tag = "2")]
    pub fds: Vec<u32>,
    /// Credentials attached to it (`SCM_CREDENTIALS`).
    #[prost(bool, tag = "3")]
    pub has_creds: bool,
    #[prost(int32, tag = "4")]
    pub pid: i32,
    #[prost(uint32, tag = "5")]
    pub uid: u32,
    #[prost(uint32, tag = "6")]
    pub gid: u32,
    /// The sender's address (datagrams).
    #[prost(bytes = "vec", tag = "7")]
    #[serde(serialize_with = "hex_bytes")]
    pub sender: Vec<u8>,
}

/// Socket options a program can read back (`socket(7)`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SocketOptions {
    /// As `getsockopt` reports them (the kernel doubles what was set).
    #[prost(int32, tag = "1")]
    pub rcvbuf: i32,
    #[prost(int32, tag = "2")]
    pub sndbuf: i32,
    #[prost(bool, tag = "3")]
    pub passcred: bool,
    /// -1 when disabled.
    #[prost(int32, tag = "4")]
    pub peek_off: i32,
    /// Microseconds, 0 for none.
    #[prost(uint64, tag = "5")]
    pub rcvtimeo_us: u64,
    #[prost(uint64, tag = "6")]
    pub sndtimeo_us: u64,
    #[prost(int32, tag = "7")]
    pub rcvlowat: i32,
    #[prost(int32, tag = "8")]
    pub priority: i32,
    #[prost(uint32, tag = "9")]
    pub mark: u32,
    #[prost(bool, tag = "10")]
    pub passsec: bool,
    #[prost(bool, tag = "11")]
    pub passpidfd: bool,
    /// The other integer `SOL_SOCKET` options by name, as read (`SO_BUF_LOCK`, `SO_TIMESTAMP`,
    /// `SO_KEEPALIVE`, `SO_BUSY_POLL` ...; not those above).
    #[prost(message, repeated, tag = "398")]
    pub options: Vec<SockOpt>,
    /// Linger, the options that are not integers, the filter (see [`PacketSocket::socket`]).
    #[prost(message, optional, tag = "399")]
    pub socket: Option<SocketLevel>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct RegularFile {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub pos: u64,
    /// Size and mode at dump time, checked at restore.
    #[prost(uint64, tag = "3")]
    pub size: u64,
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    /// The file was unlinked while open (`path` is its last name): restore makes it again from
    /// `content` and unlinks it.
    #[prost(bool, tag = "5")]
    pub ghost: bool,
    /// An unlinked file's bytes, held by the first entry of its inode (`ino`) only.
    #[prost(bytes = "vec", tag = "6")]
    #[serde(serialize_with = "hex_bytes")]
    pub content: Vec<u8>,
    /// Inode number at dump time: descriptions of one unlinked file share it.
    #[prost(uint64, tag = "7")]
    pub ino: u64,
    /// The unlinked file is a memfd (`path` is `/memfd:NAME`), with these seals (`F_GET_SEALS`).
    #[prost(bool, tag = "8")]
    pub memfd: bool,
    #[prost(int32, tag = "9")]
    pub seals: i32,
    /// Unlinked files and memfds: the device at dump time (`st_dev`; with `ino` the object's
    /// identity), the owner, and the access and modification times (`st_atim`, `st_mtim`).
    #[prost(uint64, tag = "150")]
    pub dev: u64,
    #[prost(uint32, tag = "151")]
    pub uid: u32,
    #[prost(uint32, tag = "152")]
    pub gid: u32,
    #[prost(int64, tag = "153")]
    pub atime_sec: i64,
    #[prost(uint32, tag = "154")]
    pub atime_nsec: u32,
    #[prost(int64, tag = "155")]
    pub mtime_sec: i64,
    #[prost(uint32, tag = "156")]
    pub mtime_nsec: u32,
    /// An unlinked file's data, as the extents `SEEK_DATA`/`SEEK_HOLE` give, held (like `content`,
    /// which images made before it used instead) by the first entry of the object only; what lies
    /// between them up to `size` is a hole.
    #[prost(message, repeated, tag = "157")]
    pub extents: Vec<DataExtent>,
    /// The file never had a name: it was made with `O_TMPFILE` in the directory `path` names
    /// (`DIR/#INODE`, as /proc shows it).
    #[prost(bool, tag = "158")]
    pub tmpfile: bool,
}

/// Bytes of a file at an offset.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct DataExtent {
    #[prost(uint64, tag = "1")]
    pub offset: u64,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct DirectoryFile {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub pos: u64,
}

/// A character device stasis reopens by path (`/dev/null`, `/dev/zero`, `/dev/urandom`, ...).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CharDevice {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub rdev: u64,
    /// The device node was unlinked while open (`path` is its last name): restore makes it again
    /// there (`mknod` with `rdev` and `mode`, then the owner), opens it and unlinks it.
    #[prost(bool, tag = "150")]
    pub ghost: bool,
    #[prost(uint32, tag = "151")]
    pub mode: u32,
    #[prost(uint32, tag = "152")]
    pub uid: u32,
    #[prost(uint32, tag = "153")]
    pub gid: u32,
    /// The node's own device and inode at dump time: descriptions of one unlinked node share them.
    #[prost(uint64, tag = "154")]
    pub dev: u64,
    #[prost(uint64, tag = "155")]
    pub ino: u64,
}

/// A terminal the task had open. With `--shell-job` it is external: restore connects it to the
/// terminal stasis runs from.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Terminal {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub rdev: u64,
    #[prost(bool, tag = "3")]
    pub external: bool,
}

/// One end of a pseudo-terminal of the tree: the master (`/dev/ptmx`) or a slave (`/dev/pts/N`,
/// or `/dev/tty` naming it). Restore makes the pair once per `index`, with the same index. The
/// state of the pair is stored once, with its master.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PtyFile {
    /// N of `/dev/pts/N`.
    #[prost(uint32, tag = "1")]
    pub index: u32,
    #[prost(bool, tag = "2")]
    pub master: bool,
    /// The path it was opened by (`/dev/ptmx`, `/dev/pts/ptmx`, `/dev/pts/N`, `/dev/tty`).
    #[prost(string, tag = "3")]
    pub path: String,
    /// This end is in exclusive mode (`TIOCGEXCL`).
    #[prost(bool, tag = "4")]
    pub exclusive: bool,
    /// Master only: the pair's state.
    #[prost(message, optional, tag = "5")]
    pub state: Option<PtyState>,
    /// A slave hung up (its master was closed: `TIOCGEXCL` gives EIO): restored as a slave of a
    /// new pair whose master is closed at once, at any index.
    #[prost(bool, tag = "100")]
    pub hung_up: bool,
}

/// The state of a pseudo-terminal pair, read on its master.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PtyState {
    /// `struct termios2` (the slave's settings), field by field.
    #[prost(uint32, tag = "1")]
    pub iflag: u32,
    #[prost(uint32, tag = "2")]
    pub oflag: u32,
    #[prost(uint32, tag = "3")]
    pub cflag: u32,
    #[prost(uint32, tag = "4")]
    pub lflag: u32,
    #[prost(uint32, tag = "5")]
    pub line: u32,
    /// `c_cc`, 19 bytes.
    #[prost(bytes = "vec", tag = "6")]
    #[serde(serialize_with = "hex_bytes")]
    pub cc: Vec<u8>,
    #[prost(uint32, tag = "7")]
    pub ispeed: u32,
    #[prost(uint32, tag = "8")]
    pub ospeed: u32,
    /// Window size: rows, columns, pixel width and height.
    #[prost(uint32, tag = "9")]
    pub rows: u32,
    #[prost(uint32, tag = "10")]
    pub cols: u32,
    #[prost(uint32, tag = "11")]
    pub xpixel: u32,
    #[prost(uint32, tag = "12")]
    pub ypixel: u32,
    /// The slave is locked (`TIOCGPTLCK`).
    #[prost(bool, tag = "13")]
    pub locked: bool,
    /// The master is in packet mode (`TIOCGPKT`).
    #[prost(bool, tag = "14")]
    pub packet: bool,
    /// Complete input lines (canonical mode) waiting to be read on the slave, each with its end
    /// (newline, EOL, EOL2; none for a line ended by EOF).
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub slave_lines: Vec<Vec<u8>>,
    /// Input waiting on the slave after those lines: a line being edited (canonical mode) or every
    /// byte (non-canonical mode).
    #[prost(bytes = "vec", tag = "16")]
    #[serde(serialize_with = "hex_bytes")]
    pub slave_input: Vec<u8>,
    /// Output of the slave waiting to be read on the master.
    #[prost(bytes = "vec", tag = "17")]
    #[serde(serialize_with = "hex_bytes")]
    pub master_input: Vec<u8>,
    /// Every slave had been closed (the master reads end of file / EIO).
    #[prost(bool, tag = "18")]
    pub slave_closed: bool,
    /// The slave inode's owner, group and mode (`st_mode`, with its file type; 0 in older images:
    /// left as the new pair has them).
    #[prost(uint32, tag = "100")]
    pub slave_uid: u32,
    #[prost(uint32, tag = "101")]
    pub slave_gid: u32,
    #[prost(uint32, tag = "102")]
    pub slave_mode: u32,
}

/// An epoll instance and every file it watches.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EpollFile {
    #[prost(message, repeated, tag = "1")]
    pub watches: Vec<EpollWatch>,
}

/// One item of an epoll instance: the file with id `file_id`, registered under fd number `tfd` (the
/// number it had in the process that added it, which may since have closed it).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EpollWatch {
    #[prost(int32, tag = "1")]
    pub tfd: i32,
    /// `EPOLLIN`, ..., `EPOLLET`, `EPOLLONESHOT`, `EPOLLEXCLUSIVE`, `EPOLLWAKEUP`, as fdinfo shows
    /// them (a fired one-shot item has only its flag bits left).
    #[prost(uint32, tag = "2")]
    pub events: u32,
    #[prost(uint64, tag = "3")]
    pub data: u64,
    /// The watched file, an entry of `files.img`.
    #[prost(uint32, tag = "4")]
    pub file_id: u32,
}

/// An inotify instance (`IN_NONBLOCK` is in the entry's flags) and its watches.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct InotifyFile {
    #[prost(message, repeated, tag = "1")]
    pub watches: Vec<InotifyWatch>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct InotifyWatch {
    /// Watch descriptor; restore gives each watch the same one.
    #[prost(int32, tag = "1")]
    pub wd: i32,
    #[prost(uint32, tag = "2")]
    pub mask: u32,
    /// The watched file's path, resolved at dump from its file handle.
    #[prost(string, tag = "3")]
    pub path: String,
    /// Its inode number at dump time.
    #[prost(uint64, tag = "4")]
    pub ino: u64,
}

/// A fanotify group: its `fanotify_init` flags and event flags, and its marks.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FanotifyFile {
    #[prost(uint32, tag = "1")]
    pub flags: u32,
    #[prost(uint32, tag = "2")]
    pub event_flags: u32,
    #[prost(message, repeated, tag = "3")]
    pub marks: Vec<FanotifyMark>,
}

/// One fanotify mark: on an inode, a mount or a filesystem (`kind`, `FANOTIFY_MARK_*`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FanotifyMark {
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// `FAN_MARK_*` flags kept with the mark (`FAN_MARK_IGNORED_SURV_MODIFY`, `FAN_MARK_EVICTABLE`).
    #[prost(uint32, tag = "2")]
    pub mflags: u32,
    #[prost(uint64, tag = "3")]
    pub mask: u64,
    #[prost(uint64, tag = "4")]
    pub ignored_mask: u64,
    /// The marked inode, or the mount point (mount and filesystem marks).
    #[prost(string, tag = "5")]
    pub path: String,
}

/// `FanotifyMark::kind` values.
pub const FANOTIFY_MARK_INODE: u32 = 0;
pub const FANOTIFY_MARK_MOUNT: u32 = 1;
pub const FANOTIFY_MARK_FILESYSTEM: u32 = 2;

/// A FIFO (named pipe) opened by path. Descriptions of one FIFO share `fifo_id`; the bytes queued in
/// it are stored once, with the first of them.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FifoFile {
    #[prost(string, tag = "1")]
    pub path: String,
    /// The FIFO's inode number at dump time.
    #[prost(uint64, tag = "2")]
    pub fifo_id: u64,
    /// Capacity in bytes (`F_GETPIPE_SZ`).
    #[prost(uint32, tag = "3")]
    pub capacity: u32,
    #[prost(bytes = "vec", tag = "4")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    /// The FIFO's path was removed while it was open (`path` is its last name): restore makes a FIFO
    /// there with `mode`, opens every description of it, and removes it again.
    #[prost(bool, tag = "5")]
    pub removed: bool,
    #[prost(uint32, tag = "6")]
    pub mode: u32,
    /// Packet sizes of `data` for a FIFO in packet mode (as `PipeEnd.packets`).
    #[prost(uint32, repeated, tag = "7")]
    pub packets: Vec<u32>,
}

/// An eventfd: its counter and mode (EFD_NONBLOCK is in `FileEntry::flags`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct EventFd {
    #[prost(uint64, tag = "1")]
    pub count: u64,
    /// EFD_SEMAPHORE.
    #[prost(bool, tag = "2")]
    pub semaphore: bool,
    /// `eventfd-id` at dump time (informational: the kernel picks a new one at restore).
    #[prost(uint32, tag = "3")]
    pub id: u32,
}

/// A signalfd: the signals it reads (bit `n-1` for signal `n`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SignalFd {
    #[prost(uint64, tag = "1")]
    pub sigmask: u64,
}

/// A timerfd. `value` is the time left to the next expiry at the checkpoint (zero: disarmed);
/// restore counts it from the moment of restore.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct TimerFd {
    #[prost(int32, tag = "1")]
    pub clockid: i32,
    /// Expirations not yet read.
    #[prost(uint64, tag = "2")]
    pub ticks: u64,
    /// TFD_TIMER_ABSTIME (1), TFD_TIMER_CANCEL_ON_SET (2), as the last `timerfd_settime` gave them.
    #[prost(uint32, tag = "3")]
    pub settime_flags: u32,
    #[prost(int64, tag = "4")]
    pub value_sec: i64,
    #[prost(int64, tag = "5")]
    pub value_nsec: i64,
    #[prost(int64, tag = "6")]
    pub interval_sec: i64,
    #[prost(int64, tag = "7")]
    pub interval_nsec: i64,
}

/// A pidfd. PIDFD_NONBLOCK (O_NONBLOCK) and PIDFD_THREAD (O_EXCL) are in `FileEntry::flags`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PidFd {
    /// The process (or thread) it refers to, a process of the image; -1 if it had exited and was
    /// reaped.
    #[prost(int32, tag = "1")]
    pub pid: i32,
    /// Of a reaped process (`pid` -1): its pidfs inode number at dump, which every pidfd of that
    /// process shares; restore makes one exited process for all the pidfds that had the same
    /// inode. 0 in older images (each pidfd then gets its own).
    #[prost(uint64, tag = "100")]
    pub reaped_ino: u64,
}

/// A POSIX message queue description (`mq_open`), with the queue's attributes and messages.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Mqueue {
    /// `/NAME`, as `mq_open` takes it.
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "2")]
    pub maxmsg: i64,
    #[prost(int64, tag = "3")]
    pub msgsize: i64,
    /// Permission bits, owner and group of the queue.
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    #[prost(uint32, tag = "5")]
    pub uid: u32,
    #[prost(uint32, tag = "6")]
    pub gid: u32,
    /// The queued messages in the order they are received (highest priority first, oldest first).
    #[prost(message, repeated, tag = "7")]
    pub messages: Vec<MqMessage>,
    /// The queue had been unlinked (`mq_unlink`) while open.
    #[prost(bool, tag = "8")]
    pub unlinked: bool,
    /// The queue's inode at dump time: descriptions of one queue share it.
    #[prost(uint64, tag = "9")]
    pub ino: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MqMessage {
    #[prost(uint32, tag = "1")]
    pub priority: u32,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "hex_bytes")]
    pub data: Vec<u8>,
}

/// A POSIX timer of the process (`timer_create`), as `/proc/PID/timers` and `timer_gettime` show
/// it. `value` is the time left at the checkpoint; restore counts it from the moment of restore.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PosixTimer {
    /// The timer id, made again with the same value.
    #[prost(int32, tag = "1")]
    pub id: i32,
    #[prost(int32, tag = "2")]
    pub clockid: i32,
    /// `sigev_notify`: SIGEV_SIGNAL (0), SIGEV_NONE (1), SIGEV_THREAD_ID (4).
    #[prost(int32, tag = "3")]
    pub notify: i32,
    #[prost(int32, tag = "4")]
    pub signo: i32,
    /// `sigev_value`.
    #[prost(uint64, tag = "5")]
    pub sigval: u64,
    /// The thread signalled (SIGEV_THREAD_ID), else the process.
    #[prost(int32, tag = "6")]
    pub target: i32,
    #[prost(int64, tag = "7")]
    pub value_sec: i64,
    #[prost(int64, tag = "8")]
    pub value_nsec: i64,
    #[prost(int64, tag = "9")]
    pub interval_sec: i64,
    #[prost(int64, tag = "10")]
    pub interval_nsec: i64,
    /// `timer_getoverrun` at dump (informational: no system call sets it).
    #[prost(int32, tag = "11")]
    pub overrun: i32,
}

/// `ipc.img`: SysV IPC objects of the checkpointed processes.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct IpcImage {
    #[prost(message, repeated, tag = "1")]
    pub shm: Vec<ShmSegment>,
    /// Semaphore sets and message queues: only of a tree in an IPC namespace of its own (all of
    /// the namespace's).
    #[prost(message, repeated, tag = "520")]
    pub sem: Vec<SemSet>,
    #[prost(message, repeated, tag = "521")]
    pub msg: Vec<MsgQueue>,
    /// The SysV limits of the tree's own IPC namespace (`/proc/sys/kernel/msgmax`, `msgmnb`,
    /// `msgmni`, `sem`, `shmmax`, `shmall`, `shmmni`, `shm_rmid_forced`), `path` relative to
    /// `/proc/sys/kernel`.
    #[prost(message, repeated, tag = "522")]
    pub limits: Vec<Sysctl>,
}

/// A SysV semaphore set of the tree's IPC namespace.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SemSet {
    #[prost(int32, tag = "1")]
    pub key: i32,
    #[prost(int32, tag = "2")]
    pub id: i32,
    /// Permission bits.
    #[prost(uint32, tag = "3")]
    pub mode: u32,
    #[prost(uint32, tag = "4")]
    pub uid: u32,
    #[prost(uint32, tag = "5")]
    pub gid: u32,
    /// Every semaphore's value (`semctl(GETALL)`); their number is the set's `nsems`.
    #[prost(uint32, repeated, tag = "6")]
    pub values: Vec<u32>,
}

/// A SysV message queue of the tree's IPC namespace, with its messages in order.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MsgQueue {
    #[prost(int32, tag = "1")]
    pub key: i32,
    #[prost(int32, tag = "2")]
    pub id: i32,
    /// Permission bits.
    #[prost(uint32, tag = "3")]
    pub mode: u32,
    #[prost(uint32, tag = "4")]
    pub uid: u32,
    #[prost(uint32, tag = "5")]
    pub gid: u32,
    /// The queue's byte limit (`msg_qbytes`).
    #[prost(uint64, tag = "6")]
    pub qbytes: u64,
    #[prost(message, repeated, tag = "7")]
    pub messages: Vec<SysvMessage>,
}

/// One message of a SysV queue: its type and text.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct SysvMessage {
    #[prost(int64, tag = "1")]
    pub mtype: i64,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(serialize_with = "hex_bytes")]
    pub text: Vec<u8>,
}

/// A SysV shared memory segment: attached by a process of the tree, or created by one.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ShmSegment {
    #[prost(int32, tag = "1")]
    pub key: i32,
    #[prost(int32, tag = "2")]
    pub id: i32,
    #[prost(uint64, tag = "3")]
    pub size: u64,
    /// Permission bits, and SHM_DEST (0o1000) if it was removed while attached.
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    #[prost(uint32, tag = "5")]
    pub uid: u32,
    #[prost(uint32, tag = "6")]
    pub gid: u32,
    #[prost(bytes = "vec", tag = "7")]
    #[serde(serialize_with = "hex_bytes")]
    pub content: Vec<u8>,
    /// The creator's pid and the last change time (`shm_cpid`, `shm_ctime`): with key, id, size,
    /// mode and owner they tell, on the machine of the dump, the segment itself (left behind by the
    /// dump, unattached) from another that took its id since.
    #[prost(int32, tag = "150")]
    pub cpid: i32,
    #[prost(int64, tag = "151")]
    pub ctime: i64,
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    s.serialize_str(&out)
}
