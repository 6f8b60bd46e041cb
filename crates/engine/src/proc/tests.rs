//! Tests of the `/proc` parsers. The fixtures were copied from the `/proc/self` files of a small C
//! program on the development machine (Linux 6.18): it named itself `a) b (c` with
//! `PR_SET_NAME`, mapped a file whose name has spaces and parentheses, mapped and unlinked another,
//! opened an eventfd, set two supplementary groups, blocked and raised SIGUSR2 and started a thread.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::*;

const PID: i32 = 3394;

/// A proc tree in a temporary directory with the fixture files under `PID/`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let fx = Fixture { dir: tempfile::tempdir().expect("tempdir") };
        let files: [(&str, &[u8]); 8] = [
            ("smaps", include_bytes!("fixtures/smaps")),
            ("maps", include_bytes!("fixtures/maps")),
            ("status", include_bytes!("fixtures/status")),
            ("stat", include_bytes!("fixtures/stat")),
            ("comm", include_bytes!("fixtures/comm")),
            ("auxv", include_bytes!("fixtures/auxv")),
            ("personality", include_bytes!("fixtures/personality")),
            ("limits", include_bytes!("fixtures/limits")),
        ];
        for (name, bytes) in files {
            fx.write(name, bytes);
        }
        fx.write("fdinfo/3", include_bytes!("fixtures/fdinfo_file"));
        fx.write("fdinfo/5", include_bytes!("fixtures/fdinfo_eventfd"));
        fx
    }

    fn root(&self) -> ProcRoot {
        ProcRoot::new(self.dir.path())
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().pid_path(PID, rel)
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, bytes).expect("write fixture");
    }

    fn link(&self, rel: &str, target: &str) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        symlink(target, path).expect("symlink");
    }
}

fn find<'a>(maps: &'a [MapEntry], name: &str) -> &'a MapEntry {
    maps.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no mapping named {name:?}"))
}

#[test]
fn pid_path_joins() {
    let root = ProcRoot::new("/x");
    assert_eq!(root.pid_path(7, "fd/3"), Path::new("/x/7/fd/3"));
    assert_eq!(root.pid_path(7, ""), Path::new("/x/7"));
    assert_eq!(ProcRoot::system().path(), Path::new("/proc"));
}

#[test]
fn smaps_fixture() {
    let fx = Fixture::new();
    let maps = smaps(&fx.root(), PID).expect("smaps");
    assert_eq!(maps.len(), 30);
    assert!(maps.windows(2).all(|w| w[0].end <= w[1].start));

    let spaced = find(&maps, "/tmp/fx/a file (with) spaces");
    assert_eq!(spaced.prot, (libc::PROT_READ | libc::PROT_WRITE) as u32);
    assert!(spaced.shared && !spaced.deleted);
    assert_eq!((spaced.dev_major, spaced.dev_minor, spaced.inode), (0xfe, 0, 10010719));
    assert_eq!(spaced.len(), 0x2000);
    assert!(spaced.vm_flags.has("sh") && spaced.vm_flags.has("ms"));
    assert!(!spaced.vm_flags.has("ex"));

    let gone = find(&maps, "/tmp/fx/gone");
    assert!(gone.deleted && !gone.shared);
    assert_eq!(gone.prot, (libc::PROT_READ | libc::PROT_EXEC) as u32);

    let stack = find(&maps, "[stack]");
    assert_eq!(stack.vm_flags.0, [*b"rd", *b"wr", *b"mr", *b"mw", *b"me", *b"gd", *b"ac"]);
    assert!(stack.vm_flags.has("gd"));

    let vsyscall = find(&maps, "[vsyscall]");
    assert_eq!((vsyscall.start, vsyscall.end), (0xffffffffff600000, 0xffffffffff601000));
    assert_eq!(vsyscall.prot, libc::PROT_EXEC as u32);
    find(&maps, "[vvar_vclock]");

    let libc_text =
        maps.iter().find(|m| m.name.ends_with("libc.so.6") && m.prot & libc::PROT_EXEC as u32 != 0).expect("libc text");
    assert_eq!(libc_text.offset, 0x26000);
    assert!(maps.iter().any(|m| m.name.is_empty() && m.prot == 0));
}

#[test]
fn maps_match_smaps_without_flags() {
    let fx = Fixture::new();
    let from_maps = maps(&fx.root(), PID).expect("maps");
    let mut from_smaps = smaps(&fx.root(), PID).expect("smaps");
    assert!(from_smaps.iter().all(|m| !m.vm_flags.0.is_empty()));
    assert!(from_maps.iter().all(|m| m.vm_flags.0.is_empty() && m.kernel_page_size == 0));
    assert!(from_smaps.iter().all(|m| m.kernel_page_size == 4096));
    for m in &mut from_smaps {
        m.vm_flags = VmFlags::default();
        m.kernel_page_size = 0;
    }
    assert_eq!(from_maps, from_smaps);
}

#[test]
fn smaps_at_finds_one_area_with_its_flags() {
    let fx = Fixture::new();
    let all = smaps(&fx.root(), PID).expect("smaps");
    for want in [&all[0], &all[1], all.last().expect("areas")] {
        let got = super::smaps_at(&fx.root(), PID, want.start).expect("smaps_at");
        assert_eq!(got.as_ref(), Some(want));
    }
    let inside = super::smaps_at(&fx.root(), PID, all[1].end - 1).expect("smaps_at");
    assert_eq!(inside.as_ref(), Some(&all[1]));
    assert_eq!(super::smaps_at(&fx.root(), PID, 0x10).expect("smaps_at"), None);
}

#[test]
fn maps_handcrafted_names() {
    let fx = Fixture::new();
    let text = "\
7f0000000000-7f0000003000 rw-p 00000000 00:00 0                          [anon:my region]
7f0000003000-7f0000004000 rw-s 00001000 00:01 2049                       /memfd:x y (deleted)
7f0000004000-7f0000005000 ---p 00000000 00:00 0 
7f0000005000-7f0000006000 r--p 00000000 103:02 7                         /a b  c
";
    fx.write("maps", text.as_bytes());
    let maps = maps(&fx.root(), PID).expect("maps");
    let names: Vec<_> = maps.iter().map(|m| (m.name.as_str(), m.deleted)).collect();
    assert_eq!(names, [("[anon:my region]", false), ("/memfd:x y", true), ("", false), ("/a b  c", false)]);
    assert_eq!((maps[1].offset, maps[1].dev_minor, maps[1].inode), (0x1000, 1, 2049));
    assert_eq!((maps[3].dev_major, maps[3].dev_minor), (0x103, 2));
    assert_eq!(maps[2].prot, 0);
}

#[test]
fn maps_errors_name_line_and_field() {
    let fx = Fixture::new();
    fx.write(
        "maps",
        b"7f0000000000-7f0000003000 rw-p 00000000 00:00 0 \n7f0000003000-7f0000004000 rwzp 00000000 00:00 0 \n",
    );
    let err = maps(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { line: 2, field: "permissions", .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.ends_with(&format!("/{PID}/maps:2: bad permissions \"rwzp\"")), "{shown}");

    fx.write("maps", b"7f0000000000 rw-p 00000000 00:00 0\n");
    let err = maps(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { field: "address range", .. }), "{err:?}");

    fx.write("maps", b"7f0000000000-7f0000003000 rw-p\n");
    let err = maps(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { field: "offset", .. }), "{err:?}");

    fx.write("smaps", b"7f0000000000-7f0000003000 rw-p 00000000 00:00 0 \nVmFlags: rd wrx\n");
    let err = smaps(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { line: 2, field: "VmFlags", .. }), "{err:?}");

    fx.write("maps", b"7f0000000000-7f0000003000 rw-p 00000000 00:00 1 /bad\xff\n");
    let err = maps(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { line: 1, field: "name", .. }), "{err:?}");
}

#[test]
fn status_fixture() {
    let fx = Fixture::new();
    let s = status(&fx.root(), PID).expect("status");
    assert_eq!(s.name, "a) b (c");
    assert_eq!((s.umask, s.state, s.tgid, s.ppid, s.tracer_pid), (0o022, 'R', PID, 3384, 0));
    assert_eq!((s.uid, s.gid), ([0; 4], [0; 4]));
    assert_eq!(s.groups, [5, 27]);
    assert_eq!(s.threads, 2);
    let sig = |n: u32| 1u64 << (n - 1);
    assert_eq!(s.sig_pnd, sig(libc::SIGUSR2 as u32));
    assert_eq!(s.shd_pnd, 0);
    assert_eq!(s.sig_blk, sig(libc::SIGUSR2 as u32));
    assert_eq!(s.sig_ign, sig(libc::SIGPIPE as u32));
    assert_eq!(s.sig_cgt & sig(libc::SIGUSR1 as u32), sig(libc::SIGUSR1 as u32));
    assert_eq!((s.cap_inh, s.cap_prm, s.cap_eff, s.cap_amb), (0, 0x1fffeffffff, 0x1fffeffffff, 0));
    assert_eq!(s.cap_bnd, 0x1fffeffffff);
    assert!(!s.no_new_privs);
    assert_eq!(s.seccomp, 0);
    assert_eq!(s.ns_tgid, [PID]);
}

#[test]
fn status_escaped_name_and_errors() {
    let fx = Fixture::new();
    let text = String::from_utf8(include_bytes!("fixtures/status").to_vec()).expect("utf8");
    let renamed = text.replace("Name:\ta) b (c", "Name:\t x\\ny\\\\z");
    fx.write("status", renamed.as_bytes());
    assert_eq!(status(&fx.root(), PID).expect("status").name, " x\ny\\z");

    fx.write("status", text.replace("Umask:\t0022\n", "").as_bytes());
    let err = status(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Missing { field: "Umask", .. }), "{err:?}");

    fx.write("status", text.replace("Uid:\t0\t0\t0\t0", "Uid:\t0\t0\t0").as_bytes());
    let err = status(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { line: 9, field: "Uid", .. }), "{err:?}");

    fx.write("status", text.replace("SigBlk:\t0000000000000800", "SigBlk:\tzz").as_bytes());
    let err = status(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { field: "SigBlk", .. }), "{err:?}");
}

#[test]
fn stat_fixture() {
    let fx = Fixture::new();
    let s = stat(&fx.root(), PID).expect("stat");
    assert_eq!((s.pid, s.comm.as_str(), s.state), (PID, "a) b (c", 'R'));
    assert_eq!((s.ppid, s.pgrp, s.session, s.tty_nr), (3384, 3384, 2587, 0));
    assert_eq!((s.flags, s.num_threads), (4194560, 2));
    assert_eq!((s.start_code, s.end_code), (93951749873664, 93951749875461));
    assert_eq!(s.start_stack, 140731372008048);
    assert_eq!((s.start_data, s.end_data, s.start_brk), (93951749885392, 93951749886144, 93952150093824));
    assert_eq!((s.arg_start, s.arg_end), (140731372014317, 140731372014335));
    assert_eq!((s.env_start, s.env_end), (140731372014335, 140731372015602));
    assert_eq!(s.exit_code, 0);
}

#[test]
fn stat_odd_names_and_errors() {
    let fx = Fixture::new();
    let text = String::from_utf8(include_bytes!("fixtures/stat").to_vec()).expect("utf8");
    for name in ["", ")", "x) S 1 (", "a\nb ) c"] {
        fx.write("stat", text.replace("a) b (c", name).as_bytes());
        let s = stat(&fx.root(), PID).expect("stat");
        assert_eq!((s.comm.as_str(), s.state, s.exit_code), (name, 'R', 0));
    }

    let cut = &text[..text.rfind(' ').expect("space")];
    fx.write("stat", cut.as_bytes());
    let err = stat(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Missing { field: "exit_code", .. }), "{err:?}");

    fx.write("stat", text.replace(" R 3384", " R x384").as_bytes());
    let err = stat(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { field: "ppid", .. }), "{err:?}");

    fx.write("stat", b"3394 a b R 1\n");
    let err = stat(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { field: "comm", .. }), "{err:?}");
}

#[test]
fn fdinfo_fixtures() {
    let fx = Fixture::new();
    let file = fdinfo(&fx.root(), PID, 3).expect("fdinfo of a file");
    assert_eq!((file.pos, file.flags, file.mnt_id), (100, 0o100002, 27));
    assert_eq!(file.flags & libc::O_ACCMODE as u32, libc::O_RDWR as u32);
    assert_eq!(file.extra, [("ino".to_string(), "10010719".to_string())]);

    let efd = fdinfo(&fx.root(), PID, 5).expect("fdinfo of an eventfd");
    assert_eq!((efd.pos, efd.mnt_id), (0, 17));
    let want = (libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) as u32;
    assert_eq!(efd.flags, want);
    assert_eq!(efd.get("eventfd-count"), Some("5"));
    assert_eq!(efd.get("eventfd-semaphore"), Some("0"));
    assert_eq!(efd.get("ino"), Some("1038"));
    assert_eq!(efd.get("nope"), None);

    fx.write("fdinfo/6", b"pos:\t0\nmnt_id:\t1\n");
    let err = fdinfo(&fx.root(), PID, 6).unwrap_err();
    assert!(matches!(err, ProcError::Missing { field: "flags", .. }), "{err:?}");
    fx.write("fdinfo/7", b"pos:\t0\nflags:\t09\nmnt_id:\t1\n");
    let err = fdinfo(&fx.root(), PID, 7).unwrap_err();
    assert!(matches!(err, ProcError::Parse { line: 2, field: "flags", .. }), "{err:?}");
}

#[test]
fn auxv_fixture() {
    let fx = Fixture::new();
    let words = auxv(&fx.root(), PID).expect("auxv");
    assert_eq!(words.len(), 368 / 8);
    assert_eq!(&words[words.len() - 2..], [0, 0]);
    let pairs: Vec<_> = words.chunks(2).map(|p| (p[0], p[1])).collect();
    assert!(pairs.contains(&(libc::AT_PAGESZ, 4096)));
    assert!(pairs.iter().any(|&(k, _)| k == libc::AT_SYSINFO_EHDR));
}

#[test]
fn auxv_cut_and_errors() {
    let fx = Fixture::new();
    let mut bytes = Vec::new();
    for w in [6u64, 4096, 0, 0, 7, 7] {
        bytes.extend(w.to_ne_bytes());
    }
    fx.write("auxv", &bytes);
    assert_eq!(auxv(&fx.root(), PID).expect("auxv"), [6, 4096, 0, 0]);

    fx.write("auxv", &bytes[..16]);
    let err = auxv(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Missing { field: "AT_NULL", .. }), "{err:?}");

    fx.write("auxv", &bytes[..12]);
    let err = auxv(&fx.root(), PID).unwrap_err();
    assert!(matches!(err, ProcError::Parse { field: "length", .. }), "{err:?}");
}

#[test]
fn small_files() {
    let fx = Fixture::new();
    assert_eq!(comm(&fx.root(), PID).expect("comm"), "a) b (c");
    assert_eq!(personality(&fx.root(), PID).expect("personality"), 0);
    fx.write("personality", b"00400000\n");
    assert_eq!(personality(&fx.root(), PID).expect("personality"), 0x0040_0000);
}

#[test]
fn links_and_directories() {
    let fx = Fixture::new();
    fx.link("fd/10", "pipe:[123]");
    fx.link("fd/2", "/dev/null");
    fx.link("fd/0", "/tmp/a file (deleted)");
    let got = fds(&fx.root(), PID).expect("fds");
    let want: Vec<(i32, PathBuf)> = [(0, "/tmp/a file (deleted)"), (2, "/dev/null"), (10, "pipe:[123]")]
        .into_iter()
        .map(|(fd, p)| (fd, PathBuf::from(p)))
        .collect();
    assert_eq!(got, want);

    for tid in [100, PID, PID + 1] {
        fs::create_dir_all(fx.path(&format!("task/{tid}"))).expect("task dir");
    }
    assert_eq!(threads(&fx.root(), PID).expect("threads"), [PID, 100, PID + 1]);
    fx.write(&format!("task/{PID}/children"), b"7 5 ");
    fx.write(&format!("task/{}/children", PID + 1), b"6 5 ");
    fx.write("task/100/children", b"");
    assert_eq!(children(&fx.root(), PID).expect("children"), [5, 6, 7]);

    fx.link("ns/mnt", "mnt:[4026531840]");
    fx.link("ns/pid_for_children", "pid:[4026531836]");
    fx.link("ns/bad", "mnt:4026531840");
    assert_eq!(ns_inode(&fx.root(), PID, "mnt").expect("mnt ns"), 4026531840);
    assert_eq!(ns_inode(&fx.root(), PID, "pid_for_children").expect("pid ns"), 4026531836);
    let err = ns_inode(&fx.root(), PID, "bad").unwrap_err();
    assert!(matches!(err, ProcError::Parse { field: "namespace link", .. }), "{err:?}");

    fx.link("cwd", "/tmp/x y");
    assert_eq!(link(&fx.root(), PID, "cwd").expect("cwd"), Path::new("/tmp/x y"));
    let err = link(&fx.root(), PID, "root").unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = status(&fx.root(), PID + 7).unwrap_err();
    assert!(err.is_not_found() && err.to_string().contains("status"), "{err}");
}

/// The parsers against the live `/proc/self` of the test process.
#[test]
fn live_self() {
    let root = ProcRoot::system();
    let pid = std::process::id() as i32;

    let maps = smaps(&root, pid).expect("smaps of self");
    let stack = find(&maps, "[stack]");
    assert!(stack.vm_flags.has("rd") && stack.vm_flags.has("wr"));
    find(&maps, "[vdso]");
    assert!(!super::maps(&root, pid).expect("maps of self").is_empty());

    let st = status(&root, pid).expect("status of self");
    assert_eq!((st.tgid, st.ns_tgid.last().copied()), (pid, Some(pid)));
    let sa = stat(&root, pid).expect("stat of self");
    assert_eq!(sa.pid, pid);
    assert_eq!(sa.comm, comm(&root, pid).expect("comm of self"));
    assert_eq!(sa.ppid, st.ppid);

    assert_eq!(threads(&root, pid).expect("threads of self")[0], pid);
    children(&root, pid).expect("children of self");
    let words = auxv(&root, pid).expect("auxv of self");
    assert!(words.chunks(2).any(|p| p == [libc::AT_PAGESZ, 4096]));
    assert!(ns_inode(&root, pid, "mnt").expect("mnt ns") > 0);
    personality(&root, pid).expect("personality of self");
    assert_eq!(link(&root, pid, "exe").expect("exe"), std::env::current_exe().expect("exe"));

    let file = fs::File::open("/proc/self/status").expect("open");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let listed = fds(&root, pid).expect("fds of self");
    assert!(listed.iter().any(|(n, p)| *n == fd && p.ends_with("status")));
    let info = fdinfo(&root, pid, fd).expect("fdinfo of self");
    assert_eq!(info.flags & libc::O_CLOEXEC as u32, libc::O_CLOEXEC as u32);
    assert!(info.get("ino").is_some());
}

#[test]
fn limits_in_rlimit_order_with_unlimited_as_max() {
    let fx = Fixture::new();
    let l = limits(&fx.root(), PID).expect("limits");
    assert_eq!(l.len(), 16);
    assert_eq!(l[libc::RLIMIT_CPU as usize], (u64::MAX, u64::MAX));
    assert_eq!(l[libc::RLIMIT_STACK as usize], (8388608, u64::MAX));
    assert_eq!(l[libc::RLIMIT_CORE as usize], (0, u64::MAX));
    assert_eq!(l[libc::RLIMIT_NOFILE as usize], (20000, 20000));
    assert_eq!(l[libc::RLIMIT_RTPRIO as usize], (0, 0));
    assert_eq!(l[libc::RLIMIT_RTTIME as usize], (u64::MAX, u64::MAX));
    let mut bad = String::from_utf8_lossy(include_bytes!("fixtures/limits")).into_owned();
    bad = bad.replace("20000                20000", "20000                2x000");
    fx.write("limits", bad.as_bytes());
    let err = limits(&fx.root(), PID).unwrap_err().to_string();
    assert!(err.contains("limit") && err.contains("2x000"), "{err}");
}
