//! Pseudo-terminals held by the tree: a terminal process with the pty master, a session on the
//! slave with a foreground and a background job (termios, window size, packet mode, queued data
//! both ways, /dev/tty, job control after the restore), and an interactive bash on a pty.

use stasis_tests::harness::{checkpoint_restore, standalone};
use stasis_tests::workload;

#[test]
fn pty_session_with_job_control() {
    // Index 24 up: the ptys of other tests, which take the lowest free ones, leave it free.
    checkpoint_restore("tty_pty", workload!("tty_pty").arg("24"));
}

#[test]
fn standalone_pty_session_with_job_control() {
    standalone("sa-tty_pty", workload!("tty_pty"));
}

#[test]
fn interactive_bash_keeps_its_variable_and_jobs() {
    // Index 40 up (see above).
    checkpoint_restore("tty_bash", workload!("tty_bash").arg("40"));
}

#[test]
fn standalone_interactive_bash() {
    standalone("sa-tty_bash", workload!("tty_bash"));
}
