//! `stasis dump`: checkpoint the tree rooted at `-t PID` into `-D DIR`; and `stasis pre-dump`,
//! which saves the tree's memory while it runs on and tracks its writes for the next round.

use anyhow::Context;
use clap::Args;
use stasis_engine::{DumpOptions, DumpReport, PageServerAddr};

use crate::criu_opts::CriuArgs;
use crate::progress::ProgressLine;

/// Options of `stasis dump` (and `pre-dump`): CRIU's, and two of stasis' own.
#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Flush the image to stable storage before reporting success.
    #[arg(long)]
    pub fsync: bool,
    /// Print the report (or the error) as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the page files in zstd frames (a fast level), one per checksum chunk; restore
    /// recognises them from the page map.
    #[arg(long)]
    pub compress: bool,
}

/// The engine's options for `args` (whose `-t` the caller checked).
pub fn options(args: &DumpArgs) -> anyhow::Result<DumpOptions> {
    let c = &args.criu;
    let (mut ext_unix_inodes, ext_veths, ext_netns) = externals(c)?;
    let (ext_unix_sk, named) = ext_unix_sk(c)?;
    ext_unix_inodes.extend(named);
    if args.compress && c.is_set("auto-dedup") {
        anyhow::bail!("--auto-dedup with --compress: pages cannot be punched out of compressed frames (each chunk is one zstd frame), nothing was touched");
    }
    if args.compress && c.is_set("page-server") {
        anyhow::bail!(
            "--compress with --page-server: page files are sent to a page server uncompressed, nothing was touched"
        );
    }
    if c.is_set("auto-dedup") && c.is_set("page-server") {
        anyhow::bail!("--auto-dedup with --page-server: the parent page files are the page server's (stasis page-server does not deduplicate), nothing was touched");
    }
    Ok(DumpOptions {
        pid: c.tree().unwrap_or(0),
        dir: c.images_dir(),
        leave_running: c.is_set("leave-running"),
        leave_stopped: c.is_set("leave-stopped"),
        shell_job: c.is_set("shell-job"),
        fsync: args.fsync,
        ghost_limit: c.ghost_limit(),
        ext_unix_sk,
        ext_unix_inodes,
        file_locks: c.is_set("file-locks"),
        allow_uprobes: c.is_set("allow-uprobes"),
        tcp_established: c.is_set("tcp-established"),
        skip_in_flight: c.is_set("skip-in-flight"),
        network_lock: crate::restore::network_lock(c)?,
        notify: crate::action_script::notifier(c),
        prev_images_dir: c.last("prev-images-dir").map(Into::into),
        track_mem: c.is_set("track-mem"),
        page_server: page_server(c)?,
        ext_veths,
        ext_netns,
        empty_netns: empty_ns(c)?,
        manage_cgroups: crate::restore::cgroup_mode(c)?,
        freeze_cgroup: c.last("freeze-cgroup").map(Into::into),
        auto_dedup: c.is_set("auto-dedup"),
        compress: args.compress,
        ext_mounts: mounts(c)?.0,
        skip_mounts: c.get("skip-mnt").unwrap_or_default().to_vec(),
        ext_sharing: c.is_set("enable-external-sharing"),
        ext_masters: c.is_set("enable-external-masters"),
        ext_mount_auto: mounts(c)?.1,
        enable_fs: c.get("enable-fs").unwrap_or_default().iter().flat_map(|v| v.split(',')).map(String::from).collect(),
        handoff: None,
    })
}

/// `--page-server --address ADDR --port PORT` (or `--ps-socket FD`, a socket the caller connected
/// to the page server): where the pages go instead of `-D`.
fn page_server(c: &CriuArgs) -> anyhow::Result<Option<PageServerAddr>> {
    if !c.is_set("page-server") {
        if let Some(fd) = c.last("ps-socket") {
            anyhow::bail!("--ps-socket {fd} is the page server's socket: it needs --page-server");
        }
        return Ok(None);
    }
    if let Some(fd) = c.last("ps-socket") {
        let n: i32 = fd.parse().map_err(|_| anyhow::anyhow!("--ps-socket {fd:?} is not an fd number"))?;
        let own = stasis_sys::fd::dup_own_fd(n).with_context(|| format!("--ps-socket {n}"))?;
        return Ok(Some(PageServerAddr::Socket(std::sync::Arc::new(own))));
    }
    let address = c.last("address").context("--page-server needs --address ADDR (the page server's host)")?;
    let port = c.last("port").context("--page-server needs --port PORT")?;
    let port: u16 = port.parse().map_err(|_| anyhow::anyhow!("--port {port:?} is not a port number"))?;
    if port == 0 {
        anyhow::bail!("--port 0: the page server's port is needed (it prints the one it chose)");
    }
    Ok(Some(PageServerAddr::Tcp(address.to_owned(), port)))
}

/// `--empty-ns net` (the one kind CRIU takes).
fn empty_ns(c: &CriuArgs) -> anyhow::Result<bool> {
    let given = c.get("empty-ns").unwrap_or_default();
    if let Some(other) = given.iter().find(|k| k.as_str() != "net") {
        anyhow::bail!("--empty-ns {other}: only the network namespace (net) can be made empty");
    }
    Ok(!given.is_empty())
}

/// Veths with their outside peer's name (`veth[NAME]:PEER`).
pub type Veths = Vec<(String, String)>;

/// Network namespaces by inode, with the key restore finds them by (`net[INODE]:KEY`).
pub type NetNs = Vec<(u64, String)>;

/// The `--external` objects: UNIX socket inodes, veths with their outside peer's name, network
/// namespaces.
pub fn externals(c: &CriuArgs) -> anyhow::Result<(Vec<u64>, Veths, NetNs)> {
    let (mut unix, mut veths, mut netns) = (Vec::new(), Vec::new(), Vec::new());
    for e in c.get("external").unwrap_or_default() {
        match parse_external(e).map_err(|e| anyhow::anyhow!("--external {e}"))? {
            External::Unix(inode) => unix.push(inode),
            External::Veth(name, peer) => veths.push((name, peer)),
            External::NetNs(inode, key) => netns.push((inode, key)),
            External::Mnt(..) => {}
        }
    }
    Ok((unix, veths, netns))
}

/// `-x`/`--ext-unix-sk[=INODE]`: without a value every UNIX socket whose peer is outside the tree
/// is allowed (true); each `=INODE` allows that socket only, as `--external unix[INODE]`.
fn ext_unix_sk(c: &CriuArgs) -> anyhow::Result<(bool, Vec<u64>)> {
    let given = c.get("ext-unix-sk").unwrap_or_default();
    let mut inodes = Vec::new();
    for v in given.iter().filter(|v| !v.is_empty()) {
        let inode = v.parse().map_err(|_| anyhow::anyhow!("--ext-unix-sk={v}: not a socket inode number"))?;
        inodes.push(inode);
    }
    let all = c.is_set("ext-unix-sk") && (given.is_empty() || given.iter().any(|v| v.is_empty()));
    Ok((all, inodes))
}

/// One `--external` object.
#[derive(Debug, PartialEq)]
enum External {
    /// `unix[INODE]`: a UNIX socket whose peer is outside the tree.
    Unix(u64),
    /// `veth[NAME]:PEER`: a veth of the tree's network namespace and its peer's name outside.
    Veth(String, String),
    /// `net[INODE]:KEY`: a network namespace that is not saved, found again by `KEY` at restore.
    NetNs(u64, String),
    /// `mnt[ID]:VALUE`: at the dump a mount point and its key, at restore a key and its path.
    Mnt(String, String),
}

/// The external mounts, `--external mnt[ID]:VALUE` and `--ext-mount-map ID:VALUE`: (mount point,
/// key) pairs at the dump, (key, path) pairs at restore, as in CRIU; and whether `--ext-mount-map
/// auto` was given.
pub fn mounts(c: &CriuArgs) -> anyhow::Result<(Vec<(String, String)>, bool)> {
    let mut auto = false;
    let mut out = Vec::new();
    for e in c.get("external").unwrap_or_default() {
        if let External::Mnt(id, value) = parse_external(e).map_err(|e| anyhow::anyhow!("--external {e}"))? {
            out.push((id, value));
        }
    }
    for m in c.get("ext-mount-map").unwrap_or_default() {
        if m == "auto" {
            auto = true;
            continue;
        }
        match m.split_once(':') {
            Some((id, value)) if !id.is_empty() && !value.is_empty() => out.push((id.to_string(), value.to_string())),
            _ => anyhow::bail!("--ext-mount-map {m:?}: not KEY:VALUE"),
        }
    }
    Ok((out, auto))
}

/// Runs `stasis dump`.
pub fn run(args: &DumpArgs) -> anyhow::Result<u8> {
    let opts = options(args)?;
    log::info!("dumping pid {} into {}", opts.pid, opts.dir.display());
    let mut line = ProgressLine::new("dumping memory");
    let result = stasis_engine::dump(&opts, &mut |p| line.update(p));
    line.finish();
    let report = result.with_context(|| format!("dump of pid {} into {}", opts.pid, opts.dir.display()))?;
    if args.json {
        crate::print_json(&serde_json::to_value(&report).context("encode the dump report")?);
    } else {
        println!("{}", summary(&report, &opts));
    }
    Ok(0)
}

/// Runs `stasis pre-dump`.
pub fn run_pre_dump(args: &DumpArgs) -> anyhow::Result<u8> {
    let opts = options(args)?;
    log::info!("pre-dumping pid {} into {}", opts.pid, opts.dir.display());
    let result = stasis_engine::pre_dump(&opts, &mut |_| {});
    let report = result.with_context(|| format!("pre-dump of pid {} into {}", opts.pid, opts.dir.display()))?;
    if args.json {
        crate::print_json(&serde_json::to_value(&report).context("encode the pre-dump report")?);
    } else {
        println!("pre-{}", summary(&report, &opts));
    }
    Ok(0)
}

/// `dumped pid 42 into /tmp/img: 2560 pages, 10.2 MiB in 0.153 s (frozen 0.081 s), left running`.
fn summary(r: &DumpReport, opts: &DumpOptions) -> String {
    let after = if r.left_running { "left running" } else { "killed" };
    let parent = match r.pages_in_parent {
        0 => String::new(),
        n => format!(" (and {n} in the parent image)"),
    };
    format!(
        "dumped pid {} into {}: {} pages{parent}, {:.1} MiB in {:.3} s (frozen {:.3} s), {after}",
        r.pid,
        opts.dir.display(),
        r.pages,
        r.image_bytes as f64 / (1024.0 * 1024.0),
        r.total.as_secs_f64(),
        r.frozen.as_secs_f64(),
    )
}

/// `--external TYPE[ID]:KEY`: `unix[INODE]` or `veth[NAME]:PEER`, the types that apply here.
fn parse_external(text: &str) -> Result<External, String> {
    let (ty, rest) = text.split_once('[').ok_or_else(|| format!("{text:?} is not TYPE[ID] or TYPE[ID]:KEY"))?;
    let (id, key) = rest.split_once(']').ok_or_else(|| format!("{text:?}: no closing ']'"))?;
    match ty {
        "unix" => id.parse().map(External::Unix).map_err(|_| format!("{text:?}: {id:?} is not a socket inode number")),
        "veth" => match key.strip_prefix(':') {
            // CRIU's `@BRIDGE` suffix is not taken: refused rather than ignored.
            Some(peer) if !id.is_empty() && !peer.is_empty() && !peer.contains('@') => {
                Ok(External::Veth(id.to_string(), peer.to_string()))
            }
            _ => Err(format!("{text:?}: a veth is named veth[NAME]:PEER (a bridge with @BRIDGE is not supported)")),
        },
        "net" => match (id.parse(), key.strip_prefix(':')) {
            (Ok(inode), Some(k)) if !k.is_empty() => Ok(External::NetNs(inode, k.to_string())),
            _ => Err(format!("{text:?}: a network namespace is named net[INODE]:KEY")),
        },
        "mnt" => match key.strip_prefix(':') {
            Some(v) if !id.is_empty() && !v.is_empty() => Ok(External::Mnt(id.to_string(), v.to_string())),
            _ => Err(format!("{text:?}: a mount is named mnt[MOUNTPOINT]:KEY at the dump, mnt[KEY]:PATH at restore")),
        },
        _ => Err(format!(
            "{text:?}: external objects of type {ty:?} are not supported (only unix[INODE]: a unix socket whose peer is outside the tree, veth[NAME]:PEER, net[INODE]:KEY and mnt[ID]:VALUE)"
        )),
    }
}

#[cfg(test)]
mod external_tests {
    use super::{parse_external, External};

    #[test]
    fn external_takes_unix_inodes_and_veths() {
        assert_eq!(parse_external("unix[4242]"), Ok(External::Unix(4242)));
        assert_eq!(parse_external("unix[7]:x"), Ok(External::Unix(7)));
        assert_eq!(parse_external("veth[eth0]:out0"), Ok(External::Veth("eth0".into(), "out0".into())));
        assert!(parse_external("veth[eth0]").is_err());
        assert_eq!(
            parse_external("net[4026532000]:extRootNetNS"),
            Ok(External::NetNs(4026532000, "extRootNetNS".into()))
        );
        assert!(parse_external("net[x]:k").is_err());
        assert!(parse_external("veth[eth0]:out0@br0").is_err());
        assert_eq!(parse_external("mnt[/a]:b"), Ok(External::Mnt("/a".into(), "b".into())));
        assert!(parse_external("mnt[/a]").is_err());
        assert!(parse_external("mnt[]:b").is_err());
        assert!(parse_external("unix[x]").is_err());
        assert!(parse_external("unix").is_err());
    }
}
