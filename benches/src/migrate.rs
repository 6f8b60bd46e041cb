//! The migrate part (`stasis-bench migrate`): the downtime of `stasis migrate` of a process holding
//! SIZE MiB that rewrites RATE MiB/s of it, to a `stasis serve` on loopback (run as pid 1 of a PID
//! namespace of its own, `unshare -pf --mount-proc`, so that the source's pids are free there), from
//! the final freeze to the tree running on the other side, as `migrate --json` reports it.
//!
//! Beside it, in the same run, the limit of that downtime: the bytes of the final round moved once
//! over loopback TCP (the throughput measured by a sender and a receiver thread of this program)
//! and copied once into fresh anonymous memory (measured by a copy into a new allocation, each page
//! faulting in as a restore's do). Rounds interleave the two; the report gives medians.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use crate::workload::{Workload, GONE_TIMEOUT, READY_TIMEOUT};

/// Bytes the limits move per measurement.
const LIMIT_BYTES: usize = 256 << 20;
/// The target: 4 GiB written at 64 MiB/s migrates with under this downtime.
pub const TARGET_MS: f64 = 30.0;

/// What the migrate part runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub rounds: u32,
    pub size_mib: u64,
    pub rate_mib: f64,
    pub stasis: PathBuf,
    pub writer: PathBuf,
}

#[derive(Debug, Error)]
#[error("{0}")]
pub struct MigrateError(String);

fn fail(what: impl std::fmt::Display) -> MigrateError {
    MigrateError(what.to_string())
}

/// One round: a migration and the limits.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub downtime_ms: f64,
    pub final_bytes: u64,
    pub pre_copy_rounds: u64,
    pub total_ms: f64,
    pub tcp_mib_s: f64,
    pub fill_mib_s: f64,
    /// The final bytes over TCP once and into fresh memory once, at this round's rates.
    pub limit_ms: f64,
    /// Where the downtime went, as `migrate --json` splits it (its `stages`, in ms).
    pub stages: Stages,
}

/// The downtime's stages (ms): the final dump, its send, the restore on the other side (its
/// memory is most of the `tasks` stage), and the rest of the wait for its answer.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stages {
    pub dump_ms: f64,
    pub send_ms: f64,
    pub restore_ms: f64,
    pub tasks_ms: f64,
    pub answer_ms: f64,
}

impl Stages {
    fn of(v: &serde_json::Value) -> Stages {
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        Stages {
            dump_ms: f("dump_ms"),
            send_ms: f("send_ms"),
            restore_ms: f("prepare_ms") + f("setup_ms") + f("tasks_ms") + f("finish_ms"),
            tasks_ms: f("tasks_ms"),
            answer_ms: f("answer_ms"),
        }
    }
}

/// The medians of the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub size_mib: u64,
    pub rate_mib: f64,
    pub rounds: Vec<Round>,
    pub downtime_ms: f64,
    pub limit_ms: f64,
    pub final_bytes: u64,
    pub tcp_mib_s: f64,
    pub fill_mib_s: f64,
    pub target_ms: f64,
    /// The medians of each stage.
    pub stages: Stages,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

impl Report {
    /// The report as a table.
    pub fn table(&self) -> String {
        let mut t = format!(
            "migrate: {} MiB written at {} MiB/s, {} rounds (medians)\n",
            self.size_mib,
            self.rate_mib,
            self.rounds.len()
        );
        t += &format!("  downtime (freeze to running there)  {:>10.1} ms\n", self.downtime_ms);
        t += &format!(
            "  limit (final {:.1} MiB over TCP + into fresh memory)  {:>10.1} ms  ({:.1}x)\n",
            self.final_bytes as f64 / (1 << 20) as f64,
            self.limit_ms,
            if self.limit_ms > 0.0 { self.downtime_ms / self.limit_ms } else { 0.0 }
        );
        let st = &self.stages;
        t += &format!(
            "  of which: dump {:.1}, send {:.1}, restore there {:.1} (tasks {:.1}), answer {:.1} ms\n",
            st.dump_ms, st.send_ms, st.restore_ms, st.tasks_ms, st.answer_ms
        );
        t += &format!(
            "  loopback TCP {:.0} MiB/s, fill fresh memory {:.0} MiB/s; target (4 GiB at 64 MiB/s) {} ms\n",
            self.tcp_mib_s, self.fill_mib_s, self.target_ms
        );
        t
    }
}

/// Runs the rounds; progress goes to `log`.
pub fn run(cfg: &Config, log: &mut dyn Write) -> Result<Report, MigrateError> {
    std::fs::create_dir_all(&cfg.dir).map_err(|e| fail(format!("{}: {e}", cfg.dir.display())))?;
    let mut rounds = Vec::new();
    for k in 1..=cfg.rounds {
        let (tcp, fill) = (tcp_mib_s().map_err(|e| fail(format!("loopback TCP limit: {e}")))?, fill_mib_s());
        let m = migrate_once(cfg, k)?;
        let mib = m.0 as f64 / (1 << 20) as f64;
        let limit_ms = (mib / tcp + mib / fill) * 1000.0;
        let round = Round {
            downtime_ms: m.1,
            final_bytes: m.0,
            pre_copy_rounds: m.2,
            total_ms: m.3,
            tcp_mib_s: tcp,
            fill_mib_s: fill,
            limit_ms,
            stages: m.4,
        };
        let _ = writeln!(log, "migrate round {k}: downtime {:.1} ms (limit {limit_ms:.1} ms), final {mib:.1} MiB", m.1);
        rounds.push(round);
    }
    Ok(Report {
        size_mib: cfg.size_mib,
        rate_mib: cfg.rate_mib,
        downtime_ms: median(rounds.iter().map(|r| r.downtime_ms).collect()),
        limit_ms: median(rounds.iter().map(|r| r.limit_ms).collect()),
        final_bytes: median(rounds.iter().map(|r| r.final_bytes as f64).collect()) as u64,
        tcp_mib_s: median(rounds.iter().map(|r| r.tcp_mib_s).collect()),
        fill_mib_s: median(rounds.iter().map(|r| r.fill_mib_s).collect()),
        target_ms: TARGET_MS,
        stages: {
            let m = |f: fn(&Stages) -> f64| median(rounds.iter().map(|r| f(&r.stages)).collect());
            Stages {
                dump_ms: m(|s| s.dump_ms),
                send_ms: m(|s| s.send_ms),
                restore_ms: m(|s| s.restore_ms),
                tasks_ms: m(|s| s.tasks_ms),
                answer_ms: m(|s| s.answer_ms),
            }
        },
        rounds,
    })
}

/// `stasis serve` on 127.0.0.1 in a PID namespace of its own; killed (with the tree it restored) on
/// drop.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One migration: (final round bytes, downtime ms, pre-copy rounds, total ms, stages).
type Migrated = (u64, f64, u64, f64, Stages);

fn migrate_once(cfg: &Config, k: u32) -> Result<Migrated, MigrateError> {
    let there = cfg.dir.join(format!("migrate-there-{k}"));
    let stage = cfg.dir.join(format!("migrate-here-{k}"));
    let _ = std::fs::remove_dir_all(&there);
    let _ = std::fs::remove_dir_all(&stage);
    for d in [&there, &stage] {
        std::fs::create_dir_all(d).map_err(|e| fail(format!("{}: {e}", d.display())))?;
    }
    let result = migrate_in(cfg, &there, &stage);
    let _ = std::fs::remove_dir_all(&there);
    let _ = std::fs::remove_dir_all(&stage);
    result
}

fn migrate_in(cfg: &Config, there: &Path, stage: &Path) -> Result<Migrated, MigrateError> {
    let log = stage.with_extension("log");
    let mut workload = Workload::start(&cfg.writer, &format!("{}:{}", cfg.size_mib, cfg.rate_mib), &log)
        .map_err(|e| fail(crate::error_chain(&e)))?;
    workload.wait_ready(READY_TIMEOUT).map_err(|e| fail(crate::error_chain(&e)))?;
    let mut child = Command::new("unshare")
        .args(["-pf", "--kill-child", "--mount-proc"])
        .arg(&cfg.stasis)
        .args(["serve", "--port", "0", "--address", "127.0.0.1", "-D"])
        .arg(there)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("start unshare ... stasis serve: {e}")))?;
    let stdout = child.stdout.take().ok_or_else(|| fail("serve's stdout"))?;
    let _serve = Serve(child);
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| fail(format!("serve's first line: {e}")))?;
    let port = line
        .trim()
        .strip_prefix("serve listening on 127.0.0.1:")
        .ok_or_else(|| fail(format!("serve printed {line:?}")))?
        .to_owned();
    std::thread::spawn(move || io::copy(&mut reader, &mut io::sink()));
    let out = Command::new(&cfg.stasis)
        .args(["migrate", "-t", &workload.pid().to_string(), "--to", &format!("127.0.0.1:{port}"), "--json", "-D"])
        .arg(stage)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("run stasis migrate: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(fail(format!("stasis migrate: {}: {text}{}", out.status, String::from_utf8_lossy(&out.stderr))));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(format!("migrate's JSON: {e}: {text}")))?;
    let rounds = v["rounds"].as_array().cloned().unwrap_or_default();
    let final_bytes = rounds.last().and_then(|r| r["bytes"].as_u64()).unwrap_or(0);
    let downtime = v["downtime_ms"].as_f64().ok_or_else(|| fail(format!("no downtime_ms in {text}")))?;
    let total = v["total_ms"].as_f64().unwrap_or(0.0);
    workload.reap(GONE_TIMEOUT).map_err(|e| fail(crate::error_chain(&e)))?;
    let _ = std::fs::remove_file(&log);
    Ok((final_bytes, downtime, rounds.len().saturating_sub(1) as u64, total, Stages::of(&v["stages"])))
}

/// Loopback TCP throughput: [`LIMIT_BYTES`] from a thread of ours to another.
fn tcp_mib_s() -> io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    });
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    for _ in 0..LIMIT_BYTES / chunk.len() {
        s.write_all(&chunk)?;
    }
    drop(s);
    let got = reader.join().map_err(|_| io::Error::other("the reader thread panicked"))??;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(got as f64 / (1 << 20) as f64 / secs)
}

/// Copying into fresh anonymous memory: [`LIMIT_BYTES`] into a new allocation (pages fault in).
fn fill_mib_s() -> f64 {
    let src = vec![0xa5u8; LIMIT_BYTES];
    let start = Instant::now();
    let mut dst = vec![0u8; LIMIT_BYTES];
    dst.copy_from_slice(&src);
    std::hint::black_box(&dst);
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    drop(dst);
    LIMIT_BYTES as f64 / (1 << 20) as f64 / secs.max(Duration::from_nanos(1).as_secs_f64())
}
