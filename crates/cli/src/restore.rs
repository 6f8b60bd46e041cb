//! `stasis restore`: restore the tree in `-D DIR`, then either wait for its root and exit with its
//! status, or (`-d`) leave it running and return.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use stasis_engine::files::external::InheritFd;
use stasis_engine::RestoreOptions;

use crate::criu_opts::CriuArgs;
use crate::progress::ProgressLine;

/// Options of `stasis restore`: CRIU's, and `--json`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Print the report (or the error) as one JSON object on stdout.
    ///
    /// Without -d the report is printed when the restored tree ends and includes its
    /// `exit_status`.
    #[arg(long)]
    pub json: bool,
    /// With `--exec-cmd`: the command stasis becomes once the tree runs (CRIU's `-- CMD ARGS`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// Runs `stasis restore`; the exit status is 0 with `-d`, else the restored root's status. With
/// `--exec-cmd -- CMD ARGS`, stasis returns only on error: once the tree runs it becomes the
/// command, the parent of the restored root (the restore is detached, as in CRIU).
pub fn run(args: &RestoreArgs) -> anyhow::Result<u8> {
    let c = &args.criu;
    let exec = exec_command(args)?;
    let detached = c.restore_detached() || exec.is_some();
    let opts = options(c, detached)?;
    // Created before the restore, so that an unwritable pidfile fails before anything runs.
    let pidfile = c.pidfile().as_deref().map(PidFile::prepare).transpose()?;
    let mut line = ProgressLine::new("restoring memory");
    let result = stasis_engine::restore(&opts, &mut |p| line.update(p));
    line.finish();
    let restored = result.with_context(|| format!("restore from {}", opts.dir.display()))?;
    let pid = restored.pid();
    log::info!("restored pid {pid} from {}", opts.dir.display());
    if let Some(pidfile) = pidfile {
        pidfile.commit(pid)?;
    }
    let mut report = serde_json::to_value(&restored.report).context("encode the restore report")?;
    if detached {
        restored.detach();
        if args.json {
            crate::print_json(&report);
        } else {
            println!("restored pid {pid}");
        }
        if let Some(command) = exec {
            return Err(exec_into(command, pid));
        }
        return Ok(0);
    }
    let status = restored.wait().with_context(|| format!("wait for restored pid {pid}"))?;
    log::info!("restored pid {pid} ended with status {status}");
    if args.json {
        report["exit_status"] = status.into();
        crate::print_json(&report);
    }
    // A wait status is an exit code (0..=255) or 128 + a signal number (at most 128 + 64).
    Ok(u8::try_from(status).unwrap_or(u8::MAX))
}

/// The command of `--exec-cmd -- CMD ARGS`; either without the other is an error, before anything
/// is restored.
fn exec_command(args: &RestoreArgs) -> anyhow::Result<Option<Vec<std::ffi::OsString>>> {
    match (args.criu.is_set("exec-cmd"), args.command.is_empty()) {
        (true, false) => Ok(Some(args.command.clone())),
        (false, true) => Ok(None),
        (true, true) => {
            anyhow::bail!("--exec-cmd needs the command after `--` (stasis restore ... --exec-cmd -- CMD ARGS)")
        }
        (false, false) => {
            anyhow::bail!("a command after `--` ({:?}) is run only with --exec-cmd", args.command.join(" ".as_ref()))
        }
    }
}

/// Become `command` (the restored root `pid` stays our child); returns only the error of `execvp`.
fn exec_into(command: Vec<std::ffi::OsString>, pid: i32) -> anyhow::Error {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let _ = std::io::stdout().flush();
    log::info!("--exec-cmd: running {command:?} as the parent of restored pid {pid}");
    let err = std::process::Command::new(&command[0]).args(&command[1..]).exec();
    anyhow::Error::new(err).context(format!(
        "--exec-cmd: cannot run {:?} (restored pid {pid} runs on, a child of nobody waiting)",
        command[0]
    ))
}

/// The engine's options for CRIU's options `c` (checked); `detached`: nobody waits for the root.
pub fn options(c: &CriuArgs, detached: bool) -> anyhow::Result<RestoreOptions> {
    if c.is_set("auto-dedup") {
        anyhow::bail!("--auto-dedup on restore (deleting the pages restore read from the images) is not built yet, nothing was touched");
    }
    Ok(RestoreOptions {
        dir: c.images_dir(),
        leave_stopped: c.is_set("leave-stopped"),
        cpu_caps: cpu_caps(c)?,
        shell_job: c.is_set("shell-job"),
        evasive_devices: c.is_set("evasive-devices"),
        detached,
        ext_unix_sk: c.is_set("ext-unix-sk"),
        inherit_fds: inherit_fds(&parse_inherit_fds(c.get("inherit-fd").unwrap_or_default())?)?,
        file_locks: c.is_set("file-locks"),
        allow_uprobes: c.is_set("allow-uprobes"),
        tcp: stasis_engine::files::inet::Established {
            repair: c.is_set("tcp-established"),
            close: c.is_set("tcp-close"),
        },
        network_lock: network_lock(c)?,
        sibling: c.is_set("restore-sibling"),
        notify: crate::action_script::notifier(c),
        lazy_pages: c.is_set("lazy-pages"),
        ext_veths: veth_names(c)?,
        weak_sysctls: c.is_set("weak-sysctls"),
        join_ns: join_ns(c.get("join-ns").unwrap_or_default())?,
        cgroups: cgroup_options(c)?,
        ext_mount_map: crate::dump::mounts(c)?.0.into_iter().map(|(key, path)| (key, path.into())).collect(),
        ext_mount_auto: crate::dump::mounts(c)?.1,
        root: c.last("root").map(Into::into),
    })
}

/// `--cpu-cap[=CAPS]` (the last one given; CRIU 4.2's `fpu,ins` when absent or without a value).
fn cpu_caps(c: &CriuArgs) -> anyhow::Result<stasis_engine::cpu::Caps> {
    c.last("cpu-cap").map_or(Ok(Default::default()), |caps| caps.parse().map_err(|e| anyhow::anyhow!("--cpu-cap {e}")))
}

/// `--manage-cgroups[=MODE]` (the last one given; `soft` alone or when absent, as in CRIU).
pub fn cgroup_mode(c: &CriuArgs) -> anyhow::Result<stasis_engine::cgroups::Mode> {
    c.last("manage-cgroups")
        .map_or(Ok(Default::default()), |m| m.parse().map_err(|e| anyhow::anyhow!("--manage-cgroups {e}")))
}

/// `--manage-cgroups` and every `--cgroup-root [CONTROLLER:]PATH`: PATH alone is where the dumped
/// root of the tree's cgroups goes, in the v2 hierarchy and in each v1 one not given its own;
/// CONTROLLER:PATH is the root of the v1 hierarchy with that controller (an empty CONTROLLER, as
/// runc sends for the v2 line, is PATH alone).
fn cgroup_options(c: &CriuArgs) -> anyhow::Result<stasis_engine::cgroups::Options> {
    let mut opts = stasis_engine::cgroups::Options { mode: cgroup_mode(c)?, ..Default::default() };
    for root in c.get("cgroup-root").unwrap_or_default() {
        let (ctrl, path) = root.split_once(':').unwrap_or(("", root));
        if !path.starts_with('/') {
            anyhow::bail!("--cgroup-root {root}: not an absolute path in the cgroup hierarchy (/a/b)");
        }
        match ctrl {
            "" => opts.root = Some(path.to_string()),
            ctrl => opts.v1_roots.push((ctrl.to_string(), path.to_string())),
        }
    }
    Ok(opts)
}

/// `fd[N]:KEY` (CRIU's `--inherit-fd`): (N, KEY).
fn parse_inherit_fd(text: &str) -> Result<(i32, String), String> {
    let bad = || format!("{text:?} is not fd[N]:KEY (e.g. fd[3]:pipe:[12345])");
    let rest = text.strip_prefix("fd[").ok_or_else(bad)?;
    let (n, key) = rest.split_once("]:").ok_or_else(bad)?;
    let n: i32 = n.parse().map_err(|_| bad())?;
    if n < 0 || key.is_empty() {
        return Err(bad());
    }
    Ok((n, key.to_string()))
}

/// `--network-lock` (nftables when not given).
pub fn network_lock(c: &CriuArgs) -> anyhow::Result<stasis_engine::netlock::Mode> {
    c.last("network-lock")
        .map_or(Ok(Default::default()), |m| m.parse().map_err(|e| anyhow::anyhow!("--network-lock {e}")))
}

/// Every `--inherit-fd` value, parsed.
fn parse_inherit_fds(given: &[String]) -> anyhow::Result<Vec<(i32, String)>> {
    given.iter().map(|t| parse_inherit_fd(t).map_err(|e| anyhow::anyhow!("--inherit-fd {e}"))).collect()
}

/// The outside names of the tree's veths: `--external veth[IN]:OUT`, and CRIU's older
/// `--veth-pair IN=OUT`.
fn veth_names(c: &CriuArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut veths = crate::dump::externals(c)?.1;
    for pair in c.get("veth-pair").unwrap_or_default() {
        match pair.split_once('=') {
            Some((inside, outside)) if !inside.is_empty() && !outside.is_empty() && !outside.contains('@') => {
                veths.push((inside.to_string(), outside.to_string()))
            }
            _ => anyhow::bail!("--veth-pair {pair:?}: not IN=OUT (a bridge with @BRIDGE is not supported)"),
        }
    }
    Ok(veths)
}

/// `--join-ns NS:PID|FILE`: the kind and an fd of the namespace (`/proc/PID/ns/NS` for a pid).
/// CRIU's extra options after a comma (a user namespace's ids) are refused.
fn join_ns(given: &[String]) -> anyhow::Result<Vec<(String, std::sync::Arc<std::os::fd::OwnedFd>)>> {
    given
        .iter()
        .map(|t| {
            let (kind, target) =
                t.split_once(':').with_context(|| format!("--join-ns {t:?}: not NS:PID or NS:FILE"))?;
            if target.contains(',') {
                anyhow::bail!("--join-ns {t:?}: extra options after ',' are not supported");
            }
            let path = match target.parse::<u32>() {
                Ok(pid) => PathBuf::from(format!("/proc/{pid}/ns/{kind}")),
                Err(_) => PathBuf::from(target),
            };
            let file = File::open(&path).with_context(|| format!("--join-ns {t}: {}", path.display()))?;
            Ok((kind.to_string(), std::sync::Arc::new(std::os::fd::OwnedFd::from(file))))
        })
        .collect()
}

/// Our own descriptors named by `--inherit-fd`, each checked open now.
fn inherit_fds(given: &[(i32, String)]) -> anyhow::Result<Vec<InheritFd>> {
    given
        .iter()
        .map(|(n, key)| {
            let fd = stasis_sys::fd::dup_own_fd(*n).with_context(|| format!("--inherit-fd fd[{n}]:{key}: fd {n}"))?;
            Ok(InheritFd { key: key.clone(), fd: std::sync::Arc::new(fd) })
        })
        .collect()
}

/// A pid file written atomically: a temporary file beside it, renamed over it once the pid is
/// known. Dropped uncommitted, the temporary file is removed.
pub(crate) struct PidFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl PidFile {
    pub(crate) fn prepare(path: &Path) -> anyhow::Result<PidFile> {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file =
            File::create(&tmp).with_context(|| format!("create pid file {} (as {})", path.display(), tmp.display()))?;
        Ok(PidFile { path: path.to_path_buf(), tmp, file: Some(file) })
    }

    pub(crate) fn commit(mut self, pid: i32) -> anyhow::Result<()> {
        let mut file = self.file.take().expect("a prepared pid file has its file");
        writeln!(file, "{pid}")
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&self.tmp, &self.path))
            .with_context(|| format!("write pid file {}", self.path.display()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Either committed (renamed away, so this fails harmlessly) or abandoned.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherit_fd_takes_criu_syntax() {
        assert_eq!(parse_inherit_fd("fd[3]:pipe:[123]"), Ok((3, "pipe:[123]".into())));
        assert_eq!(parse_inherit_fd("fd[10]:tmp/log"), Ok((10, "tmp/log".into())));
        for bad in ["3:pipe:[1]", "fd[x]:a", "fd[3]:", "fd[-1]:a", "fd[3]"] {
            assert!(parse_inherit_fd(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pidfile_is_written_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("root.pid");
        let pf = PidFile::prepare(&path).expect("prepare");
        assert!(!path.exists());
        pf.commit(4242).expect("commit");
        assert_eq!(fs::read_to_string(&path).expect("read"), "4242\n");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }

    #[test]
    fn abandoned_pidfile_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(PidFile::prepare(&dir.path().join("p")).expect("prepare"));
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0);
        let err = PidFile::prepare(&dir.path().join("missing/p")).err().expect("no such dir");
        assert!(format!("{err:#}").starts_with("create pid file"), "{err:#}");
    }
}
