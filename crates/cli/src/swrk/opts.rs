//! CRIU's `criu_opts` as a `stasis` command line: each RPC option becomes the CLI option of the
//! same meaning (`leave_running` → `--leave-running`, `ext_mnt` → `--ext-mount-map KEY:VAL`...),
//! so that the RPC goes through the one option table of [`crate::criu_opts`], with its checks
//! and refusals by name. The caller's fds (`images_dir_fd`, `work_dir_fd`, `inherit_fd`) are
//! taken from the caller with `pidfd_getfd` (`inherit_fd`: our own inherited fd first, see
//! [`Caller::inherited_fd`]) and named `/proc/self/fd/N` (or `fd[N]`) here.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::Context;
use stasis_rpc::{CriuCgMode, CriuFileValidationMethod, CriuNetworkLockMethod, CriuOpts, CriuPreDumpMode};

use super::Caller;

/// A request's command line, and the fds of the caller it names (held until the request ends).
pub struct CommandLine {
    pub args: Vec<OsString>,
    pub held: Vec<OwnedFd>,
    /// `log_file` in the work directory (else the image directory), as CRIU opens it.
    pub log_file: Option<std::path::PathBuf>,
}

impl CommandLine {
    fn flag(&mut self, on: Option<bool>, long: &str) {
        if on == Some(true) {
            self.args.push(format!("--{long}").into());
        }
    }

    fn value(&mut self, long: &str, value: impl Into<OsString>) {
        self.args.push(format!("--{long}").into());
        self.args.push(value.into());
    }

    fn values<'a>(&mut self, long: &str, values: impl IntoIterator<Item = &'a String>) {
        for v in values {
            self.value(long, v.as_str());
        }
    }

    /// The caller's fd `n`, ours now, for as long as the request runs.
    fn take(&mut self, caller: &Caller, field: &str, n: i32) -> anyhow::Result<i32> {
        let fd = if field == "inherit_fd" { caller.inherited_fd(n) } else { caller.fd(n) };
        let fd = fd.with_context(|| format!("criu_opts.{field}: fd {n} of the caller (pid {})", caller.pid))?;
        let ours = fd.as_raw_fd();
        self.held.push(fd);
        Ok(ours)
    }
}

/// `stasis <command> ...` for `o`.
pub fn command_line(command: &str, o: &CriuOpts, caller: &Caller) -> anyhow::Result<CommandLine> {
    let mut c = CommandLine { args: vec!["stasis".into(), command.into()], held: Vec::new(), log_file: None };
    directories(&mut c, o, caller)?;
    logging(&mut c, o);
    if let Some(pid) = o.pid {
        c.value("tree", pid.to_string());
    } else if command == "dump" {
        // CRIU: "if not set on dump, will dump requesting process".
        c.value("tree", caller.pid.to_string());
    }
    process_options(&mut c, o);
    files_and_network(&mut c, o, caller)?;
    mounts_and_namespaces(&mut c, o);
    cgroups(&mut c, o);
    memory_and_page_server(&mut c, o);
    Ok(c)
}

fn directories(c: &mut CommandLine, o: &CriuOpts, caller: &Caller) -> anyhow::Result<()> {
    if o.images_dir_fd >= 0 {
        let fd = c.take(caller, "images_dir_fd", o.images_dir_fd)?;
        c.value("images-dir", format!("/proc/self/fd/{fd}"));
    } else if let Some(dir) = &o.images_dir {
        c.value("images-dir", dir.as_str());
    } else {
        anyhow::bail!("criu_opts: neither images_dir_fd nor images_dir is set");
    }
    let mut work = match c.args.last() {
        Some(images) => std::path::PathBuf::from(images),
        None => std::path::PathBuf::from("."),
    };
    if let Some(n) = o.work_dir_fd {
        let fd = c.take(caller, "work_dir_fd", n)?;
        work = format!("/proc/self/fd/{fd}").into();
        c.value("work-dir", work.as_os_str());
    }
    c.log_file = o.log_file.as_ref().map(|f| work.join(f));
    // runc always names /etc/criu/runc.conf; as CRIU does, a missing one is no error.
    match &o.config_file {
        Some(file) if std::path::Path::new(file).exists() => c.value("config", file.as_str()),
        Some(file) => log::info!("criu_opts.config_file {file}: not there, no options read from it"),
        None => {}
    }
    Ok(())
}

fn logging(c: &mut CommandLine, o: &CriuOpts) {
    c.args.push(format!("--verbosity={}", o.log_level().clamp(0, 9)).into());
    if let Some(file) = &o.log_file {
        c.value("log-file", file.as_str());
    }
    c.flag(o.display_stats, "display-stats");
    c.flag(o.unprivileged, "unprivileged");
}

fn process_options(c: &mut CommandLine, o: &CriuOpts) {
    c.flag(o.leave_running, "leave-running");
    c.flag(o.leave_stopped, "leave-stopped");
    c.flag(o.shell_job, "shell-job");
    c.flag(o.rst_sibling, "restore-sibling");
    if let Some(t) = o.timeout {
        c.value("timeout", t.to_string());
    }
    if o.cpu_cap.is_some_and(|cap| cap != u32::MAX) {
        let caps = stasis_engine::cpu::Caps::from_bits(o.cpu_cap());
        c.args.push(format!("--cpu-cap={}", caps.words()).into());
    }
    c.flag(o.allow_uprobes, "allow-uprobes");
    if let Some(profile) = &o.lsm_profile {
        c.value("lsm-profile", profile.as_str());
    }
    if let Some(context) = &o.lsm_mount_context {
        c.value("lsm-mount-context", context.as_str());
    }
    c.flag(o.weak_sysctls, "weak-sysctls");
}

fn files_and_network(c: &mut CommandLine, o: &CriuOpts, caller: &Caller) -> anyhow::Result<()> {
    if o.ext_unix_sk == Some(true) {
        c.args.push("--ext-unix-sk".into());
    }
    for sk in &o.unix_sk_ino {
        c.value("external", format!("unix[{}]", sk.inode));
    }
    c.values("external", &o.external);
    for inherit in &o.inherit_fd {
        let fd = c.take(caller, "inherit_fd", inherit.fd)?;
        c.value("inherit-fd", format!("fd[{fd}]:{}", inherit.key));
    }
    c.flag(o.file_locks, "file-locks");
    c.flag(o.evasive_devices, "evasive-devices");
    c.flag(o.link_remap, "link-remap");
    c.flag(o.force_irmap, "force-irmap");
    c.values("irmap-scan-path", &o.irmap_scan_paths);
    if let Some(limit) = o.ghost_limit {
        c.value("ghost-limit", limit.to_string());
    }
    c.flag(o.ghost_fiemap, "ghost-fiemap");
    c.flag(o.skip_file_rwx_check, "skip-file-rwx-check");
    if let Some(m) = o.file_validation_method.and_then(|m| CriuFileValidationMethod::try_from(m).ok()) {
        c.value("file-validation", if m == CriuFileValidationMethod::FileSize { "filesize" } else { "buildid" });
    }
    c.flag(o.tcp_established, "tcp-established");
    c.flag(o.tcp_close, "tcp-close");
    c.flag(o.tcp_skip_in_flight, "skip-in-flight");
    if let Some(m) = o.network_lock.and_then(|m| CriuNetworkLockMethod::try_from(m).ok()) {
        let name = match m {
            CriuNetworkLockMethod::Iptables => "iptables",
            CriuNetworkLockMethod::Nftables => "nftables",
            CriuNetworkLockMethod::Skip => "skip",
        };
        c.value("network-lock", name);
    }
    Ok(())
}

fn mounts_and_namespaces(c: &mut CommandLine, o: &CriuOpts) {
    if let Some(root) = &o.root {
        c.value("root", root.as_str());
    }
    for m in &o.ext_mnt {
        c.value("ext-mount-map", format!("{}:{}", m.key, m.val));
    }
    if o.auto_ext_mnt == Some(true) {
        c.value("ext-mount-map", "auto");
    }
    c.flag(o.ext_sharing, "enable-external-sharing");
    c.flag(o.ext_masters, "enable-external-masters");
    c.values("skip-mnt", &o.skip_mnt);
    c.values("enable-fs", &o.enable_fs);
    c.flag(o.mntns_compat_mode, "mntns-compat-mode");
    for v in &o.veths {
        c.value("veth-pair", format!("{}={}", v.if_in, v.if_out));
    }
    if o.empty_ns.is_some_and(|ns| ns != 0) {
        // CRIU takes only the network namespace here (CLONE_NEWNET).
        c.value("empty-ns", "net");
    }
    for j in &o.join_ns {
        let extra = j.extra_opt.as_deref().map(|e| format!(",{e}")).unwrap_or_default();
        c.value("join-ns", format!("{}:{}{extra}", j.ns, j.ns_file));
    }
}

/// As CRIU's service: `manage_cgroups` alone is `soft` when true and `ignore` when false;
/// `manage_cgroups_mode` overrides it (`CG_DEFAULT` is `soft`); neither leaves CRIU's default
/// (`soft`).
fn cgroups(c: &mut CommandLine, o: &CriuOpts) {
    let mode = match o.manage_cgroups_mode.and_then(|m| CriuCgMode::try_from(m).ok()) {
        Some(CriuCgMode::Ignore) => Some("ignore"),
        Some(CriuCgMode::CgNone) => Some("none"),
        Some(CriuCgMode::Props) => Some("props"),
        Some(CriuCgMode::Soft | CriuCgMode::Default) => Some("soft"),
        Some(CriuCgMode::Full) => Some("full"),
        Some(CriuCgMode::Strict) => Some("strict"),
        None => o.manage_cgroups.map(|on| if on { "soft" } else { "ignore" }),
    };
    if let Some(name) = mode {
        c.args.push(format!("--manage-cgroups={name}").into());
    }
    for root in &o.cg_root {
        let ctrl = root.ctrl.as_deref().map(|c| format!("{c}:")).unwrap_or_default();
        c.value("cgroup-root", format!("{ctrl}{}", root.path));
    }
    if let Some(props) = &o.cgroup_props {
        c.value("cgroup-props", props.as_str());
    }
    if let Some(file) = &o.cgroup_props_file {
        c.value("cgroup-props-file", file.as_str());
    }
    c.values("cgroup-dump-controller", &o.cgroup_dump_controller);
    if let Some(yard) = &o.cgroup_yard {
        c.value("cgroup-yard", yard.as_str());
    }
    if let Some(cg) = &o.freeze_cgroup {
        c.value("freeze-cgroup", cg.as_str());
    }
}

fn memory_and_page_server(c: &mut CommandLine, o: &CriuOpts) {
    if let Some(parent) = &o.parent_img {
        c.value("prev-images-dir", parent.as_str());
    }
    c.flag(o.track_mem, "track-mem");
    c.flag(o.auto_dedup, "auto-dedup");
    c.flag(o.lazy_pages, "lazy-pages");
    if let Some(m) = o.pre_dump_mode.and_then(|m| CriuPreDumpMode::try_from(m).ok()) {
        c.value("pre-dump-mode", if m == CriuPreDumpMode::Splice { "splice" } else { "read" });
    }
    if let Some(ps) = &o.ps {
        c.args.push("--page-server".into());
        if let Some(address) = &ps.address {
            c.value("address", address.as_str());
        }
        if let Some(port) = ps.port {
            c.value("port", port.to_string());
        }
        // A socket the caller connected, inherited by `swrk` (CRIU's `ps_socket`).
        if let Some(fd) = ps.fd {
            c.value("ps-socket", fd.to_string());
        }
    }
    c.flag(o.tls, "tls");
    for (long, v) in
        [("tls-cacert", &o.tls_cacert), ("tls-cacrl", &o.tls_cacrl), ("tls-cert", &o.tls_cert), ("tls-key", &o.tls_key)]
    {
        if let Some(v) = v {
            c.value(long, v.as_str());
        }
    }
    c.flag(o.tls_no_cn_verify, "tls-no-cn-verify");
}
