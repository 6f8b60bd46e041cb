//! The JSON value and the text summary of a sample image.

use std::fs;

use stasis_image::sample::*;
use stasis_image::{ImageDir, ImageKind};

use super::{render_text, to_json};

#[test]
fn json_has_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let dir = ImageDir::open(tmp.path()).unwrap();
    let json = to_json(&dir).unwrap();
    assert_eq!(json["inventory"]["root_pid"], PID);
    assert_eq!(json["pstree"]["processes"][0]["threads"][1], PID + 1);
    let p = &json["processes"]["4242"];
    assert_eq!(p["core"].as_array().unwrap().len(), 2);
    assert_eq!(p["core"][0]["comm"], "workload");
    assert_eq!(p["core"][0]["pending"][0]["siginfo"].as_str().unwrap().len(), 256);
    assert_eq!(p["mm"]["vmas"][1]["name"], "[stack]");
    assert_eq!(p["pagemap"]["runs"], 2);
    assert_eq!(p["pagemap"]["total_pages"], 5);
    assert_eq!(p["pagemap"]["bytes"], 5 * 4096);
    assert_eq!(p["pagemap"]["chunks"], 3);
    assert_eq!(p["fds"]["fds"][1]["fd"], 3);
    assert_eq!(json["files"]["files"][1]["kind"]["Regular"]["path"], "/tmp/log");
}

#[test]
fn text_summary() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let dir = ImageDir::open(tmp.path()).unwrap();
    let text = render_text(&dir).unwrap();
    for want in [
        "  root pid      4242 (1 process)",
        "  written by    stasis 0.1.0 (image format 1.0)",
        "  kernel        6.18.0-test",
        "  created       2024-02-29 12:34:56 UTC",
        "process 4242 (workload)",
        "  cgroups under /job (1 directory):",
        "    /job  pids.max=64",
        "  cgroup /job",
        "  threads (2):",
        "  memory (2 areas, 5 pages dumped = 20.0 KiB):",
        "    0000000000400000-0000000000404000 r-x  private                  file            0  /usr/bin/workload",
        "    00007ffd00000000-00007ffd00008000 rw-  private,growsdown        anon            5  [stack]",
        "       0 -> chrdev   /dev/null O_RDWR",
        "       3 -> file     /tmp/log pos 77 O_WRONLY|O_APPEND cloexec",
        "  signals: blocked 0x200, 2 handlers set",
        "    SIGINT       0x401000  flags 0x4000000  mask 0x0",
        "    SIGPIPE      SIG_IGN  flags 0x0  mask 0x0",
        "    pending SIGUSR1 (process)",
        "  creds: uid 1000/1000/0/0  gid 0/0/0/0  groups [4, 27]",
        "    nofile                       1024            unlimited",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn show_reports_a_damaged_image() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let dir = ImageDir::open(tmp.path()).unwrap();
    fs::remove_file(tmp.path().join("fds-4242.img")).unwrap();
    let e = to_json(&dir).unwrap_err().to_string();
    assert!(e.contains("fds-4242.img: i/o error"), "{e}");
}

#[test]
fn show_works_on_an_image_being_written() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let dir = ImageDir::create(tmp.path()).unwrap();
    dir.write_records(ImageKind::PsTree, None, &[sample_pstree()]).unwrap();
    let e = to_json(&dir).unwrap_err().to_string();
    assert!(e.contains("inventory.img: i/o error"), "{e}");
}

/// The text and the JSON of the sample image are exactly those recorded in `golden/` (the directory
/// name aside). `STASIS_BLESS=1` rewrites them, for a deliberate change of the output.
#[test]
fn output_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    write_image(tmp.path(), 5, 8192);
    let dir = ImageDir::open(tmp.path()).unwrap();
    let text = render_text(&dir).unwrap().replacen(&tmp.path().display().to_string(), "DIR", 1);
    let json = serde_json::to_string_pretty(&to_json(&dir).unwrap()).unwrap() + "\n";
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/src/show/render/golden/");
    for (name, got) in [("sample.txt", text), ("sample.json", json)] {
        let path = format!("{golden}{name}");
        if std::env::var_os("STASIS_BLESS").is_some() {
            fs::write(&path, &got).unwrap();
        }
        let want = fs::read_to_string(&path).unwrap();
        assert!(want == got, "{name} changed; now:\n{got}");
    }
}

#[test]
fn a_conntrack_entry_is_one_line() {
    use stasis_image::model::{ConntrackEntry, ConntrackTcp, ConntrackTuple};
    let t = |src: &str, dst: &str, sp, dp| ConntrackTuple {
        src: src.into(),
        dst: dst.into(),
        protocol: 6,
        src_port: sp,
        dst_port: dp,
        ..Default::default()
    };
    let c = ConntrackEntry {
        family: 2,
        original: Some(t("10.0.0.1", "10.0.0.2", 40000, 80)),
        reply: Some(t("10.0.0.2", "10.0.0.1", 80, 40000)),
        status: 0x18e,
        timeout: 431990,
        mark: 42,
        zone: 0,
        tcp: Some(ConntrackTcp { state: 3, ..Default::default() }),
    };
    assert_eq!(
        super::text::conntrack_line(&c),
        "conntrack tcp 10.0.0.1:40000 -> 10.0.0.2:80, reply 10.0.0.2:80 -> 10.0.0.1:40000; mark 42, status 0x18e, \
         431990 s left, ESTABLISHED"
    );
}
