//! Hugetlb memory: private and shared MAP_HUGETLB areas in a parent and its child come back
//! hugetlb, whole and still shared; a restore without the huge pages they need fails naming them
//! and leaves nothing behind; a compressed dump of them too; an MFD_HUGETLB memfd is refused by
//! name at dump.
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

#[test]
fn an_mfd_hugetlb_memfd_is_refused_by_name() {
    let Some(_pool) = pool(2) else { return };
    let case = Case::new("hugetlb_memfd", workload!("mem_flags").arg("hugetlb-memfd"));
    let Some(mut run) = case.start() else { return };
    let addr = run.log_text().lines().find_map(|l| l.strip_prefix("huge ")).unwrap_or_default().trim().to_string();
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump of a process with an MFD_HUGETLB memfd", &[&["hugetlb"], &[&addr], &["memfd"]]);
    if images.join("inventory.img").exists() {
        case.fail("the failed dump left an inventory.img");
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
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
    let case = Case::new("hugetlb_chain", workload!("hugetlb").arg("tree"));
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
    case.dump_ok(&run, &last, &["--prev-images-dir", "../pre", "--track-mem"]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&last, root, &[]);
    case.finish(&mut restored);
}
