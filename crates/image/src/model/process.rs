//! The process tree (`pstree.img`) and each thread's state (`core-PID.img`): registers, signals,
//! limits, credentials, timers and seccomp.

use super::*;
use serde::Serialize;

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
    /// Inode of the process's user namespace, 0 for stasis's own; only the root's may differ from
    /// its parent's (see [`Namespace::uid_map`]).
    #[prost(uint64, tag = "650")]
    pub user_ns: u64,
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
    /// The thread's memory-error kill policy, `PR_MCE_KILL_GET` plus one (3, the default, when
    /// unset; 0 when not read: in older images, and in their thread records, which took the main
    /// thread's).
    #[prost(int32, tag = "255")]
    pub mce_kill: i32,
    /// The thread's `PR_GET_TSC` (1 rdtsc allowed, 2 it raises SIGSEGV; 0 when not read).
    #[prost(int32, tag = "256")]
    pub tsc_mode: i32,
    /// The thread's CPUID faulting (`arch_prctl(ARCH_SET_CPUID, 0)`; meaningful when `mce_kill` is
    /// not 0).
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
