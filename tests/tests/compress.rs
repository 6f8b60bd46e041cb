//! Compressed page files (`--compress`): a workload of varied memory (text-like, random, zero,
//! sparse and shared pages) dumped compressed and restored, checking every byte itself; a
//! compressed pre-dump chain restored; a corrupted frame refused naming the file and the chunk;
//! the page map says compressed (`stasis show`), and the page file is smaller than the pages.

use stasis_tests::harness::{number_deleted, skip, Case, Snapshot};
use stasis_tests::workload;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The unsigned number after `"name": ` in a JSON text.
fn field(json: &str, name: &str) -> u64 {
    let key = format!("\"{name}\": ");
    let at = json.find(&key).unwrap_or_else(|| panic!("no {name} in {json}")) + key.len();
    json[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("a number")
}

fn show(case: &Case, images: &Path, json: bool) -> String {
    let mut cmd = case.stasis().command();
    cmd.arg("show");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.arg(images).output().expect("run stasis show");
    if !out.status.success() {
        case.fail(&format!("stasis show {}: {}", images.display(), String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn varied_memory_through_a_compressed_dump() {
    let case = Case::new("compress_mixed", workload!("mem_mixed"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let before = numbered(case.settled_snapshot(pid));
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--compress"]);
    let text = show(&case, &images, false);
    if !text.contains("compressed") {
        case.fail(&format!("stasis show does not say compressed:\n{text}"));
    }
    let json = show(&case, &images, true);
    let (pages, stored) = (field(&json, "bytes"), field(&json, "stored_bytes"));
    eprintln!("{pages} bytes of pages stored in {stored}");
    // 3 MiB of text and 1 MiB of zeros compress well; 3 MiB of random bytes do not.
    if stored == 0 || stored * 10 > pages * 8 {
        case.fail(&format!("{pages} bytes of pages stored in {stored} bytes"));
    }
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, pid, &[]);
    // The shared memory is a new object: compared by order of appearance, not by inode.
    if let Some(d) = before.diff(&numbered(case.snapshot(pid))) {
        case.fail(&format!("state of pid {pid} differs after restore:\n{d}"));
    }
    case.finish(&mut restored);
}

fn numbered(snap: Snapshot) -> Snapshot {
    let mut snaps = vec![snap];
    number_deleted(&mut snaps);
    snaps.pop().expect("one snapshot")
}

#[test]
fn a_corrupted_frame_is_refused_naming_the_file_and_the_chunk() {
    let case = Case::new("compress_corrupt", workload!("mem_mixed"));
    let Some(mut run) = case.start() else { return };
    let pid = run.pid();
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--compress"]);
    case.reap_dumped(&mut run);
    let json = show(&case, &images, true);
    // Flip a byte in the middle of the second frame (chunk 1: it starts after the header page
    // and frame 0).
    let path = images.join(format!("pages-{pid}.img"));
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open the page file");
    let frames = frame_sizes(&json);
    if frames.len() < 2 {
        return skip(&format!("only {} frames", frames.len()));
    }
    let at = 4096 + frames[0] + frames[1] / 2;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).expect("read");
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, at).expect("write");
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    let offset = (4096 + frames[0]).to_string();
    case.expect_failed(
        &r,
        "restore of a corrupted compressed page file",
        &[&[&format!("pages-{pid}.img")], &["chunk 1"], &[&offset]],
    );
    case.expect_no_process_left(pid);
}

/// The `frame_sizes` of the first page map in `stasis show --json`.
fn frame_sizes(json: &str) -> Vec<u64> {
    let Some(at) = json.find("\"frame_sizes\": [") else { return Vec::new() };
    let rest = &json[at + "\"frame_sizes\": [".len()..];
    let end = rest.find(']').unwrap_or(0);
    rest[..end].split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

#[test]
fn auto_dedup_with_compress_is_refused_by_name() {
    let case = Case::new("compress_dedup", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let r = case.dump(&run, &case.images("images"), &["--compress", "--auto-dedup"], &[]);
    case.expect_failed(&r, "dump --compress --auto-dedup", &[&["--auto-dedup"], &["compress"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}
