//! The arguments and results of the typed remote calls, as the kernel lays them out (x86_64).

use crate::Pid;

/// `struct kernel_sigaction` (`rt_sigaction(2)` as the kernel takes it, with an 8-byte mask).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `stack_t` (`sigaltstack(2)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

/// `struct itimerval` (`getitimer(2)`, `_sub` in microseconds) or `struct itimerspec`
/// (`timer_gettime(2)`, `_sub` in nanoseconds): the interval, then the time left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntervalTimer {
    pub interval_sec: i64,
    pub interval_sub: i64,
    pub value_sec: i64,
    pub value_sub: i64,
}

impl IntervalTimer {
    pub(crate) fn words(&self) -> [u64; 4] {
        [self.interval_sec as u64, self.interval_sub as u64, self.value_sec as u64, self.value_sub as u64]
    }

    pub(crate) fn from_words(w: &[u64]) -> IntervalTimer {
        IntervalTimer {
            interval_sec: w[0] as i64,
            interval_sub: w[1] as i64,
            value_sec: w[2] as i64,
            value_sub: w[3] as i64,
        }
    }
}

/// The part of `struct sigevent` (`timer_create(2)`) a POSIX timer keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigEvent {
    pub value: u64,
    pub signo: i32,
    pub notify: i32,
    /// The thread of `SIGEV_THREAD_ID`.
    pub tid: i32,
}

/// What `clone3(2)` is given: flags, exit signal, the PID (`set_tid`) the new task must get in
/// stasis's PID namespace, with its ids in the nested ones below it (`inner_tids`), and `child_tid`,
/// the new task's clear-child-tid address with `CLONE_CHILD_CLEARTID` in `flags`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneArgs {
    pub flags: u64,
    pub exit_signal: u64,
    pub set_tid: Option<Pid>,
    pub child_tid: u64,
    /// The new task's ids in the PID namespaces nested below stasis's, innermost first, unused
    /// entries 0 (`set_tid[0..]` of `clone3`, before `set_tid`).
    pub inner_tids: [i32; MAX_INNER_LEVELS],
}

/// The most nested PID namespace levels below stasis's that a restore makes tasks in.
pub const MAX_INNER_LEVELS: usize = 3;

impl CloneArgs {
    /// The `set_tid` array of `clone3`: innermost namespace first, stasis's last.
    pub fn set_tid_array(&self) -> Vec<u64> {
        let inner = self.inner_tids.iter().take_while(|&&t| t != 0).map(|&t| t as u32 as u64);
        inner.chain(self.set_tid.map(|p| p.0 as u32 as u64)).collect()
    }
}

/// The three capability sets of `capset(2)`, 64 bits each (two `_LINUX_CAPABILITY_VERSION_3` words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// `struct prctl_mm_map` (`PR_SET_MM_MAP`), with the auxv it points to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmMap<'a> {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: &'a [u64],
    /// The task's fd of the new exe file; `None` keeps the exe link.
    pub exe_fd: Option<i32>,
}

/// The `prctl(2)` options stasis uses. A `Get*` whose value the kernel writes through a pointer
/// (`GetPdeathsig`, `GetTidAddress`, `GetChildSubreaper`) returns it as the call's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prctl<'a> {
    SetPdeathsig(i32),
    GetPdeathsig,
    GetDumpable,
    SetDumpable(i32),
    SetName(&'a str),
    SetTimerslack(u64),
    SetNoNewPrivs,
    GetTidAddress,
    SetThpDisable(bool),
    GetThpDisable,
    SetChildSubreaper(bool),
    GetChildSubreaper,
    GetSecurebits,
    SetSecurebits(u32),
    CapbsetDrop(u32),
    CapAmbientRaise(u32),
    /// `PR_SET_VMA`, `PR_SET_VMA_ANON_NAME`: name the anonymous area at `start`.
    SetVmaAnonName {
        start: u64,
        len: u64,
        name: &'a str,
    },
    /// `PR_SET_MM`, `PR_SET_MM_MAP`.
    SetMmMap(&'a MmMap<'a>),
    /// `PR_SET_MEMORY_MERGE` (Linux 6.4): KSM merges every area of the process.
    SetMemoryMerge(bool),
    /// `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.15): `timer_create` takes the id it is given.
    TimerCreateRestoreIds(bool),
    /// `PR_MCE_KILL_GET`: the thread's memory-error kill policy (`PR_MCE_KILL_DEFAULT` 2, `EARLY`
    /// 1, `LATE` 0).
    GetMceKill,
    /// `PR_MCE_KILL`: `PR_MCE_KILL_SET` with a policy, `PR_MCE_KILL_CLEAR` for the default (2).
    SetMceKill(i32),
    /// `PR_GET_TSC`: `PR_TSC_ENABLE` 1, or `PR_TSC_SIGSEGV` 2 (rdtsc faults).
    GetTsc,
    SetTsc(i32),
    /// `PR_GET_MDWE` (Linux 6.3): memory-deny-write-execute flags of the process.
    GetMdwe,
    SetMdwe(u32),
}

/// `struct io_event` (`io_getevents(2)`, linux/aio_abi.h): 32 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoEvent {
    /// `aio_data` of the request.
    pub data: u64,
    /// The `struct iocb` address the request was submitted with.
    pub obj: u64,
    pub res: i64,
    pub res2: i64,
}

impl IoEvent {
    /// Size of `struct io_event`.
    pub const SIZE: usize = 32;

    /// Read from its 32 bytes (little endian).
    pub fn from_bytes(b: &[u8; 32]) -> IoEvent {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        IoEvent { data: w(0), obj: w(1), res: w(2) as i64, res2: w(3) as i64 }
    }

    /// Its 32 bytes (little endian).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, w) in [self.data, self.obj, self.res as u64, self.res2 as u64].iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
}

/// The part of `struct iocb` (`io_submit(2)`, linux/aio_abi.h) a submission sets; the rest is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iocb {
    pub data: u64,
    /// `IOCB_CMD_*`.
    pub opcode: u16,
    pub fd: u32,
    pub buf: u64,
    pub nbytes: u64,
    pub offset: i64,
}

impl Iocb {
    /// `IOCB_CMD_PREAD`.
    pub const CMD_PREAD: u16 = 0;

    /// Its 64 bytes: data, key and rw_flags (0), opcode, reqprio (0), fildes, buf, nbytes, offset,
    /// reserved2, flags and resfd (0).
    pub(crate) fn to_bytes(self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&self.data.to_le_bytes());
        b[16..18].copy_from_slice(&self.opcode.to_le_bytes());
        b[20..24].copy_from_slice(&self.fd.to_le_bytes());
        b[24..32].copy_from_slice(&self.buf.to_le_bytes());
        b[32..40].copy_from_slice(&self.nbytes.to_le_bytes());
        b[40..48].copy_from_slice(&self.offset.to_le_bytes());
        b
    }
}
