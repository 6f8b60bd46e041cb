//! One test case (a test directory, a workload and the stasis binary) and the steps tests compose:
//! start, snapshot, dump, reap, restore, compare, finish, and the checks that nothing was left
//! behind.

use super::dir::TestDir;
use super::process::{proc_state, Running, Workload, EXIT_TIMEOUT};
use super::snapshot::Snapshot;
use super::stasis::{wait_child, CmdResult, Stasis, STASIS_TIMEOUT};
use crate::raw::{self, Exit};
use crate::workload::WAKE;
use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a dumped (killed) workload may take to disappear.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);

/// A test case.
pub struct Case {
    /// The test's directory.
    pub dir: TestDir,
    /// The workload under test.
    pub workload: Workload,
    stasis: OnceCell<Stasis>,
    /// The image directory of the last dump, whose processes `reap_dumped` waits for.
    last_images: std::cell::RefCell<Option<PathBuf>>,
}

impl Case {
    /// A case named `test` (the directory name) for `workload`.
    pub fn new(test: &str, workload: Workload) -> Case {
        Case { dir: TestDir::new(test), workload, stasis: OnceCell::new(), last_images: Default::default() }
    }

    /// The stasis binary (located on first use).
    pub fn stasis(&self) -> &Stasis {
        self.stasis.get_or_init(Stasis::locate)
    }

    /// Panics with `msg` and the watched logs.
    pub fn fail(&self, msg: &str) -> ! {
        self.dir.fail(msg)
    }

    /// Starts the workload and waits for READY; `None` if it skipped.
    pub fn start(&self) -> Option<Running> {
        self.workload.start(&self.dir)
    }

    /// `dir/label`, the image directory for one dump.
    pub fn images(&self, label: &str) -> PathBuf {
        self.dir.join(label)
    }

    /// Snapshots `pid`.
    pub fn snapshot(&self, pid: i32) -> Snapshot {
        Snapshot::take(pid).unwrap_or_else(|e| self.fail(&format!("snapshot of pid {pid}: {e}")))
    }

    /// Snapshots of `pids` with the inode of every object restore makes anew (`... (deleted)`)
    /// replaced by its order of appearance across them all (see `number_deleted`), settled
    /// first with `settled`.
    pub fn numbered_snapshots(&self, pids: &[i32], settled: bool) -> Vec<Snapshot> {
        let take = |&p: &i32| if settled { self.settled_snapshot(p) } else { self.snapshot(p) };
        let mut snaps: Vec<Snapshot> = pids.iter().map(take).collect();
        super::snapshot::number_deleted(&mut snaps);
        snaps
    }

    /// The numbered snapshots of `pids` come to match `before` within 3 s; fails with every diff.
    pub fn compare_numbered(&self, before: &[Snapshot], pids: &[i32]) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let now = self.numbered_snapshots(pids, false);
            let diffs: Vec<String> = (before.iter().zip(&now).zip(pids))
                .filter_map(|((b, a), pid)| {
                    b.diff(a).map(|d| format!("state of pid {pid} differs after restore:\n{d}"))
                })
                .collect();
            if diffs.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                self.fail(&diffs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Snapshots `pid` once its state has settled: two snapshots 100 ms apart agree (a workload
    /// that just printed READY may not be in its wait yet).
    pub fn settled_snapshot(&self, pid: i32) -> Snapshot {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.snapshot(pid);
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.snapshot(pid);
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// Runs `stasis dump` on the workload.
    pub fn dump(&self, run: &Running, images: &Path, extra: &[&str], env: &[(&str, &str)]) -> CmdResult {
        *self.last_images.borrow_mut() = Some(images.to_path_buf());
        self.stasis().dump(&self.dir, run.pid(), images, extra, env)
    }

    /// Runs `stasis dump` and fails the test unless it succeeds.
    pub fn dump_ok(&self, run: &Running, images: &Path, extra: &[&str]) {
        let r = self.dump(run, images, extra, &[]);
        if !r.success() {
            self.fail(&format!("dump of {} (pid {}) failed:\n{}", run.name(), run.pid(), r.describe()));
        }
    }

    /// The only child of the workload `run`: the init of the PID namespace it made (`unshare
    /// --pid --fork`, or a workload that unshares one and forks its init).
    pub fn init_of(&self, run: &Running) -> i32 {
        let pid = run.pid();
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        match text.split_whitespace().map(|p| p.parse::<i32>()).collect::<Vec<_>>()[..] {
            [Ok(init)] => init,
            _ => self.fail(&format!("pid {pid}: children {text:?}, want the init only")),
        }
    }

    /// Dump the init of `run`'s PID namespace ([`Case::init_of`]), reap `run` (which exits with
    /// it), restore the init and check its PASS.
    pub fn checkpoint_restore_init(&self, run: &mut Running) {
        let init = self.init_of(run);
        let images = self.images("images");
        let r = self.stasis().dump(&self.dir, init, &images, &[], &[]);
        if !r.success() {
            self.fail(&format!("dump of the init (pid {init}) failed:\n{}", r.describe()));
        }
        // The first process exits with its init; the rest of the namespace died with the init.
        self.reap_dumped(run);
        let mut restored = self.restore_ok(&images, init, &[]);
        self.finish(&mut restored);
    }

    /// Reaps a workload that a dump (without --leave-running) should have killed.
    pub fn reap_dumped(&self, run: &mut Running) {
        let deadline = Instant::now() + GONE_TIMEOUT;
        loop {
            match run.try_exit() {
                Ok(Some(_)) => return self.reap_rest_of_tree(run.pid(), deadline),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => self.fail(&format!(
                    "{} (pid {}) still exists {GONE_TIMEOUT:?} after the dump (state, tracer: {:?})",
                    run.name(),
                    run.pid(),
                    proc_state(run.pid())
                )),
                Err(e) => self.fail(&e),
            }
        }
    }

    /// The other processes of the last dump's tree (one `core-PID.img` each) were killed too, and
    /// its zombies (in `pstree.img` only) stay: once their parent died they became children of this
    /// test process (the subreaper), which must reap them, or their pids stay taken.
    fn reap_rest_of_tree(&self, root: i32, deadline: Instant) {
        let Some(images) = self.last_images.borrow().clone() else { return };
        let mut pids: Vec<i32> = std::fs::read_dir(&images)
            .map(|d| d.flatten().filter_map(|e| core_pid(&e.file_name().to_string_lossy())).collect())
            .unwrap_or_default();
        pids.extend(self.zombies_of(&images));
        for pid in pids.into_iter().filter(|&p| p != root) {
            while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = raw::try_waitpid(pid);
                if Instant::now() > deadline {
                    self.fail(&format!("pid {pid} of the dumped tree still exists {GONE_TIMEOUT:?} after the dump"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The zombies of the tree in `images` (`stasis show --json`: the `pstree` processes with
    /// `"zombie": true`).
    fn zombies_of(&self, images: &Path) -> Vec<i32> {
        let out =
            self.stasis().command().arg("show").arg(images).arg("--json").stderr(std::process::Stdio::null()).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let Some(pstree) = text.split("\"pstree\"").nth(1) else { return Vec::new() };
        pstree
            .split('{')
            .filter(|entry| entry.contains("\"zombie\": true"))
            .filter_map(|entry| {
                let after = entry.split("\"pid\": ").nth(1)?;
                after.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
            })
            .collect()
    }

    /// Runs `stasis restore -d` and fails the test unless it succeeds and restores `pid`;
    /// returns the restored process, adopted.
    pub fn restore_ok(&self, images: &Path, pid: i32, extra: &[&str]) -> Running {
        let (r, pidfile) = self.stasis().restore_detached(&self.dir, images, extra, &[]);
        self.adopt_restored(r, &pidfile, pid)
    }

    /// [`Case::restore_ok`] with our `fd` given to stasis as its fd `target`.
    pub fn restore_ok_passing(
        &self,
        images: &Path,
        pid: i32,
        extra: &[&str],
        fd: std::os::fd::BorrowedFd<'_>,
        target: i32,
    ) -> Running {
        let (r, pidfile) = self.stasis().restore_detached_passing(&self.dir, images, extra, fd, target);
        self.adopt_restored(r, &pidfile, pid)
    }

    fn adopt_restored(&self, r: CmdResult, pidfile: &Path, pid: i32) -> Running {
        if !r.success() {
            self.fail(&format!("restore of {} failed:\n{}", self.workload.name(), r.describe()));
        }
        let text = std::fs::read_to_string(pidfile)
            .unwrap_or_else(|e| self.fail(&format!("pidfile {}: {e}\n{}", pidfile.display(), r.describe())));
        let restored: i32 = text
            .trim()
            .parse()
            .unwrap_or_else(|e| self.fail(&format!("pidfile {} holds {text:?}: {e}", pidfile.display())));
        let run = Running::adopt(restored, self.workload.name(), self.log_of_first_run(), self.workload.wakes());
        if restored != pid {
            self.fail(&format!("restored pid {restored}, expected the original pid {pid}"));
        }
        run
    }

    /// The log of the workload's first run (restored processes keep writing to it).
    pub fn log_of_first_run(&self) -> Option<PathBuf> {
        Some(self.dir.join(&format!("{}.log", self.workload.name())))
    }

    /// Compares `pid` with `before`, retrying for a short while (a just-restored task may still
    /// be on its way back into its wait).
    pub fn compare(&self, before: &Snapshot, pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let diff = before.diff(&self.snapshot(pid));
            match diff {
                None => return,
                Some(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Some(d) => self.fail(&format!("state of pid {pid} differs after restore:\n{d}")),
            }
        }
    }

    /// Wakes the workload (unless it finishes by itself) and checks its PASS.
    pub fn finish(&self, run: &mut Running) {
        if let Err(e) = run.finish(EXIT_TIMEOUT) {
            self.fail(&e);
        }
    }

    /// Checks that a workload is neither stopped nor traced (after a failed dump).
    pub fn expect_untouched(&self, run: &Running) {
        match proc_state(run.pid()) {
            Some((state, 0)) if state != 'T' && state != 't' && state != 'Z' => {}
            other => self.fail(&format!(
                "{} (pid {}) is not running untouched after the failed dump: state, tracer {other:?}",
                run.name(),
                run.pid()
            )),
        }
    }

    /// Checks, allowing 2 s, that no process of this test exists any more: neither `pid` nor any
    /// process whose environment names this test's work dir. Zombies that were reparented to the
    /// test process (the child subreaper) are reaped, as init would.
    pub fn expect_no_process_left(&self, pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut left = processes_of(&self.dir);
            if !left.contains(&pid) && proc_state(pid).is_some() {
                left.push(pid);
            }
            for &p in &left {
                if proc_state(p).is_some_and(|(s, _)| s == 'Z') {
                    let _ = raw::try_waitpid(p);
                }
            }
            left.retain(|&p| proc_state(p).is_some());
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let states: Vec<_> = left.iter().map(|&p| (p, proc_state(p))).collect();
                for &p in &left {
                    let _ = raw::kill(p, libc::SIGKILL);
                }
                self.fail(&format!("processes left behind (pid, (state, tracer)): {states:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails the test unless `r` failed and its stderr contains, for every group of `needles`, at
    /// least one of the group's strings (case-insensitive).
    pub fn expect_failed(&self, r: &CmdResult, what: &str, needles: &[&[&str]]) {
        if r.success() {
            self.fail(&format!("{what} succeeded, expected a failure:\n{}", r.describe()));
        }
        let stderr = r.stderr.to_lowercase();
        let log = r.log_text().to_lowercase();
        for group in needles {
            if group.iter().any(|n| stderr.contains(&n.to_lowercase())) {
                continue;
            }
            let in_log = group.iter().any(|n| log.contains(&n.to_lowercase()));
            self.fail(&format!(
                "{what} failed as expected, but stderr names none of {group:?}{}:\n{}",
                if in_log { " (only the -o log does)" } else { "" },
                r.describe()
            ));
        }
    }

    /// The standard flow: start, snapshot, dump, reap, restore -d, compare, finish with PASS.
    pub fn checkpoint_restore(&self, dump_extra: &[&str], restore_extra: &[&str]) {
        let Some(mut run) = self.start() else { return };
        let before = self.settled_snapshot(run.pid());
        let images = self.images("images");
        self.dump_ok(&run, &images, dump_extra);
        self.reap_dumped(&mut run);
        let mut restored = self.restore_ok(&images, run.pid(), restore_extra);
        self.compare(&before, restored.pid());
        self.finish(&mut restored);
    }
}

impl Case {
    /// Runs `stasis restore` without `-d` (stasis stays the parent and exits with the workload's
    /// status) and waits until `pid` runs on its own; returns the adopted process and stasis.
    pub fn restore_attached(&self, images: &Path, pid: i32) -> (Running, std::process::Child) {
        let log = self.dir.unique("restore", "log");
        self.dir.watch_log(&log);
        let mut cmd = self.stasis().command();
        cmd.args(Stasis::restore_args(images, &log, &log.with_extension("pid"), false, &[]));
        let stderr = std::fs::File::create(log.with_extension("stderr")).expect("stderr file");
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn stasis restore");
        let restored = Running::adopt(pid, self.workload.name(), self.log_of_first_run(), self.workload.wakes());
        self.wait_restored(pid, &mut child);
        (restored, child)
    }

    /// Waits until `pid` runs on its own again: exists, is not traced, and sleeps.
    fn wait_restored(&self, pid: i32, child: &mut std::process::Child) {
        let deadline = Instant::now() + STASIS_TIMEOUT;
        loop {
            if let Some((state, 0)) = proc_state(pid) {
                if state == 'S' {
                    return;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.fail(&format!("stasis restore exited with {status} before pid {pid} was restored"));
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "pid {pid} not restored and running within {STASIS_TIMEOUT:?}: {:?}",
                    proc_state(pid)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The standard flow with an attached restore: stasis must exit with status 0 and the workload
    /// print PASS.
    pub fn checkpoint_restore_attached(&self) {
        let Some(mut run) = self.start() else { return };
        let pid = run.pid();
        let before = self.settled_snapshot(pid);
        let images = self.images("images");
        self.dump_ok(&run, &images, &[]);
        self.reap_dumped(&mut run);
        let (mut restored, mut child) = self.restore_attached(&images, pid);
        self.compare(&before, pid);
        restored.signal(WAKE).expect("wake signal");
        let (exit, timed_out) = wait_child(&mut child, EXIT_TIMEOUT);
        restored.forget();
        let text = restored.log_text();
        if exit != Exit::Code(0) || text.lines().last() != Some("PASS") {
            self.fail(&format!("attached restore ended with {exit:?} (timed out: {timed_out}); output:\n{text}"));
        }
    }
}

impl Drop for Case {
    /// Kills and reaps whatever process of this test is still around (for instance one a failed
    /// restore left behind, which no `Running` guards).
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let left = processes_of(&self.dir);
            if left.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in left {
                let _ = raw::kill(pid, libc::SIGKILL);
                let _ = raw::try_waitpid(pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Pids of processes whose environment holds `STASIS_WORKDIR=<dir>/work`.
pub fn processes_of(dir: &TestDir) -> Vec<i32> {
    let needle = format!("STASIS_WORKDIR={}\0", dir.work().display()).into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_slice()))
        })
        .collect()
}

/// Runs the standard checkpoint/restore flow for `workload` in a case named `test`.
pub fn checkpoint_restore(test: &str, workload: Workload) {
    Case::new(test, workload).checkpoint_restore(&[], &[]);
}

/// Runs `workload` without stasis: start, READY, wake, PASS. Checks the workload itself.
pub fn standalone(test: &str, workload: Workload) {
    let case = Case::new(test, workload);
    let Some(mut run) = case.start() else { return };
    case.finish(&mut run);
}

/// The PID in an image file name `core-PID.img`.
fn core_pid(name: &str) -> Option<i32> {
    name.strip_prefix("core-")?.strip_suffix(".img")?.parse().ok()
}
