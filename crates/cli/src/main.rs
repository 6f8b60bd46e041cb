//! `stasis`: checkpoint and restore Linux process trees.
//!
//! ```text
//! stasis check    [--feature NAME] [--extra|--all] [--json]
//! stasis dump     -t PID [-D DIR] [-R] [-j] [--fsync] [--compress] [--auto-dedup] [-o LOG] [-v[N]] [--json]
//! stasis pre-dump -t PID [-D DIR] [--prev-images-dir DIR] [--track-mem] [--json]
//! stasis restore  [-D DIR] [-d] [--pidfile FILE] [-j] [-o LOG] [-v[N]] [--json]
//! stasis show     DIR [--json]
//! stasis dedup    [-D DIR] [--json]                (CRIU's dedup: parents give up pages DIR holds)
//! stasis swrk     FD                              (CRIU's RPC; also as `criu swrk FD`)
//! stasis page-server -D DIR --port PORT [--address ADDR] [-d] [--status-fd FD] [-o LOG] [-v]
//! stasis lazy-pages  -D DIR [--page-server --address A --port P] [--status-fd FD] [-o LOG] [-v]
//! stasis migrate  -t PID --to HOST:PORT [--tcp-established] [--max-rounds N] [-D DIR] [--json]
//! stasis serve    -D DIR --port PORT [--address ADDR] [--tcp-established] [--pidfile FILE] [--json]
//! ```
//!
//! `dump`, `pre-dump`, `restore` and `check` take every option of CRIU 4.2's (see
//! [`criu_opts`]): done as CRIU does, accepted with no effect where stasis' design makes them
//! moot, or refused by name (exit 1, before anything is touched) where the feature is not built.
//!
//! # Exit status
//! - `0`: success (for `check`: every required kernel feature is present).
//! - `1`: the operation failed (for `check`: a required feature is missing), or an option's
//!   feature is not built. The error is printed on stderr as
//!   `stasis: error: <cause>: <cause of that>...`; with `--json`, stdout also gets
//!   `{"error": "<the same chain>"}`.
//! - `2`: usage error (unknown option, missing argument, unreadable `--config` file).
//! - `restore` without `-d` exits with the restored process's own status once it ends: its exit
//!   code, or 128 + the signal number if a signal killed it (as a shell reports it).

mod action_script;
mod check;
mod criu_opts;
mod dump;
mod lazy_pages;
mod logger;
mod migrate;
mod page_server;
mod progress;
mod restore;
mod serve;
mod show;
mod swrk;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::criu_opts::{CriuArgs, CriuCommand};

/// Checkpoint and restore Linux process trees.
#[derive(Parser, Debug)]
#[command(name = "stasis", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Probe the kernel and CPU for the features stasis uses.
    Check(check::CheckArgs),
    /// Checkpoint a process tree into an image directory.
    Dump(dump::DumpArgs),
    /// Save the tree's memory while it runs on and track its writes, for an incremental dump.
    PreDump(dump::DumpArgs),
    /// Restore a process tree from an image directory.
    Restore(restore::RestoreArgs),
    /// Print the contents of an image directory.
    Show(show::ShowArgs),
    /// Punch out of the parent images the pages an image holds itself (CRIU's `dedup`).
    Dedup(show::DedupArgs),
    /// Serve CRIU's RPC on a SOCK_SEQPACKET socket (what runc, crun and Podman run as `criu swrk FD`).
    Swrk(swrk::SwrkArgs),
    /// Internal: keep a pre-dump's write tracking until the next round (see
    /// `stasis_engine::holder`).
    #[command(name = "__track-holder", hide = true)]
    TrackHolder { dir: std::path::PathBuf },
    /// Receive the page files of a `dump --page-server` over TCP.
    PageServer(page_server::PageServerArgs),
    /// Serve the pages of a `restore --lazy-pages` on demand (userfaultfd).
    LazyPages(lazy_pages::LazyPagesArgs),
    /// Move a running tree to `stasis serve` elsewhere (pre-copy rounds, then a final dump).
    Migrate(migrate::MigrateArgs),
    /// Receive one `stasis migrate` into an image directory and restore it.
    Serve(serve::ServeArgs),
}

impl Command {
    /// `--json`, and CRIU's options with the command they were given to.
    fn parts(&self) -> (bool, Option<(&CriuArgs, CriuCommand)>) {
        match self {
            Command::Check(a) => (a.json, Some((&a.criu, CriuCommand::Check))),
            Command::Dump(a) => (a.json, Some((&a.criu, CriuCommand::Dump))),
            Command::PreDump(a) => (a.json, Some((&a.criu, CriuCommand::PreDump))),
            Command::Restore(a) => (a.json, Some((&a.criu, CriuCommand::Restore))),
            Command::Show(a) => (a.json, None),
            Command::Dedup(a) => (a.json, None),
            Command::Swrk(_) => (false, None),
            Command::TrackHolder { .. } => (false, None),
            Command::PageServer(a) => (a.out.json, None),
            Command::LazyPages(a) => (a.out.json, None),
            Command::Migrate(a) => (a.out.json, None),
            Command::Serve(a) => (a.out.json, None),
        }
    }

    /// The log file and level of a command that takes no CRIU options but has its own.
    fn own_log(&self) -> Option<(Option<&std::path::Path>, log::LevelFilter)> {
        match self {
            Command::PageServer(a) => Some(a.out.log()),
            Command::LazyPages(a) => Some(a.out.log()),
            Command::Migrate(a) => Some(a.out.log()),
            Command::Serve(a) => Some(a.out.log()),
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(text) = as_criu_version(&argv) {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let args = match criu_opts::with_config(argv) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("stasis: error: {err:#}");
            return ExitCode::from(2);
        }
    };
    let cli = parse(args).unwrap_or_else(|e| e.exit());
    let (json, criu) = cli.command.parts();
    let result = start(criu, cli.command.own_log()).and_then(|()| run(&cli.command));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let chain = format!("{err:#}");
            if criu.is_some_and(|(c, _)| c.log_file().is_some()) {
                // The log file gets the error too; on stderr it is printed once, below.
                log::error!("{chain}");
            }
            if json {
                print_json(&serde_json::json!({ "error": chain }));
            }
            eprintln!("stasis: error: {chain}");
            ExitCode::from(1)
        }
    }
}

/// Installed (or symlinked) as `criu`, `criu --version` (or `-V`) answers as CRIU does, with
/// the version `stasis swrk` answers, since scripts parse it (`Version: 4.2`); as `stasis`,
/// clap prints stasis' own.
fn as_criu_version(argv: &[std::ffi::OsString]) -> Option<String> {
    let name = argv.first().map(std::path::Path::new).and_then(|p| p.file_name())?;
    let asks = argv.len() == 2 && (argv[1] == "--version" || argv[1] == "-V");
    (name == "criu" && asks).then(|| {
        let (major, minor) = swrk::CRIU_VERSION;
        format!("Version: {major}.{minor}\nstasis {} (CRIU's interface)\n", env!("CARGO_PKG_VERSION"))
    })
}

/// Parse the command line; `dump` and `pre-dump` need `-t` (a usage error, as a missing
/// argument is).
fn parse(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let cli = Cli::try_parse_from(args)?;
    if let Command::Dump(a) | Command::PreDump(a) = &cli.command {
        if a.criu.tree().is_none() {
            let msg = "the following required argument was not provided: -t, --tree <PID>";
            return Err(Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, msg));
        }
    }
    Ok(cli)
}

/// Before the command: `--close`, the logger (`-o`, `-v`), and the refusal of the options whose
/// feature is not built.
fn start(
    criu: Option<(&CriuArgs, CriuCommand)>,
    own_log: Option<(Option<&std::path::Path>, log::LevelFilter)>,
) -> anyhow::Result<()> {
    let Some((c, cmd)) = criu else {
        let (file, level) = own_log.unwrap_or((None, log::LevelFilter::Warn));
        return logger::init(file, level);
    };
    for fd in c.close_fds() {
        stasis_sys::fd::close_inherited(fd);
    }
    logger::init(c.log_file().as_deref(), c.level())?;
    c.check(cmd)
}

/// Runs one command; `Ok` carries the exit status.
fn run(command: &Command) -> anyhow::Result<u8> {
    match command {
        Command::Check(a) => check::run(a),
        Command::Dump(a) => dump::run(a),
        Command::PreDump(a) => dump::run_pre_dump(a),
        Command::Restore(a) => restore::run(a),
        Command::Show(a) => show::run(a),
        Command::Dedup(a) => show::dedup(a),
        Command::Swrk(a) => swrk::run(a),
        Command::TrackHolder { dir } => {
            use std::os::fd::AsFd;
            let control = std::io::stdin().as_fd().try_clone_to_owned()?;
            stasis_engine::holder::serve(control, dir.clone())?;
            Ok(0)
        }
        Command::PageServer(a) => page_server::run(a),
        Command::LazyPages(a) => lazy_pages::run(a),
        Command::Migrate(a) => migrate::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

/// Prints one JSON value on stdout.
fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).expect("a JSON value always serializes");
    let mut out = std::io::stdout().lock();
    // Nothing sensible is left to do when stdout is gone (a closed pipe).
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests;
