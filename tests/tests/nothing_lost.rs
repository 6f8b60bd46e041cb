//! Nothing is lost when something goes wrong: a dump that cannot write its images, or whose target
//! dies, fails and leaves the process as it was (or reports that it exited); a restore that fails
//! half way, or meets corrupt images, fails naming the problem and leaves no process behind.

use stasis_tests::harness::{skip, Case, TmpfsMount, Workload};
use stasis_tests::workload;
use std::path::Path;

fn dump_fails_into_tmpfs(test: &str, w: Workload, options: &str) {
    let case = Case::new(test, w);
    let images = case.images("images");
    let _mount = match TmpfsMount::new(&images, options) {
        Ok(m) => m,
        Err(reason) => return skip(&reason),
    };
    let Some(mut run) = case.start() else { return };
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, &format!("dump into a tmpfs mounted with {options}"), &[]);
    if images.join("inventory.img").exists() {
        case.fail(&format!("the failed dump left {}/inventory.img", images.display()));
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
}

#[test]
fn dump_into_a_read_only_directory() {
    dump_fails_into_tmpfs("ro_images", workload!("basic"), "ro");
}

#[test]
fn dump_runs_out_of_space() {
    dump_fails_into_tmpfs("enospc", workload!("mem_big").arg("8"), "size=1m");
}

#[test]
fn target_dies_during_dump() {
    let case = Case::new("dump_kill_target", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let r = case.dump(&run, &case.images("images"), &[], &[("STASIS_FAULT", "dump-kill-target")]);
    case.expect_failed(&r, "dump whose target was killed", &[&["exited", "exit"]]);
    case.reap_dumped(&mut run);
    case.expect_no_process_left(pid);
}

#[test]
fn restore_fails_after_memory() {
    let case = Case::new("restore_fault", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let env = [("STASIS_FAULT", "restore-fail-after-memory")];
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &env);
    case.expect_failed(&r, "restore with an injected failure", &[]);
    case.expect_no_process_left(pid);
}

/// A restore that fails in a child built on another tracer thread than the root's leaves no process
/// of the tree behind, on any thread.
#[test]
fn restore_fails_in_a_child_built_in_parallel() {
    let case = Case::new("restore_fault_child", workload!("tree_prefork"));
    let Some(mut run) = case.start() else { return };
    let pids = stasis_tests::harness::tree_pids(run.pid());
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let env = [("STASIS_FAULT", "restore-fail-in-child")];
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &env);
    case.expect_failed(&r, "restore failing in a child", &[&["restore-fail-in-child"]]);
    for pid in pids {
        case.expect_no_process_left(pid);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read images") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy image");
    }
}

fn flip_byte(path: &Path, at_fraction: f64) {
    let mut bytes = std::fs::read(path).expect("read image");
    let i = ((bytes.len() as f64 * at_fraction) as usize).min(bytes.len() - 1);
    bytes[i] ^= 0x40;
    std::fs::write(path, bytes).expect("write image");
}

fn truncate_half(path: &Path) {
    let len = std::fs::metadata(path).expect("stat image").len();
    std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(len / 2)).expect("truncate");
}

/// What is done, to which image file, how.
type Corruption = (&'static str, String, fn(&Path));

#[test]
fn corrupt_images_are_refused() {
    let case = Case::new("corrupt_images", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let corruptions: [Corruption; 4] = [
        ("flipped byte", format!("core-{pid}.img"), |p| flip_byte(p, 0.5)),
        ("truncated", format!("mm-{pid}.img"), truncate_half),
        ("flipped page byte", format!("pages-{pid}.img"), |p| flip_byte(p, 0.5)),
        ("deleted", "inventory.img".to_string(), |p| std::fs::remove_file(p).expect("delete")),
    ];
    for (n, (what, file, corrupt)) in corruptions.into_iter().enumerate() {
        let copy = case.images(&format!("corrupt-{n}"));
        copy_dir(&images, &copy);
        let target = copy.join(&file);
        if !target.exists() {
            let names: Vec<_> =
                std::fs::read_dir(&images).expect("list").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
            case.fail(&format!("image file {file} not found; the dump wrote {names:?}"));
        }
        corrupt(&target);
        let (r, _) = case.stasis().restore_detached(&case.dir, &copy, &[], &[]);
        case.expect_failed(&r, &format!("restore with a {what} {file}"), &[&[file.as_str()]]);
        case.expect_no_process_left(pid);
    }
}

/// The names and contents of the files in `dir`, sorted by name.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("list images")
        .map(|e| {
            let e = e.expect("dir entry");
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("read file"))
        })
        .collect();
    files.sort();
    files
}

/// A dump refused only once the whole tree is inspected (a pidfd of a process outside it) of a
/// process with a 64 MiB heap writes no page file and leaves the image directory exactly as it was:
/// the files already there (an unrelated file, a file named like an image file) stay as they were,
/// and a directory the dump had to make is gone again.
#[test]
fn refused_dump_leaves_the_directory_as_before() {
    let case = Case::new("refused_big", workload!("mem_big").arg("64").arg("pidfd-outside"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    std::fs::create_dir_all(&images).expect("mkdir images");
    std::fs::write(images.join("notes.txt"), "kept\n").expect("write notes");
    std::fs::write(images.join("pstree.img"), "an older file\n").expect("write pstree.img");
    let before = contents(&images);
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump of a process holding a pidfd of pid 1", &[&["pidfd of pid 1"]]);
    let after = contents(&images);
    if after != before {
        let names: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
        case.fail(&format!("the refused dump changed {}: it now holds {names:?}", images.display()));
    }
    case.expect_untouched(&run);

    let fresh = case.images("made/by/dump");
    let log = case.dir.unique("dump", "log");
    let out = case
        .stasis()
        .command()
        .args(["dump", "-t", &run.pid().to_string(), "-D"])
        .arg(&fresh)
        .arg("-o")
        .arg(&log)
        .output()
        .expect("run stasis dump");
    if out.status.success() || case.images("made").exists() {
        case.fail(&format!(
            "the refused dump into a new directory: {}, {} exists: {}",
            out.status,
            case.images("made").display(),
            case.images("made").exists()
        ));
    }
    case.expect_untouched(&run);
    case.finish(&mut run);
}
