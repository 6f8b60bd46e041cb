//! The results: samples of every round, their medians, the ratios to the limits, the targets, the
//! per-thread costs of the threads part, the per-process costs of the tree part, and the two ways of
//! showing them (a table for people, JSON for machines).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::threads::{ThreadsSamples, ThreadsSummary, TimingSamples, Timings};
use crate::tree::{TreeSamples, TreeSummary};

/// Target for dump time / write limit.
pub const DUMP_TARGET: f64 = 1.5;
/// Target for restore time / read limit.
pub const RESTORE_TARGET: f64 = 2.0;

/// The measurements of one tool, one entry per round.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ToolSamples {
    /// Wall time of the dump command.
    pub dump_secs: Vec<f64>,
    /// Time the process was frozen, as the tool reports it (stasis only).
    pub frozen_secs: Vec<f64>,
    /// Wall time of the restore command.
    pub restore_secs: Vec<f64>,
    /// Disk usage of the image directory.
    pub image_bytes: Vec<u64>,
}

/// The measurements of every round.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Samples {
    /// `dd` of the workload's size to the directory.
    pub write_limit_secs: Vec<f64>,
    /// The read limit of each round: the fastest of the four ways below.
    pub read_limit_secs: Vec<f64>,
    /// One read loop of the same file into fresh memory.
    #[serde(default)]
    pub read_single_secs: Vec<f64>,
    /// One thread per CPU, each `pread`ing its share of the file into fresh memory.
    #[serde(default)]
    pub read_parallel_secs: Vec<f64>,
    /// The read loop into memory populated first (`MADV_POPULATE_WRITE`, timed too).
    #[serde(default)]
    pub read_populated_secs: Vec<f64>,
    /// The parallel `pread`s, each thread populating its share first.
    #[serde(default)]
    pub read_parallel_populated_secs: Vec<f64>,
    pub stasis: ToolSamples,
    /// stasis dumping with `--compress` (restore recognises the compressed image).
    #[serde(default)]
    pub stasis_compressed: ToolSamples,
    pub criu: ToolSamples,
    pub threads: ThreadsSamples,
    pub tree: TreeSamples,
}

/// Medians of the limits.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub write_secs: f64,
    pub write_gib_per_sec: f64,
    pub read_secs: f64,
    pub read_gib_per_sec: f64,
    /// Medians of the four ways of reading (see `limits::READ_METHODS`), where measured.
    pub read_single_secs: Option<f64>,
    pub read_parallel_secs: Option<f64>,
    pub read_populated_secs: Option<f64>,
    pub read_parallel_populated_secs: Option<f64>,
}

/// Medians of one tool and their ratios to the limits.
#[derive(Debug, Clone, Serialize)]
pub struct ToolSummary {
    pub dump_secs: f64,
    pub frozen_secs: Option<f64>,
    pub restore_secs: f64,
    pub image_bytes: u64,
    /// dump time / write limit time.
    pub dump_ratio: f64,
    /// restore time / read limit time.
    pub restore_ratio: f64,
    pub dump_target: f64,
    pub restore_target: f64,
    pub dump_within_target: bool,
    pub restore_within_target: bool,
}

/// CRIU's medians on a workload and stasis' over them, measured in the same rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct VsCriu {
    pub criu_dump_secs: f64,
    pub criu_restore_secs: f64,
    /// stasis dump / CRIU dump.
    pub dump_ratio: f64,
    /// stasis restore / CRIU restore.
    pub restore_ratio: f64,
}

impl VsCriu {
    /// stasis' medians `stasis` against CRIU's samples; `None` without CRIU samples.
    pub fn of(stasis: &Timings, criu: &TimingSamples) -> Option<Self> {
        let c = criu.medians()?;
        Some(Self::from_medians((stasis.dump_secs, stasis.restore_secs), (c.dump_secs, c.restore_secs)))
    }

    /// From the (dump, restore) medians of both tools.
    pub fn from_medians(stasis: (f64, f64), criu: (f64, f64)) -> Self {
        Self {
            criu_dump_secs: criu.0,
            criu_restore_secs: criu.1,
            dump_ratio: stasis.0 / criu.0,
            restore_ratio: stasis.1 / criu.1,
        }
    }

    /// The memory part's: where both tools were measured.
    pub fn of_tools(stasis: &ToolOutcome, criu: &ToolOutcome) -> Option<Self> {
        match (stasis, criu) {
            (Outcome::Measured(s), Outcome::Measured(c)) => {
                Some(Self::from_medians((s.dump_secs, s.restore_secs), (c.dump_secs, c.restore_secs)))
            }
            _ => None,
        }
    }
}

/// The lines of CRIU's medians and stasis' ratios to them in the threads and tree sections.
fn criu_rows(out: &mut String, what: &str, criu: Option<&VsCriu>, error: Option<&str>) {
    if let Some(e) = error {
        let _ = writeln!(out, "criu: failed ({e})");
    }
    if let Some(v) = criu {
        let (d, r) = (format!("{:.3} s", v.criu_dump_secs), format!("{:.3} s", v.criu_restore_secs));
        let _ = writeln!(out, "{:<36} {d:>10} {:>10} {r:>10}", format!("criu, {what}"), "");
        let (d, r) = (format!("{:.2}x", v.dump_ratio), format!("{:.2}x", v.restore_ratio));
        let _ = writeln!(out, "{:<36} {d:>10} {:>10} {r:>10}", "stasis / criu", "");
    }
}

/// How a measurement went: its summary, or why there is none.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome<T> {
    Measured(T),
    /// The tool failed; no numbers.
    Failed {
        error: String,
    },
    /// The tool cannot run here.
    Unavailable {
        reason: String,
    },
    /// The user asked not to run it.
    Skipped {
        reason: String,
    },
}

/// How the measurement of a tool on the memory workload went.
pub type ToolOutcome = Outcome<ToolSummary>;

/// How the threads part went.
pub type ThreadsOutcome = Outcome<ThreadsSummary>;

/// How the tree part went.
pub type TreeOutcome = Outcome<TreeSummary>;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dir: PathBuf,
    pub rounds: u32,
    pub size_mib: u64,
    /// `None` when the memory part was not run (`--only threads`, `--only tree`).
    pub limits: Option<Limits>,
    pub stasis: ToolOutcome,
    /// stasis with `--compress`: its times against the same limits, its (compressed) image size.
    pub stasis_compressed: ToolOutcome,
    pub criu: ToolOutcome,
    /// stasis over CRIU on the memory workload, where both were measured.
    pub memory_vs_criu: Option<VsCriu>,
    pub threads: ThreadsOutcome,
    pub tree: TreeOutcome,
    pub samples: Samples,
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The median of byte counts.
fn median_bytes(values: &[u64]) -> Option<u64> {
    let as_f64: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    median(&as_f64).map(|m| m.round() as u64)
}

impl Limits {
    /// Medians of the limit samples for `size_mib` MiB moved; `None` without samples.
    pub fn from_samples(samples: &Samples, size_mib: u64) -> Option<Self> {
        let write_secs = median(&samples.write_limit_secs)?;
        let read_secs = median(&samples.read_limit_secs)?;
        let gib = size_mib as f64 / 1024.0;
        Some(Self {
            write_secs,
            write_gib_per_sec: gib / write_secs,
            read_secs,
            read_gib_per_sec: gib / read_secs,
            read_single_secs: median(&samples.read_single_secs),
            read_parallel_secs: median(&samples.read_parallel_secs),
            read_populated_secs: median(&samples.read_populated_secs),
            read_parallel_populated_secs: median(&samples.read_parallel_populated_secs),
        })
    }
}

impl ToolSummary {
    /// Medians of one tool's samples against `limits`; `None` without samples.
    pub fn from_samples(samples: &ToolSamples, limits: &Limits) -> Option<Self> {
        let dump_secs = median(&samples.dump_secs)?;
        let restore_secs = median(&samples.restore_secs)?;
        let dump_ratio = dump_secs / limits.write_secs;
        let restore_ratio = restore_secs / limits.read_secs;
        Some(Self {
            dump_secs,
            frozen_secs: median(&samples.frozen_secs),
            restore_secs,
            image_bytes: median_bytes(&samples.image_bytes)?,
            dump_ratio,
            restore_ratio,
            dump_target: DUMP_TARGET,
            restore_target: RESTORE_TARGET,
            dump_within_target: dump_ratio <= DUMP_TARGET,
            restore_within_target: restore_ratio <= RESTORE_TARGET,
        })
    }
}

impl Report {
    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let gib = self.size_mib as f64 / 1024.0;
        let _ = writeln!(out, "stasis-bench: medians of {} rounds, in {}\n", self.rounds, self.dir.display());
        if let Some(l) = &self.limits {
            let _ = writeln!(out, "memory: {} MiB", self.size_mib);
            let _ = writeln!(out, "{:<20} {:>9} {:>13}   {:<16} target", "", "time", "throughput", "ratio to limit");
            row(&mut out, "write limit (dd)", l.write_secs, gib, "", "");
            row(&mut out, "read limit", l.read_secs, gib, "best of those below", "");
            let ways = [
                ("  read", l.read_single_secs),
                ("  parallel pread", l.read_parallel_secs),
                ("  populate + read", l.read_populated_secs),
                ("  populated parallel", l.read_parallel_populated_secs),
            ];
            for (name, secs) in ways {
                if let Some(secs) = secs {
                    row(&mut out, name, secs, gib, "", "");
                }
            }
            tool_rows(&mut out, "stasis", &self.stasis, gib);
            tool_rows(&mut out, "stasis+zstd", &self.stasis_compressed, gib);
            if let (Outcome::Measured(plain), Outcome::Measured(packed)) = (&self.stasis, &self.stasis_compressed) {
                let ratio = plain.image_bytes as f64 / packed.image_bytes.max(1) as f64;
                let _ = writeln!(out, "{:<20} {ratio:.2}x smaller (the workload's pattern)", "compression");
            }
            tool_rows(&mut out, "criu", &self.criu, gib);
            if let Some(v) = &self.memory_vs_criu {
                let ratios = format!("dump {:.2}x, restore {:.2}x", v.dump_ratio, v.restore_ratio);
                let _ = writeln!(out, "{:<20} {ratios}", "stasis / criu");
            }
            out.push('\n');
        }
        threads_rows(&mut out, &self.threads);
        out.push('\n');
        tree_rows(&mut out, &self.tree);
        out
    }
}

/// One line of the table.
fn row(out: &mut String, name: &str, secs: f64, gib: f64, ratio: &str, target: &str) {
    let line = format!("{name:<20} {:>7.3} s {:>7.2} GiB/s   {ratio:<16} {target}", secs, gib / secs);
    let _ = writeln!(out, "{}", line.trim_end());
}

/// The summary of `outcome`, or else one line saying why there is none.
fn measured<'a, T>(out: &mut String, what: &str, outcome: &'a Outcome<T>) -> Option<&'a T> {
    let _ = match outcome {
        Outcome::Measured(summary) => return Some(summary),
        Outcome::Failed { error } => writeln!(out, "{what}: failed ({error})"),
        Outcome::Unavailable { reason } => writeln!(out, "{what}: not available ({reason})"),
        Outcome::Skipped { reason } => writeln!(out, "{what}: skipped ({reason})"),
    };
    None
}

/// The lines of one tool, or one line saying why it has none.
fn tool_rows(out: &mut String, tool: &str, outcome: &ToolOutcome, gib: f64) {
    let Some(s) = measured(out, tool, outcome) else {
        return;
    };
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    let dump_target = format!("<= {}x {}", s.dump_target, verdict(s.dump_within_target));
    let restore_target = format!("<= {}x {}", s.restore_target, verdict(s.restore_within_target));
    let dump_ratio = format!("{:.2}x write", s.dump_ratio);
    let restore_ratio = format!("{:.2}x read", s.restore_ratio);
    row(out, &format!("{tool} dump"), s.dump_secs, gib, &dump_ratio, &dump_target);
    if let Some(frozen) = s.frozen_secs {
        let _ = writeln!(out, "{:<20} {frozen:>7.3} s", format!("{tool} frozen"));
    }
    let name = format!("{tool} restore");
    row(out, &name, s.restore_secs, gib, &restore_ratio, &restore_target);
    let _ = writeln!(out, "{:<20} {:>7.1} MiB", format!("{tool} image size"), s.image_bytes as f64 / (1024.0 * 1024.0));
}

/// The threads section: the process with N threads, the baseline, and the two per-thread costs.
fn threads_rows(out: &mut String, outcome: &ThreadsOutcome) {
    let Some(s) = measured(out, "threads", outcome) else {
        return;
    };
    let n = s.threads;
    let _ = writeln!(out, "threads: stasis on {n} threads and on 1");
    let _ = writeln!(out, "{:<36} {:>10} {:>10} {:>10}", "", "dump", "frozen", "restore");
    let secs = |t: f64| format!("{t:.3} s");
    timings_row(out, &format!("process, {n} threads"), &s.process, secs);
    timings_row(out, "process, 1 thread", &s.baseline, secs);
    let ms = |t: f64| format!("{:.3} ms", t * 1e3);
    timings_row(out, &format!("per thread, t({n}) / {n}"), &s.per_thread, ms);
    if let Some(added) = &s.added_per_thread {
        timings_row(out, &format!("added thread, (t({n}) - t(1)) / {}", n - 1), added, ms);
    }
    criu_rows(out, &format!("{n} threads"), s.criu.as_ref(), s.criu_error.as_deref());
}

/// The tree section: the tree of N processes, the root alone, the two per-process costs, and dump +
/// restore per process against the target.
fn tree_rows(out: &mut String, outcome: &TreeOutcome) {
    let Some(s) = measured(out, "tree", outcome) else {
        return;
    };
    let n = s.processes;
    let _ = writeln!(out, "tree: stasis on a tree of {n} processes and on 1");
    let _ = writeln!(out, "{:<36} {:>10} {:>10} {:>10}", "", "dump", "frozen", "restore");
    let secs = |t: f64| format!("{t:.3} s");
    timings_row(out, &format!("tree, {n} processes"), &s.tree, secs);
    timings_row(out, "tree, 1 process", &s.baseline, secs);
    let ms = |t: f64| format!("{:.3} ms", t * 1e3);
    timings_row(out, &format!("per process, t({n}) / {n}"), &s.per_process, ms);
    if let Some(added) = &s.added_per_process {
        timings_row(out, &format!("added process, (t({n}) - t(1)) / {}", n - 1), added, ms);
    }
    let verdict = if s.within_target { "met" } else { "missed" };
    let target = s.target_per_process_secs * 1e3;
    let per = s.dump_restore_per_process_secs * 1e3;
    let _ = writeln!(out, "{:<36} {per:>7.3} ms   target < {target} ms {verdict}", "dump + restore per process");
    if let Some(added) = s.added_dump_restore_per_process_secs {
        let _ = writeln!(out, "{:<36} {:>7.3} ms", "dump + restore per added process", added * 1e3);
    }
    criu_rows(out, &format!("tree of {n}"), s.criu.as_ref(), s.criu_error.as_deref());
}

/// One line of the threads and tree sections.
fn timings_row(out: &mut String, name: &str, t: &Timings, unit: impl Fn(f64) -> String) {
    let (d, f, r) = (unit(t.dump_secs), unit(t.frozen_secs), unit(t.restore_secs));
    let _ = writeln!(out, "{name:<36} {d:>10} {f:>10} {r:>10}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::TimingSamples;
    use crate::tree::TreeSamples;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median_bytes(&[10, 30, 20]), Some(20));
    }

    fn samples() -> Samples {
        Samples {
            write_limit_secs: vec![0.30, 0.20, 0.25],
            read_limit_secs: vec![0.5, 0.4, 0.45],
            read_single_secs: vec![0.5, 0.4, 0.45],
            read_parallel_secs: vec![0.6, 0.5, 0.55],
            read_populated_secs: vec![0.7, 0.6, 0.65],
            read_parallel_populated_secs: vec![0.8, 0.7, 0.75],
            stasis: ToolSamples {
                dump_secs: vec![0.5, 0.3, 0.4],
                frozen_secs: vec![0.3, 0.35, 0.38],
                restore_secs: vec![1.0, 0.9, 0.8],
                image_bytes: vec![1 << 30, 1 << 30, 1 << 30],
            },
            stasis_compressed: ToolSamples::default(),
            criu: ToolSamples::default(),
            threads: ThreadsSamples {
                process: TimingSamples { dump_secs: vec![0.21], frozen_secs: vec![0.11], restore_secs: vec![0.41] },
                baseline: TimingSamples { dump_secs: vec![0.01], frozen_secs: vec![0.01], restore_secs: vec![0.01] },
                criu: TimingSamples { dump_secs: vec![0.42], frozen_secs: vec![0.0], restore_secs: vec![0.82] },
                criu_error: None,
            },
            tree: TreeSamples {
                tree: TimingSamples { dump_secs: vec![0.30], frozen_secs: vec![0.20], restore_secs: vec![0.40] },
                baseline: TimingSamples { dump_secs: vec![0.02], frozen_secs: vec![0.01], restore_secs: vec![0.03] },
                ..Default::default()
            },
        }
    }

    #[test]
    fn ratios_and_targets() {
        let samples = samples();
        let limits = Limits::from_samples(&samples, 1024).unwrap();
        assert_eq!(limits.write_secs, 0.25);
        assert!((limits.write_gib_per_sec - 4.0).abs() < 1e-9);
        let stasis = ToolSummary::from_samples(&samples.stasis, &limits).unwrap();
        assert!((stasis.dump_ratio - 1.6).abs() < 1e-9);
        assert!(!stasis.dump_within_target);
        assert!((stasis.restore_ratio - 2.0).abs() < 1e-9);
        assert!(stasis.restore_within_target);
        assert_eq!(stasis.frozen_secs, Some(0.35));
        assert!(ToolSummary::from_samples(&samples.criu, &limits).is_none());
    }

    fn report() -> Report {
        let samples = samples();
        let limits = Limits::from_samples(&samples, 1024).unwrap();
        Report {
            dir: "/var/tmp/stasis-bench".into(),
            rounds: 3,
            size_mib: 1024,
            stasis: ToolOutcome::Measured(ToolSummary::from_samples(&samples.stasis, &limits).unwrap()),
            stasis_compressed: ToolOutcome::Skipped { reason: "--only memory".into() },
            criu: ToolOutcome::Unavailable { reason: "criu is not on PATH".into() },
            memory_vs_criu: None,
            threads: ThreadsOutcome::Measured(ThreadsSummary::from_samples(&samples.threads, 101).unwrap()),
            tree: TreeOutcome::Measured(TreeSummary::from_samples(&samples.tree, 100).unwrap()),
            limits: Some(limits),
            samples,
        }
    }

    #[test]
    fn table_shows_every_line() {
        let table = report().table();
        for needle in [
            "medians of 3 rounds, in /var/tmp/stasis-bench",
            "memory: 1024 MiB",
            "write limit (dd)",
            "4.00 GiB/s",
            "stasis dump",
            "1.60x write",
            "<= 1.5x missed",
            "stasis frozen",
            "2.00x read",
            "<= 2x met",
            "stasis image size     1024.0 MiB",
            "criu: not available (criu is not on PATH)",
            "threads: stasis on 101 threads and on 1",
            "process, 101 threads                    0.210 s    0.110 s    0.410 s",
            "process, 1 thread                       0.010 s",
            "per thread, t(101) / 101               2.079 ms   1.089 ms   4.059 ms",
            "added thread, (t(101) - t(1)) / 100    2.000 ms   1.000 ms   4.000 ms",
            "tree: stasis on a tree of 100 processes and on 1",
            "tree, 100 processes                     0.300 s    0.200 s    0.400 s",
            "tree, 1 process                         0.020 s    0.010 s    0.030 s",
            "per process, t(100) / 100              3.000 ms   2.000 ms   4.000 ms",
            "added process, (t(100) - t(1)) / 99    2.828 ms   1.919 ms   3.737 ms",
            "dump + restore per process             7.000 ms   target < 5 ms missed",
            "dump + restore per added process       6.566 ms",
            "  parallel pread       0.550 s",
            "criu, 101 threads                       0.420 s               0.820 s",
            "stasis / criu                             0.50x                 0.50x",
        ] {
            assert!(table.contains(needle), "{needle:?} not in\n{table}");
        }
    }

    #[test]
    fn json_tags_outcomes() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["stasis"]["status"], "measured");
        assert_eq!(json["stasis"]["dump_target"], 1.5);
        assert_eq!(json["criu"]["status"], "unavailable");
        assert_eq!(json["samples"]["stasis"]["dump_secs"][1], 0.3);
        assert_eq!(json["limits"]["read_secs"], 0.45);
        assert_eq!(json["threads"]["status"], "measured");
        assert_eq!(json["threads"]["threads"], 101);
        assert_eq!(json["threads"]["process"]["restore_secs"], 0.41);
        assert_eq!(json["threads"]["baseline"]["dump_secs"], 0.01);
        assert!(json["threads"]["added_per_thread"]["dump_secs"].as_f64().is_some());
        assert_eq!(json["samples"]["threads"]["process"]["frozen_secs"][0], 0.11);
        assert_eq!(json["tree"]["status"], "measured");
        assert_eq!(json["tree"]["processes"], 100);
        assert_eq!(json["tree"]["tree"]["dump_secs"], 0.30);
        assert_eq!(json["tree"]["target_per_process_secs"], 0.005);
        assert_eq!(json["tree"]["within_target"], false);
        assert!(json["tree"]["added_per_process"]["restore_secs"].as_f64().is_some());
        assert_eq!(json["samples"]["tree"]["baseline"]["restore_secs"][0], 0.03);
    }

    #[test]
    fn threads_only_report_has_no_memory_section() {
        let mut report = report();
        report.limits = None;
        report.stasis = ToolOutcome::Skipped { reason: "--only threads".into() };
        let table = report.table();
        assert!(!table.contains("memory:") && !table.contains("stasis dump"), "{table}");
        assert!(table.contains("added thread"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["limits"].is_null());
        report.threads = ThreadsOutcome::Skipped { reason: "--only memory".into() };
        report.tree = TreeOutcome::Failed { error: "pid 7 has 3 children after the restore, expected 99".into() };
        let table = report.table();
        assert!(table.contains("threads: skipped (--only memory)"), "{table}");
        assert!(table.contains("tree: failed (pid 7 has 3 children after the restore, expected 99)"), "{table}");
    }
}
