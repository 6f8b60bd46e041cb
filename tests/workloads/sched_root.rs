//! The root directory (chroot), the nice value and the CPU affinity survive. The workload confines
//! itself to a directory of its work dir, so after restore "/" must be that directory (same inode).

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::os::unix::fs::MetadataExt;

fn main() {
    let mut s = workload::start();
    let jail = workload::work_dir().join("jail");
    std::fs::create_dir_all(jail.join("inside")).or_fail("mkdir jail");
    let jail_ino = std::fs::metadata(&jail).or_fail("stat jail").ino();
    raw::set_nice(7).or_fail("setpriority");
    let cpus = raw::get_affinity().or_fail("sched_getaffinity");
    let want_cpus = vec![*cpus.last().ok_or_else(|| std::io::Error::other("no CPU")).or_fail("sched_getaffinity")];
    raw::set_affinity(&want_cpus).or_fail("sched_setaffinity");
    raw::chroot(&jail).or_fail("chroot");
    std::env::set_current_dir("/inside").or_fail("chdir");
    s.ready();
    s.wait_for_wake();
    let root_ino = std::fs::metadata("/").map(|m| m.ino());
    s.checker.check(root_ino.as_ref().ok() == Some(&jail_ino), || {
        format!("root is inode {root_ino:?}, want the jail {jail_ino}")
    });
    s.checker.check(std::path::Path::new("/inside").is_dir(), || "the jail's /inside is not visible".into());
    let cwd_ino = std::fs::metadata(".").map(|m| m.ino()).ok();
    let inside_ino = std::fs::metadata("/inside").map(|m| m.ino()).ok();
    s.checker.check(cwd_ino.is_some() && cwd_ino == inside_ino, || {
        format!("cwd is inode {cwd_ino:?}, want /inside {inside_ino:?}")
    });
    s.checker.same("nice", &7, &raw::get_nice().or_fail("getpriority"));
    s.checker.same("affinity", &want_cpus, &raw::get_affinity().or_fail("sched_getaffinity"));
    s.finish()
}
