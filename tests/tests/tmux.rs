//! The demonstration of issue 5 (shown in the README): a tmux server (Debian's `tmux`) with two
//! windows, an interactive bash with a variable set and a history, and a shell loop printing a
//! counter, is checkpointed with its whole tree, killed, restored, and then driven through tmux's
//! own client (`send-keys`, `capture-pane`): both windows are there with their scrollback, the shell
//! still has its variable and its history and runs new commands, and the counter carries on from
//! where it was instead of starting again.

use stasis_tests::harness::{skip, Stasis, TestDir};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The tmux of one test, on a socket of its own and with no configuration file.
struct Tmux<'a> {
    dir: &'a TestDir,
    socket: PathBuf,
}

impl Tmux<'_> {
    fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("tmux");
        // The server is forked by the first client: it must not inherit this test's other fds.
        stasis_tests::raw::stdio_only_on_spawn(&mut cmd);
        let out = cmd
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("tmux {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!("tmux {args:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn run(&self, args: &[&str]) -> String {
        self.try_run(args).unwrap_or_else(|e| self.dir.fail(&e))
    }

    /// The pane of `target` with its whole scrollback.
    fn capture(&self, target: &str) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", target])
    }

    /// Waits up to 10 s until the pane of `target` satisfies `ok`; returns its text.
    fn wait_for(&self, target: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.capture(target);
            if ok(&text) {
                return text;
            }
            if Instant::now() > deadline {
                self.dir.fail(&format!("pane {target}: {what} not seen within 10 s; it shows:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, target: &str, line: &str) {
        self.run(&["send-keys", "-t", target, line, "Enter"]);
    }
}

/// The counts the counter window shows.
fn counts(text: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.trim().strip_prefix("count ")?.parse().ok()).collect()
}

/// Whether the server holds no fd of a client any more: one socket (its listener) and only pipes of
/// which it holds both ends. A client hands the server its stdio (`display-message -p` writes to the
/// client's stdout), and the server lets go of a client's fds a moment after the client has gone.
fn server_settled(pid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    let links: Vec<String> =
        dir.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).map(|l| l.display().to_string()).collect();
    let sockets = links.iter().filter(|l| l.starts_with("socket:")).count();
    let lone_pipe =
        links.iter().filter(|l| l.starts_with("pipe:")).any(|l| links.iter().filter(|m| *m == l).count() < 2);
    sockets == 1 && !lone_pipe
}

/// Whether process `pid` of the dumped tree is gone, reaping it.
fn server_gone(pid: i32) -> bool {
    let _ = stasis_tests::raw::try_waitpid(pid);
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn tmux_session_survives_a_checkpoint() {
    if Command::new("tmux").arg("-V").stdout(Stdio::null()).status().is_err() {
        return skip("tmux is not installed (scripts/setup.sh installs it)");
    }
    let dir = TestDir::new("tmux");
    let tmux = Tmux { dir: &dir, socket: dir.join("tmux.sock") };
    let shell = "env PS1='$ ' HISTFILE=/dev/null bash --norc --noprofile -i";
    tmux.run(&["new-session", "-d", "-s", "demo", "-x", "100", "-y", "30", shell]);
    let counter = "i=0; while :; do i=$((i+1)); echo \"count $i\"; sleep 0.2; done";
    tmux.run(&["new-window", "-t", "demo", "-n", "counter", counter]);
    tmux.wait_for("demo:0", "the prompt", |t| t.contains('$'));
    tmux.keys("demo:0", "export DEMO_VAR=hello-stasis");
    tmux.keys("demo:0", "echo before-the-checkpoint");
    tmux.wait_for("demo:0", "the echo", |t| t.lines().any(|l| l.trim() == "before-the-checkpoint"));
    tmux.wait_for("demo:1", "count 5", |t| counts(t).len() >= 5);
    let server: i32 = tmux.run(&["display-message", "-p", "-t", "demo", "#{pid}"]).trim().parse().expect("server pid");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server_settled(server) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let tree = stasis_tests::harness::tree_pids(server);
    let stasis = Stasis::locate();
    let images = dir.join("images");
    let dumped = stasis.dump(&dir, server, &images, &[], &[]);
    if !dumped.success() {
        let _ = tmux.try_run(&["kill-server"]);
        dir.fail(&format!("dump of the tmux server failed:\n{}", dumped.describe()));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    // The killed tree's processes are this test's children now (it is a child subreaper): those
    // listed before the dump and those the dump saved (the counter's `sleep` changes every 0.2 s).
    let mut tree = tree;
    let saved = std::fs::read_dir(&images).into_iter().flatten().flatten().filter_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.strip_prefix("core-")?.strip_suffix(".img")?.parse::<i32>().ok()
    });
    tree.extend(saved);
    while !tree.iter().all(|&p| server_gone(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (restored, _) = stasis.restore_detached(&dir, &images, &[], &[]);
    if !restored.success() {
        dir.fail(&format!("restore of the tmux server failed:\n{}", restored.describe()));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_restored(&tmux)));
    let _ = tmux.try_run(&["kill-server"]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// What the restored server must show and do (see the module doc). A counter started again would
/// show `count 1` after higher counts: the counts must be consecutive from before to after.
fn check_restored(tmux: &Tmux) {
    let windows = tmux.run(&["list-windows", "-t", "demo", "-F", "#{window_index} #{window_name}"]);
    assert_eq!(windows.lines().count(), 2, "windows after the restore:\n{windows}");
    // The shell's scrollback, variable and history.
    let shell = tmux.capture("demo:0");
    assert!(shell.lines().any(|l| l.trim() == "before-the-checkpoint"), "scrollback of the shell:\n{shell}");
    tmux.keys("demo:0", "echo \"var=$DEMO_VAR\"");
    tmux.wait_for("demo:0", "the variable", |t| t.contains("var=hello-stasis"));
    tmux.keys("demo:0", "history");
    tmux.wait_for("demo:0", "the history", |t| t.lines().any(|l| l.contains("export DEMO_VAR=hello-stasis")));
    // The counter: its scrollback holds the counts from before, and it goes on from there.
    let text = tmux.capture("demo:1");
    let seen = counts(&text);
    let last = *seen.last().unwrap_or(&0);
    assert!(seen.len() >= 5 && seen.windows(2).all(|w| w[1] == w[0] + 1), "counter pane after the restore:\n{text}");
    let later = tmux.wait_for("demo:1", "the counter going on", |t| counts(t).last().is_some_and(|&n| n >= last + 3));
    let after = counts(&later);
    assert!(after.windows(2).all(|w| w[1] == w[0] + 1), "counts not consecutive across the restore:\n{later}");
}

/// GNU screen, the same way: a detached session running an interactive bash is checkpointed with
/// its tree, killed and restored; `screen -X` finds it by its socket, the shell has its variable and
/// its scrollback, and runs a new command.
#[test]
fn screen_session_survives_a_checkpoint() {
    if Command::new("screen").arg("-v").stdout(Stdio::null()).status().is_err() {
        return skip("GNU screen is not installed (scripts/setup.sh installs it)");
    }
    let dir = TestDir::new("screen");
    let screendir = dir.join("screens");
    std::fs::create_dir_all(&screendir).expect("screen dir");
    std::fs::set_permissions(&screendir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let screen = |args: &[&str]| {
        let mut cmd = Command::new("screen");
        stasis_tests::raw::stdio_only_on_spawn(&mut cmd);
        let out = cmd.env("SCREENDIR", &screendir).args(args).stdin(Stdio::null()).output().expect("run screen");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let copy = dir.join("hardcopy.txt");
    let capture = |what: &str, ok: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            screen(&["-S", "demo", "-X", "hardcopy", "-h", copy.to_str().expect("utf-8 path")]);
            let text = std::fs::read_to_string(&copy).unwrap_or_default();
            if ok(&text) {
                return text;
            }
            if Instant::now() > deadline {
                dir.fail(&format!("screen: {what} not seen within 10 s; the window shows:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    screen(&["-S", "demo", "-dm", "env", "PS1=$ ", "HISTFILE=/dev/null", "bash", "--norc", "--noprofile", "-i"]);
    capture("the prompt", &|t| t.contains('$'));
    // `stuff` expands `$NAME` itself: the shell's variable is written `\$`.
    screen(&["-S", "demo", "-X", "stuff", "export SCREEN_VAR=hello-screen\necho before-the-checkpoint\n"]);
    capture("the echo", &|t| t.lines().any(|l| l.trim() == "before-the-checkpoint"));
    let server: i32 = std::fs::read_dir(&screendir)
        .expect("screen dir")
        .flatten()
        .find_map(|e| e.file_name().to_str()?.strip_suffix(".demo")?.parse().ok())
        .unwrap_or_else(|| dir.fail("no socket of the screen session"));
    let tree = stasis_tests::harness::tree_pids(server);
    let stasis = Stasis::locate();
    let images = dir.join("images");
    let dumped = stasis.dump(&dir, server, &images, &[], &[]);
    if !dumped.success() {
        screen(&["-S", "demo", "-X", "quit"]);
        dir.fail(&format!("dump of the screen session failed:\n{}", dumped.describe()));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tree.iter().all(|&p| server_gone(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (restored, _) = stasis.restore_detached(&dir, &images, &[], &[]);
    if !restored.success() {
        dir.fail(&format!("restore of the screen session failed:\n{}", restored.describe()));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let text = capture("the scrollback", &|t| t.contains("before-the-checkpoint"));
        assert!(text.lines().any(|l| l.trim() == "before-the-checkpoint"), "scrollback:\n{text}");
        screen(&["-S", "demo", "-X", "stuff", "echo \"var=\\$SCREEN_VAR\"\n"]);
        capture("the variable", &|t| t.contains("var=hello-screen"));
    }));
    screen(&["-S", "demo", "-X", "quit"]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
