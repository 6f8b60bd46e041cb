//! `stasis-bench`: see the library docs and `stasis-bench --help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use stasis_bench::cli::{Cli, Command};
use stasis_bench::report::Outcome;
use stasis_bench::run::{self, Config};
use stasis_bench::{error_chain, limits};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::ReadLimit { file, threads, populate }) = &cli.command {
        return read_limit(file, *threads, *populate);
    }
    if let Some(Command::Migrate { rate_mib, writer }) = &cli.command {
        return migrate(&cli, *rate_mib, writer.clone());
    }
    let config = match config(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("stasis-bench: cannot find this program's path: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match run::run(&config, &mut std::io::stderr()) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("stasis-bench: {}", error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("a report serializes"));
    } else {
        print!("{}", report.table());
    }
    let mut code = ExitCode::SUCCESS;
    if let Outcome::Failed { error } = &report.stasis {
        eprintln!("stasis-bench: stasis failed: {error}");
        code = ExitCode::FAILURE;
    }
    if let Outcome::Failed { error } = &report.threads {
        eprintln!("stasis-bench: threads failed: {error}");
        code = ExitCode::FAILURE;
    }
    if let Outcome::Failed { error } = &report.tree {
        eprintln!("stasis-bench: tree failed: {error}");
        code = ExitCode::FAILURE;
    }
    code
}

/// The `migrate` subcommand: its own rounds and report.
fn migrate(cli: &Cli, rate_mib: f64, writer: Option<PathBuf>) -> ExitCode {
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("stasis-bench: cannot find this program's path");
        return ExitCode::FAILURE;
    };
    let beside = |name: &str| -> PathBuf { exe.parent().unwrap_or(Path::new(".")).join(name) };
    let config = stasis_bench::migrate::Config {
        dir: cli.dir.clone(),
        rounds: cli.rounds,
        size_mib: cli.size_mib,
        rate_mib,
        stasis: cli.stasis.clone().unwrap_or_else(|| beside("stasis")),
        writer: writer.unwrap_or_else(|| beside("stasis-bench-writer")),
    };
    match stasis_bench::migrate::run(&config, &mut std::io::stderr()) {
        Ok(report) if cli.json => {
            println!("{}", serde_json::to_string_pretty(&report).expect("a report serializes"));
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stasis-bench migrate: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The hidden `read-limit` subcommand: one timed read, as JSON on stdout.
fn read_limit(file: &Path, threads: usize, populate: bool) -> ExitCode {
    match limits::pread_into_fresh_memory(file, threads, populate) {
        Ok(timing) => {
            println!("{}", serde_json::to_string(&timing).expect("a timing serializes"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stasis-bench read-limit: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The run's configuration; the binaries default to the ones beside this program.
fn config(cli: &Cli) -> std::io::Result<Config> {
    let exe = std::env::current_exe()?;
    let beside = |name: &str| -> PathBuf { exe.parent().unwrap_or(Path::new(".")).join(name) };
    let stasis = cli.stasis.clone().unwrap_or_else(|| beside("stasis"));
    Ok(Config {
        dir: cli.dir.clone(),
        rounds: cli.rounds,
        size_mib: cli.size_mib,
        memhog: cli.memhog.clone().unwrap_or_else(|| beside("stasis-bench-memhog")),
        threads: cli.threads,
        threads_program: cli.threads_program.clone().unwrap_or_else(|| beside("stasis-bench-threads")),
        tree: cli.tree,
        tree_program: cli.tree_program.clone().unwrap_or_else(|| beside("stasis-bench-tree")),
        only: cli.only,
        stasis: (!cli.limits_only).then_some(stasis),
        criu: !cli.no_criu,
        criu_program: cli.criu.clone(),
        exe,
    })
}
