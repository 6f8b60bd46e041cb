//! Debian's Podman using stasis as its CRIU: `criu` on Podman's PATH is a link to stasis, and
//! Podman drives it through runc (`--runtime runc`). A busybox image made with `podman import` (no
//! registry is reachable) runs a shell counting in memory; `podman container checkpoint` and
//! `restore` bring it back counting on from its value at the checkpoint, and so do `checkpoint
//! --export` and `restore --import` into a new container.

use stasis_tests::harness::{skip, Stasis, TestDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use stasis_tests::harness::BUSYBOX_COUNTER as COUNTER;

/// Podman with `criu` (stasis) first on its PATH.
struct Podman {
    podman: PathBuf,
    path: String,
    image: String,
    /// Containers to remove at the end.
    names: std::cell::RefCell<Vec<String>>,
}

impl Podman {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(&self.podman)
            .args(args)
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
    }

    /// `podman ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's counter (none while unreadable).
    fn count(&self, name: &str) -> Option<u64> {
        let out = self.cmd(&["exec", name, "cat", "/tmp/count"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|_| out.status.success())
    }

    /// Wait (up to 60 s) until the counter reads other than `not`; its value.
    fn next_count(&self, name: &str, not: Option<u64>) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.count(name) {
                Some(n) if Some(n) != not => return n,
                _ if Instant::now() > deadline => panic!("the counter of {name} stays at {not:?}"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Running again and counting on from its value at the checkpoint: one after `at` at least
    /// (a shell started again would count from 1) and at most a few seconds' worth more; then its
    /// next value.
    fn expect_counting_on(&self, name: &str, at: u64) -> u64 {
        let next = self.next_count(name, Some(at));
        assert!(
            next > at && next <= at + 10,
            "{name} counts {next} after the restore, {at} before: not the checkpointed shell"
        );
        let init = self.ok(&["exec", name, "cat", "/proc/1/cmdline"]);
        assert!(init.contains("while true"), "pid 1 of the restored {name} is not the counter: {init:?}");
        self.next_count(name, Some(next))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for name in self.names.borrow().iter() {
            let _ = self.cmd(&["rm", "-f", "-t", "0", name]);
        }
        let _ = self.cmd(&["rmi", "-f", &self.image]);
    }
}

/// Podman with an image of busybox, or why not.
fn podman(dir: &TestDir) -> Result<Podman, String> {
    let podman = stasis_tests::harness::find_program(&["/usr/bin/podman"])?;
    stasis_tests::harness::find_program(&["/usr/sbin/runc", "/usr/bin/runc"])?;
    let bin = dir.join("path");
    std::fs::create_dir_all(&bin).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(Stasis::locate().bin(), bin.join("criu")).map_err(|e| format!("link criu: {e}"))?;
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let rootfs = dir.join("rootfs");
    stasis_tests::harness::busybox_rootfs(&rootfs, &["sh", "sleep", "cat", "mv"])?;
    let tarball = dir.join("rootfs.tar");
    let tar = Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg(".").status();
    tar.ok().filter(|s| s.success()).ok_or("tar of the root filesystem failed")?;
    let image = format!("localhost/stasis-test-busybox:{}", std::process::id());
    let p = Podman { podman, path, image, names: Default::default() };
    let out = p.cmd(&["import", tarball.to_str().unwrap(), &p.image]);
    if !out.status.success() {
        return Err(format!("podman import failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(p)
}

/// A counting container `name` (at 2 at least), or the reason to skip.
fn start(p: &Podman, name: &str) -> Result<u64, String> {
    p.names.borrow_mut().push(name.to_string());
    // Without CAP_SYS_RESOURCE, containers start only with lowered limits.
    let limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
    let mut args = vec!["--runtime", "runc", "run", "-d", "--name", name];
    args.extend(limits);
    args.extend([p.image.as_str(), "sh", "-c", COUNTER]);
    let out = p.cmd(&args);
    if !out.status.success() {
        return Err(format!("podman run failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let mut n = p.next_count(name, None);
    while n < 2 {
        n = p.next_count(name, Some(n));
    }
    Ok(n)
}

fn unique(label: &str) -> String {
    format!("stasis-{label}-{}", std::process::id())
}

#[test]
fn podman_checkpoint_and_restore_and_export_to_a_new_container() {
    let dir = TestDir::new("podman");
    let p = match podman(&dir) {
        Ok(p) => p,
        Err(why) => return skip(&format!("no Podman container: {why}")),
    };
    let name = unique("c1");
    let before = match start(&p, &name) {
        Ok(n) => n,
        Err(why) => return skip(&why),
    };
    p.ok(&["container", "checkpoint", &name]);
    let state = p.ok(&["inspect", "--format", "{{.State.Status}}", &name]);
    assert_eq!(state.trim(), "exited", "the checkpointed container");
    p.ok(&["container", "restore", &name]);
    let now = p.expect_counting_on(&name, before);
    let archive: &Path = &dir.join("c1.tar.gz");
    p.ok(&["container", "checkpoint", "--export", archive.to_str().unwrap(), &name]);
    p.ok(&["rm", "-f", "-t", "0", &name]);
    let copy = unique("c2");
    p.names.borrow_mut().push(copy.clone());
    p.ok(&["container", "restore", "--import", archive.to_str().unwrap(), "--name", &copy]);
    p.expect_counting_on(&copy, now);
}
