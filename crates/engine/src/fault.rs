//! Test-only fault injection. `STASIS_FAULT=<point>` makes the engine fail (or kill the target) at a
//! named point, so tests can prove that a failed dump leaves the process running and a failed restore
//! leaves nothing behind. Points: `dump-kill-target`, `dump-fail-after-memory`,
//! `restore-fail-after-memory`, `restore-fail-in-child` (in the second process of the image, the
//! root's first child, which a tree of several children builds on a tracer thread of its own).

use crate::error::{Error, Result};

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
