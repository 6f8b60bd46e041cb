//! `stasis migrate -t PID --to HOST:PORT`: move the tree to `stasis serve` on another host (or
//! namespace). Rounds of pre-copy (`pre-dump --track-mem`, each sent while the tree runs on) until
//! the dirty set stops shrinking or `--max-rounds`, then the final freeze and dump of what is left,
//! sent; the source tree is killed only once the other side says it runs. If anything fails before
//! that, the source tree is thawed and runs on. See `docs/migration.md`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser};
use stasis_engine::migrate::{RemoteStages, RoundSent, Sender};
use stasis_engine::{DumpOptions, DumpReport, Handoff};

/// Options of `stasis migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// Root of the tree to migrate.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    pub pid: i32,
    /// Where `stasis serve` listens: `HOST:PORT` (`[ADDR]:PORT` for IPv6).
    #[arg(long, value_name = "HOST:PORT")]
    pub to: String,
    /// Migrate established TCP connections (repair mode; the network lock is taken at the final
    /// freeze and removed by the restore on the other side).
    #[arg(long)]
    pub tcp_established: bool,
    /// Rounds of pre-copy at most, before the final one (0: the final dump alone).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_rounds: u32,
    /// Post-copy: no pre-copy rounds; the final round sends every image but the page files, the
    /// other side restores with lazy pages fetched from here, served until every page is there.
    #[arg(long)]
    pub lazy: bool,
    /// Local directory for the rounds' images while they are sent (default: a new directory in
    /// $TMPDIR, removed at the end).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub out: crate::page_server::Output,
}

/// `stasis dump`'s own options, for the rounds.
#[derive(Parser, Debug)]
struct AsDump {
    #[command(flatten)]
    args: crate::dump::DumpArgs,
}

/// One round, as printed and reported.
#[derive(Debug, Clone, serde::Serialize)]
struct Round {
    round: u32,
    last: bool,
    pages: u64,
    bytes: u64,
    /// The pre-dump (or dump) alone.
    dump_ms: f64,
    /// Sending its files and (but for the last round) the other side's ok.
    send_ms: f64,
    /// The tree was frozen (for the last round: from the freeze to the kill).
    frozen_ms: f64,
}

/// What the final round's hand-off measured, from the freeze.
#[derive(Debug, Clone, Copy, Default)]
struct Final {
    written: Duration,
    sent: Duration,
    running: Duration,
    remote_pid: i32,
    bytes: u64,
    /// The other side's stages, when it timed them.
    remote: Option<RemoteStages>,
}

/// The downtime, stage by stage (ms), as printed and reported: from the freeze, the image written
/// (`dump`), sent (`send`, into the connection), then on the other side the last round received
/// and the restore's stages, and what is left of the wait for its answer (`answer`: the frames in
/// flight, the time the receiver took to read what we had already sent); after the answer, the
/// source tree killed (`kill`).
#[derive(Debug, Clone, serde::Serialize)]
struct Downtime {
    #[serde(skip)]
    total_ms: f64,
    dump_ms: f64,
    send_ms: f64,
    receive_ms: Option<f64>,
    prepare_ms: Option<f64>,
    setup_ms: Option<f64>,
    tasks_ms: Option<f64>,
    finish_ms: Option<f64>,
    answer_ms: f64,
    kill_ms: f64,
}

impl Downtime {
    fn of(done: &Final, frozen: Duration) -> Downtime {
        let r = done.remote.map(|r| r.restore);
        let restored = r.map_or(Duration::ZERO, |r| r.prepare + r.setup + r.tasks + r.finish);
        let waited = done.running.saturating_sub(done.sent);
        Downtime {
            total_ms: ms(done.running),
            dump_ms: ms(done.written),
            send_ms: ms(done.sent.saturating_sub(done.written)),
            receive_ms: done.remote.map(|r| ms(r.receive)),
            prepare_ms: r.map(|r| ms(r.prepare)),
            setup_ms: r.map(|r| ms(r.setup)),
            tasks_ms: r.map(|r| ms(r.tasks)),
            finish_ms: r.map(|r| ms(r.finish)),
            answer_ms: ms(waited.saturating_sub(restored)),
            kill_ms: ms(frozen.saturating_sub(done.running)),
        }
    }

    fn line(&self) -> String {
        let mut s = format!("downtime {:.1} ms: dump {:.1}, send {:.1}", self.total_ms, self.dump_ms, self.send_ms);
        if let (Some(rc), Some(p), Some(su), Some(t), Some(f)) =
            (self.receive_ms, self.prepare_ms, self.setup_ms, self.tasks_ms, self.finish_ms)
        {
            s += &format!(
                ", there: received {rc:.1}, restore {:.1} (prepare {p:.1}, setup {su:.1}, tasks {t:.1}, finish {f:.1})",
                p + su + t + f
            );
        }
        s += &format!(", answer {:.1}; source killed {:.1} ms later", self.answer_ms, self.kill_ms);
        s
    }
}

/// The staging directory, removed at the end unless the caller gave it.
struct Staging {
    path: PathBuf,
    ours: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        let result = match self.ours {
            true => std::fs::remove_dir_all(&self.path),
            false => (1..)
                .map(|k| self.path.join(k.to_string()))
                .take_while(|d| d.exists())
                .try_for_each(std::fs::remove_dir_all),
        };
        if let Err(e) = result {
            log::warn!("migrate: {} could not be removed: {e}", self.path.display());
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `stasis migrate`.
pub fn run(args: &MigrateArgs) -> anyhow::Result<u8> {
    let start = Instant::now();
    // Before anything is frozen: no receiver, no migration.
    let sender = Arc::new(Sender::connect(&args.to).with_context(|| format!("migrate to {}", args.to))?);
    let staging = staging(args)?;
    let mut rounds: Vec<Round> = Vec::new();
    let pre = if args.lazy { Ok(()) } else { pre_copy(args, &sender, &staging.path, &mut rounds) };
    let result = pre.and_then(|()| {
        let index = rounds.len() as u32 + 1;
        final_round(args, &sender, &staging.path, index)
    });
    let (report, done) = match result {
        Ok(r) => r,
        Err(e) => {
            // The tracking of the last pre-dump, if it is still held, ends: the tree runs on as it was.
            let made = (1..).map(|k: u32| staging.path.join(k.to_string())).take_while(|d| d.is_dir());
            for dir in made.filter(|d| d.join(stasis_engine::holder::SOCKET).exists()) {
                drop(stasis_engine::holder::take(&dir));
            }
            return Err(e.context(format!("migrate of pid {} to {} (the tree runs on here)", args.pid, args.to)));
        }
    };
    rounds.push(Round {
        round: rounds.len() as u32 + 1,
        last: true,
        pages: report.pages,
        bytes: done.bytes,
        dump_ms: ms(done.written),
        send_ms: ms(done.sent - done.written),
        frozen_ms: ms(report.frozen),
    });
    let total = start.elapsed();
    let downtime = Downtime::of(&done, report.frozen);
    if args.out.json {
        let value = serde_json::json!({
            "pid": args.pid,
            "to": args.to,
            "remote_pid": done.remote_pid,
            "rounds": rounds,
            "downtime_ms": ms(done.running),
            "restore_ms": ms(done.running - done.sent),
            "stages": downtime,
            "total_ms": ms(total),
        });
        crate::print_json(&value);
    } else {
        let last = rounds.last().expect("the final round");
        println!("{}", round_line(last));
        println!(
            "migrated pid {} to {} (pid {} there) in {:.3} s: {}",
            args.pid,
            args.to,
            done.remote_pid,
            total.as_secs_f64(),
            downtime.line(),
        );
    }
    Ok(0)
}

fn round_line(r: &Round) -> String {
    let what = if r.last { "final" } else { "pre-copy" };
    format!(
        "round {} ({what}): {} pages, {:.1} MiB, dump {:.1} ms, send {:.1} ms, frozen {:.1} ms",
        r.round,
        r.pages,
        r.bytes as f64 / (1024.0 * 1024.0),
        r.dump_ms,
        r.send_ms,
        r.frozen_ms
    )
}

fn staging(args: &MigrateArgs) -> anyhow::Result<Staging> {
    if let Some(dir) = &args.dir {
        if !dir.is_dir() {
            bail!("migrate: -D {}: not a directory", dir.display());
        }
        if dir.join("1").exists() {
            bail!("migrate: -D {}: already holds a round (1/)", dir.display());
        }
        return Ok(Staging { path: std::path::absolute(dir)?, ours: false });
    }
    let path = std::env::temp_dir().join(format!("stasis-migrate-{}-{}", args.pid, std::process::id()));
    std::fs::create_dir(&path).with_context(|| format!("migrate: create {}", path.display()))?;
    Ok(Staging { path, ours: true })
}

/// The engine's options of a round: `pre-dump` (or `dump`) `-t PID -D STAGING/K --track-mem
/// [--prev-images-dir ../K-1]`.
fn round_options(args: &MigrateArgs, staging: &Path, index: u32, last: bool) -> anyhow::Result<DumpOptions> {
    let mut argv: Vec<std::ffi::OsString> = vec![if last { "dump" } else { "pre-dump" }.into()];
    argv.extend(["-t".into(), args.pid.to_string().into(), "-D".into(), staging.join(index.to_string()).into()]);
    if !last || index > 1 {
        argv.push("--track-mem".into());
    }
    if index > 1 {
        argv.extend(["--prev-images-dir".into(), format!("../{}", index - 1).into()]);
    }
    if last && args.tcp_established {
        argv.push("--tcp-established".into());
    }
    let parsed = AsDump::try_parse_from(argv).context("the dump's options")?;
    let cmd = if last { crate::criu_opts::CriuCommand::Dump } else { crate::criu_opts::CriuCommand::PreDump };
    parsed.args.criu.check(cmd)?;
    crate::dump::options(&parsed.args)
}

/// Rounds of pre-copy, each pre-dumped and sent, until the dirty set stops shrinking.
fn pre_copy(args: &MigrateArgs, sender: &Sender, staging: &Path, rounds: &mut Vec<Round>) -> anyhow::Result<()> {
    for index in 1..=args.max_rounds {
        let opts = round_options(args, staging, index, false)?;
        let t = Instant::now();
        let report = stasis_engine::pre_dump(&opts, &mut |_| {})
            .with_context(|| format!("round {index}: pre-dump into {}", opts.dir.display()))?;
        let dumped = t.elapsed();
        let t = Instant::now();
        let sent: RoundSent =
            sender.send_round(index, false, &opts.dir, None).with_context(|| format!("round {index}"))?;
        let round = Round {
            round: index,
            last: false,
            pages: report.pages,
            bytes: sent.bytes,
            dump_ms: ms(dumped),
            send_ms: ms(t.elapsed()),
            frozen_ms: ms(report.frozen),
        };
        if !args.out.json {
            println!("{}", round_line(&round));
        }
        let before = rounds.last().map(|r| r.pages);
        rounds.push(round);
        if report.pages == 0 || before.is_some_and(|b| report.pages >= b) {
            log::info!("migrate: the dirty set stopped shrinking at round {index} ({} pages)", report.pages);
            break;
        }
    }
    Ok(())
}

/// The final freeze and dump; the image is sent from the dump's hand-off, which returns once the
/// tree runs on the other side (or fails, and the tree is thawed).
fn final_round(
    args: &MigrateArgs,
    sender: &Arc<Sender>,
    staging: &Path,
    index: u32,
) -> anyhow::Result<(DumpReport, Final)> {
    let mut opts = round_options(args, staging, index, true)?;
    let measured = Arc::new(Mutex::new(Final::default()));
    let (s, m) = (sender.clone(), measured.clone());
    let pages = Arc::new(Mutex::new(None));
    let (lazy, p) = (args.lazy, pages.clone());
    opts.handoff = Some(Handoff(Arc::new(move |dir: &Path, frozen_at: Instant| {
        let written = frozen_at.elapsed();
        let mut port = None;
        if lazy {
            // Post-copy: the page files stay here, served to the other side's lazy-pages daemon.
            let (listener, listening) = s.page_listener()?;
            port = Some(listening);
            let dir = dir.to_owned();
            let served = std::thread::spawn(move || stasis_engine::pageserver::serve_pages(&listener, &dir));
            *p.lock().expect("not poisoned") = Some(served);
        }
        let sent = s.send_round(index, true, dir, port)?;
        let sent_at = frozen_at.elapsed();
        let (remote_pid, remote) = s.running()?;
        let running = frozen_at.elapsed();
        *m.lock().expect("not poisoned") =
            Final { written, sent: sent_at, running, remote_pid, bytes: sent.bytes, remote };
        log::info!("migrate: pid {remote_pid} runs on {} after {running:?} of downtime", s.peer());
        Ok(())
    })));
    let report = stasis_engine::dump(&opts, &mut |_| {})
        .with_context(|| format!("round {index} (final): dump into {}", opts.dir.display()))?;
    let done = *measured.lock().expect("not poisoned");
    if let Some(served) = pages.lock().expect("not poisoned").take() {
        // The tree is gone here; its pages go on until the other side has them all.
        let served = served.join().map_err(|_| anyhow::anyhow!("the page source's thread panicked"))?;
        let served = served.context("post-copy: serving the pages to the other side")?;
        log::info!("migrate: {} bytes of pages served to {}", served.bytes, served.peer);
    }
    Ok((report, done))
}
