//! `stasis-sample-counter`: the program the README demo checkpoints and restores.
//!
//! It fills a 64 MiB buffer at start, then once a second changes one word of it, bumps a counter and
//! prints a line:
//!
//! ```text
//! counter 7 elapsed 7.004s checksum 0x5f0c3e1a9b7d2c44 memory ok
//! ```
//!
//! The checksum is kept up to date incrementally and compared every tick with a full pass over the
//! buffer, so a restored copy proves that its memory came back intact: after a checkpoint the next
//! line carries the next counter value, and `memory ok`. On a mismatch it prints `memory MISMATCH`
//! and exits with status 1.
//!
//! Usage: `stasis-sample-counter [MAX_TICKS]`: with `MAX_TICKS` it exits with status 0 after printing
//! that many lines; without it, it runs until killed.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

/// Size of the buffer in 64-bit words (64 MiB).
const WORDS: usize = 64 * 1024 * 1024 / 8;
/// Multiplier of the position hash (the 64-bit golden ratio).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The state that must survive a checkpoint.
struct Counter {
    buffer: Vec<u64>,
    checksum: u64,
    counter: u64,
}

impl Counter {
    /// Fills the buffer with a xorshift sequence and computes its checksum.
    fn new() -> Self {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let buffer: Vec<u64> = (0..WORDS)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        let checksum = full_checksum(&buffer);
        Self { buffer, checksum, counter: 0 }
    }

    /// Advances the counter and changes one word, keeping the checksum current.
    fn tick(&mut self) {
        self.counter += 1;
        let index = (self.counter.wrapping_mul(GOLDEN) % WORDS as u64) as usize;
        let old = self.buffer[index];
        let new = old.rotate_left(7) ^ self.counter;
        self.buffer[index] = new;
        self.checksum = self.checksum.wrapping_sub(mix(old, index)).wrapping_add(mix(new, index));
    }

    /// Whether the buffer still sums to the running checksum.
    fn memory_ok(&self) -> bool {
        full_checksum(&self.buffer) == self.checksum
    }
}

/// One word's contribution to the checksum, which depends on its position.
fn mix(word: u64, index: usize) -> u64 {
    word ^ (index as u64).wrapping_mul(GOLDEN)
}

/// The checksum of the whole buffer.
fn full_checksum(buffer: &[u64]) -> u64 {
    buffer.iter().enumerate().fold(0u64, |sum, (i, &w)| sum.wrapping_add(mix(w, i)))
}

/// Parses the optional `MAX_TICKS` argument.
fn max_ticks() -> Result<Option<u64>, String> {
    let mut args = std::env::args().skip(1);
    let max = match args.next() {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| format!("MAX_TICKS must be a number, not {s:?}"))?),
    };
    if args.next().is_some() {
        return Err("usage: stasis-sample-counter [MAX_TICKS]".into());
    }
    Ok(max)
}

fn main() -> ExitCode {
    let max = match max_ticks() {
        Ok(max) => max,
        Err(msg) => {
            eprintln!("stasis-sample-counter: {msg}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let mut state = Counter::new();
    loop {
        state.tick();
        let ok = state.memory_ok();
        println!(
            "counter {} elapsed {:.3}s checksum {:#018x} memory {}",
            state.counter,
            start.elapsed().as_secs_f64(),
            state.checksum,
            if ok { "ok" } else { "MISMATCH" }
        );
        if !ok {
            return ExitCode::FAILURE;
        }
        if max.is_some_and(|m| state.counter >= m) {
            return ExitCode::SUCCESS;
        }
        thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_checksum_matches_a_full_pass_after_ticks() {
        let mut state = Counter::new();
        for _ in 0..100 {
            state.tick();
        }
        assert_eq!(state.counter, 100);
        assert!(state.memory_ok());
    }

    #[test]
    fn a_changed_word_is_detected() {
        let mut state = Counter::new();
        state.tick();
        state.buffer[12345] ^= 1;
        assert!(!state.memory_ok());
    }
}
