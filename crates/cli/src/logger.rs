//! The log sink of the `stasis` binary: a minimal `log::Log` that writes one line per record,
//! prefixed with the seconds elapsed since start, to stderr or appended to a file (`-o LOG`).
//! The level comes from CRIU's `-v` levels (see [`crate::criu_opts::CriuArgs::level`]).

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use log::{LevelFilter, Log, Metadata, Record};

use crate::progress::CLEAR_LINE;

/// Where log lines go.
enum Sink {
    /// `clear_line`: stderr is a terminal, where a progress line may be drawn; each log line
    /// first erases it (the next progress update draws it again below).
    Stderr {
        clear_line: bool,
    },
    File(Mutex<File>),
}

struct Logger {
    start: Instant,
    /// Set once; `stasis swrk` changes it per request.
    config: Mutex<(LevelFilter, Sink)>,
}

/// The one logger of the process.
static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Installs the logger for the whole process, appending to `file` if given, else to stderr; a
/// later call (`stasis swrk`, one per request) sends the lines to its file from then on.
pub fn init(file: Option<&Path>, level: LevelFilter) -> anyhow::Result<()> {
    let sink = match file {
        None => Sink::Stderr { clear_line: io::stderr().is_terminal() },
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("open log file {}", path.display()))?;
            Sink::File(Mutex::new(f))
        }
    };
    let logger =
        LOGGER.get_or_init(|| Logger { start: Instant::now(), config: Mutex::new((level, sink_placeholder())) });
    *lock(&logger.config) = (level, sink);
    log::set_max_level(level);
    // Only the first call installs it; the others changed its configuration above.
    let _ = log::set_logger(logger);
    Ok(())
}

fn sink_placeholder() -> Sink {
    Sink::Stderr { clear_line: false }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= lock(&self.config).0
    }

    fn log(&self, record: &Record) {
        let config = lock(&self.config);
        if record.metadata().level() > config.0 {
            return;
        }
        let line = format_line(self.start.elapsed().as_secs_f64(), record);
        // A failing log write cannot be reported anywhere better than where it failed.
        let _ = match &config.1 {
            Sink::Stderr { clear_line } => {
                let erase = if *clear_line { CLEAR_LINE } else { "" };
                io::stderr().lock().write_all(format!("{erase}{line}").as_bytes())
            }
            Sink::File(f) => lock(f).write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {
        let _ = match &lock(&self.config).1 {
            Sink::Stderr { .. } => io::stderr().flush(),
            Sink::File(f) => lock(f).flush(),
        };
    }
}

/// Locks even if a thread panicked while holding the lock: a log line is never worth a panic.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `[   1.234567] DEBUG stasis_engine::mem: message\n`.
fn format_line(secs: f64, record: &Record) -> String {
    format!("[{secs:11.6}] {:<5} {}: {}\n", record.level(), record.target(), record.args())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_elapsed_seconds_level_and_target() {
        let line = format_line(
            1.5,
            &Record::builder()
                .level(log::Level::Info)
                .target("stasis_engine::mem")
                .args(format_args!("wrote {} pages", 3))
                .build(),
        );
        assert_eq!(line, "[   1.500000] INFO  stasis_engine::mem: wrote 3 pages\n");
    }
}
