//! The two tools the threads and tree parts measure, behind one face: `dump` (which kills the
//! workload) and `restore -d`, each timed as a whole. CRIU reports no frozen time: it is zero.

use std::path::Path;
use std::time::Duration;

use crate::criu::{Criu, CriuError};
use crate::stasis::{Stasis, StasisError};

/// A tool under measurement.
#[derive(Debug, Clone, Copy)]
pub enum Tool<'a> {
    Stasis(&'a Stasis),
    Criu(&'a Criu),
}

impl Tool<'_> {
    /// `dump -t PID -D DIR`: its wall time and the frozen time (zero for CRIU).
    pub fn dump<E: From<StasisError> + From<CriuError>>(
        &self,
        pid: i32,
        dir: &Path,
    ) -> Result<(Duration, Duration), E> {
        match self {
            Tool::Stasis(s) => s.dump(pid, dir).map(|r| (r.wall, r.report.frozen)).map_err(E::from),
            Tool::Criu(c) => c.dump(pid, dir).map(|wall| (wall, Duration::ZERO)).map_err(E::from),
        }
    }

    /// `restore -D DIR -d`: its wall time and the restored root.
    pub fn restore<E: From<StasisError> + From<CriuError>>(&self, dir: &Path) -> Result<(Duration, i32), E> {
        match self {
            Tool::Stasis(s) => s.restore(dir).map(|r| (r.wall, r.report.pid)).map_err(E::from),
            Tool::Criu(c) => c.restore(dir).map(|r| (r.wall, r.pid)).map_err(E::from),
        }
    }
}
