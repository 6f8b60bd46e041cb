//! Kernel feature probing: which of the interfaces stasis relies on this kernel and CPU offer.
//!
//! [`probe`] tries each interface once, cheaply and without side effects visible outside this
//! process: a forked child (killed and reaped by pid before returning) for the ptrace requests, a
//! `clone3` that is meant to fail with `EEXIST`, harmless calls on our own pid, a page of our own for
//! the pagemap probes. The result is a plain [`KernelFeatures`] value that the engine consults and
//! `stasis check` prints; nothing is cached here.
//!
//! Constants and structure layouts that Debian's headers or the `libc` crate lack are defined here
//! from the Linux 6.18 UAPI headers named beside each one.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// `PTRACE_GET_RSEQ_CONFIGURATION` (include/uapi/linux/ptrace.h, Linux 5.13).
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
/// `PR_SET_MM` and its `PR_SET_MM_MAP_SIZE` sub-option (include/uapi/linux/prctl.h).
const PR_SET_MM: libc::c_int = 35;
const PR_SET_MM_MAP_SIZE: libc::c_ulong = 15;
/// `KCMP_VM` (include/uapi/linux/kcmp.h).
const KCMP_VM: libc::c_int = 1;
/// `AT_RSEQ_FEATURE_SIZE` and `AT_RSEQ_ALIGN` (include/uapi/linux/auxvec.h, Linux 6.3).
const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;
const AT_RSEQ_ALIGN: libc::c_ulong = 28;
/// `PAGEMAP_SCAN` = `_IOWR('f', 16, struct pm_scan_arg)` (include/uapi/linux/fs.h, Linux 6.7).
const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
/// `PAGE_IS_PRESENT` category of `PAGEMAP_SCAN`.
const PAGE_IS_PRESENT: u64 = 1 << 3;
/// `UFFD_API` and `UFFDIO_API` = `_IOWR(0xAA, 0x3F, struct uffdio_api)`
/// (include/uapi/linux/userfaultfd.h).
const UFFD_API: u64 = 0xaa;
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `UFFD_FEATURE_WP_ASYNC` (Linux 6.7).
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// Bit 55 of a pagemap entry: the page is soft-dirty (Documentation/admin-guide/mm/pagemap.rst).
const PM_SOFT_DIRTY: u64 = 1 << 55;
/// Bit 63 of a pagemap entry: the page is present.
const PM_PRESENT: u64 = 1 << 63;
/// `SOCK_DIAG_BY_FAMILY` (include/uapi/linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const PAGE: usize = 4096;

/// `struct clone_args` up to `set_tid_size` (include/uapi/linux/sched.h, `CLONE_ARGS_SIZE_VER1`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
}

/// `struct ptrace_rseq_configuration` (include/uapi/linux/ptrace.h).
#[repr(C)]
#[derive(Default)]
struct RseqConfiguration {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

/// `struct pm_scan_arg` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `struct uffdio_api` (include/uapi/linux/userfaultfd.h).
#[repr(C)]
#[derive(Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// The features without which dump or restore cannot work.
pub const REQUIRED: [&str; 3] = ["ptrace-seize", "pidfd-getfd", "clone3-set-tid"];

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    pub available: bool,
    /// What was seen: a value, or the call that failed and its error.
    pub detail: String,
}

impl Probed {
    fn yes(detail: impl Into<String>) -> Self {
        Probed { available: true, detail: detail.into() }
    }

    fn no(detail: impl Into<String>) -> Self {
        Probed { available: false, detail: detail.into() }
    }

    /// `call` failed with `errno`.
    fn failed(call: &str, errno: i32) -> Self {
        Probed::no(format!("{call}: {}", io::Error::from_raw_os_error(errno)))
    }
}

/// What this kernel and CPU offer, probed once by [`probe`].
#[derive(Clone, Debug)]
pub struct KernelFeatures {
    /// `uname -r`.
    pub release: String,
    /// `PTRACE_SEIZE` + `PTRACE_INTERRUPT` stop a child in a group-stop-like `PTRACE_EVENT_STOP`.
    pub ptrace_seize: Probed,
    /// `PTRACE_GET_RSEQ_CONFIGURATION` on a seized child.
    pub ptrace_rseq_config: Probed,
    /// `pidfd_open` + `pidfd_getfd`.
    pub pidfd_getfd: Probed,
    /// `clone3` with `set_tid`, and the privilege to use it.
    pub clone3_set_tid: Probed,
    /// `kcmp(KCMP_VM)`.
    pub kcmp: Probed,
    /// `prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)`.
    pub mm_map: Probed,
    /// The `rseq` system call.
    pub rseq: Probed,
    /// `vmsplice` into a pipe and `splice` out of it.
    pub vmsplice: Probed,
    /// The `PAGEMAP_SCAN` ioctl on `/proc/self/pagemap`.
    pub pagemap_scan: Probed,
    /// userfaultfd with `UFFD_FEATURE_WP_ASYNC`.
    pub uffd_wp_async: Probed,
    /// Soft-dirty bits in pagemap (`CONFIG_MEM_SOFT_DIRTY`).
    pub soft_dirty: Probed,
    /// Time namespaces (`/proc/self/ns/time`).
    pub time_ns: Probed,
    /// A cgroup v2 hierarchy is mounted (unified, or hybrid beside v1 controllers).
    pub cgroup_v2: Probed,
    /// Where the cgroup v2 hierarchy is mounted.
    pub cgroup2_mount: Option<PathBuf>,
    /// `NETLINK_SOCK_DIAG` answering for unix and TCP sockets.
    pub sock_diag: Probed,
    /// XSAVE enabled by the OS.
    pub xsave: Probed,
    /// `/proc/sys/fs/pipe-max-size`, if readable.
    pub pipe_max_size: Option<u64>,
    /// XCR0: the xsave feature bits enabled for user space (0 without XSAVE).
    pub xfeatures: u64,
    /// Size in bytes of an XSAVE area holding every feature in `xfeatures`.
    pub xsave_size: u32,
    /// Every `UFFD_FEATURE_*` bit the kernel offers (0 without userfaultfd).
    pub uffd_features: u64,
}

/// One line of `stasis check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feature {
    /// Short name, e.g. `clone3-set-tid`.
    pub name: &'static str,
    pub available: bool,
    /// What the probe saw.
    pub detail: String,
    /// What stasis does with it.
    pub enables: &'static str,
    /// Dump or restore cannot work without it.
    pub required: bool,
}

impl KernelFeatures {
    /// Every probed feature, required ones first.
    pub fn list(&self) -> Vec<Feature> {
        let pipe = match self.pipe_max_size {
            Some(n) => Probed::yes(format!("{n} bytes")),
            None => Probed::no("/proc/sys/fs/pipe-max-size is not readable"),
        };
        let rows: [(&'static str, &Probed, &'static str); 16] = [
            ("ptrace-seize", &self.ptrace_seize, "freezing a process tree"),
            ("pidfd-getfd", &self.pidfd_getfd, "taking the fds of a frozen task"),
            ("clone3-set-tid", &self.clone3_set_tid, "restoring tasks with their pids"),
            ("kcmp", &self.kcmp, "finding what tasks share (files, memory, tables)"),
            ("mm-map", &self.mm_map, "restoring mm fields, the exe link and auxv"),
            ("ptrace-rseq", &self.ptrace_rseq_config, "dumping rseq registrations"),
            ("rseq", &self.rseq, "restoring rseq registrations"),
            ("vmsplice", &self.vmsplice, "zero-copy memory dump"),
            ("pagemap-scan", &self.pagemap_scan, "fast scans of present and written pages"),
            ("uffd-wp-async", &self.uffd_wp_async, "incremental dumps and lazy restore"),
            ("soft-dirty", &self.soft_dirty, "incremental dumps by soft-dirty bits"),
            ("time-ns", &self.time_ns, "time namespaces"),
            ("cgroup-v2", &self.cgroup_v2, "freezing containers with the cgroup freezer"),
            ("sock-diag", &self.sock_diag, "dumping sockets"),
            ("pipe-max-size", &pipe, "size of the pipe of the zero-copy memory dump"),
            ("xsave", &self.xsave, "dumping and checking FPU, SSE and AVX state"),
        ];
        rows.into_iter()
            .map(|(name, p, enables)| Feature {
                name,
                available: p.available,
                detail: p.detail.clone(),
                enables,
                required: REQUIRED.contains(&name),
            })
            .collect()
    }

    /// Names of the required features that are missing; empty when dump and restore can work.
    pub fn missing_required(&self) -> Vec<&'static str> {
        self.list().into_iter().filter(|f| f.required && !f.available).map(|f| f.name).collect()
    }
}

/// Probes every feature. Takes a few milliseconds (one fork).
pub fn probe() -> KernelFeatures {
    let (ptrace_seize, ptrace_rseq_config) = probe_ptrace();
    let (uffd_wp_async, uffd_features) = probe_uffd();
    let (cgroup_v2, cgroup2_mount) = probe_cgroup_v2();
    KernelFeatures {
        release: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        ptrace_seize,
        ptrace_rseq_config,
        pidfd_getfd: probe_pidfd_getfd(),
        clone3_set_tid: probe_clone3_set_tid(),
        kcmp: probe_kcmp(),
        mm_map: probe_mm_map(),
        rseq: probe_rseq(),
        vmsplice: probe_vmsplice(),
        pagemap_scan: probe_pagemap_scan(),
        uffd_wp_async,
        soft_dirty: probe_soft_dirty(),
        time_ns: probe_time_ns(),
        cgroup_v2,
        cgroup2_mount,
        sock_diag: probe_sock_diag(),
        xsave: probe_xsave(),
        pipe_max_size: read_trimmed("/proc/sys/fs/pipe-max-size").and_then(|s| s.parse().ok()),
        xfeatures: xfeatures(),
        xsave_size: xsave_size(),
        uffd_features,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The calling thread's errno.
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `Ok(ret)` or `Err(errno)` for a `-1`-and-errno return.
fn sys(ret: libc::c_long) -> Result<libc::c_long, i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of an fd the kernel just returned.
fn own(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful system call that created it; nothing else
    // owns or closes it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// A forked child that only sleeps; killed with SIGKILL and reaped by its pid on drop.
struct Sleeper(libc::pid_t);

impl Sleeper {
    fn spawn() -> Result<Sleeper, i32> {
        // SAFETY: the child runs only raw system calls (async-signal-safe), so it is sound even
        // though the other threads of this process do not exist in it.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            sleep_forever();
        }
        sys(pid.into()).map(|p| Sleeper(p as libc::pid_t))
    }
}

/// The child side of [`Sleeper::spawn`]: die with the parent, else pause until killed.
fn sleep_forever() -> ! {
    // SAFETY: raw system calls with integer arguments only; no memory or lock is touched.
    unsafe {
        libc::syscall(libc::SYS_prctl, libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        loop {
            libc::syscall(libc::SYS_pause);
        }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        // SAFETY: `self.0` is our own unreaped child, so the pid cannot have been reused.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
        wait_exit(self.0);
    }
}

/// Reaps `pid` (our child), skipping stops, until it has exited.
fn wait_exit(pid: libc::pid_t) {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out pointer; we wait for one specific child of ours.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if (ret < 0 && errno() != libc::EINTR) || (ret == pid && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)))
        {
            return;
        }
    }
}

fn ptrace(req: libc::c_uint, pid: libc::pid_t, addr: u64, data: u64) -> Result<libc::c_long, i32> {
    // SAFETY: every request made here either takes no pointer or gets in `data` a pointer to a live
    // buffer of the size given in `addr`.
    sys(unsafe { libc::ptrace(req, pid, addr, data) })
}

/// Seizes and interrupts a forked child; on success also asks for its rseq configuration.
fn probe_ptrace() -> (Probed, Probed) {
    let untested = || Probed::no("not probed: no seized child");
    let child = match Sleeper::spawn() {
        Ok(c) => c,
        Err(e) => return (Probed::failed("fork", e), untested()),
    };
    if let Err(e) = ptrace(libc::PTRACE_SEIZE, child.0, 0, 0) {
        return (Probed::failed("PTRACE_SEIZE", e), untested());
    }
    if let Err(e) = ptrace(libc::PTRACE_INTERRUPT, child.0, 0, 0) {
        return (Probed::failed("PTRACE_INTERRUPT", e), untested());
    }
    let mut status = 0;
    // SAFETY: `status` is a valid out pointer; we wait for our own child.
    if unsafe { libc::waitpid(child.0, &mut status, libc::__WALL) } != child.0 {
        return (Probed::failed("waitpid", errno()), untested());
    }
    if !libc::WIFSTOPPED(status) || status >> 16 != libc::PTRACE_EVENT_STOP {
        let seen = Probed::no(format!("child did not reach PTRACE_EVENT_STOP (status {status:#x})"));
        return (seen, untested());
    }
    let seize = Probed::yes("seized and interrupted a child");
    (seize, rseq_configuration(child.0))
}

fn rseq_configuration(pid: libc::pid_t) -> Probed {
    let mut conf = RseqConfiguration::default();
    let size = size_of::<RseqConfiguration>() as u64;
    let addr = &mut conf as *mut RseqConfiguration as u64;
    match ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, size, addr) {
        Ok(_) if conf.rseq_abi_pointer == 0 => Probed::yes("works; the child had no rseq area"),
        Ok(_) => Probed::yes(format!(
            "works; the child's rseq area is {} bytes, signature {:#x}",
            conf.rseq_abi_size, conf.signature
        )),
        Err(e) => Probed::failed("PTRACE_GET_RSEQ_CONFIGURATION", e),
    }
}

/// `pidfd_open` on ourselves, then `pidfd_getfd` of that very pidfd.
fn probe_pidfd_getfd() -> Probed {
    // SAFETY: integer arguments only.
    let pidfd = match sys(unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) }) {
        Ok(fd) => own(fd),
        Err(e) => return Probed::failed("pidfd_open", e),
    };
    let raw = pidfd.as_raw_fd();
    // SAFETY: integer arguments only; the result is a new fd that we take ownership of.
    match sys(unsafe { libc::syscall(libc::SYS_pidfd_getfd, raw, raw, 0) }) {
        Ok(fd) => {
            drop(own(fd));
            Probed::yes("copied an fd out of a process through its pidfd")
        }
        Err(e) => Probed::failed("pidfd_getfd", e),
    }
}

/// `clone3` asking for our own pid, which is surely taken: `EEXIST` proves that set_tid works and
/// that we may use it, and creates nothing.
fn probe_clone3_set_tid() -> Probed {
    // SAFETY: no arguments.
    let set_tid = [unsafe { libc::getpid() }];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: `args` and `set_tid` outlive the call. Should a child be created after all (fork
    // semantics, no CLONE_VM), it exits at once with a raw system call.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, size_of::<CloneArgs>()) };
    match ret {
        0 => {
            // SAFETY: we are the unexpected child; exit without running any destructor.
            unsafe { libc::syscall(libc::SYS_exit_group, 0) };
            unreachable!("exit returned");
        }
        pid if pid > 0 => {
            wait_exit(pid as libc::pid_t);
            Probed::no(format!("clone3 created pid {pid} instead of failing with EEXIST"))
        }
        _ => match errno() {
            libc::EEXIST => Probed::yes("clone3 refused a pid in use with EEXIST, as expected"),
            libc::EPERM => Probed::no("clone3 set_tid: needs CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN"),
            e => Probed::failed("clone3 with set_tid", e),
        },
    }
}

fn probe_kcmp() -> Probed {
    // SAFETY: integer arguments only.
    let ret = unsafe {
        let pid = libc::getpid();
        libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_VM, 0, 0)
    };
    match sys(ret) {
        Ok(0) => Probed::yes("kcmp(KCMP_VM) of ourselves is equal"),
        Ok(r) => Probed::no(format!("kcmp(KCMP_VM) of ourselves returned {r}")),
        Err(e) => Probed::failed("kcmp", e),
    }
}

fn probe_mm_map() -> Probed {
    let mut size: libc::c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one unsigned int to the pointer we pass.
    let ret = unsafe { libc::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &mut size as *mut libc::c_uint, 0, 0) };
    match sys(ret.into()) {
        Ok(_) => Probed::yes(format!("struct prctl_mm_map is {size} bytes")),
        Err(e) => Probed::failed("prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)", e),
    }
}

/// `rseq` with an unknown flag: `EINVAL` if the call exists, `ENOSYS` if not.
fn probe_rseq() -> Probed {
    // SAFETY: a null area with a flag the kernel rejects before looking at any pointer.
    let ret = unsafe { libc::syscall(libc::SYS_rseq, 0usize, 0u32, 2, 0u32) };
    match sys(ret) {
        Err(libc::EINVAL) => {
            // SAFETY: getauxval reads the process's own auxiliary vector.
            let (size, align) = unsafe { (libc::getauxval(AT_RSEQ_FEATURE_SIZE), libc::getauxval(AT_RSEQ_ALIGN)) };
            Probed::yes(format!("feature size {size}, alignment {align}"))
        }
        Err(e) => Probed::failed("rseq", e),
        Ok(_) => Probed::no("rseq accepted an invalid flag"),
    }
}

/// `vmsplice` one page of ours into a pipe, then `splice` it to `/dev/null`.
fn probe_vmsplice() -> Probed {
    let mut ends = [0; 2];
    // SAFETY: `ends` has room for the two fds.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Probed::failed("pipe2", errno());
    }
    let (rd, wr) = (own(ends[0].into()), own(ends[1].into()));
    let null = match File::options().write(true).open("/dev/null") {
        Ok(f) => f,
        Err(e) => return Probed::no(format!("open /dev/null: {e}")),
    };
    let page = vec![0x5au8; PAGE];
    let iov = libc::iovec { iov_base: page.as_ptr() as *mut libc::c_void, iov_len: PAGE };
    // SAFETY: `iov` describes `page`, which stays alive and unmodified until the pipe is drained
    // into /dev/null below.
    let moved = unsafe { libc::vmsplice(wr.as_raw_fd(), &iov, 1, 0) };
    if moved != PAGE as isize {
        return Probed::failed("vmsplice", errno());
    }
    // SAFETY: fds only; null offsets mean "use the file position".
    let out = unsafe {
        let null_off = std::ptr::null_mut();
        libc::splice(rd.as_raw_fd(), null_off, null.as_raw_fd(), null_off, PAGE, 0)
    };
    if out != PAGE as isize {
        return Probed::failed("splice", errno());
    }
    Probed::yes("moved a page through a pipe with vmsplice and splice")
}

/// One private anonymous page of ours, written to so that it is present; unmapped on drop.
struct OwnPage(*mut libc::c_void);

impl OwnPage {
    fn new() -> Result<OwnPage, i32> {
        // SAFETY: a fresh anonymous mapping chosen by the kernel overlaps nothing of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(errno());
        }
        // SAFETY: `p` is a writable page we just mapped and nobody else refers to.
        unsafe { p.cast::<u8>().write_volatile(1) };
        Ok(OwnPage(p))
    }

    fn addr(&self) -> u64 {
        self.0 as u64
    }
}

impl Drop for OwnPage {
    fn drop(&mut self) {
        // SAFETY: the page was mapped by `new` and no reference into it outlives `self`.
        unsafe { libc::munmap(self.0, PAGE) };
    }
}

fn probe_pagemap_scan() -> Probed {
    let pagemap = match File::open("/proc/self/pagemap") {
        Ok(f) => f,
        Err(e) => return Probed::no(format!("open /proc/self/pagemap: {e}")),
    };
    let page = match OwnPage::new() {
        Ok(p) => p,
        Err(e) => return Probed::failed("mmap", e),
    };
    let mut region = PageRegion::default();
    let mut arg = PmScanArg {
        size: size_of::<PmScanArg>() as u64,
        start: page.addr(),
        end: page.addr() + PAGE as u64,
        vec: &mut region as *mut PageRegion as u64,
        vec_len: 1,
        category_anyof_mask: PAGE_IS_PRESENT,
        return_mask: PAGE_IS_PRESENT,
        ..PmScanArg::default()
    };
    // SAFETY: `arg` is a complete pm_scan_arg whose `vec` points at one live page_region.
    let ret = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut arg as *mut PmScanArg) };
    match sys(ret.into()) {
        Ok(1) if region.start == page.addr() && region.categories & PAGE_IS_PRESENT != 0 => {
            Probed::yes("found a present page of ours")
        }
        Ok(n) => Probed::no(format!("PAGEMAP_SCAN returned {n} regions for one present page")),
        Err(e) => Probed::failed("ioctl(PAGEMAP_SCAN)", e),
    }
}

/// Opens a userfaultfd and asks `UFFDIO_API` for every feature it offers.
fn probe_uffd() -> (Probed, u64) {
    // SAFETY: integer flags only; the result is a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    let uffd = match sys(ret) {
        Ok(fd) => own(fd),
        Err(e) => return (Probed::failed("userfaultfd", e), 0),
    };
    let mut api = UffdioApi { api: UFFD_API, ..UffdioApi::default() };
    // SAFETY: `api` is a live uffdio_api that the kernel reads and fills in.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    if let Err(e) = sys(ret.into()) {
        return (Probed::failed("ioctl(UFFDIO_API)", e), 0);
    }
    let detail = format!("features {:#x}", api.features);
    let probed = if api.features & UFFD_FEATURE_WP_ASYNC != 0 {
        Probed::yes(detail)
    } else {
        Probed::no(format!("{detail}: no UFFD_FEATURE_WP_ASYNC"))
    };
    (probed, api.features)
}

/// A new anonymous mapping is soft-dirty when the kernel tracks soft-dirty bits; without
/// `CONFIG_MEM_SOFT_DIRTY` bit 55 of its pagemap entry is always clear. Nothing is cleared.
fn probe_soft_dirty() -> Probed {
    let page = match OwnPage::new() {
        Ok(p) => p,
        Err(e) => return Probed::failed("mmap", e),
    };
    let mut entry = [0u8; 8];
    let offset = page.addr() / PAGE as u64 * 8;
    let read = File::open("/proc/self/pagemap").and_then(|f| f.read_exact_at(&mut entry, offset));
    if let Err(e) = read {
        return Probed::no(format!("read /proc/self/pagemap: {e}"));
    }
    let entry = u64::from_ne_bytes(entry);
    if entry & PM_PRESENT == 0 {
        Probed::no("pagemap shows a page we wrote as absent")
    } else if entry & PM_SOFT_DIRTY == 0 {
        Probed::no("a freshly written page is not soft-dirty (no CONFIG_MEM_SOFT_DIRTY)")
    } else {
        Probed::yes("a freshly written page is soft-dirty")
    }
}

fn probe_time_ns() -> Probed {
    match fs::read_link("/proc/self/ns/time") {
        Ok(target) => Probed::yes(format!("in {}", target.display())),
        Err(e) => Probed::no(format!("/proc/self/ns/time: {e}")),
    }
}

/// Finds the cgroup2 mount in `/proc/self/mounts`: `/sys/fs/cgroup` on a unified system,
/// `/sys/fs/cgroup/unified` on a hybrid one (v1 controllers beside an empty v2 tree).
fn probe_cgroup_v2() -> (Probed, Option<PathBuf>) {
    let mounts = match fs::read_to_string("/proc/self/mounts") {
        Ok(m) => m,
        Err(e) => return (Probed::no(format!("/proc/self/mounts: {e}")), None),
    };
    let mount = mounts.lines().find_map(|line| {
        let mut cols = line.split(' ');
        let point = cols.nth(1)?;
        (cols.next()? == "cgroup2").then(|| PathBuf::from(point))
    });
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

/// Opens a `NETLINK_SOCK_DIAG` socket and sends a dump request that matches no socket (state set
/// 0) for unix and for TCP sockets: the family's module answers with `NLMSG_DONE`.
fn probe_sock_diag() -> Probed {
    let flags = libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: integer arguments only; the result is a new fd.
    let ret = unsafe { libc::socket(libc::AF_NETLINK, flags, libc::NETLINK_SOCK_DIAG) };
    let mut sock = match sys(ret.into()) {
        Ok(fd) => File::from(own(fd)),
        Err(e) => return Probed::failed("socket(NETLINK_SOCK_DIAG)", e),
    };
    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2].
    let mut unix_req = vec![libc::AF_UNIX as u8, 0, 0, 0];
    unix_req.resize(24, 0);
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, struct inet_diag_sockid (48).
    let mut tcp_req = vec![libc::AF_INET as u8, libc::IPPROTO_TCP as u8, 0, 0];
    tcp_req.resize(56, 0);
    let unix = diag_answers(&mut sock, 1, &unix_req);
    let tcp = diag_answers(&mut sock, 2, &tcp_req);
    let show = |r: &Result<(), String>| match r {
        Ok(()) => "yes".to_string(),
        Err(e) => e.clone(),
    };
    let detail = format!("unix: {}, tcp: {}", show(&unix), show(&tcp));
    if unix.is_ok() && tcp.is_ok() {
        Probed::yes(detail)
    } else {
        Probed::no(detail)
    }
}

/// Sends one `SOCK_DIAG_BY_FAMILY` dump request and reads the first answer.
fn diag_answers(sock: &mut File, seq: u32, req: &[u8]) -> Result<(), String> {
    let len = 16 + req.len() as u32;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend(len.to_ne_bytes());
    msg.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend(flags.to_ne_bytes());
    msg.extend(seq.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    msg.extend(req);
    sock.write_all(&msg).map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = sock.read(&mut buf).map_err(|e| format!("receive: {e}"))?;
    let word = |at: usize| buf.get(at..at + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4")));
    let kind = buf.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match kind {
        _ if n < 16 => Err(format!("short answer of {n} bytes")),
        Some(t) if t == libc::NLMSG_DONE as u16 => Ok(()),
        Some(t) if t == libc::NLMSG_ERROR as u16 => {
            let code = word(16).map_or(0, |w| w as i32);
            Err(io::Error::from_raw_os_error(-code).to_string())
        }
        Some(t) => Err(format!("unexpected message type {t}")),
        None => Err("no answer".to_string()),
    }
}

fn probe_xsave() -> Probed {
    let x = xfeatures();
    if x == 0 {
        return Probed::no("the OS has not enabled XSAVE");
    }
    let names: Vec<&str> =
        XFEATURE_NAMES.iter().filter(|(bit, _)| x & (1 << bit) != 0).map(|&(_, name)| name).collect();
    Probed::yes(format!("XCR0 {x:#x} ({}), area {} bytes", names.join(" "), xsave_size()))
}

/// Names of the user xsave components (Intel SDM vol. 1, 13.1).
const XFEATURE_NAMES: [(u32, &str); 11] = [
    (0, "x87"),
    (1, "sse"),
    (2, "avx"),
    (3, "bndregs"),
    (4, "bndcsr"),
    (5, "opmask"),
    (6, "zmm_hi256"),
    (7, "hi16_zmm"),
    (9, "pkru"),
    (17, "xtilecfg"),
    (18, "xtiledata"),
];

/// XCR0, the xsave feature bits the OS enabled for user space (`xgetbv(0)`); 0 when the CPU or the
/// OS lacks XSAVE. Images record it; restore refuses an image whose features this CPU lacks.
#[cfg(target_arch = "x86_64")]
pub fn xfeatures() -> u64 {
    if !os_xsave() {
        return 0;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: CPUID.1:ECX.OSXSAVE is set, so XGETBV with ECX = 0 is a valid instruction here; it
    // reads a register and touches no memory.
    unsafe {
        std::arch::asm!(
            "xgetbv",
            in("ecx") 0u32,
            out("eax") lo,
            out("edx") hi,
            options(nomem, nostack, preserves_flags)
        );
    }
    u64::from(hi) << 32 | u64::from(lo)
}

/// See the x86_64 version; other architectures have no XSAVE.
#[cfg(not(target_arch = "x86_64"))]
pub fn xfeatures() -> u64 {
    0
}

/// Size in bytes of the XSAVE area for the features enabled in XCR0 (CPUID.(0Dh,0):EBX), which is
/// the size of an `NT_X86_XSTATE` register set; 0 without XSAVE.
#[cfg(target_arch = "x86_64")]
pub fn xsave_size() -> u32 {
    if !os_xsave() {
        return 0;
    }
    cpuid(0xd, 0).ebx
}

/// See the x86_64 version.
#[cfg(not(target_arch = "x86_64"))]
pub fn xsave_size() -> u32 {
    0
}

/// CPUID.1:ECX bit 27: the OS enabled XSAVE, so XGETBV and leaf 0Dh are usable.
#[cfg(target_arch = "x86_64")]
fn os_xsave() -> bool {
    cpuid(0, 0).eax >= 0xd && cpuid(1, 0).ecx & (1 << 27) != 0
}

#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid_count` is a safe function in newer toolchains
fn cpuid(leaf: u32, sub: u32) -> std::arch::x86_64::CpuidResult {
    // SAFETY: CPUID exists on every x86_64 CPU and only reads registers.
    unsafe { std::arch::x86_64::__cpuid_count(leaf, sub) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs on the development machine (Linux 6.18, root): prints what it found, checks the
    /// invariants that hold everywhere and the required features this project needs.
    #[test]
    fn probe_reports_every_feature() {
        let k = probe();
        for f in k.list() {
            println!("{:16} {:5} {} ({})", f.name, f.available, f.detail, f.enables);
            assert!(!f.detail.is_empty(), "{} has no detail", f.name);
        }
        assert!(!k.release.is_empty());
        let required: Vec<_> = k.list().into_iter().filter(|f| f.required).collect();
        assert_eq!(required.len(), 3);
        let missing = k.missing_required();
        assert!(missing.iter().all(|m| required.iter().any(|f| f.name == *m)));
        if !missing.is_empty() {
            println!("SKIP required-feature checks: this machine lacks {missing:?}");
        }
    }

    #[test]
    fn clone3_probe_creates_nothing() {
        let p = probe_clone3_set_tid();
        assert!(!p.detail.contains("created"), "{}", p.detail);
        if p.available {
            assert!(p.detail.contains("EEXIST"), "{}", p.detail);
        } else {
            println!("SKIP: clone3 set_tid unavailable here: {}", p.detail);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn xsave_has_x87_and_sse() {
        let x = xfeatures();
        if x == 0 {
            println!("SKIP: the OS has not enabled XSAVE on this CPU");
            return;
        }
        assert_eq!(x & 0b11, 0b11, "XCR0 {x:#x}");
        assert!(xsave_size() >= 576, "xsave area {} bytes", xsave_size());
    }

    #[test]
    fn missing_required_names_them() {
        let mut k = probe();
        k.clone3_set_tid = Probed::no("test");
        k.ptrace_seize = Probed::no("test");
        assert_eq!(k.missing_required(), ["ptrace-seize", "clone3-set-tid"]);
    }
}
