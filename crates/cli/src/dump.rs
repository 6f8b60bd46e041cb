//! `stasis dump`: checkpoint the tree rooted at `-t PID` into `-D DIR`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use stasis_engine::{DumpOptions, DumpReport};

use crate::progress::ProgressLine;
use crate::LogArgs;

/// Options of `stasis dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Root of the process tree to checkpoint.
    #[arg(short = 't', long = "tree", value_name = "PID",
          value_parser = clap::value_parser!(i32).range(1..))]
    pub tree: i32,
    /// Image directory to write (created with mode 0700 if missing).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    pub images_dir: PathBuf,
    /// Resume the tree after the dump instead of killing it.
    #[arg(short = 'R', long)]
    pub leave_running: bool,
    /// The tree is a job of the calling shell: its terminal is reattached at restore.
    #[arg(short = 'j', long)]
    pub shell_job: bool,
    /// Flush the image to stable storage before reporting success.
    #[arg(long)]
    pub fsync: bool,
    /// Largest unlinked-but-open file whose contents go into the image (bytes, or with a K or M
    /// suffix; at most 32M). A bigger one fails the dump.
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_size)]
    pub ghost_limit: u64,
    /// Allow UNIX sockets connected to sockets outside the tree: restore (also with --ext-unix-sk)
    /// connects them to the peer's name again.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// An object outside the tree the dump may leave out (CRIU's `TYPE[ID]:KEY`): `unix[INODE]`
    /// allows that one UNIX socket a peer outside the tree, as --ext-unix-sk allows every one.
    /// Repeatable; the other types of CRIU (mnt, dev, net, veth, file, tty...) are refused.
    #[arg(long, value_name = "TYPE[ID]:KEY", value_parser = parse_external)]
    pub external: Vec<u64>,
    /// Keep the file locks (flock, POSIX, OFD, leases) the tree holds; without it a lock fails the
    /// dump.
    #[arg(long)]
    pub file_locks: bool,
    /// Dump established TCP connections (in TCP repair mode, under the network lock); without it
    /// an established connection fails the dump.
    #[arg(long)]
    pub tcp_established: bool,
    /// Drop TCP connections not yet accepted by a listener (their clients are reset after the
    /// restore); without it they fail the dump.
    #[arg(long)]
    pub skip_in_flight: bool,
    /// How dumped connections are kept from being reset until the restore: an nftables table of
    /// their own (nftables), or nothing (skip). iptables is not implemented.
    #[arg(long, value_name = "METHOD", default_value = "nftables")]
    pub network_lock: stasis_engine::netlock::Mode,
    #[command(flatten)]
    pub log: LogArgs,
    /// Print the report (or the error) as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `stasis dump`.
pub fn run(args: &DumpArgs) -> anyhow::Result<u8> {
    let opts = DumpOptions {
        pid: args.tree,
        dir: args.images_dir.clone(),
        leave_running: args.leave_running,
        shell_job: args.shell_job,
        fsync: args.fsync,
        ghost_limit: args.ghost_limit,
        ext_unix_sk: args.ext_unix_sk,
        ext_unix_inodes: args.external.clone(),
        file_locks: args.file_locks,
        tcp_established: args.tcp_established,
        skip_in_flight: args.skip_in_flight,
        network_lock: args.network_lock,
    };
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

/// `dumped pid 42 into /tmp/img: 2560 pages, 10.2 MiB in 0.153 s (frozen 0.081 s), left running`.
fn summary(r: &DumpReport, opts: &DumpOptions) -> String {
    let after = if r.left_running { "left running" } else { "killed" };
    format!(
        "dumped pid {} into {}: {} pages, {:.1} MiB in {:.3} s (frozen {:.3} s), {after}",
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

/// A size in bytes, with an optional K or M suffix (powers of 1024), at most
/// [`stasis_engine::MAX_GHOST_LIMIT`].
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.strip_suffix(['K', 'k']) {
        Some(d) => (d, 1 << 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(d) => (d, 1 << 20),
            None => (text, 1),
        },
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size (e.g. 4096, 64K, 8M)"))?;
    let bytes = n.checked_mul(unit).ok_or_else(|| format!("{text} is too big"))?;
    if bytes > stasis_engine::MAX_GHOST_LIMIT {
        return Err(format!("{text} is over the most an image can hold for one file (32M)"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn external_takes_unix_inodes_only() {
        use super::parse_external;
        assert_eq!(parse_external("unix[4242]"), Ok(4242));
        assert_eq!(parse_external("unix[7]:x"), Ok(7));
        assert!(parse_external("mnt[/a]:b").is_err());
        assert!(parse_external("unix[x]").is_err());
        assert!(parse_external("unix").is_err());
    }

    #[test]
    fn sizes_with_and_without_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert!(parse_size("33M").is_err());
        assert!(parse_size("x").is_err());
    }
}
