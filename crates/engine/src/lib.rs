//! Dump and restore of Linux processes.
//!
//! `dump` and `restore` are the two entry points; `dump/mod.rs` and `restore/mod.rs` read as the list
//! of their stages. Each resource kind (memory, registers, signals, files, ...) has one module holding
//! both its dump and its restore side.

pub mod cgroups;
pub mod cpu;
pub mod creds;
pub mod dump;
pub mod error;
pub mod fault;
pub mod files;
pub mod holder;
pub mod ipc;
pub mod lazy;
pub mod mem;
pub mod migrate;
pub mod misc;
pub mod mm;
pub mod mnt;
pub mod netlock;
pub mod netns;
pub mod notify;
pub mod ns;
pub mod pageserver;
pub mod posix_timers;
pub mod proc;
pub mod regs;
pub mod restore;
pub mod seccomp;
pub mod session;
pub mod signals;
pub mod sysv;
pub mod task;
pub mod threads;
pub mod timers;
pub mod tracers;
pub mod tree;
pub mod userns;

pub use error::Error;
pub use restore::Restored;

use std::path::PathBuf;
use std::time::Duration;

/// Checkpoint the process `opts.pid` into `opts.dir`. See [`dump::dump`].
pub fn dump(opts: &DumpOptions, progress: &mut dyn FnMut(Progress)) -> Result<DumpReport, Error> {
    dump::dump(opts, progress).map(|r| auto_dedup(opts, r))
}

/// With `--auto-dedup`, the parents of the image just made give up the pages it holds (see
/// [`mem::dedup`]). The image is complete either way: a failure is a warning.
fn auto_dedup(opts: &DumpOptions, mut report: DumpReport) -> DumpReport {
    if opts.auto_dedup {
        match mem::dedup::dedup(&opts.dir) {
            Ok(d) => report.pages_deduped = d.pages,
            Err(e) => log::warn!(
                "--auto-dedup: {e}: the image in {} is complete, its parents keep their copies (stasis dedup -D {0} does it again)",
                opts.dir.display()
            ),
        }
    }
    report
}

/// Punch out of the parent images of the image in `dir` the pages it holds itself (CRIU's
/// `dedup`). See [`mem::dedup`].
pub fn dedup(dir: &std::path::Path) -> Result<mem::dedup::Deduped, Error> {
    mem::dedup::dedup(dir)
}

/// Save the memory of the tree `opts.pid` into `opts.dir` while it runs on, and track its writes
/// for the next round. See [`dump::predump::pre_dump`].
pub fn pre_dump(opts: &DumpOptions, progress: &mut dyn FnMut(Progress)) -> Result<DumpReport, Error> {
    dump::predump::pre_dump(opts, progress).map(|r| auto_dedup(opts, r))
}

/// Restore the image in `opts.dir`. See [`restore::restore`].
pub fn restore(opts: &RestoreOptions, progress: &mut dyn FnMut(Progress)) -> Result<Restored, Error> {
    restore::restore(opts, progress)
}

/// What `stasis dump` was asked to do.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Root of the tree to checkpoint.
    pub pid: i32,
    /// Image directory (created 0700 if missing).
    pub dir: PathBuf,
    /// Resume the process after the dump instead of killing it.
    pub leave_running: bool,
    /// Leave the tree stopped (SIGSTOP, as if by job control) after the dump or pre-dump, instead
    /// of killing it or letting it run (`-s`, `--leave-stopped`); a dump then leaves it alive as
    /// with `leave_running` (see [`DumpOptions::keeps_tree`]).
    pub leave_stopped: bool,
    /// Terminal fds are external: restore attaches them to the terminal stasis runs from.
    pub shell_job: bool,
    /// Flush the image to disk before the inventory is committed.
    pub fsync: bool,
    /// Largest unlinked file whose contents are saved in the image (bytes); a bigger one fails the
    /// dump.
    pub ghost_limit: u64,
    /// A UNIX socket connected to a socket outside the tree is external: restore connects it to the
    /// peer's name again (CRIU's `--ext-unix-sk`).
    pub ext_unix_sk: bool,
    /// UNIX sockets (by inode) allowed a peer outside the tree, as `ext_unix_sk` allows every one
    /// (`--external unix[INODE]`).
    pub ext_unix_inodes: Vec<u64>,
    /// Keep the file locks the tree holds (CRIU's `--file-locks`); without it a lock fails the dump.
    pub file_locks: bool,
    /// A process with a uprobes area may be dumped (CRIU's `--allow-uprobes`, see
    /// [`mem::uprobes`]); without it one fails the dump, named.
    pub allow_uprobes: bool,
    /// Established TCP connections are dumped in repair mode (CRIU's `--tcp-established`); without
    /// it one fails the dump, named.
    pub tcp_established: bool,
    /// Connections waiting in a listener's accept queue are dropped (`--skip-in-flight`); without it
    /// they fail the dump.
    pub skip_in_flight: bool,
    /// How the dumped connections are kept from being reset until the restore (`--network-lock`).
    pub network_lock: netlock::Mode,
    /// The caller's action points (see [`notify`]).
    pub notify: notify::Notifier,
    /// The image of the round before (CRIU's `--prev-images-dir`, relative to `dir` unless
    /// absolute): only pages written since it are saved; the others are "in parent" (see
    /// [`mem::track`]). A `parent` link to it is made in `dir`.
    pub prev_images_dir: Option<PathBuf>,
    /// Keep tracking writes after this round (`--track-mem`; always so for a pre-dump).
    pub track_mem: bool,
    /// Send the page files to this page server instead of writing them in `dir` (`--page-server
    /// --address A --port P`, or `--page-server --ps-socket FD`).
    pub page_server: Option<PageServerAddr>,
    /// Veths of the tree's network namespace whose peer is outside it, with the peer's name
    /// (`--external veth[NAME]:PEER`).
    pub ext_veths: Vec<(String, String)>,
    /// Network namespaces (by inode) that are not saved, with the key restore finds them by
    /// (`--external net[INODE]:KEY`).
    pub ext_netns: Vec<(u64, String)>,
    /// The tree's network namespace is saved empty: restore makes a new one with nothing in it,
    /// for the caller to set up (`--empty-ns net`).
    pub empty_netns: bool,
    /// `--manage-cgroups=ignore` saves no cgroup; any other mode saves them all (see [`cgroups`]).
    pub manage_cgroups: cgroups::Mode,
    /// Freeze this cgroup (a directory with a v2 or v1 freezer) before the tree is seized
    /// (`--freeze-cgroup`); every process in it must be in the tree.
    pub freeze_cgroup: Option<PathBuf>,
    /// Once the image is made, punch the pages it holds out of its parent images
    /// (`--auto-dedup`; see [`mem::dedup`]).
    pub auto_dedup: bool,
    /// Page files in zstd frames, one per checksum chunk (`--compress`; see
    /// `stasis_image::compress`).
    pub compress: bool,
    /// `--external mnt[POINT]:KEY`: the mount at POINT of the tree's mount namespace is not
    /// saved; restore takes it from the path given for KEY (see [`mnt`]).
    pub ext_mounts: Vec<(String, String)>,
    /// `--skip-mnt POINT`: the mount at POINT of the tree's mount namespace, and those under it,
    /// are not saved (and not made at restore); refused while the tree uses a file of them.
    pub skip_mounts: Vec<String>,
    /// `--enable-external-sharing`, `--enable-external-masters`: see [`mnt::Rules`].
    pub ext_sharing: bool,
    pub ext_masters: bool,
    /// `--ext-mount-map auto`: a mount of a filesystem also mounted in stasis's namespace, which
    /// restore could not make again otherwise, is external with that path as its key (see
    /// [`mnt::Rules`]).
    pub ext_mount_auto: bool,
    /// `--enable-fs FS,...`: mounts of these filesystem types (`all`: of any) that stasis does not
    /// make otherwise are made again by mounting their source with their options, their contents
    /// not saved (see [`mnt::Rules`]).
    pub enable_fs: Vec<String>,
    /// Called once the image is complete in `dir` (inventory written) while the tree is still
    /// frozen, before it is killed (see [`Handoff`]); `None` for a plain dump.
    pub handoff: Option<Handoff>,
}

/// What a dump hands its complete image to before it kills the tree (`stasis migrate`: send the
/// image, wait until the other side runs it). An error resumes the tree as after any failed dump.
/// It gets the image directory and the instant the freeze began.
#[derive(Clone)]
pub struct Handoff(pub std::sync::Arc<HandoffFn>);

/// The function of a [`Handoff`].
pub type HandoffFn = dyn Fn(&std::path::Path, std::time::Instant) -> Result<(), Error> + Send + Sync;

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handoff")
    }
}

/// Default of [`DumpOptions::ghost_limit`]: 1 MiB, as CRIU's.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;
/// The most [`DumpOptions::ghost_limit`] may be: unlinked files are stored in `files.img`, whose
/// records are bounded.
pub const MAX_GHOST_LIMIT: u64 = 32 << 20;

/// Progress of a long operation, for a terminal progress line.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// What a successful dump did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpReport {
    pub pid: i32,
    /// Time from the freeze to the resume (or kill) of the tree.
    pub frozen: Duration,
    /// Whole dump, including writing the image.
    pub total: Duration,
    /// Pages written to page files.
    pub pages: u64,
    /// Pages left in the parent image (not written since it).
    pub pages_in_parent: u64,
    /// Processes whose writes were tracked since the parent image.
    pub tracked_processes: u64,
    /// The holder process a pre-dump left to keep the tracking (see [`holder`]); 0 for a dump.
    pub holder_pid: u32,
    /// Bytes written to the image directory.
    pub image_bytes: u64,
    /// Pages punched out of parent images (`--auto-dedup`).
    pub pages_deduped: u64,
    /// The process was left running.
    pub left_running: bool,
    /// System calls injected into the tree (the count `STASIS_FAULT=dump-call:N` goes by).
    pub injected_calls: u64,
    /// Image files written (the count `STASIS_FAULT=dump-write:N` goes by).
    pub image_writes: u64,
    /// The fds that lead outside the tree (what `--inherit-fd` may replace at restore).
    pub external: Vec<files::external::ExternalFd>,
    /// The namespaces the root has of its own (restore makes them again).
    pub namespaces: ns::NsSet,
}

/// Where a dump's page server is.
#[derive(Debug, Clone)]
pub enum PageServerAddr {
    /// `--address A --port P`: the dump connects to it.
    Tcp(String, u16),
    /// `--ps-socket FD`: a stream socket the caller connected to it (a duplicate of that fd).
    Socket(std::sync::Arc<std::os::fd::OwnedFd>),
}

impl DumpOptions {
    /// What the options say of the tree's mounts.
    pub fn mount_rules(&self) -> mnt::Rules<'_> {
        mnt::Rules {
            external: &self.ext_mounts,
            skip: &self.skip_mounts,
            sharing: self.ext_sharing,
            masters: self.ext_masters,
            auto: self.ext_mount_auto,
            enable_fs: &self.enable_fs,
        }
    }

    /// The tree outlives the dump, running or stopped (`--leave-running`, `--leave-stopped`).
    pub fn keeps_tree(&self) -> bool {
        self.leave_running || self.leave_stopped
    }
}

/// What `stasis restore` was asked to do.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub dir: PathBuf,
    /// What is required of this CPU (`--cpu-cap`; see [`cpu`]).
    pub cpu_caps: cpu::Caps,
    /// Every process of the tree is left stopped (SIGSTOP) instead of running (`-s`,
    /// `--leave-stopped`): a `SIGCONT` lets it go on.
    pub leave_stopped: bool,
    /// Terminal fds are attached to the terminal stasis runs from.
    pub shell_job: bool,
    /// `--evasive-devices`: a device file whose path is gone or another device here is opened
    /// through any node of the same device under /dev.
    pub evasive_devices: bool,
    /// stasis will not wait for the process (`-d`): its parent, stasis, exits right away, so a
    /// parent-death signal is not armed (it would fire at once).
    pub detached: bool,
    /// Connect UNIX sockets whose peer was outside the dump to that peer's name again.
    pub ext_unix_sk: bool,
    /// Descriptors of the caller installed instead of the objects they name (`--inherit-fd`).
    pub inherit_fds: Vec<files::external::InheritFd>,
    /// Take the image's file locks again (CRIU's `--file-locks`); an image with locks needs it.
    pub file_locks: bool,
    /// An image with a uprobes area may be restored (CRIU's `--allow-uprobes`, see
    /// [`mem::uprobes`]).
    pub allow_uprobes: bool,
    /// Restore established TCP connections (`--tcp-established`), or restore them closed
    /// (`--tcp-close`); an image holding one needs either.
    pub tcp: files::inet::Established,
    /// The network lock of the dump: removed once the tree runs, or on failure (`nftables`, the
    /// default), or left alone (`skip`).
    pub network_lock: netlock::Mode,
    /// The root is made a child of our parent, not ours (`clone3` with `CLONE_PARENT`; CRIU's
    /// `--restore-sibling`, and `rst_sibling` of its RPC, where the caller waits for the root).
    pub sibling: bool,
    /// The caller's action points (see [`notify`]).
    pub notify: notify::Notifier,
    /// Leave the private anonymous pages of the tree's childless processes to the lazy-pages
    /// daemon serving `dir` (`--lazy-pages`; see [`mem::lazy`]).
    pub lazy_pages: bool,
    /// Names for the outside peers of the tree's veths, instead of the image's
    /// (`--external veth[NAME]:PEER`).
    pub ext_veths: Vec<(String, String)>,
    /// Existing namespaces the root joins instead of new ones (`--join-ns NS:PID|FILE`: kind and
    /// an fd of the namespace).
    pub join_ns: Vec<(String, std::sync::Arc<std::os::fd::OwnedFd>)>,
    /// A sysctl of the image that this kernel lacks is skipped with a warning (`--weak-sysctls`);
    /// without it the restore fails naming it.
    pub weak_sysctls: bool,
    /// What is done with the image's cgroups (`--manage-cgroups`, `--cgroup-root`).
    pub cgroups: cgroups::Options,
    /// `--external mnt[KEY]:PATH` (or `--ext-mount-map KEY:PATH`): the paths of the external
    /// mounts of the image (see [`mnt`]).
    pub ext_mount_map: Vec<(String, PathBuf)>,
    /// `--ext-mount-map auto`: an external mount the dump found by itself (`--ext-mount-map auto`
    /// there) with no path given for its key is a copy of its key, the path it had in the dumping
    /// stasis's namespace.
    pub ext_mount_auto: bool,
    /// `--root PATH`: the root mount of the tree's mount namespace is a copy of PATH.
    pub root: Option<PathBuf>,
}

/// What a successful restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    /// PID of the restored root.
    pub pid: i32,
    /// Time from reading the image to the process running.
    pub total: Duration,
    pub pages: u64,
    /// System calls injected into the tree (the count `STASIS_FAULT=restore-call:N` goes by).
    pub injected_calls: u64,
    /// The namespaces the root was restored in of its own.
    pub namespaces: ns::NsSet,
    /// Where `total` went.
    pub stages: RestoreStages,
}

/// The stages of a restore, each timed from the end of the one before.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct RestoreStages {
    /// Reading the image and its checks, the parent images' page files resolved and checked.
    pub prepare: Duration,
    /// Namespaces, mounts, files, IPC objects and cgroups made, up to the root forked.
    pub setup: Duration,
    /// Every task built: layout, memory, state, threads.
    pub tasks: Duration,
    /// Pidfds, pages verified, groups and terminals, the tasks let go.
    pub finish: Duration,
}
