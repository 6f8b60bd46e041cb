//! The points of a dump and of a restore where the caller may act: CRIU's action-script points
//! ("pre-dump", "network-lock", "post-dump", "network-unlock", "pre-restore",
//! "setup-namespaces", "post-setup-namespaces", "post-restore"). The engine calls the
//! [`Hooks`] of its options at each one and goes on only if the hook succeeds; front-ends
//! implement it: `stasis swrk` sends each point to its caller as a NOTIFY and waits for the
//! answer. No engine code knows which front-end it serves.
//!
//! A hook that fails fails the operation at that point, with everything undone as for any other
//! error (a dump resumes the tree and removes its files; a restore kills what it made), except at
//! "network-unlock" after a restore, where the tree already runs: that failure is logged.

use crate::error::{Error, Result};
use std::sync::Arc;

/// One action-script point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// Before anything of a dump is done (pid: the root to dump).
    PreDump,
    /// The tree is frozen: the caller locks its network (pid: the root).
    NetworkLock,
    /// Every page is written, the tree still frozen: the last moment before it is resumed or
    /// killed (pid: the root).
    PostDump,
    /// The caller unlocks the network: after a dump that leaves the tree running, once it runs
    /// again; after a restore, once the tree runs.
    NetworkUnlock,
    /// Before anything of a restore is done (pid: the root to restore).
    PreRestore,
    /// The root exists, stopped, with its pid (pid: the root). stasis restores no namespaces, so
    /// the root is in the namespaces stasis runs in.
    SetupNamespaces,
    /// Right after "setup-namespaces", before the tree is built.
    PostSetupNamespaces,
    /// The whole tree is built, still stopped: the last moment before it runs (pid: the root).
    PostRestore,
}

impl Point {
    /// CRIU's name of the point.
    pub fn name(self) -> &'static str {
        match self {
            Point::PreDump => "pre-dump",
            Point::NetworkLock => "network-lock",
            Point::PostDump => "post-dump",
            Point::NetworkUnlock => "network-unlock",
            Point::PreRestore => "pre-restore",
            Point::SetupNamespaces => "setup-namespaces",
            Point::PostSetupNamespaces => "post-setup-namespaces",
            Point::PostRestore => "post-restore",
        }
    }
}

/// What a front-end does at each point; `Err` carries why the caller refused to go on.
pub trait Hooks: Send + Sync {
    fn at(&self, point: Point, pid: i32) -> std::result::Result<(), String>;
}

/// The hooks of one operation, if any (cheap to clone).
#[derive(Clone, Default)]
pub struct Notifier(Option<Arc<dyn Hooks>>);

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Notifier(hooks)" } else { "Notifier(none)" })
    }
}

impl Notifier {
    pub fn new(hooks: Arc<dyn Hooks>) -> Notifier {
        Notifier(Some(hooks))
    }

    /// Runs the hook of `point` for `pid`; a refusal is an error naming the point.
    pub(crate) fn at(&self, point: Point, pid: i32) -> Result<()> {
        let Some(hooks) = &self.0 else { return Ok(()) };
        log::info!("action point {} (pid {pid})", point.name());
        hooks
            .at(point, pid)
            .map_err(|why| Error::Failed { pid: pid.into(), what: format!("{} action failed: {why}", point.name()) })
    }
}
