//! Memory mappings, the program break, the auxiliary vector, clocks and sleeps.
//!
//! `Mapping` never hands out references into the mapped memory: every access copies, so changing
//! the protection, discarding pages or unmapping can never invalidate a live Rust reference.

use super::{cvt, cvt_long};
use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Size of a page on x86_64.
pub const PAGE: usize = 4096;

/// A private memory mapping owned by this process; unmapped on drop.
pub struct Mapping {
    addr: usize,
    len: usize,
    /// Protection of each page, to refuse accesses that would fault.
    prot: RefCell<Vec<i32>>,
}

impl Mapping {
    /// Maps `len` bytes of private anonymous memory with `prot` (`mmap(2)`).
    pub fn anon(len: usize, prot: i32) -> io::Result<Mapping> {
        Self::map(len, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    }

    /// Maps `len` bytes of `file` from `offset` privately (MAP_PRIVATE) with `prot`.
    pub fn file_private(file: &File, offset: u64, len: usize, prot: i32) -> io::Result<Mapping> {
        Self::map(len, prot, libc::MAP_PRIVATE, file.as_raw_fd(), offset as libc::off_t)
    }

    /// Maps `len` bytes with any `flags` (`MAP_ANONYMOUS` ones without `file`): `MAP_SHARED` file
    /// mappings, `MAP_NORESERVE`, `MAP_DROPPABLE` (0x08), ...
    pub fn with_flags(len: usize, prot: i32, flags: i32, file: Option<&File>, offset: u64) -> io::Result<Mapping> {
        Self::map(len, prot, flags, file.map_or(-1, |f| f.as_raw_fd()), offset as libc::off_t)
    }

    fn map(len: usize, prot: i32, flags: i32, fd: i32, off: libc::off_t) -> io::Result<Mapping> {
        // SAFETY: a new mapping at a kernel-chosen address cannot overlap existing Rust objects.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr: ptr as usize, len, prot: RefCell::new(vec![prot; len.div_ceil(PAGE)]) })
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, mmap refuses zero lengths).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: usize, len: usize, need: i32) {
        assert!(off + len <= self.len, "access {off}+{len} beyond mapping of {}", self.len);
        if len == 0 {
            return;
        }
        let prot = self.prot.borrow();
        for page in off / PAGE..=(off + len - 1) / PAGE {
            assert!(prot[page] & need == need, "page {page} lacks protection {need:#x}");
        }
    }

    /// Writes `data` at `off` (the range must be writable).
    pub fn write(&self, off: usize, data: &[u8]) {
        self.check(off, data.len(), libc::PROT_WRITE);
        // SAFETY: the range is inside the mapping and writable (checked); no Rust reference
        // points into the mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (self.addr + off) as *mut u8, data.len()) };
    }

    /// Fills `len` bytes at `off` (8-aligned, multiple of 8) with `word(i)` for word index `i`
    /// counted from the start of the mapping.
    pub fn fill_words(&self, off: usize, len: usize, word: impl Fn(usize) -> u64) {
        assert!(off.is_multiple_of(8) && len.is_multiple_of(8), "unaligned fill");
        self.check(off, len, libc::PROT_WRITE);
        let base = (self.addr + off) as *mut u64;
        for i in 0..len / 8 {
            // SAFETY: in bounds, aligned and writable (checked above).
            unsafe { base.add(i).write(word(off / 8 + i)) };
        }
    }

    /// Copies `len` bytes at `off` out (the range must be readable).
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        self.check(off, len, libc::PROT_READ);
        let mut out = vec![0u8; len];
        // SAFETY: the range is inside the mapping and readable (checked).
        unsafe { std::ptr::copy_nonoverlapping((self.addr + off) as *const u8, out.as_mut_ptr(), len) };
        out
    }

    /// Seals the whole mapping with `mseal(2)` (Linux 6.10): it can no longer be unmapped, moved
    /// or re-protected, so the value must be leaked (`std::mem::forget`), never dropped.
    pub fn seal(&self) -> io::Result<()> {
        // SAFETY: sealing changes neither the memory nor its protection.
        cvt_long(unsafe { libc::syscall(libc::SYS_mseal, self.addr, self.len, 0) }).map(drop)
    }

    /// Tries `munmap(2)` of the whole sealed mapping, which must fail: the error. A mapping that
    /// was unmapped after all is reported as `Ok` and must not be touched again.
    pub fn unmap_sealed(&self) -> io::Result<()> {
        // SAFETY: only called on a sealed mapping (the call then changes nothing), which is leaked.
        cvt(unsafe { libc::munmap(self.addr as *mut _, self.len) }).map(drop)
    }

    /// Changes the protection of `len` bytes at `off` (page aligned) with `mprotect(2)`.
    pub fn protect(&self, off: usize, len: usize, prot: i32) -> io::Result<()> {
        assert!(off.is_multiple_of(PAGE) && off + len <= self.len, "bad mprotect range");
        // SAFETY: the range belongs to this mapping and no Rust reference points into it.
        cvt(unsafe { libc::mprotect((self.addr + off) as *mut _, len, prot) })?;
        let mut table = self.prot.borrow_mut();
        for p in &mut table[off / PAGE..(off + len).div_ceil(PAGE)] {
            *p = prot;
        }
        Ok(())
    }

    /// Discards `len` bytes at `off` with `madvise(MADV_DONTNEED)` (they read back as zero).
    pub fn discard(&self, off: usize, len: usize) -> io::Result<()> {
        assert!(off.is_multiple_of(PAGE) && off + len <= self.len, "bad madvise range");
        // SAFETY: the range belongs to this private mapping and no Rust reference points into it.
        cvt(unsafe { libc::madvise((self.addr + off) as *mut _, len, libc::MADV_DONTNEED) }).map(drop)
    }

    /// `madvise(2)` of `len` bytes at `off` with an advice that keeps the contents (no
    /// MADV_DONTNEED/MADV_FREE: see [`Mapping::discard`]); guard regions (`MADV_GUARD_INSTALL`)
    /// are marked inaccessible in the protection table.
    pub fn advise(&self, off: usize, len: usize, advice: i32) -> io::Result<()> {
        assert!(off.is_multiple_of(PAGE) && off + len <= self.len, "bad madvise range");
        assert!(advice != libc::MADV_DONTNEED && advice != libc::MADV_FREE, "use discard");
        // SAFETY: the range belongs to this mapping and no Rust reference points into it; guard
        // pages are recorded as PROT_NONE below, so `check` refuses any access to them.
        cvt(unsafe { libc::madvise((self.addr + off) as *mut _, len, advice) })?;
        let guard = match advice {
            MADV_GUARD_INSTALL => Some(libc::PROT_NONE),
            MADV_GUARD_REMOVE => Some(libc::PROT_READ | libc::PROT_WRITE),
            _ => None,
        };
        if let Some(prot) = guard {
            self.prot.borrow_mut()[off / PAGE..(off + len).div_ceil(PAGE)].fill(prot);
        }
        Ok(())
    }

    /// Grows or moves the mapping to `new_len` with `mremap(MREMAP_MAYMOVE)`.
    pub fn remap(self, new_len: usize) -> io::Result<Mapping> {
        // SAFETY: the old range is owned by `self`, which is consumed; nothing references it.
        let ptr = unsafe { libc::mremap(self.addr as *mut _, self.len, new_len, libc::MREMAP_MAYMOVE) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let prot = self.prot.borrow()[0];
        let out = Mapping { addr: ptr as usize, len: new_len, prot: RefCell::new(vec![prot; new_len.div_ceil(PAGE)]) };
        std::mem::forget(self);
        Ok(out)
    }

    /// Moves the mapping, same length, to a new address (`mremap(MREMAP_MAYMOVE | MREMAP_FIXED)`
    /// onto a range reserved for it).
    pub fn remap_moved(self) -> io::Result<Mapping> {
        let target = Mapping::anon(self.len, libc::PROT_NONE)?;
        let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
        // SAFETY: both ranges are owned here (`self` consumed, `target` reserved for it and
        // forgotten, its range replaced); nothing references either.
        let ptr =
            unsafe { libc::mremap(self.addr as *mut _, self.len, self.len, flags, target.addr as *mut libc::c_void) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let out = Mapping { addr: ptr as usize, len: self.len, prot: RefCell::new(self.prot.borrow().clone()) };
        std::mem::forget(target);
        std::mem::forget(self);
        Ok(out)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by this value and nothing references it.
        unsafe { libc::munmap(self.addr as *mut _, self.len) };
    }
}

/// `MADV_GUARD_INSTALL` (Linux 6.13).
pub const MADV_GUARD_INSTALL: i32 = 102;
/// `MADV_GUARD_REMOVE` (Linux 6.13).
pub const MADV_GUARD_REMOVE: i32 = 103;

/// `mlock2(2)` of `len` bytes at `addr` with `flags` (`MLOCK_ONFAULT` = 1).
pub fn mlock2(m: &Mapping, flags: u32) -> io::Result<()> {
    // SAFETY: locking changes no memory contents; the range is the mapping's own.
    cvt_long(unsafe { libc::syscall(libc::SYS_mlock2, m.addr, m.len, flags) }).map(drop)
}

/// `mlockall(2)` with `flags`.
pub fn mlockall(flags: i32) -> io::Result<()> {
    // SAFETY: locking changes no memory contents.
    cvt(unsafe { libc::mlockall(flags) }).map(drop)
}

/// `membarrier(2)` with command `cmd` and no flags; returns what it returns.
pub fn membarrier(cmd: i32) -> io::Result<i64> {
    // SAFETY: membarrier takes plain integers.
    cvt_long(unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) })
}

/// Unmaps this process's `[vdso]`, `[vvar]` and `[vvar_vclock]` (`munmap(2)`, as a raw system
/// call). From then on the process must not call what the C library sends to the vDSO
/// (`clock_gettime`, `gettimeofday`, `time`, `getcpu`, ...): use the raw system calls
/// ([`clock_gettime_syscall`]). Returns the ranges unmapped.
pub fn unmap_vdso() -> io::Result<Vec<(u64, u64)>> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut gone = Vec::new();
    for line in maps.lines() {
        let name = line.split_whitespace().nth(5).unwrap_or("");
        if !matches!(name, "[vdso]" | "[vvar]" | "[vvar_vclock]") {
            continue;
        }
        let range = line.split_whitespace().next().unwrap_or("");
        let parse = |s: &str| u64::from_str_radix(s, 16).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        let (start, end) = range.split_once('-').ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
        gone.push((parse(start)?, parse(end)?));
    }
    for &(start, end) in &gone {
        // SAFETY: no Rust object lives in the kernel's special mappings; the caller promises not
        // to enter the vDSO again (see above).
        cvt_long(unsafe { libc::syscall(libc::SYS_munmap, start, end - start) })?;
    }
    Ok(gone)
}

/// The current program break (`brk(0)` as a raw system call).
pub fn current_brk() -> usize {
    // SAFETY: brk(0) only queries the break.
    unsafe { libc::syscall(libc::SYS_brk, 0usize) as usize }
}

/// `getauxval(3)` for `key` (0 when absent).
pub fn getauxval(key: u64) -> u64 {
    // SAFETY: getauxval takes a plain integer.
    unsafe { libc::getauxval(key as libc::c_ulong) as u64 }
}

fn to_duration(ts: libc::timespec) -> Duration {
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn to_timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
}

/// `clock_gettime(3)` through the C library, which uses the vDSO.
pub fn clock_gettime(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = to_timespec(Duration::ZERO);
    // SAFETY: `ts` is a live local.
    cvt(unsafe { libc::clock_gettime(clock, &mut ts) })?;
    Ok(to_duration(ts))
}

/// `clock_gettime(2)` as a real system call, bypassing the vDSO.
pub fn clock_gettime_syscall(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = to_timespec(Duration::ZERO);
    // SAFETY: `ts` is a live local.
    cvt_long(unsafe { libc::syscall(libc::SYS_clock_gettime, clock, &mut ts) })?;
    Ok(to_duration(ts))
}

/// One `nanosleep(2)` call for `req`; on failure returns the error and the remaining time the
/// kernel wrote back.
pub fn nanosleep(req: Duration) -> Result<(), (io::Error, Duration)> {
    let req = to_timespec(req);
    let mut rem = to_timespec(Duration::ZERO);
    // SAFETY: both timespecs are live locals.
    if unsafe { libc::nanosleep(&req, &mut rem) } == 0 {
        Ok(())
    } else {
        Err((io::Error::last_os_error(), to_duration(rem)))
    }
}

/// One `clock_nanosleep(2)` call with TIMER_ABSTIME until `deadline` on `clock`.
pub fn clock_nanosleep_abs(clock: libc::clockid_t, deadline: Duration) -> io::Result<()> {
    let ts = to_timespec(deadline);
    // SAFETY: `ts` is a live local; no remaining time is requested with TIMER_ABSTIME.
    let err = unsafe { libc::clock_nanosleep(clock, libc::TIMER_ABSTIME, &ts, std::ptr::null_mut()) };
    if err == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(err))
    }
}

impl Mapping {
    /// The index (counted from the start of the mapping) of the first 64-bit word of `len` bytes
    /// at `off` (8-aligned, multiple of 8) that differs from `word(i)`, read in place without
    /// copying (so reading never makes a private copy of shared pages).
    pub fn first_word_mismatch(&self, off: usize, len: usize, word: impl Fn(usize) -> u64) -> Option<usize> {
        assert!(off.is_multiple_of(8) && len.is_multiple_of(8), "unaligned check");
        self.check(off, len, libc::PROT_READ);
        let base = (self.addr + off) as *const u64;
        (0..len / 8)
            .find(|&i| {
                // SAFETY: in bounds, aligned and readable (checked above).
                let got = unsafe { base.add(i).read() };
                got != word(off / 8 + i)
            })
            .map(|i| off / 8 + i)
    }
}

/// A shared anonymous mapping (`MAP_SHARED | MAP_ANONYMOUS`) seen as 64-bit atomic words: every
/// process forked after it is made maps the same object, and every access, in every process, goes
/// through the atomics, so concurrent writes from other processes are ordinary atomic stores.
/// Unmapped on drop. Never unmapped, resized or protected while borrowed, so the references
/// [`SharedWords::words`] hands out stay valid.
pub struct SharedWords {
    addr: usize,
    len: usize,
}

impl SharedWords {
    /// Maps `len` bytes (a multiple of 8) of shared anonymous memory, readable and writable
    /// (`mmap(2)` with `MAP_SHARED | MAP_ANONYMOUS`).
    pub fn anon(len: usize) -> io::Result<SharedWords> {
        assert!(len > 0 && len.is_multiple_of(8), "shared mapping length {len} not a multiple of 8");
        let (prot, flags) = (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS);
        // SAFETY: a new mapping at a kernel-chosen address cannot overlap existing Rust objects.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, -1, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedWords { addr: ptr as usize, len })
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, `anon` refuses zero lengths).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole mapping as atomic words.
    pub fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: the range is mapped readable and writable for as long as `self` lives (it is
        // unmapped only on drop, and `keep_private_copy` replaces it in place), page aligned, and
        // `AtomicU64` has the size and alignment of `u64`, for which every bit pattern (zero pages
        // included) is valid; other processes only touch it through atomics too.
        unsafe { std::slice::from_raw_parts(self.addr as *const std::sync::atomic::AtomicU64, self.len / 8) }
    }

    /// Replaces this process's view of the object with a private copy of its current contents
    /// (`mmap(2)` with `MAP_PRIVATE | MAP_FIXED` over the same range): this process's later
    /// writes are no longer seen by the others, nor theirs by it. Only for checking that a test
    /// detects memory that stopped being shared; needs a single-threaded process.
    pub fn keep_private_copy(&self) -> io::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let threads = std::fs::read_dir("/proc/self/task")?.count();
        if threads != 1 {
            return Err(io::Error::other(format!(
                "a private copy needs a single-threaded process, this one has {threads}"
            )));
        }
        let copy: Vec<u64> = self.words().iter().map(|w| w.load(SeqCst)).collect();
        let (prot, flags) =
            (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED);
        // SAFETY: MAP_FIXED replaces exactly this mapping's range in one call, so the range stays
        // mapped readable and writable for the references `words` handed out (all atomics, whose
        // contents may change under them anyway); no other thread runs in this process (checked
        // above) to see it zeroed before the copy is written back.
        let ptr = unsafe { libc::mmap(self.addr as *mut _, self.len, prot, flags, -1, 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        for (w, v) in self.words().iter().zip(copy) {
            w.store(v, SeqCst);
        }
        Ok(())
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by this value and nothing borrows it any more.
        unsafe { libc::munmap(self.addr as *mut _, self.len) };
    }
}

impl Mapping {
    /// Maps `len` bytes of `file` from `offset` shared (MAP_SHARED) with `prot`: writes through
    /// the mapping reach the file, and writes to the file show in the mapping.
    pub fn file_shared(file: &File, offset: u64, len: usize, prot: i32) -> io::Result<Mapping> {
        Self::map(len, prot, libc::MAP_SHARED, file.as_raw_fd(), offset as libc::off_t)
    }
}

/// A new memfd named `name` (`memfd_create(2)`) with `flags` (e.g. `MFD_ALLOW_SEALING`).
pub fn memfd_create(name: &str, flags: u32) -> io::Result<File> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a live NUL-terminated string; the flags are plain integers.
    let fd = cvt(unsafe { libc::memfd_create(c.as_ptr(), flags) })?;
    // SAFETY: the fd was just created and is owned by nobody else.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Adds `seals` (`F_SEAL_*`) to a memfd (`fcntl(F_ADD_SEALS)`).
pub fn add_seals(file: &File, seals: i32) -> io::Result<()> {
    // SAFETY: `file` is an open fd; F_ADD_SEALS takes a plain integer.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// The seals of a memfd (`fcntl(F_GET_SEALS)`).
pub fn get_seals(file: &File) -> io::Result<i32> {
    // SAFETY: `file` is an open fd; F_GET_SEALS takes no argument.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) })
}

/// The filesystem type of the file behind `file` (`fstatfs(2)`'s `f_type`, e.g. `HUGETLBFS_MAGIC`).
pub fn fs_type(file: &File) -> io::Result<i64> {
    // SAFETY: an all-zero statfs is a valid value for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `file` is an open fd and `st` a live statfs.
    cvt(unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) })?;
    Ok(st.f_type)
}

// SysV shared memory (`shmget(2)`, `shmat(2)`, `shmdt(2)`, `shmctl(2)`): segments live in the
// IPC namespace, not in a process, so a segment outlives its creator until removed (IPC_RMID) and
// its last attachment is gone.

/// `shmget(2)`: the id of the segment `key` (`libc::IPC_PRIVATE`: a new one) of `size` bytes,
/// created with `flags` (`IPC_CREAT | IPC_EXCL | mode`, or 0 to look up an existing one).
pub fn shmget(key: i32, size: usize, flags: i32) -> io::Result<i32> {
    // SAFETY: shmget takes plain integers and touches no memory of this process.
    cvt(unsafe { libc::shmget(key, size, flags) })
}

/// What `shmctl(IPC_STAT)` reports of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmStat {
    /// Its key (`IPC_PRIVATE` once removed while attached).
    pub key: i32,
    /// Permissions and state bits (`SHM_DEST` `0o1000` once removed while attached).
    pub mode: u32,
    /// Size in bytes.
    pub size: usize,
    /// Number of attachments.
    pub nattch: u64,
    /// Owner.
    pub uid: u32,
    /// Owner group.
    pub gid: u32,
}

/// `shmctl(id, IPC_STAT)`: the state of segment `id`.
pub fn shm_stat(id: i32) -> io::Result<ShmStat> {
    let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a live local of the type IPC_STAT fills in.
    cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) })?;
    // SAFETY: zero is a valid bit pattern for every field of `shmid_ds` (plain integers), and
    // the kernel filled it in on success.
    let ds = unsafe { ds.assume_init() };
    Ok(ShmStat {
        key: ds.shm_perm.__key,
        mode: u32::from(ds.shm_perm.mode),
        size: ds.shm_segsz,
        nattch: ds.shm_nattch,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
    })
}

/// `shmctl(id, IPC_RMID)`: removes segment `id` (it goes once its last attachment is gone).
pub fn shm_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer; a null pointer is what shmctl(2) documents for it.
    cvt(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// A SysV shared memory segment attached to this process (`shmat(2)` at a kernel-chosen address,
/// read and write) seen as 64-bit atomic words, like [`SharedWords`]: every process attaching the
/// segment (or forked while it is attached) sees the same memory, and every access goes through
/// the atomics. Detached on drop (`shmdt(2)`); never detached while borrowed, so the references
/// [`ShmAttached::words`] hands out stay valid.
pub struct ShmAttached {
    addr: usize,
    len: usize,
}

impl ShmAttached {
    /// Attaches segment `id` (its size from IPC_STAT, a multiple of 8).
    pub fn attach(id: i32) -> io::Result<ShmAttached> {
        let len = shm_stat(id)?.size;
        if len == 0 || !len.is_multiple_of(8) {
            return Err(io::Error::other(format!("segment {id} of {len} bytes is not a whole number of words")));
        }
        // SAFETY: a new attachment at a kernel-chosen address cannot overlap existing Rust objects.
        let ptr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if ptr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(ShmAttached { addr: ptr as usize, len })
    }

    /// The address it is attached at.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Length in bytes (the segment's size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment is empty (never, `attach` refuses it).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole segment as atomic words.
    pub fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: the range is attached readable and writable for as long as `self` lives (it is
        // detached only by `detach` or drop, which consume it), page aligned, and `AtomicU64` has
        // the size and alignment of `u64`, for which every bit pattern is valid; other processes
        // only touch it through atomics too.
        unsafe { std::slice::from_raw_parts(self.addr as *const std::sync::atomic::AtomicU64, self.len / 8) }
    }

    /// Detaches the segment (`shmdt(2)`), reporting the error drop would ignore.
    pub fn detach(self) -> io::Result<()> {
        let addr = self.addr;
        std::mem::forget(self);
        // SAFETY: the attachment was made by the value just consumed; nothing borrows it any more.
        cvt(unsafe { libc::shmdt(addr as *const _) }).map(drop)
    }
}

impl Drop for ShmAttached {
    fn drop(&mut self) {
        // SAFETY: the attachment was made by this value and nothing borrows it any more.
        unsafe { libc::shmdt(self.addr as *const _) };
    }
}
