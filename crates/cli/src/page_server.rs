//! `stasis page-server`: receive the page files of one `stasis dump --page-server` into `-D DIR`
//! (see `docs/page-server.md`), then exit. The other images of the dump stay where the dump wrote
//! them; copied into DIR beside the page files, they make an image that `stasis restore -D DIR`
//! restores. With `--lazy-pages` it serves the page files already in DIR to one `stasis lazy-pages
//! --page-server` instead.
//!
//! Once it listens it prints `page-server listening on ADDR:PORT` on stdout (the port it chose when
//! given `--port 0`) and writes a zero byte to `--status-fd FD`, as CRIU's does. With `-d` it goes
//! on in the background: stasis runs itself again without `-d`, relays that line and exits.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use clap::{ArgAction, Args};

/// Options of `stasis page-server`.
#[derive(Args, Debug)]
pub struct PageServerArgs {
    /// Directory the page files are written to (it must exist).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub listen: Listen,
    /// Serve the page files in DIR to one `stasis lazy-pages --page-server` instead of receiving.
    #[arg(long)]
    pub lazy_pages: bool,
    /// Run in the background once listening.
    #[arg(short = 'd', long)]
    pub daemon: bool,
    /// Write a zero byte to FD once listening.
    #[arg(long, value_name = "FD")]
    pub status_fd: Option<i32>,
    /// With -d: write the pid of the server running in the background to FILE.
    #[arg(long, value_name = "FILE", requires = "daemon")]
    pub pidfile: Option<PathBuf>,
    #[command(flatten)]
    pub out: Output,
}

/// Where a command of stasis' own (not CRIU's) logs, and how it reports.
#[derive(Args, Debug)]
pub struct Output {
    /// Append the log to FILE.
    #[arg(short = 'o', long = "log-file", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// More log (repeat for more).
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
    /// Print the report (or the error) as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

impl Output {
    /// The log file and level.
    pub fn log(&self) -> (Option<&std::path::Path>, log::LevelFilter) {
        (self.log_file.as_deref(), level(self.verbose))
    }
}

/// Where a receiving command listens.
#[derive(Args, Debug)]
pub struct Listen {
    /// TCP port to listen on; 0 picks a free one (printed on stdout).
    #[arg(long, value_name = "PORT")]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub address: String,
}

/// The log level of `-v`s, from warnings.
pub fn level(verbose: u8) -> log::LevelFilter {
    match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// Runs `stasis page-server`.
pub fn run(args: &PageServerArgs) -> anyhow::Result<u8> {
    if !args.dir.is_dir() {
        bail!("page-server: -D {}: not a directory", args.dir.display());
    }
    if args.daemon {
        return daemonize(args);
    }
    let listener = TcpListener::bind((args.listen.address.as_str(), args.listen.port))
        .with_context(|| format!("page-server: listen on {}:{}", args.listen.address, args.listen.port))?;
    let local = listener.local_addr().context("page-server: the listening address")?;
    announce(&format!("page-server listening on {local}"));
    if let Some(fd) = args.status_fd {
        write_status(fd)?;
    }
    let serve = match args.lazy_pages {
        true => stasis_engine::pageserver::serve_pages,
        false => stasis_engine::pageserver::serve,
    };
    let report =
        serve(&listener, &args.dir).with_context(|| format!("page-server on {local} into {}", args.dir.display()))?;
    log::info!("page-server: {} files, {} bytes from {}", report.files.len(), report.bytes, report.peer);
    if args.out.json {
        crate::print_json(&serde_json::to_value(&report).context("encode the page server report")?);
    } else {
        let mib = report.bytes as f64 / (1024.0 * 1024.0);
        let did = if args.lazy_pages { "served" } else { "received" };
        announce(&format!("page-server {did} {} page files, {mib:.1} MiB, {}", report.files.len(), report.peer));
    }
    Ok(0)
}

/// A line on stdout; with `-d` nobody may read it any more, which is no error.
pub fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// CRIU's `--status-fd`: one zero byte, then the fd is closed.
pub fn write_status(fd: i32) -> anyhow::Result<()> {
    let owned = stasis_sys::fd::dup_own_fd(fd).with_context(|| format!("--status-fd {fd}"))?;
    std::fs::File::from(owned).write_all(&[0]).with_context(|| format!("--status-fd {fd}"))?;
    stasis_sys::fd::close_inherited(fd);
    Ok(())
}

/// `-d`: run the same command without `-d` in a process group of its own, wait until it listens,
/// print its line, write the status fd and return; it serves on alone.
fn daemonize(args: &PageServerArgs) -> anyhow::Result<u8> {
    let exe = std::env::current_exe().context("page-server -d: locate the stasis binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("page-server").arg("-D").arg(absolute(&args.dir)?);
    cmd.args(["--port", &args.listen.port.to_string(), "--address", &args.listen.address]);
    if args.lazy_pages {
        cmd.arg("--lazy-pages");
    }
    if let Some(log) = &args.out.log_file {
        cmd.arg("-o").arg(absolute(log)?);
    }
    if args.out.verbose > 0 {
        cmd.arg(format!("-{}", "v".repeat(args.out.verbose.into())));
    }
    // Nothing of the caller's stdio stays open in the background (a caller waiting for the end of
    // our output would wait for the server): its log goes to -o.
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).process_group(0);
    let mut child = cmd.spawn().context("page-server -d: start the server")?;
    let stdout = child.stdout.take().context("page-server -d: the server's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("page-server -d: read the server's first line")?;
    if !line.starts_with("page-server listening on ") {
        let status = child.wait().context("page-server -d: wait for the failed server")?;
        bail!("page-server -d: the server did not start ({status})");
    }
    if let Some(path) = &args.pidfile {
        std::fs::write(path, format!("{}\n", child.id())).with_context(|| format!("--pidfile {}", path.display()))?;
    }
    announce(line.trim_end());
    if let Some(fd) = args.status_fd {
        write_status(fd)?;
    }
    log::info!("page-server: serving in the background as pid {}", child.id());
    Ok(0)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}", path.display()))
}
