//! Debian's runc using stasis as its CRIU (`runc --criu stasis`): a busybox container counting in
//! a shell, in its own pid, mount, net, uts and ipc namespaces (and runc's cgroup v1 hierarchies
//! and cgroup v2 on this hybrid machine), checkpointed, then restored. The shell's counter lives
//! in its memory only: after the restore it goes on from the value it had at the checkpoint (a
//! shell started again would count from 1), and `runc exec` finds it as pid 1 of the container.

use stasis_tests::harness::{skip, Stasis, TestDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A runc container: a busybox bundle in the test directory, its own runc state root.
struct Container {
    runc: PathBuf,
    state: PathBuf,
    bundle: PathBuf,
    id: String,
}

impl Container {
    fn runc(&self) -> Command {
        let mut cmd = Command::new(&self.runc);
        cmd.arg("--root").arg(&self.state).current_dir(&self.bundle).stdin(Stdio::null());
        cmd
    }

    /// A field of `runc state` (`"NAME": VALUE`), without quotes; `None` if it has none.
    fn state_field(&self, name: &str) -> Option<String> {
        let out = self.runc().args(["state", &self.id]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let value = text.split(&format!("\"{name}\": ")).nth(1)?;
        Some(value.split([',', '\n']).next()?.trim().trim_matches('"').to_string())
    }

    /// `runc state`'s status, or `gone`.
    fn status(&self) -> String {
        self.state_field("status").unwrap_or_else(|| "gone".into())
    }

    /// The container's init (as stasis and runc see it).
    fn init_pid(&self) -> i32 {
        self.state_field("pid").and_then(|p| p.parse().ok()).expect("the container's pid in runc state")
    }

    /// Reap the container's init `pid` as soon as it is killed (by a checkpoint or a delete), on a
    /// thread started before: runc leaves it to the nearest child subreaper, the test process; its
    /// PID must be free for the restore, and runc removes the container's cgroups (and then its
    /// state) only once it is gone.
    fn reaper(pid: i32) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            if let Err(e) = stasis_tests::raw::waitpid(pid) {
                panic!("waiting for the container init {pid}: {e}");
            }
        })
    }

    /// The counter the container's shell writes each second (none while it writes it).
    fn count(&self) -> Option<u64> {
        std::fs::read_to_string(self.bundle.join("rootfs/tmp/count")).ok()?.trim().parse().ok()
    }

    /// Wait (up to 30 s) until the counter is other than `not`; its value.
    fn next_count(&self, not: Option<u64>) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.count() {
                Some(n) if Some(n) != not => return n,
                _ if Instant::now() > deadline => panic!("the container's counter stays at {not:?}"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// `runc --criu stasis ACTION` (checkpoint or restore) with `args`, its image and work
    /// directory `images`; panics with stasis's log if it fails.
    fn criu(&self, dir: &TestDir, action: &str, images: &Path, args: &[&str]) {
        let out = self.criu_output(action, images, args);
        dir.watch_log(&images.join(if action == "checkpoint" { "dump.log" } else { "restore.log" }));
        assert!(out.status.success(), "runc {action} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// What `runc --criu stasis ACTION` with `args` and the image and work directory `images`
    /// gave.
    fn criu_output(&self, action: &str, images: &Path, args: &[&str]) -> std::process::Output {
        self.runc()
            .arg("--criu")
            .arg(Stasis::locate().bin())
            .arg(action)
            .args(["--image-path", images.to_str().unwrap(), "--work-path", images.to_str().unwrap()])
            .args(args)
            .arg(&self.id)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("runc {action}: {e}"))
    }

    /// What `runc exec` of `sh -c script` prints.
    fn exec(&self, script: &str) -> String {
        let out = self.runc().args(["exec", &self.id, "sh", "-c", script]).output().expect("runc exec");
        assert!(out.status.success(), "runc exec failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let pid = self.state_field("pid").and_then(|p| p.parse().ok()).filter(|p: &i32| *p > 0);
        let _ = self.runc().args(["delete", "--force", &self.id]).output();
        if let Some(pid) = pid {
            let _ = stasis_tests::raw::try_waitpid(pid);
        }
    }
}

use stasis_tests::harness::BUSYBOX_COUNTER as COUNTER;

/// A busybox container running `script` in its own namespaces (its root has `/www/index.html`
/// holding `hello`), or why not.
fn start_container_with(dir: &TestDir, script: &str) -> Result<Container, String> {
    start_container_writing(dir, script, Stdio::null())
}

/// [`start_container_with`], the container's stdout `stdout`.
fn start_container_writing(dir: &TestDir, script: &str, stdout: Stdio) -> Result<Container, String> {
    let runc = stasis_tests::harness::find_program(&["/usr/sbin/runc", "/usr/bin/runc"])?;
    let bundle = dir.join("bundle");
    stasis_tests::harness::busybox_rootfs(&bundle.join("rootfs"), &["sh", "sleep", "cat", "mv", "httpd", "nc"])?;
    let www = bundle.join("rootfs/www");
    std::fs::create_dir_all(&www).map_err(|e| format!("{}: {e}", www.display()))?;
    std::fs::write(www.join("index.html"), "hello\n").map_err(|e| format!("index.html: {e}"))?;
    let out = Command::new(&runc).arg("spec").current_dir(&bundle).output();
    out.ok().filter(|o| o.status.success()).ok_or("runc spec failed")?;
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    let text = text
        .replace("\"terminal\": true", "\"terminal\": false")
        .replace("\"readonly\": true", "\"readonly\": false")
        .replace("\"sh\"", &format!("\"sh\", \"-c\", \"{script}\""));
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let id = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let c = Container { runc, state: dir.join("runc-state"), bundle, id };
    // The container's stdio is runc's: /dev/null, which it finds in its own /dev too (a pipe would
    // never end; runc's own errors go to its log).
    let log = dir.join("runc-run.log");
    let mut run = c.runc();
    run.arg("--log").arg(&log).args(["run", "-d", &c.id]).stdout(stdout).stderr(Stdio::null());
    let status = run.status().map_err(|e| format!("runc run: {e}"))?;
    if !status.success() {
        return Err(format!("runc run failed: {}", std::fs::read_to_string(&log).unwrap_or_default().trim()));
    }
    Ok(c)
}

/// The container, counting (at 2 at least), or the reason to skip.
fn counting(dir: &TestDir) -> Option<Container> {
    counting_with(dir, COUNTER)
}

/// [`counting`] with `script`, which must run [`COUNTER`] last.
fn counting_with(dir: &TestDir, script: &str) -> Option<Container> {
    let c = match start_container_with(dir, script) {
        Ok(c) => c,
        Err(why) => {
            skip(&format!("no runc container: {why}"));
            return None;
        }
    };
    assert_eq!(c.status(), "running");
    let mut n = c.next_count(None);
    while n < 2 {
        n = c.next_count(Some(n));
    }
    Some(c)
}

/// After the restore: running again, counting on from its value at the checkpoint (`at`: at least
/// the first, at most the second; the counter file was set to 0), and its shell pid 1 of the
/// container's own pid namespace.
fn expect_counting_on(c: &Container, at: (u64, u64)) {
    assert_eq!(c.status(), "running", "the restored container does not run");
    let next = c.next_count(Some(0));
    assert!(
        next > at.0 && next <= at.1 + 1,
        "the restored counter wrote {next}, not one after its value at the checkpoint ({}..={}): not the checkpointed shell",
        at.0,
        at.1
    );
    assert_eq!(c.next_count(Some(next)), next + 1, "the restored counter does not count on");
    let init = c.exec("cat /proc/1/cmdline");
    assert!(init.contains("while true"), "pid 1 of the restored container is not the counter: {init:?}");
}

#[test]
fn a_runc_container_is_checkpointed_and_restored_counting_on() {
    let dir = TestDir::new("runc_cr");
    let Some(c) = counting(&dir) else { return };
    let images = dir.join("checkpoint");
    std::fs::create_dir_all(&images).expect("image dir");
    let reaper = Container::reaper(c.init_pid());
    c.criu(&dir, "checkpoint", &images, &[]);
    reaper.join().expect("the reaper");
    assert_ne!(c.status(), "running", "the checkpointed container still runs");
    let at = c.count().expect("the counter at the checkpoint");
    std::fs::write(c.bundle.join("rootfs/tmp/count"), "0").expect("reset the counter file");
    c.criu(&dir, "restore", &images, &["-d"]);
    expect_counting_on(&c, (at, at));
}

/// `--leave-running`: the container counts on after the checkpoint; killed, then restored, it
/// goes on from the checkpoint's value, not from the one it had reached.
#[test]
fn a_runc_container_checkpointed_with_leave_running_runs_on_and_restores() {
    let dir = TestDir::new("runc_leave");
    let Some(c) = counting(&dir) else { return };
    let images = dir.join("checkpoint");
    std::fs::create_dir_all(&images).expect("image dir");
    let before = c.count().expect("the counter before the checkpoint");
    c.criu(&dir, "checkpoint", &images, &["--leave-running"]);
    let after = c.count().expect("the counter after the checkpoint");
    assert_eq!(c.status(), "running", "--leave-running stopped the container");
    let later = c.next_count(Some(after));
    assert_eq!(later, after + 1, "the container left running did not count on");
    let reaper = Container::reaper(c.init_pid());
    let killed = c.runc().args(["delete", "--force", &c.id]).output().expect("runc delete");
    reaper.join().expect("the reaper");
    assert!(killed.status.success(), "runc delete: {}", String::from_utf8_lossy(&killed.stderr));
    std::fs::write(c.bundle.join("rootfs/tmp/count"), "0").expect("reset the counter file");
    c.criu(&dir, "restore", &images, &["-d"]);
    expect_counting_on(&c, (before, after));
}

/// A web server in the container (busybox httpd on 127.0.0.1:8080 of the container's own network
/// namespace, forked by the shell, which then counts): after the restore, a client run in the
/// container (`runc exec`) gets the page again, and the counter goes on.
#[test]
fn a_runc_container_serving_on_its_loopback_answers_after_the_restore() {
    let dir = TestDir::new("runc_httpd");
    let script = format!("httpd -p 127.0.0.1:8080 -h /www; {COUNTER}");
    let Some(c) = counting_with(&dir, &script) else { return };
    let get = "echo -e 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080";
    let page = c.exec(get);
    assert!(page.contains("hello"), "the container's server before the checkpoint: {page:?}");
    let images = dir.join("checkpoint");
    std::fs::create_dir_all(&images).expect("image dir");
    let reaper = Container::reaper(c.init_pid());
    c.criu(&dir, "checkpoint", &images, &[]);
    reaper.join().expect("the reaper");
    let at = c.count().expect("the counter at the checkpoint");
    std::fs::write(c.bundle.join("rootfs/tmp/count"), "0").expect("reset the counter file");
    c.criu(&dir, "restore", &images, &["-d"]);
    expect_counting_on(&c, (at, at));
    let page = c.exec(get);
    assert!(page.contains("hello"), "the restored container's server: {page:?}");
}

/// A container whose stdout is a file of the host (outside its mount namespace, where its restore
/// could not open it again): the checkpoint is refused naming the fd and the file, and the
/// container runs on.
#[test]
fn a_runc_container_writing_to_a_host_file_is_refused_and_runs_on() {
    let dir = TestDir::new("runc_hostfile");
    let out = dir.join("container-stdout.txt");
    let file = std::fs::File::create(&out).expect("the host file");
    let c = match start_container_writing(&dir, COUNTER, Stdio::from(file)) {
        Ok(c) => c,
        Err(why) => return skip(&format!("no runc container: {why}")),
    };
    let at = c.next_count(None);
    let images = dir.join("checkpoint");
    std::fs::create_dir_all(&images).expect("image dir");
    let run = c.criu_output("checkpoint", &images, &[]);
    assert!(!run.status.success(), "the checkpoint of a container writing to a host file succeeded");
    let log = std::fs::read_to_string(images.join("dump.log")).unwrap_or_default();
    assert!(
        log.contains("container-stdout.txt") && log.contains("not at that path in its mount namespace"),
        "the refusal does not name the file: {log}"
    );
    assert_eq!(c.status(), "running", "the refused checkpoint stopped the container");
    assert!(c.next_count(Some(at)) > at, "the container does not count on");
}
