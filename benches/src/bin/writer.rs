//! `stasis-bench-writer SIZE_MIB:RATE_MIB`: writes SIZE MiB of fresh anonymous memory, prints
//! `READY`, then rewrites it page after page at RATE MiB/s (each page stamped with a counter) until
//! killed. The workload of `stasis-bench migrate`.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use stasis_bench::memhog::fill;
use stasis_bench::workload::READY;

const PAGE: usize = 4096;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_default();
    let parsed = arg.split_once(':').and_then(|(s, r)| Some((s.parse::<usize>().ok()?, r.parse::<f64>().ok()?)));
    let Some((mib, rate)) = parsed.filter(|&(m, r)| m > 0 && r >= 0.0 && m < (1 << 20)) else {
        eprintln!("stasis-bench-writer: expected SIZE_MIB:RATE_MIB, not {arg:?}");
        return ExitCode::from(2);
    };
    let mut memory = vec![0u8; mib << 20];
    fill(&mut memory);
    let mut out = std::io::stdout();
    if writeln!(out, "{READY}").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    let pages = memory.len() / PAGE;
    let per_second = rate * (1 << 20) as f64 / PAGE as f64;
    let (mut since, mut done, mut counter) = (Instant::now(), 0u64, 0u64);
    loop {
        let due = (since.elapsed().as_secs_f64() * per_second) as u64;
        if due > done + per_second as u64 + 1 {
            // Behind by more than a second (frozen, or moved): start over from now.
            (since, done) = (Instant::now(), 0);
            continue;
        }
        if done < due {
            counter += 1;
            let p = (counter as usize) % pages;
            memory[p * PAGE..(p + 1) * PAGE].fill(counter as u8);
            std::hint::black_box(&memory);
            done += 1;
            continue;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
