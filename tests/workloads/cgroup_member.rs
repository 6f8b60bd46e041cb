//! A process in a cgroup v2 of the test's (arguments: the cgroup's directory under the v2 mount, its
//! path as /proc/self/cgroup shows it, then a settings file of it and the value it holds). It joins the
//! cgroup itself before READY; after the restore it checks it is in that cgroup again (its
//! `0::` line) and that the cgroup, made again by the restore, holds the setting.
//!
//! With a fifth argument `ns`, it then unshares a cgroup namespace there and moves itself to the
//! cgroup's child `inner`: its `0::` line reads `/inner`, from inside its namespace, before and
//! after the restore, and its cgroup namespace is not its parent's.

use stasis_tests::workload::{self, OrFail};

fn v2_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

fn main() {
    let mut s = workload::start();
    let args: Vec<String> = std::env::args().collect();
    let (dir, path, file, value) = (&args[1], &args[2], &args[3], &args[4]);
    std::fs::write(format!("{dir}/cgroup.procs"), std::process::id().to_string()).or_fail("joining the cgroup");
    let in_ns = args.get(5).is_some_and(|a| a == "ns");
    let mut want = path.clone();
    if in_ns {
        stasis_tests::raw::unshare(libc::CLONE_NEWCGROUP).or_fail("unshare(CLONE_NEWCGROUP)");
        std::fs::write(format!("{dir}/inner/cgroup.procs"), std::process::id().to_string()).or_fail("joining inner");
        want = "/inner".to_string();
    }
    let ns_link = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).ok();
    let before = v2_cgroup();
    s.checker.same("cgroup before the dump", &Some(want), &before);
    s.ready();
    s.wait_for_wake();
    s.checker.same("cgroup after the restore", &before, &v2_cgroup());
    if in_ns {
        let (own, parent) = (ns_link("self"), ns_link(&std::os::unix::process::parent_id().to_string()));
        s.checker.check(own.is_some() && own != parent, || {
            format!("cgroup namespace {own:?} after the restore is its parent's ({parent:?})")
        });
    }
    let setting = std::fs::read_to_string(format!("{dir}/{file}")).ok().map(|v| v.trim().to_string());
    s.checker.same(&format!("{file} of the cgroup"), &Some(value.clone()), &setting);
    s.finish()
}
