//! Kernel feature probing: which of the interfaces stasis relies on this kernel and CPU offer.
//!
//! [`probe`] tries each interface once, cheaply and without side effects visible outside this
//! process: a forked child (killed and reaped by pid before returning) for the ptrace requests, a
//! `clone3` that is meant to fail with `EEXIST`, harmless calls on our own pid, a page of our own for
//! the pagemap probes. The result is a plain [`KernelFeatures`] value that the engine consults and
//! `stasis check` prints; nothing is cached here.
//!
//! The probes live beside what they test: `task` (ptrace, pidfds, `clone3`, `kcmp`, `PR_SET_MM`,
//! `rseq`), `memory` (`vmsplice`, `PAGEMAP_SCAN`, userfaultfd, soft-dirty), `host` (time
//! namespaces, cgroup v2), `sockdiag`, `conntrack` (ctnetlink), `aio` (`io_setup`) and `xsave`. Constants and structure layouts that Debian's
//! headers or the `libc` crate lack are defined in those files from the Linux 6.18 UAPI headers named
//! beside each one.

mod aio;
mod conntrack;
mod events;
mod host;
mod memory;
mod sockdiag;
mod task;
mod xsave;

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

pub use host::cgroup2_mount;
pub use xsave::{xfeatures, xsave_size};

/// Size of the pages the memory probes map.
const PAGE: usize = 4096;

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
    /// ctnetlink lists the conntrack table of a network namespace.
    pub conntrack: Probed,
    /// XSAVE enabled by the OS.
    pub xsave: Probed,
    /// `TFD_IOC_SET_TICKS` on a timerfd.
    pub timerfd_ticks: Probed,
    /// `prctl(PR_TIMER_CREATE_RESTORE_IDS)`.
    pub timer_restore_ids: Probed,
    /// `io_setup` (CONFIG_AIO).
    pub aio: Probed,
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
        let rows: [(&'static str, &Probed, &'static str); 20] = [
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
            ("conntrack", &self.conntrack, "the conntrack entries of a network namespace"),
            ("pipe-max-size", &pipe, "size of the pipe of the zero-copy memory dump"),
            ("xsave", &self.xsave, "dumping and checking FPU, SSE and AVX state"),
            ("timerfd-ticks", &self.timerfd_ticks, "restoring unread timerfd expirations"),
            ("timer-ids", &self.timer_restore_ids, "restoring POSIX timers with their ids"),
            ("aio", &self.aio, "restoring AIO contexts (io_setup)"),
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
    let (ptrace_seize, ptrace_rseq_config) = task::probe_ptrace();
    let (uffd_wp_async, uffd_features) = memory::probe_uffd();
    let (cgroup_v2, cgroup2_mount) = host::probe_cgroup_v2();
    KernelFeatures {
        release: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        ptrace_seize,
        ptrace_rseq_config,
        pidfd_getfd: task::probe_pidfd_getfd(),
        clone3_set_tid: task::probe_clone3_set_tid(),
        kcmp: task::probe_kcmp(),
        mm_map: task::probe_mm_map(),
        rseq: task::probe_rseq(),
        vmsplice: memory::probe_vmsplice(),
        pagemap_scan: memory::probe_pagemap_scan(),
        uffd_wp_async,
        soft_dirty: memory::probe_soft_dirty(),
        time_ns: host::probe_time_ns(),
        cgroup_v2,
        cgroup2_mount,
        sock_diag: sockdiag::probe_sock_diag(),
        conntrack: conntrack::probe_conntrack(),
        xsave: xsave::probe_xsave(),
        timerfd_ticks: events::probe_timerfd_ticks(),
        timer_restore_ids: events::probe_timer_restore_ids(),
        aio: aio::probe_aio(),
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
    fn missing_required_names_them() {
        let mut k = probe();
        k.clone3_set_tid = Probed::no("test");
        k.ptrace_seize = Probed::no("test");
        assert_eq!(k.missing_required(), ["ptrace-seize", "clone3-set-tid"]);
    }
}
