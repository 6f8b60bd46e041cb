//! `stasis serve`: the receiving side of `stasis migrate`. It listens, takes one migration (the
//! rounds of pre-copy and the final dump, each an image directory `DIR/K` whose parent is `DIR/K-1`),
//! restores the last round as `stasis restore -D DIR/K -d` would, and tells the sender once the tree
//! runs (see `docs/migration.md`).
//!
//! Once it listens it prints `serve listening on ADDR:PORT` (the port it chose when given `--port
//! 0`). Run as pid 1 of a PID namespace of its own (`unshare -pf --mount-proc stasis serve ...`, which
//! one machine needs for the source's pids to be free), it stays the tree's init: it waits for the
//! restored root and exits with its status, as `restore` without `-d` does. Otherwise it exits 0 once
//! the tree runs.

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser};

use crate::page_server::announce;

/// Options of `stasis serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Directory the rounds are written to, each in a subdirectory `1`, `2`, ... (it must exist).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub listen: crate::page_server::Listen,
    /// Restore established TCP connections (the source's `migrate --tcp-established`).
    #[arg(long)]
    pub tcp_established: bool,
    /// Write the restored root's pid (in this PID namespace) to FILE.
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    #[command(flatten)]
    pub out: crate::page_server::Output,
}

/// `stasis restore`'s own options, for the restore of the last round.
#[derive(Parser, Debug)]
struct AsRestore {
    #[command(flatten)]
    args: crate::restore::RestoreArgs,
}

/// Runs `stasis serve`.
pub fn run(args: &ServeArgs) -> anyhow::Result<u8> {
    if !args.dir.is_dir() {
        bail!("serve: -D {}: not a directory", args.dir.display());
    }
    let listener = TcpListener::bind((args.listen.address.as_str(), args.listen.port))
        .with_context(|| format!("serve: listen on {}:{}", args.listen.address, args.listen.port))?;
    let local = listener.local_addr().context("serve: the listening address")?;
    announce(&format!("serve listening on {local}"));
    // Created before anything is received, so that an unwritable pidfile fails first.
    let mut pidfile = args.pidfile.as_deref().map(crate::restore::PidFile::prepare).transpose()?;
    let mut restored = None;
    let mut restore = |got: &stasis_engine::migrate::Received| -> Result<_, stasis_engine::Error> {
        let refused = |what: String| stasis_engine::Error::MigrationRefused { peer: got.peer.clone(), what };
        let opts = restore_options(args, &got.image, got.page_source.is_some())
            .map_err(|e| refused(format!("the restore's options: {e:#}")))?;
        // Post-copy: the pages come from the sender, through a lazy-pages daemon started first.
        let daemon = match &got.page_source {
            Some((address, port)) => Some(
                LazyDaemon::start(args, &got.image, address, *port)
                    .map_err(|e| refused(format!("the lazy-pages daemon: {e:#}")))?,
            ),
            None => None,
        };
        let r = stasis_engine::restore(&opts, &mut |_| {})?;
        // It serves on and exits once every page is in.
        std::mem::forget(daemon);
        let (pid, stages) = (r.pid(), r.report.stages);
        restored = Some(r);
        Ok((pid, stages))
    };
    let (got, pid) = stasis_engine::migrate::receive(&listener, &args.dir, &mut restore)
        .with_context(|| format!("serve on {local} into {}", args.dir.display()))?;
    let restored = restored.expect("restored when received");
    if let Some(p) = pidfile.take() {
        p.commit(pid)?;
    }
    let mib = got.bytes as f64 / (1024.0 * 1024.0);
    if args.out.json {
        let mut report = serde_json::to_value(&got).context("encode the serve report")?;
        report["pid"] = pid.into();
        report["restore"] = serde_json::to_value(&restored.report).context("encode the restore report")?;
        crate::print_json(&report);
    } else {
        let st = &restored.report.stages;
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        announce(&format!(
            "serve restored pid {pid} from {} ({} rounds, {} files, {mib:.1} MiB from {}): last round received in {:.1} ms, restored in {:.1} ms (prepare {:.1}, setup {:.1}, tasks {:.1}, finish {:.1})",
            got.image.display(),
            got.rounds,
            got.files,
            got.peer,
            ms(got.last_round),
            ms(restored.report.total),
            ms(st.prepare),
            ms(st.setup),
            ms(st.tasks),
            ms(st.finish),
        ));
    }
    if std::process::id() != 1 {
        restored.detach();
        return Ok(0);
    }
    // The init of this PID namespace: its end would kill the tree.
    let status = restored.wait().with_context(|| format!("wait for restored pid {pid}"))?;
    log::info!("serve: restored pid {pid} ended with status {status}");
    Ok(u8::try_from(status).unwrap_or(u8::MAX))
}

/// `stasis lazy-pages -D IMAGE --page-server --address A --port P`, once it listens; killed on
/// drop (a failed restore).
struct LazyDaemon(std::process::Child);

impl LazyDaemon {
    fn start(args: &ServeArgs, image: &std::path::Path, address: &str, port: u16) -> anyhow::Result<LazyDaemon> {
        use std::io::BufRead;
        let exe = std::env::current_exe().context("locate the stasis binary")?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("lazy-pages").arg("-D").arg(image).args(["--page-server", "--address", address]);
        cmd.args(["--port", &port.to_string()]);
        if let Some(log) = &args.out.log_file {
            cmd.arg("-o").arg(std::path::absolute(log)?);
        }
        if args.out.verbose > 0 {
            cmd.arg(format!("-{}", "v".repeat(args.out.verbose.into())));
        }
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped());
        let mut child = LazyDaemon(cmd.spawn().context("start stasis lazy-pages")?);
        let stdout = child.0.stdout.take().context("its stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).context("read its first line")?;
        if !line.starts_with("lazy-pages listening on ") {
            bail!("it did not start (it printed {line:?})");
        }
        Ok(child)
    }
}

impl Drop for LazyDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The options `stasis restore -D IMAGE -d [--lazy-pages]` would have, with ours passed through.
fn restore_options(
    args: &ServeArgs,
    image: &std::path::Path,
    lazy: bool,
) -> anyhow::Result<stasis_engine::RestoreOptions> {
    let mut argv: Vec<std::ffi::OsString> = vec!["restore".into(), "-D".into(), image.into(), "-d".into()];
    if lazy {
        argv.push("--lazy-pages".into());
    }
    if args.tcp_established {
        argv.push("--tcp-established".into());
    }
    let parsed = AsRestore::try_parse_from(argv).context("the restore's options")?;
    let c = &parsed.args.criu;
    c.check(crate::criu_opts::CriuCommand::Restore)?;
    crate::restore::options(c, true)
}
