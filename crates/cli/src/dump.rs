//! `stasis dump`: checkpoint the tree rooted at `-t PID` into `-D DIR`; and `stasis pre-dump`,
//! which saves the tree's memory while it runs on and tracks its writes for the next round.

use anyhow::Context;
use clap::Args;
use stasis_engine::{DumpOptions, DumpReport};

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
}

/// The engine's options for `args` (whose `-t` the caller checked).
pub fn options(args: &DumpArgs) -> anyhow::Result<DumpOptions> {
    let c = &args.criu;
    let external = c.get("external").unwrap_or_default();
    let ext_unix_inodes = external.iter().map(|e| parse_external(e)).collect::<Result<_, _>>();
    let ext_unix_inodes = ext_unix_inodes.map_err(|e| anyhow::anyhow!("--external {e}"))?;
    Ok(DumpOptions {
        pid: c.tree().unwrap_or(0),
        dir: c.images_dir(),
        leave_running: c.is_set("leave-running"),
        shell_job: c.is_set("shell-job"),
        fsync: args.fsync,
        ghost_limit: c.ghost_limit(),
        ext_unix_sk: c.is_set("ext-unix-sk"),
        ext_unix_inodes,
        file_locks: c.is_set("file-locks"),
        tcp_established: c.is_set("tcp-established"),
        skip_in_flight: c.is_set("skip-in-flight"),
        network_lock: crate::restore::network_lock(c)?,
        notify: crate::action_script::notifier(c),
        prev_images_dir: c.last("prev-images-dir").map(Into::into),
        track_mem: c.is_set("track-mem"),
        page_server: page_server(c)?,
    })
}

/// `--page-server --address ADDR --port PORT`: where the pages go instead of `-D`.
fn page_server(c: &CriuArgs) -> anyhow::Result<Option<(String, u16)>> {
    if !c.is_set("page-server") {
        return Ok(None);
    }
    let address = c.last("address").context("--page-server needs --address ADDR (the page server's host)")?;
    let port = c.last("port").context("--page-server needs --port PORT")?;
    let port: u16 = port.parse().map_err(|_| anyhow::anyhow!("--port {port:?} is not a port number"))?;
    if port == 0 {
        anyhow::bail!("--port 0: the page server's port is needed (it prints the one it chose)");
    }
    Ok(Some((address.to_owned(), port)))
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

/// `--external TYPE[ID]:KEY`: the inode of `unix[INODE]`, the one type that applies here.
fn parse_external(text: &str) -> Result<u64, String> {
    let (ty, rest) = text.split_once('[').ok_or_else(|| format!("{text:?} is not TYPE[ID] or TYPE[ID]:KEY"))?;
    let (id, _key) = rest.split_once(']').ok_or_else(|| format!("{text:?}: no closing ']'"))?;
    if ty != "unix" {
        return Err(format!(
            "{text:?}: external objects of type {ty:?} are not supported (only unix[INODE]: a unix socket whose peer is outside the tree)"
        ));
    }
    id.parse().map_err(|_| format!("{text:?}: {id:?} is not a socket inode number"))
}

#[cfg(test)]
mod external_tests {
    use super::parse_external;

    #[test]
    fn external_takes_unix_inodes_only() {
        assert_eq!(parse_external("unix[4242]"), Ok(4242));
        assert_eq!(parse_external("unix[7]:x"), Ok(7));
        assert!(parse_external("mnt[/a]:b").is_err());
        assert!(parse_external("unix[x]").is_err());
        assert!(parse_external("unix").is_err());
    }
}
