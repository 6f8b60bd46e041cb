//! cgroup v2 membership: a process in a cgroup of its own, dumped, the cgroup removed, restored:
//! the restore (`--manage-cgroups` soft, CRIU's default) makes the cgroup again with its setting
//! and puts the process back in it. The restored process checks both itself. The same for a
//! process in a cgroup namespace of its own, rooted at that cgroup.

use stasis_tests::harness::{skip, Case};
use stasis_tests::workload;
use std::path::PathBuf;

/// The cgroup v2 mount (alone at /sys/fs/cgroup, or /sys/fs/cgroup/unified beside v1 hierarchies).
fn v2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
    })
}

/// The directory of a test cgroup, removed at the end (after its tasks are gone) even on failure.
struct TestCgroup(PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Remove the cgroup `dir` once the killed workload has left it: its last task is freed a moment
/// after its parent reaped it (EBUSY until then), up to 5 s.
fn remove_when_empty(case: &Case, dir: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => case.fail(&format!("removing the dumped cgroup {}: {e}", dir.display())),
        }
    }
}

#[test]
fn a_removed_cgroup_is_made_again_with_its_setting() {
    removed_cgroup_made_again("cgroup_member", false);
}

/// A process that unshared a cgroup namespace in its cgroup and moved to a child cgroup: the
/// restore makes both cgroups again, a namespace rooted at the first, and the process in the child
/// sees `/inner`, in a namespace not its parent's.
#[test]
fn a_cgroup_namespace_comes_back_rooted_where_it_was() {
    removed_cgroup_made_again("cgroup_ns", true);
}

fn removed_cgroup_made_again(name: &str, in_ns: bool) {
    let Some(mount) = v2_mount() else { return skip("no cgroup v2 hierarchy is mounted here") };
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(ours) = ours.lines().find_map(|l| l.strip_prefix("0::")) else {
        return skip("this process has no cgroup v2 line in /proc/self/cgroup");
    };
    let rel = format!("{}/stasis-test-{}", ours.trim_end_matches('/'), std::process::id());
    let dir = TestCgroup(mount.join(rel.trim_start_matches('/')));
    if let Err(e) = std::fs::create_dir(&dir.0) {
        return skip(&format!("cannot make a cgroup at {}: {e}", dir.0.display()));
    }
    // cgroup.max.depth exists in every cgroup v2, whichever controllers this one has.
    std::fs::write(dir.0.join("cgroup.max.depth"), "3").expect("cgroup.max.depth");
    let inner = TestCgroup(dir.0.join("inner"));
    if in_ns {
        std::fs::create_dir(&inner.0).expect("the inner cgroup");
    }
    let mut w = workload!("cgroup_member").arg(dir.0.to_str().unwrap()).arg(&rel).arg("cgroup.max.depth").arg("3");
    if in_ns {
        w = w.arg("ns");
    }
    let case = Case::new(name, w);
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    if in_ns {
        remove_when_empty(&case, &inner.0);
    }
    remove_when_empty(&case, &dir.0);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    case.finish(&mut restored);
}

/// `--freeze-cgroup` of a cgroup that does not exist fails the dump and the pre-dump by name, with
/// nothing written, and the tree runs on.
#[test]
fn a_missing_freeze_cgroup_fails_dump_and_pre_dump_by_name() {
    let case = Case::new("cgroup_freeze_missing", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let missing = "/sys/fs/cgroup/stasis-no-such-cgroup";
    for action in ["dump", "pre-dump"] {
        let images = case.images(action);
        std::fs::create_dir_all(&images).expect("images dir");
        let out = case
            .stasis()
            .command()
            .args([action, "-t", &run.pid().to_string(), "-D", images.to_str().unwrap(), "--freeze-cgroup", missing])
            .output()
            .expect("running stasis");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains(missing) {
            case.fail(&format!("{action} with a missing --freeze-cgroup: {:?}, stderr: {stderr}", out.status));
        }
        case.expect_untouched(&run);
        if std::fs::read_dir(&images).map(|d| d.count()).unwrap_or(0) != 0 {
            case.fail(&format!("{action} with a missing --freeze-cgroup left files in {}", images.display()));
        }
    }
    run.signal(workload::WAKE).expect("wake");
    case.finish(&mut run);
}

/// A process in a cgroup of a cgroup v1 hierarchy (pids, with pids.max set) and its thread in
/// that cgroup's child: dumped, both cgroups removed, restored: the restore makes them again,
/// pids.max set, and puts the process and the thread back each in its own.
#[test]
fn a_removed_v1_cgroup_is_made_again_with_its_setting_and_its_thread() {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(mount) = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        (r.first() == Some(&"cgroup") && r.get(2)?.split(',').any(|o| o == "pids") && f.get(3) == Some(&"/"))
            .then(|| PathBuf::from(f[4]))
    }) else {
        return skip("no cgroup v1 pids hierarchy is mounted here");
    };
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(ours) = ours.lines().find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string())) else {
        return skip("this process has no pids line in /proc/self/cgroup");
    };
    let rel = format!("{}/stasis-test-v1-{}", ours.trim_end_matches('/'), std::process::id());
    let dir = TestCgroup(mount.join(rel.trim_start_matches('/')));
    if let Err(e) = std::fs::create_dir(&dir.0) {
        return skip(&format!("cannot make a cgroup at {}: {e}", dir.0.display()));
    }
    let inner = TestCgroup(dir.0.join("t"));
    std::fs::create_dir(&inner.0).expect("the thread's cgroup");
    std::fs::write(dir.0.join("pids.max"), "64").expect("pids.max");
    let w = workload!("cgroup_v1_member").arg(mount.to_str().unwrap()).arg(&rel).arg("pids").arg("pids.max").arg("64");
    let case = Case::new("cgroup_v1_member", w);
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    remove_when_empty(&case, &inner.0);
    remove_when_empty(&case, &dir.0);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    case.finish(&mut restored);
}
