//! The restore side of cgroups: the image's directories made and set as the mode says, before any
//! task exists ([`Placement::prepare`]); each task put in its cgroup right after its creation; the
//! directories made removed again if the restore fails (when the [`Placement`] is dropped
//! unkept).

use super::{dir_of, Mode, Options};
use crate::error::{Error, Result};
use stasis_image::model::{CgroupSet, CgroupSetting, CgroupV1Path};
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
    /// The cgroup v1 hierarchies of the image, as they are here.
    v1: Vec<V1Place>,
    /// Directories made, parents first.
    made: Vec<PathBuf>,
    kept: bool,
}

/// One cgroup v1 hierarchy of the image as the restore places tasks in it.
#[derive(Debug)]
struct V1Place {
    /// Its controllers (`cpu,cpuacct`, `name=systemd`), as the image names them.
    controllers: String,
    /// Where it is mounted here.
    mount: PathBuf,
    /// The dumped root of the tree's cgroups in it and where it goes (`--cgroup-root`).
    remap: Option<(String, String)>,
}

impl V1Place {
    fn target(&self, path: &str) -> String {
        remapped(&self.remap, path)
    }
}

impl Placement {
    /// Make and set the directories of `set` (the image's, if any) and of every task's cgroup in
    /// `tasks` (v2 paths) and `tasks_v1` as `opts.mode` says; `pid` is the root's, for errors.
    pub fn prepare(
        set: Option<&CgroupSet>,
        (tasks, tasks_v1): (&[&str], &[&CgroupV1Path]),
        opts: &Options,
        pid: Pid,
    ) -> Result<Placement> {
        let mut placement = Placement::default();
        if opts.mode == Mode::Ignore {
            return Ok(placement);
        }
        placement.prepare_v1(set, tasks_v1, opts, pid)?;
        let v2_dirs = set.map_or(&[][..], |s| &s.dirs);
        if v2_dirs.is_empty() && tasks.iter().all(|t| t.is_empty()) {
            return Ok(placement);
        }
        let Some(mount) = super::mount() else {
            let what = "the image's cgroups: no cgroup2 hierarchy is mounted here".to_string();
            return Err(Error::Failed { pid, what });
        };
        placement.mount = Some(mount.clone());
        if let (Some(to), Some(set)) = (&opts.root, set.filter(|s| !s.root.is_empty())) {
            placement.remap = Some((set.root.clone(), to.clone()));
        }
        for dir in v2_dirs {
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

    /// The v1 half of [`prepare`](Self::prepare): each hierarchy of the image found here (by its
    /// controllers; one not mounted fails the restore, named), its directories made and set.
    fn prepare_v1(&mut self, set: Option<&CgroupSet>, tasks: &[&CgroupV1Path], opts: &Options, pid: Pid) -> Result<()> {
        let empty = stasis_image::model::CgroupV1Set::default();
        let mut hierarchies: Vec<&str> =
            set.map_or(Vec::new(), |s| s.v1.iter().map(|h| h.controllers.as_str()).collect());
        hierarchies.extend(tasks.iter().map(|t| t.controllers.as_str()));
        hierarchies.sort_unstable();
        hierarchies.dedup();
        for controllers in hierarchies {
            let saved = set.and_then(|s| s.v1.iter().find(|h| h.controllers == controllers)).unwrap_or(&empty);
            let Some(mount) = super::v1::mount_of(controllers) else {
                let what = format!("the image's cgroups: cgroup v1 hierarchy {controllers} is not mounted here");
                return Err(Error::Failed { pid, what });
            };
            let to = opts.root_of(controllers);
            let remap = to.filter(|_| !saved.root.is_empty()).map(|to| (saved.root.clone(), to.to_string()));
            let place = V1Place { controllers: controllers.to_string(), mount: mount.clone(), remap };
            for dir in &saved.dirs {
                self.make(&mount, &place.target(&dir.path), &dir.settings, opts.mode, pid)?;
            }
            for task in tasks.iter().filter(|t| t.controllers == controllers) {
                let target = place.target(&task.path);
                if !dir_of(&mount, &target).is_dir() {
                    self.make(&mount, &target, &[], opts.mode, pid)?;
                }
            }
            self.v1.push(place);
        }
        Ok(())
    }

    /// The path here of the dumped cgroup `path`.
    fn target(&self, path: &str) -> String {
        remapped(&self.remap, path)
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

    /// Put the newly created process `pid` (one thread) in the place of its dumped cgroups: `dumped`
    /// (v2: `cgroup.procs` of its domain, and `cgroup.threads` of a threaded cgroup) and `v1`
    /// (`cgroup.procs` in each hierarchy), where it is not there already.
    pub fn join_process(&self, pid: Pid, dumped: &str, v1: &[CgroupV1Path]) -> Result<()> {
        let now = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        for p in v1 {
            let Some(place) = self.v1.iter().find(|h| h.controllers == p.controllers) else { continue };
            let target = place.target(&p.path);
            if super::v1::path_in(&now, &p.controllers) != Some(target.as_str()) {
                write_id(&dir_of(&place.mount, &target).join("cgroup.procs"), pid, &target)?;
            }
        }
        let Some(mount) = self.mount.as_ref().filter(|_| !dumped.is_empty()) else { return Ok(()) };
        let target = self.target(dumped);
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
    pub fn enter_ns(
        &self,
        inj: &mut dyn Remote,
        pid: Pid,
        (ns_root, ns_root_v1): (&str, &[CgroupV1Path]),
        (dumped, dumped_v1): (&str, &[CgroupV1Path]),
    ) -> Result<()> {
        self.join_process(pid, ns_root, ns_root_v1)?;
        inj.unshare(libc::CLONE_NEWCGROUP).map_err(|e| Error::Step {
            pid,
            what: format!("a cgroup namespace rooted at {}", self.target(ns_root)),
            source: Box::new(e.into()),
        })?;
        self.join_process(pid, dumped, dumped_v1)
    }

    /// Put the newly created thread `tid` in its dumped cgroups (`thread`: v2 and v1), where they
    /// are not its process's (`process`; which it inherited from the main thread): v2
    /// `cgroup.threads`, v1 `tasks`.
    pub fn join_thread(
        &self,
        tid: Pid,
        process: (&str, &[CgroupV1Path]),
        thread: (&str, &[CgroupV1Path]),
    ) -> Result<()> {
        for p in thread.1.iter().filter(|p| !process.1.contains(p)) {
            let Some(place) = self.v1.iter().find(|h| h.controllers == p.controllers) else { continue };
            let target = place.target(&p.path);
            write_id(&dir_of(&place.mount, &target).join("tasks"), tid, &target)?;
        }
        let (process, dumped) = (process.0, thread.0);
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

/// `path` with the dumped root of `remap` replaced by its new place (`--cgroup-root`).
fn remapped(remap: &Option<(String, String)>, path: &str) -> String {
    match remap {
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
            "devices.list" => {
                write_devices(dir, &s.value, pid)?;
                continue;
            }
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
        write_setting(&file, &value, pid)?;
    }
    Ok(())
}

/// A cgroup v1 `devices.list` put back as its rules, unless it is already the same.
fn write_devices(dir: &Path, value: &str, pid: Pid) -> Result<()> {
    if std::fs::read_to_string(dir.join("devices.list")).is_ok_and(|now| now.trim() == value.trim()) {
        return Ok(());
    }
    for (file, rule) in super::v1::device_rules(value) {
        write_setting(&dir.join(file), &rule, pid)?;
    }
    Ok(())
}

/// One write of a cgroup interface file; a value the kernel refuses fails the restore, named.
fn write_setting(file: &Path, value: &str, pid: Pid) -> Result<()> {
    std::fs::write(file, value).map_err(|e| Error::Step {
        pid,
        what: format!("cgroup setting {} = {value:?}", file.display()),
        source: Box::new(Error::Io { path: file.to_path_buf(), source: e }),
    })
}
