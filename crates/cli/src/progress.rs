//! The progress line: `dumping memory: 512 MiB / 1024 MiB (50%)`, redrawn in place on stderr at
//! most ten times a second and erased at the end. Nothing is drawn when stderr is not a terminal.

use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use stasis_engine::Progress;

/// Moves to the start of the line and erases it.
pub const CLEAR_LINE: &str = "\r\x1b[2K";

/// Minimum time between two redraws.
const INTERVAL: Duration = Duration::from_millis(100);

const MIB: u64 = 1024 * 1024;

/// A progress line for one operation; erased when dropped.
pub struct ProgressLine {
    label: &'static str,
    enabled: bool,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl ProgressLine {
    /// A line labelled `label` (`"dumping memory"`), drawn only if stderr is a terminal.
    pub fn new(label: &'static str) -> Self {
        ProgressLine { label, enabled: io::stderr().is_terminal(), last_draw: None, drawn: false }
    }

    /// Records progress; redraws if the last redraw is old enough or the work is complete.
    pub fn update(&mut self, p: Progress) {
        if !self.enabled || p.total_bytes == 0 {
            return;
        }
        let now = Instant::now();
        let due = self.last_draw.is_none_or(|t| now.duration_since(t) >= INTERVAL);
        if !due && p.done_bytes < p.total_bytes {
            return;
        }
        self.last_draw = Some(now);
        self.drawn = true;
        let text = format!("{CLEAR_LINE}{}", render(self.label, p));
        let mut err = io::stderr().lock();
        // A progress line that cannot be drawn is not worth failing the operation for.
        let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
    }

    /// Erases the line if it was drawn.
    pub fn finish(&mut self) {
        if self.drawn {
            self.drawn = false;
            let mut err = io::stderr().lock();
            let _ = err.write_all(CLEAR_LINE.as_bytes()).and_then(|()| err.flush());
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `label: 512 MiB / 1024 MiB (50%)`.
fn render(label: &str, p: Progress) -> String {
    let percent = u128::from(p.done_bytes.min(p.total_bytes)) * 100 / u128::from(p.total_bytes.max(1));
    format!("{label}: {} MiB / {} MiB ({percent}%)", p.done_bytes / MIB, p.total_bytes / MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u64, total: u64) -> Progress {
        Progress { done_bytes: done, total_bytes: total }
    }

    #[test]
    fn renders_mib_and_percent() {
        assert_eq!(
            render("dumping memory", progress(512 * MIB, 1024 * MIB)),
            "dumping memory: 512 MiB / 1024 MiB (50%)"
        );
        assert_eq!(render("x", progress(0, 3 * MIB)), "x: 0 MiB / 3 MiB (0%)");
        assert_eq!(render("x", progress(u64::MAX, u64::MAX)), format!("x: {0} MiB / {0} MiB (100%)", u64::MAX / MIB));
    }
}
