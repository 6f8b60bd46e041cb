//! `stasis lazy-pages -D DIR`: serve the pages of one `stasis restore --lazy-pages -D DIR` through
//! userfaultfd (see `stasis_engine::lazy`), then exit once every page is in. With `--page-server
//! --address A --port P` the pages come from `stasis page-server --lazy-pages` (DIR holds the other
//! images); the page files it makes in DIR meanwhile are removed when it exits.
//!
//! It listens on `DIR/lazy-pages.socket` (removed when it exits), prints `lazy-pages listening on
//! PATH` on stdout once the restore may start, and writes a zero byte to `--status-fd FD`.

use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

/// Options of `stasis lazy-pages`.
#[derive(Args, Debug)]
pub struct LazyPagesArgs {
    /// The image directory the restore reads.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Write a zero byte to FD once listening.
    #[arg(long, value_name = "FD")]
    pub status_fd: Option<i32>,
    #[command(flatten)]
    pub out: crate::page_server::Output,
    /// Fetch the pages from `stasis page-server --lazy-pages` at --address and --port; DIR holds
    /// the other images.
    #[arg(long, requires_all = ["address", "port"])]
    pub page_server: bool,
    /// The page server's address (with --page-server).
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// The page server's port (with --page-server).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Internal: run as the daemon's keeper, reading its socket on stdin.
    #[arg(long, hide = true)]
    pub keeper: bool,
}

/// Runs `stasis lazy-pages`.
pub fn run(args: &LazyPagesArgs) -> anyhow::Result<u8> {
    if args.keeper {
        stasis_engine::lazy::keep(std::io::stdin().as_fd()).context("lazy-pages keeper")?;
        return Ok(0);
    }
    if !args.dir.is_dir() {
        bail!("lazy-pages: -D {}: not a directory", args.dir.display());
    }
    let remote = match (args.page_server, &args.address, args.port) {
        (true, Some(address), Some(port)) => {
            let conn = stasis_engine::pageserver::Connection::connect(address, port).context("lazy-pages")?;
            Some(std::rc::Rc::new(conn))
        }
        _ => None,
    };
    // With a page server, the page files are made here (what the restore reads itself fetched
    // first) and removed when the daemon ends: they are its cache.
    let fetched = match &remote {
        Some(conn) => stasis_engine::lazy::prepare_remote(&args.dir, conn)
            .context("lazy-pages: fetching the pages the restore reads")?,
        None => Vec::new(),
    };
    let _fetched = RemoveAllOnDrop(fetched);
    let path = args.dir.join(stasis_engine::mem::lazy::SOCKET);
    let listener = stasis_engine::lazy::listen(&path).context("lazy-pages")?;
    let _remove = RemoveOnDrop(path.clone());
    crate::page_server::announce(&format!("lazy-pages listening on {}", path.display()));
    if let Some(fd) = args.status_fd {
        crate::page_server::write_status(fd)?;
    }
    let (mut keeper, ours) = start_keeper(args)?;
    let result = stasis_engine::lazy::serve(listener.as_fd(), &args.dir, Some(ours), remote);
    // It ends as soon as we said we are done, or saw that we ended without saying so.
    let _ = keeper.wait();
    let report = result.with_context(|| format!("lazy-pages for {}", args.dir.display()))?;
    if args.out.json {
        crate::print_json(&serde_json::to_value(&report).context("encode the lazy-pages report")?);
    } else {
        let mib = report.bytes as f64 / (1024.0 * 1024.0);
        crate::page_server::announce(&format!(
            "lazy-pages served {} processes: {} faults, {mib:.1} MiB",
            report.processes, report.faults
        ));
    }
    Ok(0)
}

/// Start the keeper (`stasis lazy-pages --keeper`, our socket as its stdin): our end of the socket.
fn start_keeper(args: &LazyPagesArgs) -> anyhow::Result<(std::process::Child, std::os::fd::OwnedFd)> {
    let (ours, theirs) = stasis_engine::lazy::keeper_pair().context("lazy-pages: the keeper")?;
    let exe = std::env::current_exe().context("lazy-pages: locate the stasis binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["lazy-pages", "--keeper"]).stdin(std::process::Stdio::from(theirs)).stdout(std::process::Stdio::null());
    if let Some(log) = &args.out.log_file {
        cmd.arg("-o").arg(std::path::absolute(log).context("lazy-pages: the log file")?);
    }
    let child = cmd.spawn().context("lazy-pages: start the keeper")?;
    log::info!("lazy-pages: keeper is pid {}", child.id());
    Ok((child, ours))
}

struct RemoveAllOnDrop(Vec<PathBuf>);

impl Drop for RemoveAllOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(|p| drop(std::fs::remove_file(p)));
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
