//! File descriptors survive: regular files (path, access mode, offset, O_APPEND, close-on-exec or
//! not, fds at high numbers with gaps, two fds sharing one open file), a directory, /dev/null,
//! /dev/zero, /dev/urandom, and stdin/stdout/stderr wherever the harness pointed them. Every fd's
//! link target, flags, offset and inode must be unchanged, and each must still work.

use stasis_tests::raw;
use stasis_tests::workload::{self, Checker, OrFail};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

#[derive(Debug, PartialEq)]
struct FdState {
    fd: i32,
    target: String,
    pos: String,
    flags: String,
    dev_ino: Option<(u64, u64)>,
}

fn fd_states() -> Vec<FdState> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    fds.sort_unstable();
    fds.into_iter()
        .filter_map(|fd| {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?.to_string_lossy().into_owned();
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
            let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).unwrap_or("").trim().to_string();
            let dev_ino = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok().map(|m| (m.dev(), m.ino()));
            // stdout/stderr move when READY is printed; the harness checks their offsets.
            let pos = if fd == 1 || fd == 2 { String::new() } else { field("pos:") };
            Some(FdState { fd, target, pos, flags: field("flags:"), dev_ino })
        })
        .filter(|s| !s.target.starts_with("/proc/"))
        .collect()
}

struct Files {
    content: Vec<u8>,
    rw: File,
    rw_dup: OwnedFd,
    appender: File,
    ro_high: File,
    dir: File,
    null: File,
    zero: File,
    urandom: File,
    null_high: OwnedFd,
}

fn open_files() -> Files {
    let work = workload::work_dir();
    let mut content = vec![0u8; 8192];
    workload::pattern_fill(&mut content, 0xf1);
    std::fs::write(work.join("data.bin"), &content).or_fail("write data.bin");
    std::fs::write(work.join("append.log"), b"line1\n").or_fail("write append.log");
    let mut rw = OpenOptions::new().read(true).write(true).open(work.join("data.bin")).or_fail("open rw");
    rw.seek(SeekFrom::Start(1234)).or_fail("seek");
    let rw_dup = raw::dup_to(rw.as_fd(), 101).or_fail("dup to 101");
    let appender = OpenOptions::new().append(true).open(work.join("append.log")).or_fail("open append");
    let mut ro = File::open(work.join("data.bin")).or_fail("open ro");
    ro.seek(SeekFrom::Start(7)).or_fail("seek");
    let ro_high = File::from(raw::dup_to(ro.as_fd(), 100).or_fail("dup to 100"));
    drop(ro);
    let null = OpenOptions::new().write(true).open("/dev/null").or_fail("open /dev/null");
    let null_rw = OpenOptions::new().read(true).write(true).open("/dev/null").or_fail("open /dev/null");
    let null_high = raw::dup_to(null_rw.as_fd(), 200).or_fail("dup to 200");
    Files {
        content,
        rw,
        rw_dup,
        appender,
        ro_high,
        dir: File::open(&work).or_fail("open dir"),
        null,
        zero: File::open("/dev/zero").or_fail("open /dev/zero"),
        urandom: File::open("/dev/urandom").or_fail("open /dev/urandom"),
        null_high,
    }
}

fn check_files(c: &mut Checker, f: &mut Files, pid: i32) {
    let mut buf = [0u8; 100];
    c.ok("read rw file", f.rw.read_exact(&mut buf));
    c.check(buf[..] == f.content[1234..1334], || "rw file: wrong data at offset 1234".into());
    let shared = raw::kcmp_files(pid, pid, f.rw.as_raw_fd(), f.rw_dup.as_raw_fd());
    c.check(matches!(shared, Ok(0)), || {
        format!("fd 101 no longer shares the open file with the rw fd: kcmp {shared:?}")
    });
    if let Some(dup) = c.ok("dup fd 101", f.rw_dup.try_clone()) {
        let pos = File::from(dup).stream_position();
        c.check(matches!(pos, Ok(1334)), || format!("fd 101 offset {pos:?}, want 1334 (shared with the rw fd)"));
    }

    c.ok("append", f.appender.write_all(b"line2\n"));
    let text = std::fs::read(workload::work_dir().join("append.log")).unwrap_or_default();
    c.same("append.log", &b"line1\nline2\n"[..], &text[..]);

    let mut ten = [0u8; 10];
    c.ok("read fd 100", f.ro_high.read_exact(&mut ten));
    c.check(ten[..] == f.content[7..17], || "fd 100: wrong data at offset 7".into());

    let listed = std::fs::read_dir(format!("/proc/self/fd/{}", f.dir.as_raw_fd()))
        .map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name() == "data.bin"));
    c.check(matches!(listed, Ok(true)), || format!("directory fd does not list data.bin: {listed:?}"));

    c.ok("write /dev/null", f.null.write_all(b"discarded"));
    let mut z = [1u8; 16];
    c.ok("read /dev/zero", f.zero.read_exact(&mut z));
    c.same("/dev/zero bytes", &[0u8; 16], &z);
    let mut r = [0u8; 32];
    c.ok("read /dev/urandom", f.urandom.read_exact(&mut r));
    c.check(r != [0u8; 32], || "/dev/urandom gave 32 zero bytes".into());
    let fl = raw::get_fl(&f.null_high);
    c.check(matches!(fl, Ok(v) if v & libc::O_ACCMODE == libc::O_RDWR), || format!("fd 200 flags {fl:?}"));
    let mut rest = Vec::new();
    c.ok("read stdin to its end", std::io::stdin().read_to_end(&mut rest));
}

fn main() {
    let mut s = workload::start();
    let mut files = open_files();
    let cloexec = |fd: &dyn AsFd| raw::get_fd_flags(fd.as_fd()).ok().map(|f| f & libc::FD_CLOEXEC);
    let before = fd_states();
    let before_cloexec = (cloexec(&files.rw), cloexec(&files.rw_dup));
    s.ready();
    s.wait_for_wake();
    let after = fd_states();
    let pid = s.pid();
    let c = &mut s.checker;
    c.same(
        "fd numbers",
        &before.iter().map(|f| f.fd).collect::<Vec<_>>(),
        &after.iter().map(|f| f.fd).collect::<Vec<_>>(),
    );
    for (b, a) in before.iter().zip(&after) {
        c.same(&format!("fd {}", b.fd), b, a);
    }
    c.check(before_cloexec == (Some(libc::FD_CLOEXEC), Some(0)), || format!("cloexec setup {before_cloexec:?}"));
    c.same("FD_CLOEXEC of the rw fd and fd 101", &before_cloexec, &(cloexec(&files.rw), cloexec(&files.rw_dup)));
    check_files(c, &mut files, pid);
    s.finish()
}
