//! Signals: sets, masks, dispositions, recording handlers, pending signals, the alternate stack
//! and interval timers.
//!
//! Handlers are never arbitrary Rust closures: a workload picks one of the recording handlers
//! defined here, which only touch atomics and make async-signal-safe calls.

use super::{cvt, cvt_long, Mapping};
use std::fmt;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// Highest signal number Linux knows on x86_64.
pub const MAX_SIG: usize = 64;

/// A set of signals 1..=64, stored as the kernel's 64-bit mask (bit `sig - 1`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct SigSet(u64);

impl SigSet {
    /// The empty set.
    pub fn empty() -> Self {
        SigSet(0)
    }
    /// The set holding exactly `sigs`.
    pub fn of(sigs: &[i32]) -> Self {
        sigs.iter().fold(SigSet(0), |s, &sig| s.with(sig))
    }
    /// The set with the given kernel mask bits.
    pub fn from_bits(bits: u64) -> Self {
        SigSet(bits)
    }
    /// The kernel mask bits.
    pub fn bits(self) -> u64 {
        self.0
    }
    /// This set plus `sig`.
    pub fn with(self, sig: i32) -> Self {
        SigSet(self.0 | 1u64 << (sig - 1))
    }
    /// This set minus `sig`.
    pub fn without(self, sig: i32) -> Self {
        SigSet(self.0 & !(1u64 << (sig - 1)))
    }
    /// Whether `sig` is in the set.
    pub fn contains(self, sig: i32) -> bool {
        self.0 & (1u64 << (sig - 1)) != 0
    }
    pub(super) fn to_libc(self) -> libc::sigset_t {
        // SAFETY: sigset_t is plain data; an all-zero value is a valid (empty) set.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        for sig in 1..=MAX_SIG as i32 {
            if self.contains(sig) {
                // SAFETY: `set` is a valid sigset_t and 1..=64 are valid signal numbers.
                unsafe { libc::sigaddset(&mut set, sig) };
            }
        }
        set
    }
    fn from_libc(set: &libc::sigset_t) -> Self {
        let mut out = SigSet(0);
        for sig in 1..=MAX_SIG as i32 {
            // SAFETY: `set` points to a valid sigset_t.
            if unsafe { libc::sigismember(set, sig) } == 1 {
                out = out.with(sig);
            }
        }
        out
    }
}

impl fmt::Debug for SigSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sigs: Vec<i32> = (1..=MAX_SIG as i32).filter(|&s| self.contains(s)).collect();
        write!(f, "{sigs:?}")
    }
}

/// First real-time signal number as the C library sees it (glibc reserves two).
pub fn sigrtmin() -> i32 {
    libc::SIGRTMIN()
}

/// Changes the blocked mask with `sigprocmask(2)`; returns the previous mask.
pub fn sigprocmask(how: libc::c_int, set: SigSet) -> io::Result<SigSet> {
    let new = set.to_libc();
    // SAFETY: all-zero sigset_t is valid; both pointers refer to live locals.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `new` and `old` are valid sigset_t values owned by this frame.
    cvt(unsafe { libc::sigprocmask(how, &new, &mut old) })?;
    Ok(SigSet::from_libc(&old))
}

/// The current blocked mask.
pub fn blocked_mask() -> SigSet {
    sigprocmask(libc::SIG_BLOCK, SigSet::empty()).expect("sigprocmask query cannot fail")
}

/// Waits with `sigsuspend(2)` under `mask`; returns when a handler ran (the call always "fails"
/// with EINTR, which is returned as the error).
pub fn sigsuspend(mask: SigSet) -> io::Error {
    let set = mask.to_libc();
    // SAFETY: `set` is a valid sigset_t for the duration of the call.
    unsafe { libc::sigsuspend(&set) };
    io::Error::last_os_error()
}

/// `pause(2)`: waits until a handler ran; returns the errno (EINTR).
pub fn pause() -> io::Error {
    // SAFETY: pause takes no arguments.
    unsafe { libc::pause() };
    io::Error::last_os_error()
}

/// Per-signal records the recording handlers write.
struct Record {
    flag: AtomicU8,
    count: AtomicU32,
    code: AtomicI32,
    pid: AtomicI32,
    value: AtomicU64,
    sp: AtomicU64,
    mask: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // used only as an array initializer
const EMPTY_RECORD: Record = Record {
    flag: AtomicU8::new(0),
    count: AtomicU32::new(0),
    code: AtomicI32::new(0),
    pid: AtomicI32::new(0),
    value: AtomicU64::new(0),
    sp: AtomicU64::new(0),
    mask: AtomicU64::new(0),
};

static RECORDS: [Record; MAX_SIG + 1] = [EMPTY_RECORD; MAX_SIG + 1];

/// What the recording handler saw on its last run for one signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerRecord {
    /// How many times the handler ran.
    pub count: u32,
    /// `si_code` (SA_SIGINFO handlers only).
    pub code: i32,
    /// `si_pid` (SA_SIGINFO handlers only).
    pub pid: i32,
    /// `si_value` as an integer (SA_SIGINFO handlers only).
    pub value: u64,
    /// An address on the stack the handler ran on.
    pub sp: u64,
    /// The blocked mask while the handler ran.
    pub mask: SigSet,
}

/// The record of the recording handler for `sig`.
pub fn handler_record(sig: i32) -> HandlerRecord {
    let r = &RECORDS[sig as usize];
    HandlerRecord {
        count: r.count.load(Ordering::SeqCst),
        code: r.code.load(Ordering::SeqCst),
        pid: r.pid.load(Ordering::SeqCst),
        value: r.value.load(Ordering::SeqCst),
        sp: r.sp.load(Ordering::SeqCst),
        mask: SigSet::from_bits(r.mask.load(Ordering::SeqCst)),
    }
}

/// A byte set to 1 each time the recording handler for `sig` runs (inline assembly can poll it).
pub fn signal_flag(sig: i32) -> &'static AtomicU8 {
    &RECORDS[sig as usize].flag
}

fn record_common(sig: libc::c_int) -> &'static Record {
    let marker = 0u8;
    let r = &RECORDS[sig as usize];
    r.sp.store(&marker as *const u8 as u64, Ordering::SeqCst);
    // SAFETY: all-zero sigset_t is valid.
    let mut cur: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: querying the mask with a null new set is async-signal-safe; `cur` is a local.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur) };
    r.mask.store(SigSet::from_libc(&cur).bits(), Ordering::SeqCst);
    r.count.fetch_add(1, Ordering::SeqCst);
    r.flag.store(1, Ordering::SeqCst);
    r
}

extern "C" fn record_plain(sig: libc::c_int) {
    record_common(sig);
}

extern "C" fn record_info(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; KSigInfo has its layout.
    let info = unsafe { &*(info as *const KSigInfo) };
    let r = record_common(sig);
    r.code.store(info.code, Ordering::SeqCst);
    r.pid.store(info.pid, Ordering::SeqCst);
    r.value.store(info.value, Ordering::SeqCst);
}

/// Address of the plain recording handler (what `sigaction` reports for it).
pub fn plain_handler_address() -> usize {
    record_plain as *const () as usize
}

/// Address of the SA_SIGINFO recording handler.
pub fn info_handler_address() -> usize {
    record_info as *const () as usize
}

fn install(sig: i32, handler: usize, flags: i32, mask: SigSet) -> io::Result<()> {
    // SAFETY: all-zero sigaction is a valid starting value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = flags;
    sa.sa_mask = mask.to_libc();
    // SAFETY: `sa` is fully initialised; the handler is SIG_IGN/SIG_DFL or one of the recording
    // handlers of this module, which match the flags they are installed with.
    cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) }).map(drop)
}

/// Installs the plain recording handler for `sig` (`flags` must not contain SA_SIGINFO).
pub fn set_recording_handler(sig: i32, flags: i32, mask: SigSet) -> io::Result<()> {
    assert_eq!(flags & libc::SA_SIGINFO, 0, "use set_info_recording_handler");
    install(sig, plain_handler_address(), flags, mask)
}

/// Installs the SA_SIGINFO recording handler for `sig` (SA_SIGINFO is added to `flags`).
pub fn set_info_recording_handler(sig: i32, flags: i32, mask: SigSet) -> io::Result<()> {
    install(sig, info_handler_address(), flags | libc::SA_SIGINFO, mask)
}

/// Sets the disposition of `sig` to SIG_IGN.
pub fn set_ignored(sig: i32) -> io::Result<()> {
    install(sig, libc::SIG_IGN, 0, SigSet::empty())
}

/// A disposition as `sigaction(2)` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    /// Handler address, or SIG_DFL (0) / SIG_IGN (1).
    pub handler: usize,
    /// `sa_flags` as the kernel stores them (glibc adds SA_RESTORER).
    pub flags: i32,
    /// `sa_mask`.
    pub mask: SigSet,
    /// `sa_restorer`.
    pub restorer: usize,
}

/// The current disposition of `sig`.
pub fn get_action(sig: i32) -> io::Result<Action> {
    // SAFETY: all-zero sigaction is valid as an output buffer.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `sa` is a live local.
    cvt(unsafe { libc::sigaction(sig, std::ptr::null(), &mut sa) })?;
    Ok(Action {
        handler: sa.sa_sigaction,
        flags: sa.sa_flags,
        mask: SigSet::from_libc(&sa.sa_mask),
        restorer: sa.sa_restorer.map_or(0, |f| f as usize),
    })
}

/// The kernel's siginfo layout for the `_rt` member (signals from kill/sigqueue).
#[repr(C)]
struct KSigInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    pid: i32,
    uid: u32,
    value: u64,
    _rest: [u8; 96],
}

const _: () = assert!(std::mem::size_of::<KSigInfo>() == std::mem::size_of::<libc::siginfo_t>());

/// The fields of a dequeued siginfo the workloads check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigInfo {
    /// Signal number.
    pub signo: i32,
    /// `si_code` (SI_USER, SI_QUEUE, SI_TKILL ...).
    pub code: i32,
    /// Sender pid.
    pub pid: i32,
    /// Sender uid.
    pub uid: u32,
    /// `si_value` as an integer.
    pub value: u64,
}

/// Sends `sig` to the process `pid` with `kill(2)`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Sends `sig` to the thread `tid` of process `pid` with `tgkill(2)`.
pub fn tgkill(pid: i32, tid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: tgkill takes plain integers.
    cvt_long(unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) }).map(drop)
}

/// Queues `sig` with `value` to the process `pid` with `sigqueue(3)`.
pub fn sigqueue(pid: i32, sig: i32, value: u64) -> io::Result<()> {
    let val = libc::sigval { sival_ptr: value as usize as *mut libc::c_void };
    // SAFETY: the value pointer is never dereferenced by the kernel, it is only carried.
    cvt(unsafe { libc::sigqueue(pid, sig, val) }).map(drop)
}

/// Queues `sig` with `value` to the thread `tid` with `rt_tgsigqueueinfo(2)` (SI_QUEUE code).
pub fn tgsigqueue(pid: i32, tid: i32, sig: i32, value: u64) -> io::Result<()> {
    let info = KSigInfo {
        signo: sig,
        errno: 0,
        code: libc::SI_QUEUE,
        _pad: 0,
        pid,
        // SAFETY: getuid cannot fail.
        uid: unsafe { libc::getuid() },
        value,
        _rest: [0; 96],
    };
    // SAFETY: `info` is a complete 128-byte siginfo the kernel copies in.
    let ret = unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig, &info) };
    cvt_long(ret).map(drop)
}

/// The set of pending signals (`sigpending(2)`: thread and process queues together).
pub fn sigpending() -> io::Result<SigSet> {
    // SAFETY: all-zero sigset_t is valid.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live local.
    cvt(unsafe { libc::sigpending(&mut set) })?;
    Ok(SigSet::from_libc(&set))
}

/// Dequeues one signal of `set` with `sigtimedwait(2)`, waiting at most `timeout`.
pub fn sigtimedwait(set: SigSet, timeout: Duration) -> io::Result<SigInfo> {
    let set = set.to_libc();
    let ts =
        libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    // SAFETY: KSigInfo is plain data; zero is a valid value.
    let mut info: KSigInfo = unsafe { std::mem::zeroed() };
    let ptr = &mut info as *mut KSigInfo as *mut libc::siginfo_t;
    // SAFETY: KSigInfo has the size of siginfo_t; all pointers refer to live locals.
    let signo = cvt(unsafe { libc::sigtimedwait(&set, ptr, &ts) })?;
    Ok(SigInfo { signo, code: info.code, pid: info.pid, uid: info.uid, value: info.value })
}

/// Installs a handler for `sig` that writes `byte` to `fd` (SA_RESTART if `restart`).
/// The fd is kept open for the rest of the process's life.
pub fn set_pipe_writer_handler(sig: i32, fd: OwnedFd, byte: u8, restart: bool) -> io::Result<()> {
    PIPE_FD.store(fd.into_raw_fd(), Ordering::SeqCst);
    PIPE_BYTE.store(byte, Ordering::SeqCst);
    let flags = if restart { libc::SA_RESTART } else { 0 };
    install(sig, pipe_writer as *const () as usize, flags, SigSet::empty())
}

static PIPE_FD: AtomicI32 = AtomicI32::new(-1);
static PIPE_BYTE: AtomicU8 = AtomicU8::new(0);

extern "C" fn pipe_writer(sig: libc::c_int) {
    record_common(sig);
    let byte = PIPE_BYTE.load(Ordering::SeqCst);
    // SAFETY: write is async-signal-safe; the fd was leaked open for this purpose and `byte`
    // is a live local.
    unsafe { libc::write(PIPE_FD.load(Ordering::SeqCst), &byte as *const u8 as *const _, 1) };
}

/// The alternate signal stack as `sigaltstack(2)` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AltStack {
    /// Base address.
    pub sp: usize,
    /// Size in bytes.
    pub size: usize,
    /// SS_ONSTACK / SS_DISABLE / SS_AUTODISARM.
    pub flags: i32,
}

/// Makes `stack` the alternate signal stack. It must stay mapped forever, hence `'static`.
pub fn set_altstack(stack: &'static Mapping) -> io::Result<()> {
    let ss = libc::stack_t { ss_sp: stack.addr() as *mut libc::c_void, ss_flags: 0, ss_size: stack.len() };
    // SAFETY: the stack is a writable mapping that is never unmapped (it is 'static).
    cvt(unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) }).map(drop)
}

/// The current alternate signal stack.
pub fn get_altstack() -> io::Result<AltStack> {
    // SAFETY: all-zero stack_t is valid as an output buffer.
    let mut ss: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: a null new stack only queries; `ss` is a live local.
    cvt(unsafe { libc::sigaltstack(std::ptr::null(), &mut ss) })?;
    Ok(AltStack { sp: ss.ss_sp as usize, size: ss.ss_size, flags: ss.ss_flags })
}

fn to_timeval(d: Duration) -> libc::timeval {
    libc::timeval { tv_sec: d.as_secs() as libc::time_t, tv_usec: d.subsec_micros() as libc::suseconds_t }
}

fn from_timeval(tv: libc::timeval) -> Duration {
    Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000)
}

/// Arms the interval timer `which` (ITIMER_REAL/VIRTUAL/PROF) with `setitimer(2)`.
pub fn setitimer(which: libc::c_int, value: Duration, interval: Duration) -> io::Result<()> {
    let it = libc::itimerval { it_interval: to_timeval(interval), it_value: to_timeval(value) };
    // SAFETY: `it` is a valid itimerval; the old value is not requested.
    cvt(unsafe { libc::setitimer(which as _, &it, std::ptr::null_mut()) }).map(drop)
}

/// The remaining time and the interval of the timer `which` (`getitimer(2)`).
pub fn getitimer(which: libc::c_int) -> io::Result<(Duration, Duration)> {
    // SAFETY: all-zero itimerval is valid as an output buffer.
    let mut it: libc::itimerval = unsafe { std::mem::zeroed() };
    // SAFETY: `it` is a live local.
    cvt(unsafe { libc::getitimer(which as _, &mut it) })?;
    Ok((from_timeval(it.it_value), from_timeval(it.it_interval)))
}

/// The selector byte of syscall user dispatch (see [`enable_syscall_dispatch`]): 0 lets system
/// calls through, 1 sends them to the SIGSYS handler, which counts them and sets it back to 0.
pub static SUD_SELECTOR: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
/// System calls the SIGSYS handler of syscall user dispatch received.
pub static SUD_DISPATCHED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn sud_handler(_sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    SUD_DISPATCHED.fetch_add(1, Ordering::SeqCst);
    SUD_SELECTOR.store(0, Ordering::SeqCst);
}

/// Install the SIGSYS handler and switch syscall user dispatch on for the calling thread
/// (`PR_SET_SYSCALL_USER_DISPATCH`, no range exempt, [`SUD_SELECTOR`] as the selector).
pub fn enable_syscall_dispatch() -> io::Result<()> {
    install(libc::SIGSYS, sud_handler as *const () as usize, libc::SA_SIGINFO, SigSet::empty())?;
    let selector = SUD_SELECTOR.as_ptr() as u64;
    // SAFETY: PR_SET_SYSCALL_USER_DISPATCH keeps the selector's address, a static that lives as
    // long as the process; the other arguments are integers.
    cvt(unsafe { libc::prctl(59, 1u64, 0u64, 0u64, selector) }).map(drop)
}

/// Make one system call (`getppid`) with the selector at "block": returns how many calls the
/// handler has received since the start.
pub fn dispatch_one() -> u32 {
    SUD_SELECTOR.store(1, Ordering::SeqCst);
    // SAFETY: getppid takes no arguments; with the selector set it is dispatched to the handler.
    unsafe { libc::syscall(libc::SYS_getppid) };
    SUD_SELECTOR.store(0, Ordering::SeqCst);
    SUD_DISPATCHED.load(Ordering::SeqCst)
}
