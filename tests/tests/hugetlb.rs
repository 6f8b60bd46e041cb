//! Hugetlb memory: private and shared MAP_HUGETLB areas in a parent and its child come back
//! hugetlb, whole and still shared; a restore without the huge pages they need fails naming them
//! and leaves nothing behind; a compressed dump of them too; MFD_HUGETLB memfds (held, mapped
//! shared and privately, sealed) in a parent and its child come back hugetlb memfds, and a
//! restore without their huge pages fails naming them, and a pre-dump chain keeps them; a mapped
//! file of a hugetlbfs mount the test makes is mapped again by path, and one unlinked while held
//! and mapped is made again on the mount.
//!
//! Every test reserves the huge pages it needs in `/proc/sys/vm/nr_hugepages` and puts the old
//! value back; they run one at a time, as they share the pool (one lock under `cargo test`, the
//! `hugepages` test group of .config/nextest.toml under nextest, which runs each in its own process).

use stasis_tests::harness::{skip, tree_pids, Case};
use stasis_tests::workload;
use std::sync::Mutex;

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";
/// One test at a time changes the pool.
static POOL: Mutex<()> = Mutex::new(());

/// `extra` more 2 MiB huge pages in the pool while it lives; the sysctl is put back on drop.
struct HugePages {
    old: u64,
    _lock: std::sync::MutexGuard<'static, ()>,
}

fn read_nr() -> Result<u64, String> {
    let text = std::fs::read_to_string(NR_HUGEPAGES).map_err(|e| format!("{NR_HUGEPAGES}: {e}"))?;
    text.trim().parse().map_err(|e| format!("{NR_HUGEPAGES}: {e}"))
}

fn set_nr(n: u64) -> Result<(), String> {
    std::fs::write(NR_HUGEPAGES, format!("{n}")).map_err(|e| format!("{NR_HUGEPAGES}: {e}"))
}

impl HugePages {
    fn reserve(extra: u64) -> Result<HugePages, String> {
        let lock = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let old = read_nr()?;
        set_nr(old + extra)?;
        let reserved = HugePages { old, _lock: lock };
        match read_nr()? {
            n if n >= old + extra => Ok(reserved),
            n => Err(format!("the kernel gave {n} huge pages, not {}", old + extra)),
        }
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        let _ = set_nr(self.old);
    }
}

/// Reserves `extra` huge pages, or says why the test is skipped.
fn pool(extra: u64) -> Option<HugePages> {
    match HugePages::reserve(extra) {
        Ok(r) => Some(r),
        Err(reason) => {
            skip(&format!("cannot reserve huge pages: {reason}"));
            None
        }
    }
}

/// The parent's private area (four huge pages, three filled), the shared one (two) and the
/// child's copy of one private page: seven pages at dump and at restore.
const TREE_PAGES: u64 = 8;

/// Dump, kill and restore the tree of `case`; compare the maps and state of every process.
fn round_trip(case: &Case, processes: usize, dump_extra: &[&str]) {
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let pids = tree_pids(root);
    if pids.len() != processes {
        case.fail(&format!("the tree of pid {root} has {} processes {pids:?}, expected {processes}", pids.len()));
    }
    // The inodes of the hugetlb objects (new ones after restore) numbered: the comparison also
    // checks the two processes map one shared object.
    let before = case.numbered_snapshots(&pids, true);
    let images = case.images("images");
    case.dump_ok(&run, &images, dump_extra);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, root, &[]);
    case.compare_numbered(&before, &pids);
    case.finish(&mut restored);
}

#[test]
fn private_and_shared_hugetlb_areas_of_a_parent_and_its_child() {
    let Some(_pool) = pool(TREE_PAGES) else { return };
    round_trip(&Case::new("hugetlb_tree", workload!("hugetlb").arg("tree")), 2, &[]);
}

/// A compressed page file is decompressed straight into the task (`/proc/PID/mem`), huge pages too.
#[test]
fn hugetlb_areas_through_a_compressed_dump() {
    let Some(_pool) = pool(TREE_PAGES) else { return };
    round_trip(&Case::new("hugetlb_compress", workload!("hugetlb").arg("tree")), 2, &["--compress"]);
}

#[test]
fn one_private_huge_page() {
    let Some(_pool) = pool(2) else { return };
    round_trip(&Case::new("hugetlb_anon", workload!("mem_flags").arg("hugetlb-anon")), 1, &[]);
}

#[test]
fn a_restore_without_the_huge_pages_fails_naming_them() {
    let Some(pool) = pool(TREE_PAGES) else { return };
    let case = Case::new("hugetlb_short", workload!("hugetlb").arg("tree"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    set_nr(pool.old).unwrap_or_else(|e| case.fail(&e));
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore without huge pages", &[&["huge pages"], &["nr_hugepages"], &["anon_hugepage"]]);
    case.expect_no_process_left(pid);
    set_nr(pool.old + TREE_PAGES).unwrap_or_else(|e| case.fail(&e));
    let mut restored = case.restore_ok(&images, pid, &[]);
    case.finish(&mut restored);
}

/// The `memfd` case's huge pages: `stasis-huge` (three pages of data) and the private mapping of
/// two of them (reserved whole), `stasis-huge-map` and `stasis-huge-fd` (one each): seven, and one
/// to spare.
const MEMFD_PAGES: u64 = 8;
/// `stasis-huge` is 6 MiB of data, over the default `--ghost-limit` of 1 MiB.
const GHOST_LIMIT: [&str; 2] = ["--ghost-limit", "16M"];

/// MFD_HUGETLB memfds in a parent and its child: one held by an fd (sealed, mode 0640) and
/// mapped shared and privately, one only mapped, one only held; each comes back a hugetlb memfd
/// with its name, size, page size, mode, seals and contents, the shared mapping still shared.
#[test]
fn mfd_hugetlb_memfds_of_a_parent_and_its_child() {
    let Some(_pool) = pool(MEMFD_PAGES) else { return };
    round_trip(&Case::new("hugetlb_memfd", workload!("hugetlb").arg("memfd")), 2, &GHOST_LIMIT);
}

#[test]
fn a_restore_without_the_huge_pages_of_the_memfds_fails_naming_them() {
    let Some(pool) = pool(MEMFD_PAGES) else { return };
    let case = Case::new("hugetlb_memfd_short", workload!("hugetlb").arg("memfd"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &GHOST_LIMIT);
    case.reap_dumped(&mut run);
    set_nr(pool.old).unwrap_or_else(|e| case.fail(&e));
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore without huge pages", &[&["huge pages"], &["nr_hugepages"], &["memfd:stasis-huge"]]);
    case.expect_no_process_left(pid);
    set_nr(pool.old + MEMFD_PAGES).unwrap_or_else(|e| case.fail(&e));
    let mut restored = case.restore_ok(&images, pid, &[]);
    case.finish(&mut restored);
}

/// A hugetlbfs mount of the test's own; the file the workload made there is removed and the
/// mount unmounted on drop (giving the file's huge pages back to the pool).
struct Hugetlbfs {
    dir: std::path::PathBuf,
}

impl Hugetlbfs {
    fn mount(dir: std::path::PathBuf) -> Result<Hugetlbfs, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let m = Hugetlbfs { dir };
        m.remount()?;
        Ok(m)
    }

    /// Mounts it (again) at its dir.
    fn remount(&self) -> Result<(), String> {
        let out = std::process::Command::new("mount")
            .args(["-t", "hugetlbfs", "-o", "pagesize=2M", "none"])
            .arg(&self.dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount -t hugetlbfs failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(())
    }

    /// Unmounts it (lazily if it is busy), after removing the workload's file.
    fn unmount(&self) {
        let _ = std::fs::remove_file(self.dir.join("stasis-huge-file"));
        let umount = |lazy: bool| {
            let mut cmd = std::process::Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.dir).status().is_ok_and(|s| s.success())
        };
        if !umount(false) {
            umount(true);
        }
    }
}

impl Drop for Hugetlbfs {
    fn drop(&mut self) {
        if std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(&*self.dir.to_string_lossy())) {
            self.unmount();
        }
    }
}

/// `case` with its workload given the dir of a hugetlbfs mount of its own (`case_arg DIR`).
fn with_mount(name: &str, case_arg: &str) -> Option<(Case, Hugetlbfs)> {
    let mut case = Case::new(name, workload!("hugetlb").arg(case_arg));
    let mount = match Hugetlbfs::mount(case.dir.path().join("huge")) {
        Ok(m) => m,
        Err(reason) => {
            skip(&format!("cannot mount hugetlbfs: {reason}"));
            return None;
        }
    };
    case.workload = workload!("hugetlb").arg(case_arg).arg(&mount.dir);
    Some((case, mount))
}

/// A file on a hugetlbfs mount, held and mapped shared and privately: mapped again by path (its
/// pages stay in the file while the process is gone), its private copy restored.
#[test]
fn a_mapped_hugetlbfs_file() {
    // The file's page and the reservation of its second, the private copy: three, and one to spare.
    let Some(_pool) = pool(4) else { return };
    let Some((case, _mount)) = with_mount("hugetlb_file", "hugefile") else { return };
    round_trip(&case, 1, &[]);
}

/// A file of a hugetlbfs mount unlinked while held and mapped: made again on the mount (its data
/// through a mapping), unlinked again, fd and mapping one file.
#[test]
fn an_unlinked_hugetlbfs_file() {
    // Its page, the reservation of its second: two, and one to spare.
    let Some(_pool) = pool(3) else { return };
    let Some((case, _mount)) = with_mount("hugetlb_file_unlinked", "hugefile-unlinked") else { return };
    round_trip(&case, 1, &GHOST_LIMIT);
}

/// The same file, its mount gone at restore: the file would be made on another filesystem, so the
/// restore fails naming it and leaves neither process nor file; with the mount back, it works.
#[test]
fn an_unlinked_hugetlbfs_file_without_its_mount_fails_naming_it() {
    let Some(_pool) = pool(3) else { return };
    let Some((case, mount)) = with_mount("hugetlb_file_unmounted", "hugefile-unlinked") else { return };
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &GHOST_LIMIT);
    case.reap_dumped(&mut run);
    mount.unmount();
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore without the hugetlbfs mount", &[&["hugetlbfs"], &["stasis-huge-file"]]);
    case.expect_no_process_left(pid);
    let left: Vec<_> =
        std::fs::read_dir(&mount.dir).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    if !left.is_empty() {
        case.fail(&format!("the failed restore left {left:?} in {}", mount.dir.display()));
    }
    mount.remount().unwrap_or_else(|e| case.fail(&e));
    let mut restored = case.restore_ok(&images, pid, &[]);
    case.finish(&mut restored);
}

#[test]
fn standalone_hugetlb_tree() {
    let Some(_pool) = pool(TREE_PAGES) else { return };
    stasis_tests::harness::standalone("sa-hugetlb_tree", workload!("hugetlb").arg("tree"));
}

/// A pre-dump, then a dump on it (`--track-mem`): hugetlb areas are not write-tracked, the dump
/// saves them in full, and the restore through the chain gives them back whole.
#[test]
fn hugetlb_areas_through_a_pre_dump_chain() {
    let Some(_pool) = pool(TREE_PAGES) else { return };
    chain_round_trip(&Case::new("hugetlb_chain", workload!("hugetlb").arg("tree")), &[]);
}

/// The memfds too: their contents are saved by the last dump, with the files.
#[test]
fn mfd_hugetlb_memfds_through_a_pre_dump_chain() {
    let Some(_pool) = pool(MEMFD_PAGES) else { return };
    chain_round_trip(&Case::new("hugetlb_memfd_chain", workload!("hugetlb").arg("memfd")), &GHOST_LIMIT);
}

/// Pre-dump `case`, dump it on the pre-dump with `extra`, restore through the chain.
fn chain_round_trip(case: &Case, extra: &[&str]) {
    let Some(mut run) = case.start() else { return };
    let root = run.pid();
    let pre = case.images("pre");
    let log = case.dir.unique("pre-dump", "log");
    let mut cmd = case.stasis().command();
    cmd.args(["pre-dump", "-t", &root.to_string(), "-vv", "-D"]).arg(&pre).arg("-o").arg(&log);
    let out = cmd.output().expect("run stasis pre-dump");
    if !out.status.success() {
        case.fail(&format!("pre-dump: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let last = case.images("last");
    let mut args = vec!["--prev-images-dir", "../pre", "--track-mem"];
    args.extend_from_slice(extra);
    case.dump_ok(&run, &last, &args);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&last, root, &[]);
    case.finish(&mut restored);
}
