//! Test-only fault injection. `STASIS_FAULT=<point>[,<point>...]` makes the engine fail (or kill the
//! target) at a named point, so tests can prove that a failed dump leaves the process running and a
//! failed restore leaves nothing behind.
//!
//! Named points: `dump-kill-target`, `dump-fail-after-memory`, `restore-fail-after-memory`,
//! `restore-fail-in-child` (in the second process of the image, the root's first child, which a tree
//! of several children builds on a tracer thread of its own); in the daemons,
//! `page-server-stop-mid-file`, `page-server-stop-after-get`, `lazy-pages-stop-after-restore` and
//! `lazy-pages-on-demand-only`.
//!
//! Counted points: `dump-call:N` and `restore-call:N` fail the Nth system call injected by the dump
//! or restore (counted over all its tracer threads by the run's [`Calls`], never by global state),
//! without running it; `dump-write:N` fails the Nth image file write of a dump ([`Writes`]). The
//! reports give the counts (`injected_calls`, `image_writes`), so a test can sweep every N.

use crate::error::{Error, Result};
use stasis_sys::inject::{CallCounter, Calls};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether `STASIS_FAULT` names `point`.
pub fn armed(point: &'static str) -> bool {
    std::env::var("STASIS_FAULT").is_ok_and(|v| v.split(',').any(|p| p == point))
}

/// Fail with [`Error::Fault`] if `point` is armed.
pub fn check(point: &'static str) -> Result<()> {
    if armed(point) {
        log::warn!("STASIS_FAULT: failing at {point}");
        return Err(Error::Fault(point));
    }
    Ok(())
}

/// N of `point:N` in `STASIS_FAULT`.
fn nth(point: &str) -> Option<u64> {
    let v = std::env::var("STASIS_FAULT").ok()?;
    v.split(',').find_map(|p| p.strip_prefix(point)?.strip_prefix(':')?.parse().ok())
}

/// The call counter of one run; with `STASIS_FAULT=<point>:N` (`dump-call`, `restore-call`) its Nth
/// injected call fails.
pub fn calls(point: &'static str) -> Calls {
    let at = nth(point);
    if let Some(n) = at {
        log::warn!("STASIS_FAULT: injected call {n} will fail ({point}:{n})");
    }
    CallCounter::new(at)
}

/// The image file writes of one dump, counted; with `STASIS_FAULT=dump-write:N` the Nth fails.
#[derive(Debug)]
pub struct Writes {
    made: AtomicU64,
    fail_at: Option<u64>,
}

impl Writes {
    pub fn new() -> Writes {
        Writes { made: AtomicU64::new(0), fail_at: nth("dump-write") }
    }

    /// Count the write of image file `file`; the error if it is the one to fail.
    pub fn next(&self, file: &str) -> Result<()> {
        let n = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_at == Some(n) {
            log::warn!("STASIS_FAULT: failing image write {n} ({file})");
            return Err(Error::FaultAt { point: "dump-write", n, what: format!("writing {file}") });
        }
        Ok(())
    }

    pub fn count(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }
}

impl Default for Writes {
    fn default() -> Writes {
        Writes::new()
    }
}
