//! `--freeze-cgroup`: a cgroup frozen with its freezer before the tree is seized, so that no task
//! forks away while the tree is walked, and thawed once every task is held by ptrace (a task in a
//! ptrace stop stays stopped when thawed; injected calls need it thawed, and a task of a frozen v1
//! freezer stops for ptrace only once thawed). The cgroup v2 freezer
//! (`cgroup.freeze`, then `frozen 1` in `cgroup.events`) or the v1 one (`freezer.state`), as the
//! directory offers. A [`Frozen`] thaws when dropped, so a failed dump thaws too.

use crate::error::{Error, Result};
use stasis_sys::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the kernel may take to freeze the cgroup.
const FREEZE_DEADLINE: Duration = Duration::from_secs(10);

/// A frozen cgroup, thawed when dropped.
#[derive(Debug)]
pub struct Frozen {
    dir: PathBuf,
    v2: bool,
    thawed: bool,
}

impl Frozen {
    /// Freeze the cgroup directory `dir` (a full path, as CRIU takes it) and wait until the kernel
    /// says it is frozen; `pid` is the tree's root, for errors.
    pub fn freeze(dir: &Path, pid: Pid) -> Result<Frozen> {
        let v2 = dir.join("cgroup.freeze").exists();
        if !v2 && !dir.join("freezer.state").exists() {
            let what = format!("--freeze-cgroup {}: not a cgroup with a freezer", dir.display());
            return Err(Error::Failed { pid, what });
        }
        let frozen = Frozen { dir: dir.to_path_buf(), v2, thawed: false };
        frozen.write(if v2 { "1" } else { "FROZEN" })?;
        let deadline = Instant::now() + FREEZE_DEADLINE;
        while !frozen.is_frozen()? {
            if Instant::now() > deadline {
                let what = format!("cgroup {} not frozen after {FREEZE_DEADLINE:?}", dir.display());
                return Err(Error::Failed { pid, what });
            }
            if !v2 {
                // A v1 freezer may stay FREEZING on a task that was busy: asked again.
                frozen.write("FROZEN")?;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        log::info!("cgroup {} frozen", dir.display());
        Ok(frozen)
    }

    fn is_frozen(&self) -> Result<bool> {
        let (file, want) = if self.v2 { ("cgroup.events", "frozen 1") } else { ("freezer.state", "FROZEN") };
        let path = self.dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        Ok(text.lines().any(|l| l.trim() == want))
    }

    fn write(&self, state: &str) -> Result<()> {
        let path = self.dir.join(if self.v2 { "cgroup.freeze" } else { "freezer.state" });
        std::fs::write(&path, state).map_err(Error::io(&path))
    }

    /// Every process in the cgroup and below it (`cgroup.procs` of each directory).
    pub fn processes(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        let mut todo = vec![self.dir.clone()];
        while let Some(dir) = todo.pop() {
            let path = dir.join("cgroup.procs");
            let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            for entry in std::fs::read_dir(&dir).map_err(Error::io(&dir))?.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(entry.path());
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Thaw the cgroup now (its tasks are held by ptrace).
    pub fn thaw(mut self) -> Result<()> {
        self.thawed = true;
        self.write(if self.v2 { "0" } else { "THAWED" })?;
        log::info!("cgroup {} thawed", self.dir.display());
        Ok(())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            if let Err(e) = self.write(if self.v2 { "0" } else { "THAWED" }) {
                log::warn!("cgroup {} could not be thawed: {e}", self.dir.display());
            }
        }
    }
}
