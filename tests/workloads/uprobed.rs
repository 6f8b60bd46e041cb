//! A process with a uprobe on a function of its own: it registers the probe itself through
//! tracefs (`uprobe_events`, a name of its pid's), on the file offset of `stasis_uprobe_target`
//! found through its own maps, enables it, and calls the function until the kernel has mapped the
//! uprobes area (`[uprobes]`) into it. It removes the probe before it ends, also when it fails.
//!
//! Modes:
//! - `entry`: an entry probe. After the wake the function still gives the same results (the probe
//!   still fires: the breakpoint saved with the code page is handled), its code bytes are those
//!   read before the dump, and the probe's hit count grew.
//! - `return`: a return probe on `stasis_uprobe_wait`, which waits for the wake inside it: its
//!   return address on the stack points into the uprobes area while it waits (the dump is
//!   refused); after the wake it returns through the probe and the workload checks its result.

use stasis_tests::workload::{self, OrFail, Session};
use std::io::Write;
use std::time::{Duration, Instant};

const TRACING: &str = "/sys/kernel/tracing";

#[inline(never)]
fn stasis_uprobe_target(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(3).wrapping_add(1)
}

#[inline(never)]
fn stasis_uprobe_wait(s: &mut Session) -> u64 {
    s.ready();
    s.wait_for_wake();
    std::hint::black_box(41) + 1
}

/// The executable and the file offset of `addr` in it, from `/proc/self/maps`.
fn file_offset(addr: u64) -> (String, u64) {
    let maps = std::fs::read_to_string("/proc/self/maps").or_fail("reading its maps");
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(range), Some(off), Some(path)) = (f.first(), f.get(2), f.get(5)) else { continue };
        let Some((a, b)) = range.split_once('-') else { continue };
        let (a, b) = (u64::from_str_radix(a, 16).unwrap_or(0), u64::from_str_radix(b, 16).unwrap_or(0));
        if addr >= a && addr < b {
            return (path.to_string(), addr - a + u64::from_str_radix(off, 16).unwrap_or(0));
        }
    }
    Err::<(), _>(format!("{addr:#x} in no mapping")).or_fail("finding the function's mapping");
    unreachable!()
}

fn has_uprobes_area() -> bool {
    std::fs::read_to_string("/proc/self/maps").is_ok_and(|m| m.lines().any(|l| l.ends_with("[uprobes]")))
}

/// A probe of this process in tracefs, removed when dropped.
struct Probe {
    name: String,
}

fn append(file: &str, text: &str) -> std::io::Result<()> {
    // Appending: a plain write of uprobe_events would remove every other probe of the machine.
    std::fs::OpenOptions::new().append(true).open(format!("{TRACING}/{file}"))?.write_all(text.as_bytes())
}

impl Probe {
    fn register(kind: char, func: u64) -> Probe {
        if !std::path::Path::new(&format!("{TRACING}/uprobe_events")).exists() {
            let _ = std::process::Command::new("mount").args(["-t", "tracefs", "nodev", TRACING]).status();
        }
        if !std::path::Path::new(&format!("{TRACING}/uprobe_events")).exists() {
            workload::skip("no tracefs with uprobe_events");
        }
        let (exe, off) = file_offset(func);
        let name = format!("stasis_{}", std::process::id());
        append("uprobe_events", &format!("{kind}:uprobes/{name} {exe}:{off:#x}\n")).or_fail("registering the uprobe");
        let probe = Probe { name };
        std::fs::write(format!("{TRACING}/events/uprobes/{}/enable", probe.name), "1").or_fail("enabling the uprobe");
        probe
    }

    /// How many times the probe fired (`uprobe_profile`).
    fn hits(&self) -> u64 {
        let text = std::fs::read_to_string(format!("{TRACING}/uprobe_profile")).unwrap_or_default();
        let line = text.lines().find(|l| l.split_whitespace().nth(1) == Some(&self.name));
        line.and_then(|l| l.split_whitespace().nth(2)?.parse().ok()).unwrap_or(0)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("{TRACING}/events/uprobes/{}/enable", self.name), "0");
        let _ = append("uprobe_events", &format!("-:uprobes/{}\n", self.name));
    }
}

fn code_bytes(f: u64) -> Vec<u8> {
    // Through /proc/self/mem, which reads what the process would execute.
    let mem = std::fs::File::open("/proc/self/mem").or_fail("opening its memory");
    let mut buf = vec![0u8; 16];
    std::os::unix::fs::FileExt::read_exact_at(&mem, &mut buf, f).or_fail("reading its code");
    buf
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut s = workload::start();
    match mode.as_str() {
        "entry" => {
            let func = stasis_uprobe_target as fn(u64) -> u64 as usize as u64;
            let probe = Probe::register('p', func);
            let start = Instant::now();
            while !has_uprobes_area() && start.elapsed() < Duration::from_secs(10) {
                stasis_uprobe_target(7);
            }
            s.checker.check(has_uprobes_area(), || "no [uprobes] area after 10 s of hits".into());
            let (before, hits) = (code_bytes(func), probe.hits());
            s.ready();
            s.wait_for_wake();
            let results: Vec<u64> = (0..5).map(stasis_uprobe_target).collect();
            s.checker.same("results of the probed function", &vec![1, 4, 7, 10, 13], &results);
            s.checker.same("its code bytes", &before, &code_bytes(func));
            let now = probe.hits();
            s.checker.check(now >= hits + 5, || {
                format!("probe hits {now}, want at least {} (it fires after restore)", hits + 5)
            });
            drop(probe);
            s.finish()
        }
        "return" => {
            let probe = Probe::register('r', stasis_uprobe_wait as fn(&mut Session) -> u64 as usize as u64);
            let got = stasis_uprobe_wait(&mut s);
            s.checker.same("result through the return probe", &42, &got);
            s.checker.check(probe.hits() >= 1, || "the return probe did not fire".into());
            drop(probe);
            s.finish()
        }
        other => workload::unknown_mode(other, "entry, return"),
    }
}
