//! A shell job on a terminal: stdin, stdout and stderr are a pty (the harness's) before the dump
//! and a pty (another one, `stasis restore`'s) after the restore; the verdict goes to the terminal.

use stasis_tests::workload::{self, OrFail};
use std::io::IsTerminal;

fn stdio_ttys() -> [bool; 3] {
    [std::io::stdin().is_terminal(), std::io::stdout().is_terminal(), std::io::stderr().is_terminal()]
}

fn main() {
    let mut s = workload::start();
    if stdio_ttys() != [true; 3] {
        Err::<(), _>(format!("stdio terminals {:?}", stdio_ttys())).or_fail("stdio must be a terminal");
    }
    s.ready();
    s.wait_for_wake();
    s.checker.same("stdin, stdout, stderr are terminals", &[true; 3], &stdio_ttys());
    s.finish()
}
