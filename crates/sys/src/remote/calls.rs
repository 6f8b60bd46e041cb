//! The typed calls, one method per system call (or per `prctl` option family), each after its man
//! page. Arguments that live in memory go to the start of the data area; a call never leaves
//! anything there that a later call relies on.

use super::types::{AltStack, CapSets, CloneArgs, IntervalTimer, IoEvent, Iocb, Prctl, SigAction, SigEvent};
use super::{checked, get_u64s, put, put_u64s, Call, Target};
use crate::inject::InjectError;
use crate::Pid;

/// `sizeof(struct clone_args)` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
const CLONE_ARGS_SIZE: u64 = 88;
/// `sizeof(struct prctl_mm_map)`.
const MM_MAP_SIZE: u64 = 104;
/// `sizeof(struct sigevent)`.
const SIGEVENT_SIZE: u64 = 64;
/// `_LINUX_CAPABILITY_VERSION_3`.
const CAPABILITY_VERSION_3: u64 = 0x2008_0522;
const PR_SET_VMA: u64 = 0x5356_4d41;
const PR_SET_VMA_ANON_NAME: u64 = 0;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const PR_SET_MEMORY_MERGE: u64 = 67;
/// `arch_prctl` codes of CPUID faulting (asm/prctl.h).
const ARCH_GET_CPUID: u64 = 0x1011;
const ARCH_SET_CPUID: u64 = 0x1012;
const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
/// `sizeof(siginfo_t)`.
const SIGINFO_SIZE: usize = 128;

type R<T> = Result<T, InjectError>;

fn fd(n: i32) -> u64 {
    n as i64 as u64
}

/// What a `prctl` option passes (the option first) and how its value comes back.
enum Out {
    /// The call's result.
    Ret,
    /// An `int` the kernel wrote at the address passed.
    Int(u64),
    /// An `unsigned long` the kernel wrote at the address passed.
    Long(u64),
}

/// The typed system calls of a traced task; comes with every [`Target`].
pub trait Remote: Target {
    /// `getpid(2)`.
    fn getpid(&mut self) -> R<Pid> {
        Ok(Pid(checked(self, Call::new("getpid", libc::SYS_getpid, &[]))? as i32))
    }

    /// `close(2)`.
    fn close(&mut self, n: i32) -> R<()> {
        checked(self, Call::new("close", libc::SYS_close, &[fd(n)])).map(drop)
    }

    /// `close_range(2)`.
    fn close_range(&mut self, first: u32, last: u32, flags: u32) -> R<()> {
        let call = Call::new("close_range", libc::SYS_close_range, &[first as u64, last as u64, flags as u64]);
        checked(self, call).map(drop)
    }

    /// `dup3(2)`: the new fd.
    fn dup3(&mut self, old: i32, new: i32, flags: i32) -> R<i32> {
        Ok(checked(self, Call::new("dup3", libc::SYS_dup3, &[fd(old), fd(new), flags as u64]))? as i32)
    }

    /// `fcntl(fd, F_DUPFD_CLOEXEC, min)` (`fcntl(2)`): the new fd, at least `min`.
    fn fcntl_dupfd_cloexec(&mut self, n: i32, min: i32) -> R<i32> {
        let call = Call::new("fcntl", libc::SYS_fcntl, &[fd(n), libc::F_DUPFD_CLOEXEC as u64, min as u64]);
        Ok(checked(self, call.naming(1, "F_DUPFD_CLOEXEC"))? as i32)
    }

    /// `fcntl(fd, F_SETFD, flags)` (`fcntl(2)`).
    fn fcntl_setfd(&mut self, n: i32, flags: i32) -> R<()> {
        let call = Call::new("fcntl", libc::SYS_fcntl, &[fd(n), libc::F_SETFD as u64, flags as u64]);
        checked(self, call.naming(1, "F_SETFD")).map(drop)
    }

    /// `flock(2)`.
    fn flock(&mut self, n: i32, op: i32) -> R<()> {
        checked(self, Call::new("flock", libc::SYS_flock, &[fd(n), op as u64])).map(drop)
    }

    /// `fcntl(fd, F_SETLEASE, kind)` (`fcntl(2)`, "Leases").
    fn fcntl_setlease(&mut self, n: i32, kind: i32) -> R<()> {
        let call = Call::new("fcntl", libc::SYS_fcntl, &[fd(n), libc::F_SETLEASE as u64, kind as u64]);
        checked(self, call.naming(1, "F_SETLEASE")).map(drop)
    }

    /// `fcntl(fd, F_SETLK or F_OFD_SETLK, &flock)` (`fcntl(2)`, "Advisory record locking" and
    /// "Open file description locks"): a lock of `kind` (`F_RDLCK`/`F_WRLCK`) on `len` bytes from
    /// `start` (0: to the end of the file), never waiting. `ofd` picks the open file description lock.
    fn fcntl_setlk(&mut self, n: i32, ofd: bool, kind: i16, start: u64, len: u64) -> R<()> {
        // struct flock: l_type, l_whence (shorts), l_start, l_len, l_pid (0, as F_OFD_SETLK wants).
        let head = (kind as u16 as u64) | ((libc::SEEK_SET as u64) << 16);
        let (cmd, name) = if ofd { (libc::F_OFD_SETLK, "F_OFD_SETLK") } else { (libc::F_SETLK, "F_SETLK") };
        let at = put_u64s(self, "fcntl", 0, &[head, start, len, 0])?;
        checked(self, Call::new("fcntl", libc::SYS_fcntl, &[fd(n), cmd as u64, at]).naming(1, name)).map(drop)
    }

    /// `pidfd_open(2)`.
    fn pidfd_open(&mut self, pid: Pid, flags: u32) -> R<i32> {
        Ok(checked(self, Call::new("pidfd_open", libc::SYS_pidfd_open, &[pid.0 as u64, flags as u64]))? as i32)
    }

    /// `unshare(2)` of the calling task with `flags` (`CLONE_NEW*`).
    fn unshare(&mut self, flags: i32) -> R<()> {
        checked(self, Call::new("unshare", libc::SYS_unshare, &[flags as u64])).map(drop)
    }

    /// `setns(2)` of the calling task into the namespace of `nstype` (`CLONE_NEW*`) that `n` names
    /// (a namespace file, or a pidfd).
    fn setns(&mut self, n: i32, nstype: i32) -> R<()> {
        checked(self, Call::new("setns", libc::SYS_setns, &[fd(n), nstype as u64])).map(drop)
    }

    /// `pidfd_getfd(2)`: a copy of fd `target` of the process of `pidfd`, close-on-exec.
    fn pidfd_getfd(&mut self, pidfd: i32, target: i32, flags: u32) -> R<i32> {
        let call = Call::new("pidfd_getfd", libc::SYS_pidfd_getfd, &[fd(pidfd), fd(target), flags as u64]);
        Ok(checked(self, call)? as i32)
    }

    /// `userfaultfd(2)` with `flags` (`O_CLOEXEC`, `O_NONBLOCK`, `UFFD_USER_MODE_ONLY`): a new
    /// userfaultfd of the task's own mm.
    fn userfaultfd(&mut self, flags: u32) -> R<i32> {
        Ok(checked(self, Call::new("userfaultfd", libc::SYS_userfaultfd, &[flags as u64]))? as i32)
    }

    /// `pipe2(2)`: the read end and the write end.
    fn pipe2(&mut self, flags: i32) -> R<(i32, i32)> {
        let at = put(self, "pipe2", 0, &[0; 8])?;
        checked(self, Call::new("pipe2", libc::SYS_pipe2, &[at, flags as u64]))?;
        let w = get_u64s(self, at, 1)?[0];
        Ok((w as u32 as i32, (w >> 32) as u32 as i32))
    }

    /// `preadv(2)` into the task's own memory: `iov` is (address, length) pairs; bytes read.
    fn preadv(&mut self, n: i32, iov: &[(u64, u64)], offset: u64) -> R<u64> {
        let words: Vec<u64> = iov.iter().flat_map(|&(a, l)| [a, l]).collect();
        let at = put_u64s(self, "preadv", 0, &words)?;
        checked(self, Call::new("preadv", libc::SYS_preadv, &[fd(n), at, iov.len() as u64, offset, 0]))
    }

    /// `ioctl(fd, TIOCSCTTY, steal)` (`ioctl_tty(2)`): make the terminal the controlling one.
    fn ioctl_tiocsctty(&mut self, n: i32, steal: u64) -> R<()> {
        let call = Call::new("ioctl", libc::SYS_ioctl, &[fd(n), libc::TIOCSCTTY, steal]);
        checked(self, call.naming(1, "TIOCSCTTY")).map(drop)
    }

    /// `ioctl(fd, TIOCSPGRP, &pgrp)` (`ioctl_tty(2)`): the terminal's foreground group.
    fn ioctl_tiocspgrp(&mut self, n: i32, pgrp: i32) -> R<()> {
        let at = put(self, "ioctl(TIOCSPGRP)", 0, &pgrp.to_le_bytes())?;
        let call = Call::new("ioctl", libc::SYS_ioctl, &[fd(n), libc::TIOCSPGRP, at]);
        checked(self, call.naming(1, "TIOCSPGRP")).map(drop)
    }

    /// `mmap(2)`; `fd` -1 for an anonymous mapping. The address mapped.
    fn mmap(&mut self, addr: u64, len: u64, prot: u32, flags: u32, n: i32, offset: u64) -> R<u64> {
        let args = [addr, len, prot as u64, flags as u64, fd(n), offset];
        checked(self, Call::new("mmap", libc::SYS_mmap, &args))
    }

    /// `munmap(2)`.
    fn munmap(&mut self, addr: u64, len: u64) -> R<()> {
        checked(self, Call::new("munmap", libc::SYS_munmap, &[addr, len])).map(drop)
    }

    /// `mprotect(2)`.
    fn mprotect(&mut self, addr: u64, len: u64, prot: u32) -> R<()> {
        checked(self, Call::new("mprotect", libc::SYS_mprotect, &[addr, len, prot as u64])).map(drop)
    }

    /// `madvise(2)`.
    fn madvise(&mut self, addr: u64, len: u64, advice: i32) -> R<()> {
        checked(self, Call::new("madvise", libc::SYS_madvise, &[addr, len, advice as u64])).map(drop)
    }

    /// `mseal(2)` (Linux 6.10): the areas of `[addr, addr + len)`, which must all be mapped, can no
    /// longer be unmapped, moved, re-protected or discarded.
    fn mseal(&mut self, addr: u64, len: u64) -> R<()> {
        checked(self, Call::new("mseal", libc::SYS_mseal, &[addr, len, 0])).map(drop)
    }

    /// `mlock(2)`.
    fn mlock(&mut self, addr: u64, len: u64) -> R<()> {
        checked(self, Call::new("mlock", libc::SYS_mlock, &[addr, len])).map(drop)
    }

    /// `mlock2(2)`: `flags` 0 or `MLOCK_ONFAULT` (1).
    fn mlock2(&mut self, addr: u64, len: u64, flags: u32) -> R<()> {
        checked(self, Call::new("mlock2", libc::SYS_mlock2, &[addr, len, flags as u64])).map(drop)
    }

    /// `mlockall(2)`.
    fn mlockall(&mut self, flags: i32) -> R<()> {
        checked(self, Call::new("mlockall", libc::SYS_mlockall, &[flags as u64])).map(drop)
    }

    /// `membarrier(cmd, 0, 0)` (`membarrier(2)`): what the command returns (the registrations for
    /// `MEMBARRIER_CMD_GET_REGISTRATIONS`).
    fn membarrier(&mut self, cmd: u32) -> R<u64> {
        checked(self, Call::new("membarrier", libc::SYS_membarrier, &[cmd as u64, 0, 0]))
    }

    /// `mremap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to)` (`mremap(2)`): move a mapping.
    fn mremap_to(&mut self, from: u64, len: u64, to: u64) -> R<()> {
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        checked(self, Call::new("mremap", libc::SYS_mremap, &[from, len, len, flags, to])).map(drop)
    }

    /// `io_setup(2)` of a context for `nr_events` requests: its id, the address of its ring.
    fn io_setup(&mut self, nr_events: u32) -> R<u64> {
        let at = put(self, "io_setup", 0, &[0; 8])?;
        checked(self, Call::new("io_setup", libc::SYS_io_setup, &[nr_events as u64, at]))?;
        Ok(get_u64s(self, at, 1)?[0])
    }

    /// `io_destroy(2)`.
    fn io_destroy(&mut self, ctx: u64) -> R<()> {
        checked(self, Call::new("io_destroy", libc::SYS_io_destroy, &[ctx])).map(drop)
    }

    /// `io_submit(2)` of `n` copies of `iocb` (the kernel copies each one as it takes it): how many
    /// were taken.
    fn io_submit_copies(&mut self, ctx: u64, iocb: &Iocb, n: u64) -> R<u64> {
        let at = put(self, "io_submit", 0, &iocb.to_bytes())?;
        let list = put_u64s(self, "io_submit", 64, &vec![at; n as usize])?;
        checked(self, Call::new("io_submit", libc::SYS_io_submit, &[ctx, n, list]))
    }

    /// `io_getevents(2)`: between `min_nr` and `nr` completed events, waiting at most `timeout`
    /// (seconds, nanoseconds); `nr` 0 only checks that `ctx` is a context of the calling process.
    fn io_getevents(&mut self, ctx: u64, min_nr: u64, nr: u64, timeout: (i64, i64)) -> R<Vec<IoEvent>> {
        let ts = put_u64s(self, "io_getevents", 0, &[timeout.0 as u64, timeout.1 as u64])?;
        let events = put(self, "io_getevents", 16, &vec![0u8; nr as usize * IoEvent::SIZE])?;
        let call = Call::new("io_getevents", libc::SYS_io_getevents, &[ctx, min_nr, nr, events, ts]);
        let got = checked(self, call)? as usize;
        let mut bytes = vec![0u8; got.min(nr as usize) * IoEvent::SIZE];
        self.read(events, &mut bytes)?;
        Ok(bytes.chunks_exact(IoEvent::SIZE).map(|c| IoEvent::from_bytes(c.try_into().expect("32 bytes"))).collect())
    }

    /// `shmat(2)`: the address attached.
    fn shmat(&mut self, shmid: i32, addr: u64, flags: i32) -> R<u64> {
        checked(self, Call::new("shmat", libc::SYS_shmat, &[shmid as u64, addr, flags as u64]))
    }

    /// `brk(2)`: the program break after the call (`brk(0)` asks for it).
    fn brk(&mut self, addr: u64) -> R<u64> {
        checked(self, Call::new("brk", libc::SYS_brk, &[addr]))
    }

    /// `rt_sigaction(sig, NULL, &old)` (`rt_sigaction(2)`): the disposition of `sig`.
    fn rt_sigaction_get(&mut self, sig: i32) -> R<SigAction> {
        let at = self.data();
        checked(self, Call::new("rt_sigaction", libc::SYS_rt_sigaction, &[sig as u64, 0, at, 8]))?;
        let w = get_u64s(self, at, 4)?;
        Ok(SigAction { handler: w[0], flags: w[1], restorer: w[2], mask: w[3] })
    }

    /// `rt_sigaction(sig, &act, NULL)` (`rt_sigaction(2)`).
    fn rt_sigaction_set(&mut self, sig: i32, act: &SigAction) -> R<()> {
        let at = put_u64s(self, "rt_sigaction", 0, &[act.handler, act.flags, act.restorer, act.mask])?;
        checked(self, Call::new("rt_sigaction", libc::SYS_rt_sigaction, &[sig as u64, at, 0, 8])).map(drop)
    }

    /// `sigaltstack(NULL, &old)` (`sigaltstack(2)`).
    fn sigaltstack_get(&mut self) -> R<AltStack> {
        let at = self.data();
        checked(self, Call::new("sigaltstack", libc::SYS_sigaltstack, &[0, at]))?;
        let w = get_u64s(self, at, 3)?;
        Ok(AltStack { sp: w[0], flags: w[1] as u32 as i32, size: w[2] })
    }

    /// `sigaltstack(&ss, NULL)` (`sigaltstack(2)`).
    fn sigaltstack_set(&mut self, ss: &AltStack) -> R<()> {
        let at = put_u64s(self, "sigaltstack", 0, &[ss.sp, ss.flags as u32 as u64, ss.size])?;
        checked(self, Call::new("sigaltstack", libc::SYS_sigaltstack, &[at, 0])).map(drop)
    }

    /// `rt_sigqueueinfo(2)`: queue `sig` with `siginfo` (128 bytes) to process `tgid`.
    fn rt_sigqueueinfo(&mut self, tgid: Pid, sig: i32, siginfo: &[u8]) -> R<()> {
        let at = put(self, "rt_sigqueueinfo", 0, &siginfo[..SIGINFO_SIZE.min(siginfo.len())])?;
        let call = Call::new("rt_sigqueueinfo", libc::SYS_rt_sigqueueinfo, &[tgid.0 as u64, sig as u64, at]);
        checked(self, call).map(drop)
    }

    /// `rt_tgsigqueueinfo(2)`: queue `sig` with `siginfo` (128 bytes) to thread `tid` of `tgid`.
    fn rt_tgsigqueueinfo(&mut self, tgid: Pid, tid: Pid, sig: i32, siginfo: &[u8]) -> R<()> {
        let at = put(self, "rt_tgsigqueueinfo", 0, &siginfo[..SIGINFO_SIZE.min(siginfo.len())])?;
        let args = [tgid.0 as u64, tid.0 as u64, sig as u64, at];
        checked(self, Call::new("rt_tgsigqueueinfo", libc::SYS_rt_tgsigqueueinfo, &args)).map(drop)
    }

    /// `rt_sigtimedwait(&set, NULL, {0, 0})` (`sigtimedwait(2)`): dequeue one pending signal of the
    /// mask `set` without waiting; `None` if none is pending.
    fn rt_sigtimedwait_poll(&mut self, set: u64) -> R<Option<i32>> {
        let at = put_u64s(self, "rt_sigtimedwait", 0, &[set, 0, 0])?;
        let call = Call::new("rt_sigtimedwait", libc::SYS_rt_sigtimedwait, &[at, 0, at + 8, 8]);
        match checked(self, call) {
            Ok(sig) => Ok(Some(sig as i32)),
            Err(InjectError::Failed { source, .. }) if source.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `getitimer(2)` (`_sub` in microseconds).
    fn getitimer(&mut self, which: i32) -> R<IntervalTimer> {
        let at = self.data();
        checked(self, Call::new("getitimer", libc::SYS_getitimer, &[which as u64, at]))?;
        Ok(IntervalTimer::from_words(&get_u64s(self, at, 4)?))
    }

    /// `setitimer(2)`, without the old value.
    fn setitimer(&mut self, which: i32, t: &IntervalTimer) -> R<()> {
        let at = put_u64s(self, "setitimer", 0, &t.words())?;
        checked(self, Call::new("setitimer", libc::SYS_setitimer, &[which as u64, at, 0])).map(drop)
    }

    /// `timer_create(2)` asking for timer id `id` (see [`Prctl::TimerCreateRestoreIds`]): the id
    /// the kernel gave.
    fn timer_create(&mut self, clockid: i32, ev: &SigEvent, id: i32) -> R<i32> {
        let mut sev = [0u64; SIGEVENT_SIZE as usize / 8];
        sev[0] = ev.value;
        sev[1] = ev.signo as u32 as u64 | (ev.notify as u32 as u64) << 32;
        sev[2] = ev.tid as u32 as u64;
        let at = put_u64s(self, "timer_create", 0, &sev)?;
        let id_at = put(self, "timer_create", SIGEVENT_SIZE, &id.to_le_bytes())?;
        checked(self, Call::new("timer_create", libc::SYS_timer_create, &[clockid as u64, at, id_at]))?;
        let mut got = [0u8; 4];
        self.read(id_at, &mut got)?;
        Ok(i32::from_le_bytes(got))
    }

    /// `timer_settime(2)` (`_sub` in nanoseconds), without the old value.
    fn timer_settime(&mut self, id: i32, flags: i32, t: &IntervalTimer) -> R<()> {
        let at = put_u64s(self, "timer_settime", 0, &t.words())?;
        let call = Call::new("timer_settime", libc::SYS_timer_settime, &[id as u64, flags as u64, at, 0]);
        checked(self, call).map(drop)
    }

    /// `timer_gettime(2)` (`_sub` in nanoseconds).
    fn timer_gettime(&mut self, id: i32) -> R<IntervalTimer> {
        let at = self.data();
        checked(self, Call::new("timer_gettime", libc::SYS_timer_gettime, &[id as u64, at]))?;
        Ok(IntervalTimer::from_words(&get_u64s(self, at, 4)?))
    }

    /// `timer_getoverrun(2)`.
    fn timer_getoverrun(&mut self, id: i32) -> R<i32> {
        Ok(checked(self, Call::new("timer_getoverrun", libc::SYS_timer_getoverrun, &[id as u64]))? as i32)
    }

    /// `clone3(2)`: the new task's id (in the caller: the task runs this call, so it is the parent).
    fn clone3(&mut self, a: &CloneArgs) -> R<Pid> {
        let tids = a.set_tid_array();
        let (tid_ptr, n) = match tids.len() {
            0 => (0, 0),
            n => (self.data() + CLONE_ARGS_SIZE, n as u64),
        };
        // flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup
        let words = [a.flags, 0, a.child_tid, 0, a.exit_signal, 0, 0, 0, tid_ptr, n, 0];
        let at = put_u64s(self, "clone3", 0, &words)?;
        // The kernel reads set_tid as pid_t values: pack them two to a word.
        let packed: Vec<u64> = tids.chunks(2).map(|c| c[0] | c.get(1).map_or(0, |hi| hi << 32)).collect();
        put_u64s(self, "clone3", CLONE_ARGS_SIZE, &packed)?;
        Ok(Pid(checked(self, Call::new("clone3", libc::SYS_clone3, &[at, CLONE_ARGS_SIZE]))? as i32))
    }

    /// `setsid(2)`: the new session id.
    fn setsid(&mut self) -> R<i32> {
        Ok(checked(self, Call::new("setsid", libc::SYS_setsid, &[]))? as i32)
    }

    /// `setpgid(2)` (0, 0: lead a group of one's own).
    fn setpgid(&mut self, pid: i32, pgid: i32) -> R<()> {
        checked(self, Call::new("setpgid", libc::SYS_setpgid, &[pid as u64, pgid as u64])).map(drop)
    }

    /// `wait4(pid, NULL, options, NULL)` (`wait4(2)`): the pid reaped.
    fn wait4(&mut self, pid: Pid, options: i32) -> R<Pid> {
        let call = Call::new("wait4", libc::SYS_wait4, &[pid.0 as u64, 0, options as u64, 0]);
        Ok(Pid(checked(self, call)? as i32))
    }

    /// `rseq(2)`: register (`flags` 0) or unregister (`RSEQ_FLAG_UNREGISTER`) the area at `ptr`.
    fn rseq(&mut self, ptr: u64, len: u32, flags: i32, sig: u32) -> R<()> {
        let call = Call::new("rseq", libc::SYS_rseq, &[ptr, len as u64, flags as u64, sig as u64]);
        checked(self, call).map(drop)
    }

    /// `set_tid_address(2)`.
    fn set_tid_address(&mut self, addr: u64) -> R<()> {
        checked(self, Call::new("set_tid_address", libc::SYS_set_tid_address, &[addr])).map(drop)
    }

    /// `set_robust_list(2)`.
    fn set_robust_list(&mut self, head: u64, len: u64) -> R<()> {
        checked(self, Call::new("set_robust_list", libc::SYS_set_robust_list, &[head, len])).map(drop)
    }

    /// `prlimit64(0, resource, &{cur, max}, NULL)` (`prlimit(2)`): set one limit of the task.
    fn prlimit64_set(&mut self, resource: u32, cur: u64, max: u64) -> R<()> {
        let at = put_u64s(self, "prlimit64", 0, &[cur, max])?;
        checked(self, Call::new("prlimit64", libc::SYS_prlimit64, &[0, resource as u64, at, 0])).map(drop)
    }

    /// `umask(2)`: the old mask.
    fn umask(&mut self, mask: u32) -> R<u32> {
        Ok(checked(self, Call::new("umask", libc::SYS_umask, &[mask as u64]))? as u32)
    }

    /// `chdir(2)`.
    fn chdir(&mut self, path: &str) -> R<()> {
        let at = put(self, "chdir", 0, &cstr(path))?;
        checked(self, Call::new("chdir", libc::SYS_chdir, &[at])).map(drop)
    }

    /// `chroot(2)`.
    fn chroot(&mut self, path: &str) -> R<()> {
        let at = put(self, "chroot", 0, &cstr(path))?;
        checked(self, Call::new("chroot", libc::SYS_chroot, &[at])).map(drop)
    }

    /// `personality(2)`: the old persona.
    fn personality(&mut self, persona: u64) -> R<u64> {
        checked(self, Call::new("personality", libc::SYS_personality, &[persona]))
    }

    /// `setpriority(2)`.
    fn setpriority(&mut self, which: i32, who: i32, nice: i32) -> R<()> {
        let call = Call::new("setpriority", libc::SYS_setpriority, &[which as u64, who as u64, nice as i64 as u64]);
        checked(self, call).map(drop)
    }

    /// `sched_setscheduler(2)`.
    fn sched_setscheduler(&mut self, pid: i32, policy: i32, priority: i32) -> R<()> {
        let at = put(self, "sched_setscheduler", 0, &priority.to_le_bytes())?;
        let call = Call::new("sched_setscheduler", libc::SYS_sched_setscheduler, &[pid as u64, policy as u64, at]);
        checked(self, call).map(drop)
    }

    /// `sched_setaffinity(2)`.
    fn sched_setaffinity(&mut self, pid: i32, mask: &[u8]) -> R<()> {
        let at = put(self, "sched_setaffinity", 0, mask)?;
        let call = Call::new("sched_setaffinity", libc::SYS_sched_setaffinity, &[pid as u64, mask.len() as u64, at]);
        checked(self, call).map(drop)
    }

    /// `setgroups(2)`.
    fn setgroups(&mut self, groups: &[u32]) -> R<()> {
        let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
        let at = put(self, "setgroups", 0, &bytes)?;
        checked(self, Call::new("setgroups", libc::SYS_setgroups, &[groups.len() as u64, at])).map(drop)
    }

    /// `setresgid(2)`.
    fn setresgid(&mut self, rgid: u32, egid: u32, sgid: u32) -> R<()> {
        let call = Call::new("setresgid", libc::SYS_setresgid, &[rgid as u64, egid as u64, sgid as u64]);
        checked(self, call).map(drop)
    }

    /// `setresuid(2)`.
    fn setresuid(&mut self, ruid: u32, euid: u32, suid: u32) -> R<()> {
        let call = Call::new("setresuid", libc::SYS_setresuid, &[ruid as u64, euid as u64, suid as u64]);
        checked(self, call).map(drop)
    }

    /// `setfsgid(2)` (it reports no error: the old id comes back either way).
    fn setfsgid(&mut self, fsgid: u32) -> R<()> {
        checked(self, Call::new("setfsgid", libc::SYS_setfsgid, &[fsgid as u64])).map(drop)
    }

    /// `setfsuid(2)` (it reports no error: the old id comes back either way).
    fn setfsuid(&mut self, fsuid: u32) -> R<()> {
        checked(self, Call::new("setfsuid", libc::SYS_setfsuid, &[fsuid as u64])).map(drop)
    }

    /// `capset(2)` of the task itself, with a version 3 header.
    fn capset(&mut self, caps: &CapSets) -> R<()> {
        let (lo, hi) = (|v: u64| v as u32 as u64, |v: u64| v >> 32);
        // Two `{effective, permitted, inheritable}` u32 triples: bits 0-31, then 32-63.
        let d0 = lo(caps.effective) | lo(caps.permitted) << 32;
        let d1 = lo(caps.inheritable) | hi(caps.effective) << 32;
        let d2 = hi(caps.permitted) | hi(caps.inheritable) << 32;
        let head = put_u64s(self, "capset", 0, &[CAPABILITY_VERSION_3, d0, d1, d2])?;
        checked(self, Call::new("capset", libc::SYS_capset, &[head, head + 8])).map(drop)
    }

    /// `openat(2)` of `path` relative to the working directory (`AT_FDCWD`), no mode: the fd.
    fn openat(&mut self, path: &str, flags: i32) -> R<i32> {
        let at = put(self, "openat", 0, &cstr(path))?;
        let call = Call::new("openat", libc::SYS_openat, &[fd(libc::AT_FDCWD), at, flags as u64]);
        Ok(checked(self, call)? as i32)
    }

    /// `write(2)` of `bytes`: the count written.
    fn write_bytes(&mut self, n: i32, bytes: &[u8]) -> R<u64> {
        let at = put(self, "write", 0, bytes)?;
        checked(self, Call::new("write", libc::SYS_write, &[fd(n), at, bytes.len() as u64]))
    }

    /// `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)` (seccomp(2)) with the classic BPF `program`
    /// (raw `struct sock_filter` instructions): 0, or with `SECCOMP_FILTER_FLAG_TSYNC` the tid of a
    /// thread that could not be synchronised.
    fn seccomp_set_mode_filter(&mut self, program: &[u8], flags: u32) -> R<u64> {
        // struct sock_fprog { unsigned short len; struct sock_filter *filter; }, the program after it.
        let prog = put(self, "seccomp", 16, program)?;
        let head = put_u64s(self, "seccomp", 0, &[(program.len() / 8) as u64, prog])?;
        checked(self, Call::new("seccomp", libc::SYS_seccomp, &[SECCOMP_SET_MODE_FILTER, flags as u64, head]))
    }

    /// `seccomp(SECCOMP_SET_MODE_STRICT, 0, NULL)` (seccomp(2)).
    fn seccomp_set_mode_strict(&mut self) -> R<()> {
        checked(self, Call::new("seccomp", libc::SYS_seccomp, &[SECCOMP_SET_MODE_STRICT, 0, 0])).map(drop)
    }

    /// `arch_prctl(ARCH_GET_CPUID)`: 1 when CPUID runs, 0 when it faults (CPUID faulting).
    fn arch_get_cpuid(&mut self) -> R<u64> {
        checked(self, Call::new("arch_prctl", libc::SYS_arch_prctl, &[ARCH_GET_CPUID, 0]).naming(0, "ARCH_GET_CPUID"))
    }

    /// `arch_prctl(ARCH_SET_CPUID, enabled)`.
    fn arch_set_cpuid(&mut self, enabled: bool) -> R<()> {
        let call = Call::new("arch_prctl", libc::SYS_arch_prctl, &[ARCH_SET_CPUID, enabled as u64]);
        checked(self, call.naming(0, "ARCH_SET_CPUID")).map(drop)
    }

    /// `ioprio_set(IOPRIO_WHO_PROCESS, 0, prio)`: the calling thread's I/O priority.
    fn ioprio_set_own(&mut self, prio: i32) -> R<()> {
        checked(self, Call::new("ioprio_set", libc::SYS_ioprio_set, &[1, 0, prio as u64])).map(drop)
    }

    /// `prctl(2)` with option `op`; see [`Prctl`] for what comes back.
    fn prctl(&mut self, op: Prctl<'_>) -> R<u64> {
        let (name, args, out) = prctl_args(self, op)?;
        let ret = checked(self, Call::new("prctl", libc::SYS_prctl, &args).naming(0, name))?;
        match out {
            Out::Ret => Ok(ret),
            Out::Int(at) => {
                let mut v = [0u8; 4];
                self.read(at, &mut v)?;
                Ok(u32::from_le_bytes(v) as u64)
            }
            Out::Long(at) => Ok(get_u64s(self, at, 1)?[0]),
        }
    }
}

impl<T: Target + ?Sized> Remote for T {}

fn cstr(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

/// The option's name, the five arguments of `prctl` for `op` (what it points to written to the data
/// area), and where its value comes back.
fn prctl_args<T: Target + ?Sized>(t: &T, op: Prctl<'_>) -> R<(&'static str, [u64; 5], Out)> {
    let data = t.data();
    Ok(match op {
        Prctl::SetPdeathsig(s) => ("PR_SET_PDEATHSIG", [1, s as u64, 0, 0, 0], Out::Ret),
        Prctl::GetPdeathsig => ("PR_GET_PDEATHSIG", [2, put(t, "prctl", 0, &[0; 4])?, 0, 0, 0], Out::Int(data)),
        Prctl::GetDumpable => ("PR_GET_DUMPABLE", [3, 0, 0, 0, 0], Out::Ret),
        Prctl::SetDumpable(v) => ("PR_SET_DUMPABLE", [4, v as u64, 0, 0, 0], Out::Ret),
        Prctl::SetName(n) => ("PR_SET_NAME", [15, put(t, "prctl(PR_SET_NAME)", 0, &cstr(n))?, 0, 0, 0], Out::Ret),
        Prctl::SetTimerslack(ns) => ("PR_SET_TIMERSLACK", [29, ns, 0, 0, 0], Out::Ret),
        Prctl::SetChildSubreaper(on) => ("PR_SET_CHILD_SUBREAPER", [36, on as u64, 0, 0, 0], Out::Ret),
        Prctl::GetChildSubreaper => {
            ("PR_GET_CHILD_SUBREAPER", [37, put(t, "prctl", 0, &[0; 4])?, 0, 0, 0], Out::Int(data))
        }
        Prctl::SetNoNewPrivs => ("PR_SET_NO_NEW_PRIVS", [38, 1, 0, 0, 0], Out::Ret),
        Prctl::GetTidAddress => ("PR_GET_TID_ADDRESS", [40, put(t, "prctl", 0, &[0; 8])?, 0, 0, 0], Out::Long(data)),
        Prctl::SetThpDisable(on) => ("PR_SET_THP_DISABLE", [41, on as u64, 0, 0, 0], Out::Ret),
        Prctl::GetThpDisable => ("PR_GET_THP_DISABLE", [42, 0, 0, 0, 0], Out::Ret),
        Prctl::GetSecurebits => ("PR_GET_SECUREBITS", [27, 0, 0, 0, 0], Out::Ret),
        Prctl::SetSecurebits(bits) => ("PR_SET_SECUREBITS", [28, bits as u64, 0, 0, 0], Out::Ret),
        Prctl::CapbsetDrop(cap) => ("PR_CAPBSET_DROP", [24, cap as u64, 0, 0, 0], Out::Ret),
        Prctl::CapAmbientRaise(cap) => {
            ("PR_CAP_AMBIENT_RAISE", [PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap as u64, 0, 0], Out::Ret)
        }
        Prctl::SetVmaAnonName { start, len, name } => {
            let at = put(t, "prctl(PR_SET_VMA_ANON_NAME)", 0, &cstr(name))?;
            ("PR_SET_VMA", [PR_SET_VMA, PR_SET_VMA_ANON_NAME, start, len, at], Out::Ret)
        }
        Prctl::SetMmMap(m) => {
            let exe = m.exe_fd.map_or(u32::MAX as u64, |f| f as u32 as u64);
            let auxv_at = data + MM_MAP_SIZE;
            let words = [
                m.start_code,
                m.end_code,
                m.start_data,
                m.end_data,
                m.start_brk,
                m.brk,
                m.start_stack,
                m.arg_start,
                m.arg_end,
                m.env_start,
                m.env_end,
                auxv_at,
                (m.auxv.len() as u64 * 8) | exe << 32,
            ];
            put_u64s(t, "prctl(PR_SET_MM_MAP)", MM_MAP_SIZE, m.auxv)?;
            let at = put_u64s(t, "prctl(PR_SET_MM_MAP)", 0, &words)?;
            ("PR_SET_MM", [PR_SET_MM, PR_SET_MM_MAP, at, MM_MAP_SIZE, 0], Out::Ret)
        }
        Prctl::SetMemoryMerge(on) => ("PR_SET_MEMORY_MERGE", [PR_SET_MEMORY_MERGE, on as u64, 0, 0, 0], Out::Ret),
        Prctl::TimerCreateRestoreIds(on) => {
            ("PR_TIMER_CREATE_RESTORE_IDS", [PR_TIMER_CREATE_RESTORE_IDS, on as u64, 0, 0, 0], Out::Ret)
        }
        Prctl::GetMceKill => ("PR_MCE_KILL_GET", [34, 0, 0, 0, 0], Out::Ret),
        // PR_MCE_KILL_CLEAR 0, PR_MCE_KILL_SET 1; PR_MCE_KILL_DEFAULT is 2.
        Prctl::SetMceKill(2) => ("PR_MCE_KILL", [33, 0, 0, 0, 0], Out::Ret),
        Prctl::SetMceKill(policy) => ("PR_MCE_KILL", [33, 1, policy as u64, 0, 0], Out::Ret),
        Prctl::GetTsc => ("PR_GET_TSC", [25, put(t, "prctl", 0, &[0; 4])?, 0, 0, 0], Out::Int(data)),
        Prctl::SetTsc(mode) => ("PR_SET_TSC", [26, mode as u64, 0, 0, 0], Out::Ret),
        Prctl::GetMdwe => ("PR_GET_MDWE", [66, 0, 0, 0, 0], Out::Ret),
        Prctl::SetMdwe(flags) => ("PR_SET_MDWE", [65, flags as u64, 0, 0, 0], Out::Ret),
    })
}

/// `vmsplice(fd, iov, n, flags)` (`vmsplice(2)`) of the task's own pages into pipe `fd`, its
/// (address, length) pairs written to the data area first.
pub(crate) fn vmsplice<T: Target + ?Sized>(t: &T, n: i32, iov: &[(u64, u64)], flags: u32) -> R<Call> {
    let words: Vec<u64> = iov.iter().flat_map(|&(a, l)| [a, l]).collect();
    let at = put_u64s(t, "vmsplice", 0, &words)?;
    Ok(Call::new("vmsplice", libc::SYS_vmsplice, &[fd(n), at, iov.len() as u64, flags as u64]))
}

/// `exit_group(2)`.
pub(crate) fn exit_group(code: i32) -> Call {
    Call::new("exit_group", libc::SYS_exit_group, &[code as u64])
}

/// `tgkill(2)`.
pub(crate) fn tgkill(tgid: Pid, tid: Pid, sig: i32) -> Call {
    Call::new("tgkill", libc::SYS_tgkill, &[tgid.0 as u64, tid.0 as u64, sig as u64])
}
