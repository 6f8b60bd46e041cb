//! `--action-script SCRIPT` (CRIU's): the engine's action points (see
//! [`stasis_engine::notify`]) run each script with `sh -c SCRIPT`, with CRIU's environment:
//! `CRTOOLS_SCRIPT_ACTION` (the point: `pre-dump`, `post-restore`...), `CRTOOLS_INIT_PID` (the
//! root's pid) and `CRTOOLS_IMAGE_DIR`. A script that exits non-zero fails the operation there.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use stasis_engine::notify::{Hooks, Notifier, Point};

use crate::criu_opts::CriuArgs;

/// The scripts of one command.
struct Scripts {
    scripts: Vec<String>,
    images: PathBuf,
}

/// The notifier of the `--action-script` options of `c`, if any.
pub fn notifier(c: &CriuArgs) -> Notifier {
    let scripts: Vec<String> = c.get("action-script").unwrap_or_default().to_vec();
    if scripts.is_empty() {
        return Notifier::default();
    }
    Notifier::new(Arc::new(Scripts { scripts, images: c.images_dir() }))
}

impl Hooks for Scripts {
    fn at(&self, point: Point, pid: i32) -> Result<(), String> {
        for script in &self.scripts {
            let status = Command::new("sh")
                .args(["-c", script])
                .env("CRTOOLS_SCRIPT_ACTION", point.name())
                .env("CRTOOLS_INIT_PID", pid.to_string())
                .env("CRTOOLS_IMAGE_DIR", &self.images)
                .stdin(Stdio::null())
                .status()
                .map_err(|e| format!("action script {script:?}: {e}"))?;
            if !status.success() {
                return Err(format!("action script {script:?} ended with {status}"));
            }
        }
        Ok(())
    }
}
