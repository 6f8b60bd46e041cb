//! `stasis-bench-memhog SIZE_MIB`: writes a pattern into SIZE MiB of fresh anonymous memory, prints
//! `READY` and sleeps until killed. The workload that `stasis-bench` checkpoints.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use stasis_bench::memhog::fill;
use stasis_bench::workload::READY;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib = match args.as_slice() {
        [size] => match size.parse::<usize>() {
            Ok(mib) if mib > 0 => mib,
            _ => return usage(&format!("SIZE_MIB must be a positive number, not {size:?}")),
        },
        _ => return usage("expected one argument"),
    };
    let Some(bytes) = mib.checked_mul(1 << 20) else {
        return usage(&format!("{mib} MiB is too large"));
    };
    let mut memory = vec![0u8; bytes];
    fill(&mut memory);
    std::hint::black_box(&memory);
    let mut out = std::io::stdout();
    if writeln!(out, "{READY}").and_then(|()| out.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
        std::hint::black_box(&memory);
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("stasis-bench-memhog: {problem}\nusage: stasis-bench-memhog SIZE_MIB");
    ExitCode::from(2)
}
