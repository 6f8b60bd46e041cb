//! The table of fd kinds: each kind's module declares one [`Kind`] (`pub const KIND`) and [`KINDS`]
//! lists them. The file stages ([`super::dump`], [`super::finish_tree`], [`super::open_all`],
//! [`super::Opened::finish_tree`]) go through the table and name no kind; a new kind is its module
//! plus one line here.
//!
//! Dump asks each kind in table order whether it [`Dumper::claims`] an fd (the first that does
//! dumps it, so a more specific kind comes before a wider one), lets each set itself up from the
//! dump's options, and once every process is seen runs each kind's tree-wide step (pairing ends,
//! checking peers). What a kind keeps over the whole dump lives in [`FileIds::state`], by type.
//!
//! Restore makes one [`Opener`] per kind, which opens the descriptions of that kind (keeping what it
//! needs across them); once every description is open each opener leaves what later stages need
//! in [`Later`], by type, and each kind's tree-wide step runs once every process exists.

use super::{FileIds, Probe};
use crate::error::Result;
use crate::DumpOptions;
use stasis_image::model::{FdTable, FileEntry, FileKind, ProcessEntry};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::os::fd::OwnedFd;

/// One kind of open file description: how a dump recognises and saves it, and how a restore makes
/// it again. Every step but the dump itself is optional: `None` where the kind has nothing to do.
pub struct Kind {
    /// For logs.
    pub name: &'static str,
    /// How a dump takes an fd of this kind; `None` for a kind another kind's dump hands over to.
    pub dump: Option<Dumper>,
    /// Sets the kind's dump state from the options.
    pub configure: Option<fn(&DumpOptions, &mut FileIds)>,
    /// The dump's step once every process of the tree is seen (and still frozen).
    pub finish_dump: Option<fn(&mut DumpTree) -> Result<()>>,
    /// Makes the restore's opener of this kind.
    pub opener: Option<MakeOpener>,
    /// The restore's step once every process exists, before any runs: it takes what the kind's
    /// opener left in [`Later::unfinished`].
    pub finish_restore: Option<FinishRestore>,
}

/// How a dump recognises and saves an fd of one kind.
pub struct Dumper {
    /// Whether the fd `p` is of this kind.
    pub claims: fn(&Probe) -> bool,
    pub dump: fn(&Probe, &mut FileIds) -> Result<FileKind>,
}

/// A kind's restore step once every process exists: what its opener left unfinished, every
/// description of the image and our fd of each.
pub type FinishRestore = fn(&mut Typed, &[FileEntry], &HashMap<u32, OwnedFd>) -> Result<()>;

/// Makes an opener for the descriptions `files` of the image.
pub type MakeOpener = for<'a> fn(&'a [FileEntry], Settings) -> Result<Box<dyn Opener + 'a>>;

/// What the dump's tree-wide steps see: every file of the tree and where it is held.
pub struct DumpTree<'a> {
    pub files: &'a mut [FileEntry],
    pub ids: &'a mut FileIds,
    pub procs: &'a [&'a ProcessEntry],
    /// Each process's fd table.
    pub tables: &'a [(i32, &'a FdTable)],
    /// Every task of the tree: each thread, and the zombies.
    pub tasks: &'a [i32],
    pub shell_job: bool,
}

impl DumpTree<'_> {
    /// The pids of the processes of the tree.
    pub fn pids(&self) -> Vec<i32> {
        self.procs.iter().map(|p| p.pid).collect()
    }
}

/// The restore options the openers read.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub shell_job: bool,
    pub ext_unix_sk: bool,
    pub tcp: super::inet::Established,
    /// `--evasive-devices` (see [`super::chardev::open_device`]).
    pub evasive_devices: bool,
}

/// Opens the descriptions of one kind in the controller.
pub trait Opener {
    /// Our fd for `f`, if it is of this kind.
    fn open(&mut self, f: &FileEntry) -> Option<Result<OwnedFd>>;
    /// `f` is replaced by a descriptor handed in (`--inherit-fd`): nothing is opened for it.
    fn inherited(&mut self, f: &FileEntry);
    /// Every description is open (`fds`): leave what later stages need in `later`.
    fn opened(self: Box<Self>, files: &[FileEntry], fds: &HashMap<u32, OwnedFd>, later: &mut Later) -> Result<()>;
}

/// The opener of a kind that keeps nothing across its descriptions.
pub struct Stateless {
    pub open: fn(&FileEntry, &Settings) -> Option<Result<OwnedFd>>,
    pub settings: Settings,
}

impl Stateless {
    /// A [`MakeOpener`] body: `open` with the settings.
    pub fn boxed<'a>(
        open: fn(&FileEntry, &Settings) -> Option<Result<OwnedFd>>,
        settings: Settings,
    ) -> Box<dyn Opener + 'a> {
        Box::new(Stateless { open, settings })
    }
}

impl Opener for Stateless {
    fn open(&mut self, f: &FileEntry) -> Option<Result<OwnedFd>> {
        (self.open)(f, &self.settings)
    }

    fn inherited(&mut self, _: &FileEntry) {}

    fn opened(self: Box<Self>, _: &[FileEntry], _: &HashMap<u32, OwnedFd>, _: &mut Later) -> Result<()> {
        Ok(())
    }
}

/// What the openers leave for the later stages of a restore.
#[derive(Default)]
pub struct Later {
    /// Read while the processes are built (the objects mappings and terminals need).
    pub shared: Typed,
    /// Taken by the kinds' steps once every process exists ([`Kind::finish_restore`]).
    pub unfinished: Typed,
}

/// Values by type, each kind's own (shared by the tracer threads of a restore: `Send + Sync`).
#[derive(Default)]
pub struct Typed(HashMap<TypeId, Box<dyn Any + Send + Sync>>);

impl Typed {
    pub fn put<T: Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Box::new(value));
    }

    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.0.get(&TypeId::of::<T>()).and_then(|b| b.downcast_ref())
    }

    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.0.get_mut(&TypeId::of::<T>()).and_then(|b| b.downcast_mut())
    }

    pub fn take<T: 'static>(&mut self) -> Option<T> {
        self.0.remove(&TypeId::of::<T>()).and_then(|b| b.downcast().ok()).map(|b| *b)
    }
}

/// What each kind keeps over a whole dump, by type (see [`FileIds::state`]).
#[derive(Default)]
pub struct States(HashMap<TypeId, Box<dyn Any>>);

impl States {
    /// The state of type `T`, made (default) on first use.
    pub fn get<T: Default + 'static>(&mut self) -> &mut T {
        self.0
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut()
            .expect("each state is keyed by its type")
    }

    /// The state of type `T`, taken out (default if none was made).
    pub fn take<T: Default + 'static>(&mut self) -> T {
        self.0.remove(&TypeId::of::<T>()).and_then(|b| b.downcast().ok()).map_or_else(T::default, |b| *b)
    }
}

/// Every kind, in the order a dump asks them (see [`Dumper::claims`]).
pub const KINDS: &[&Kind] = &[
    &super::anon::KIND,
    &super::pidfd::KIND,
    &super::mqueue::KIND,
    &super::procfs::KIND,
    &super::regular::KIND,
    &super::chardev::KIND,
    &super::tty::KIND,
    &super::ghost::KIND,
    &super::pipe::KIND,
    &super::fifo::KIND,
    &super::epoll::KIND,
    &super::inotify::KIND,
    &super::fanotify::KIND,
    &super::unix::KIND,
    &super::regular::PATH_KIND,
    &super::inet::KIND,
    &super::netlink::KIND,
    &super::packet::KIND,
];
