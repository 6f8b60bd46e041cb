//! The restore side of cgroups: the image's directories made and set as the mode says, before any
//! task exists ([`Placement::prepare`]); each task put in its cgroup right after its creation; the
//! directories made removed again if the restore fails (when the [`Placement`] is dropped
//! unkept).

use super::{dir_of, Mode, Options};
use crate::error::{Error, Result};
use stasis_image::model::{CgroupSet, CgroupSetting};
use stasis_sys::remote::Remote;
use stasis_sys::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the restore places its tasks in cgroups: where the hierarchy is, how dumped paths map to
/// the ones used here, and the directories it made.
#[derive(Debug, Default)]
pub struct Placement {
    /// The hierarchy's mount; `None`: tasks stay where they are (`ignore`, or nothing to place).
    mount: Option<PathBuf>,
    /// The dumped root of the tree's cgroups and where it goes (`--cgroup-root`).
    remap: Option<(String, String)>,
    /// Directories made, parents first.
    made: Vec<PathBuf>,
    kept: bool,
}

impl Placement {
    /// Make and set the directories of `set` (the image's, if any) and of every task's cgroup in
    /// `tasks` as `opts.mode` says; `pid` is the root's, for errors.
    pub fn prepare(set: Option<&CgroupSet>, tasks: &[&str], opts: &Options, pid: Pid) -> Result<Placement> {
        let mut placement = Placement::default();
        if opts.mode == Mode::Ignore || (set.is_none() && tasks.iter().all(|t| t.is_empty())) {
            return Ok(placement);
        }
        let Some(mount) = super::mount() else {
            let what = "the image's cgroups: no cgroup2 hierarchy is mounted here".to_string();
            return Err(Error::Failed { pid, what });
        };
        placement.mount = Some(mount.clone());
        if let (Some(to), Some(set)) = (&opts.root, set) {
            placement.remap = Some((set.root.clone(), to.clone()));
        }
        let empty = Vec::new();
        for dir in set.map_or(&empty, |s| &s.dirs) {
            placement.make(&mount, &placement.target(&dir.path), &dir.settings, opts.mode, pid)?;
        }
        for task in tasks.iter().filter(|t| !t.is_empty()) {
            let target = placement.target(task);
            if !dir_of(&mount, &target).is_dir() {
                placement.make(&mount, &target, &[], opts.mode, pid)?;
            }
        }
        Ok(placement)
    }

    /// The path here of the dumped cgroup `path`.
    fn target(&self, path: &str) -> String {
        match &self.remap {
            Some((from, to)) => match path.strip_prefix(from.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') || from == "/" => {
                    let rest = rest.trim_start_matches('/');
                    let to = to.trim_end_matches('/');
                    if rest.is_empty() {
                        to.to_string()
                    } else {
                        format!("{to}/{rest}")
                    }
                }
                _ => path.to_string(),
            },
            None => path.to_string(),
        }
    }

    /// Make (with missing parents) or check the cgroup `path` and write `settings` as `mode` says.
    fn make(&mut self, mount: &Path, path: &str, settings: &[CgroupSetting], mode: Mode, pid: Pid) -> Result<()> {
        let dir = dir_of(mount, path);
        let exists = dir.is_dir();
        let set = match (exists, mode) {
            (true, Mode::Strict) => {
                let what = format!("cgroup {path} exists already (--manage-cgroups=strict)");
                return Err(Error::Failed { pid, what });
            }
            (true, Mode::None | Mode::Soft | Mode::Ignore) => false,
            (true, Mode::Props | Mode::Full) => true,
            (false, Mode::None | Mode::Props) => {
                let what = format!("cgroup {path} does not exist (--manage-cgroups={} needs it)", mode.name());
                return Err(Error::Failed { pid, what });
            }
            (false, _) => {
                self.make_dirs(mount, &dir)?;
                true
            }
        };
        if set {
            write_settings(&dir, settings, pid)?;
        }
        Ok(())
    }

    /// `dir` and its missing parents below `mount`, each recorded.
    fn make_dirs(&mut self, mount: &Path, dir: &Path) -> Result<()> {
        let mut missing: Vec<&Path> = dir.ancestors().take_while(|d| *d != mount && !d.is_dir()).collect();
        missing.reverse();
        for d in missing {
            std::fs::create_dir(d).map_err(Error::io(d))?;
            log::info!("made cgroup {}", d.display());
            self.made.push(d.to_path_buf());
        }
        Ok(())
    }

    /// Put the newly created process `pid` (one thread) in the place of its dumped cgroup
    /// `dumped`: `cgroup.procs` of its domain, and `cgroup.threads` of a threaded cgroup.
    pub fn join_process(&self, pid: Pid, dumped: &str) -> Result<()> {
        let Some(mount) = self.mount.as_ref().filter(|_| !dumped.is_empty()) else { return Ok(()) };
        let target = self.target(dumped);
        let now = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if super::v2_line(&now) == Some(target.as_str()) {
            return Ok(());
        }
        let dir = dir_of(mount, &target);
        let domain = domain_of(mount, &dir);
        write_id(&domain.join("cgroup.procs"), pid, &target)?;
        if domain != dir {
            write_id(&dir.join("cgroup.threads"), pid, &target)?;
        }
        Ok(())
    }

    /// The root of a tree in a cgroup namespace of its own (`ns_root`: the namespace's root in the
    /// dump's hierarchy) gets one again, stopped before any of its code runs: it is moved to the
    /// namespace's root, unshares a cgroup namespace there (an injected call) and goes back to its
    /// own cgroup `dumped`. Its children inherit the namespace.
    pub fn enter_ns(&self, inj: &mut dyn Remote, pid: Pid, ns_root: &str, dumped: &str) -> Result<()> {
        self.join_process(pid, ns_root)?;
        inj.unshare(libc::CLONE_NEWCGROUP).map_err(|e| Error::Step {
            pid,
            what: format!("a cgroup namespace rooted at {}", self.target(ns_root)),
            source: Box::new(e.into()),
        })?;
        self.join_process(pid, dumped)
    }

    /// Put the newly created thread `tid` in its dumped cgroup `dumped`, unless it is its
    /// process's `process` (which it inherited from the main thread).
    pub fn join_thread(&self, tid: Pid, process: &str, dumped: &str) -> Result<()> {
        let Some(mount) = self.mount.as_ref().filter(|_| !dumped.is_empty() && dumped != process) else {
            return Ok(());
        };
        let target = self.target(dumped);
        write_id(&dir_of(mount, &target).join("cgroup.threads"), tid, &target)
    }

    /// The restore succeeded: the directories made stay.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Placement {
    /// A failed restore removes the directories it made, children first, once the killed tasks
    /// have left them (each is retried for up to a second while it is busy).
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        for dir in self.made.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(1);
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(e) => {
                        log::warn!("cgroup {} made by the failed restore could not be removed: {e}", dir.display());
                        break;
                    }
                }
            }
        }
    }
}

/// The nearest of `dir` and its parents that is not a threaded cgroup (the domain its threads'
/// process belongs to).
fn domain_of(mount: &Path, dir: &Path) -> PathBuf {
    let threaded = |d: &Path| std::fs::read_to_string(d.join("cgroup.type")).is_ok_and(|t| t.trim() == "threaded");
    dir.ancestors().take_while(|d| d.starts_with(mount)).find(|d| !threaded(d)).unwrap_or(dir).to_path_buf()
}

fn write_id(file: &Path, id: Pid, cgroup: &str) -> Result<()> {
    std::fs::write(file, id.0.to_string()).map_err(|e| Error::Step {
        pid: id,
        what: format!("its cgroup {cgroup}"),
        source: Box::new(Error::Io { path: file.to_path_buf(), source: e }),
    })
}

/// Write the saved settings into `dir`, in their order: `cgroup.type` only when threaded (the
/// other types are the kernel's to say), `cgroup.subtree_control` as `+controller` words, an empty
/// value (an inherited cpuset) skipped. A value the kernel refuses fails the restore, named.
fn write_settings(dir: &Path, settings: &[CgroupSetting], pid: Pid) -> Result<()> {
    for s in settings {
        let value = match s.name.as_str() {
            "cgroup.type" if s.value != "threaded" => continue,
            "cgroup.subtree_control" if s.value.is_empty() => continue,
            "cgroup.subtree_control" => {
                s.value.split_whitespace().map(|c| format!("+{c}")).collect::<Vec<_>>().join(" ")
            }
            _ if s.value.is_empty() => continue,
            _ => s.value.clone(),
        };
        let file = dir.join(&s.name);
        // An unchanged value is not written again (some files refuse a rewrite while in use).
        if std::fs::read_to_string(&file).is_ok_and(|now| now.trim() == s.value) {
            continue;
        }
        std::fs::write(&file, &value).map_err(|e| Error::Step {
            pid,
            what: format!("cgroup setting {} = {:?}", file.display(), s.value),
            source: Box::new(Error::Io { path: file.clone(), source: e }),
        })?;
    }
    Ok(())
}
