//! A FIFO with data queued, held open by two processes: the root opens it read-write, read-only
//! (non-blocking), write-only and `O_PATH`, sets its capacity to 128 KiB and writes 1000 bytes; its child
//! inherits those three descriptions and opens two of its own (write-only non-blocking, read-only).
//! After the wake: every description has its access mode and flags, the capacity is kept, the 1000
//! bytes are queued exactly once; the child writes through its own end, and the root reads the 1000
//! bytes then the child's, and passes bytes from its write end to its read-write end.
//!
//! `gone`: the FIFO's path is removed while it is open, with data queued (see [`gone`]).
//! `packets`: three packets queued through an O_DIRECT write end (see [`packets`]).

use stasis_tests::raw;
use stasis_tests::workload::{self, arg, fork_child, Checker, OrFail};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const CAPACITY: i32 = 128 * 1024;
const NB: i32 = libc::O_NONBLOCK;

fn open(path: &Path, read: bool, write: bool, flags: i32) -> File {
    OpenOptions::new().read(read).write(write).custom_flags(flags).open(path).or_fail("open FIFO")
}

fn data() -> Vec<u8> {
    (0..1000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// Checks the access mode and O_NONBLOCK of each of `fds`.
fn check_flags(c: &mut Checker, fds: &[(&str, &File, i32)]) {
    for (name, f, want) in fds {
        let got = raw::status_flags(f.as_fd()).map(|fl| fl & (libc::O_ACCMODE | NB));
        c.same(&format!("{name}: access mode and O_NONBLOCK"), &Ok(*want), &got.map_err(|e| e.to_string()));
    }
}

/// Everything readable now from non-blocking `f`.
fn read_available(c: &mut Checker, mut f: &File) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                c.check(false, || format!("read: {e}"));
                break;
            }
        }
    }
    out
}

/// `gone`: a FIFO held read-write and read-only (non-blocking) with 9 bytes queued, its path removed.
/// After the wake the path must still be gone, the fds show the FIFO as deleted, the bytes are
/// there, and bytes still pass from one end to the other.
/// A FIFO in packet mode: written through an O_DIRECT end, three packets queued; after the wake
/// each read gives one packet.
fn packets(mut s: workload::Session, path: &Path) -> ! {
    let mut rd = open(path, true, false, NB);
    let mut wr = open(path, false, true, 0);
    raw::set_fl(wr.as_fd(), libc::O_WRONLY | libc::O_DIRECT).or_fail("O_DIRECT on the write end");
    let sent: [&[u8]; 3] = [b"first", b"the second one", b"3"];
    for p in sent {
        wr.write_all(p).or_fail("write a packet");
    }
    s.ready();
    s.wait_for_wake();
    for (i, want) in sent.iter().enumerate() {
        let mut buf = [0u8; 64];
        let n = rd.read(&mut buf).unwrap_or(0);
        s.checker.same(&format!("packet {i}"), *want, &buf[..n]);
    }
    s.finish()
}

fn gone(mut s: workload::Session, path: &Path) -> ! {
    let rdwr = open(path, true, true, 0);
    let rd = open(path, true, false, NB);
    (&rdwr).write_all(b"gone-data").or_fail("write");
    std::fs::remove_file(path).or_fail("unlink FIFO");
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.check(std::fs::symlink_metadata(path).is_err(), || format!("{} exists again", path.display()));
    for f in [&rdwr, &rd] {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).map_err(|e| e.to_string());
        let want = Ok(format!("{} (deleted)", path.display()).into());
        c.same("fd link", &want, &link);
    }
    let got = read_available(c, &rd);
    c.same("data", &b"gone-data"[..], &got[..]);
    c.ok("write", (&rdwr).write_all(b"more"));
    let got = read_available(c, &rd);
    c.same("data after restore", &b"more"[..], &got[..]);
    s.finish()
}

fn main() {
    let mut s = workload::start();
    let path = workload::work_dir().join("watch.fifo");
    let _ = std::fs::remove_file(&path);
    raw::mkfifo(&path, 0o600).or_fail("mkfifo");
    match arg::<String>(1, String::new()).as_str() {
        "gone" => gone(s, &path),
        "packets" => packets(s, &path),
        _ => {}
    }
    let rdwr = open(&path, true, true, 0);
    let rd = open(&path, true, false, NB);
    let mut wr = open(&path, false, true, 0);
    let opath = open(&path, true, false, libc::O_PATH);
    raw::set_pipe_capacity(wr.as_fd(), CAPACITY).or_fail("F_SETPIPE_SZ");
    wr.write_all(&data()).or_fail("write");
    let child_path = path.clone();
    let (crdwr, crd, cwr) = (&rdwr, &rd, &wr);
    let child = fork_child("child", move |link| {
        let mut c = Checker::default();
        let mut own_wr = open(&child_path, false, true, NB);
        let own_rd = open(&child_path, true, false, 0);
        link.send("ready\n").or_fail("send");
        let go = link.line();
        c.same("line from the root", &Ok("go".to_string()), &go.map_err(|e| e.to_string()));
        check_flags(
            &mut c,
            &[
                ("inherited read-write", crdwr, libc::O_RDWR),
                ("inherited read", crd, libc::O_RDONLY | NB),
                ("inherited write", cwr, libc::O_WRONLY),
                ("own write", &own_wr, libc::O_WRONLY | NB),
                ("own read", &own_rd, libc::O_RDONLY),
            ],
        );
        c.ok("write from the child", own_wr.write_all(b"child!"));
        link.report(c)
    });
    let ready = child.line();
    s.checker.same("child", &Ok("ready".to_string()), &ready.map_err(|e| e.to_string()));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    check_flags(
        c,
        &[("read-write", &rdwr, libc::O_RDWR), ("read", &rd, libc::O_RDONLY | NB), ("write", &wr, libc::O_WRONLY)],
    );
    let got = raw::status_flags(opath.as_fd()).map(|f| f & libc::O_PATH).map_err(|e| e.to_string());
    c.same("O_PATH fd", &Ok(libc::O_PATH), &got);
    c.same("capacity", &Ok(CAPACITY), &raw::pipe_capacity(rd.as_fd()).map_err(|e| e.to_string()));
    c.same("bytes queued", &Ok(1000), &raw::bytes_ready(rd.as_fd()).map_err(|e| e.to_string()));
    c.ok("send go", child.send("go\n"));
    let mut c2 = Checker::default();
    child.collect(&mut c2);
    c.absorb("tree", c2);
    let mut want = data();
    want.extend_from_slice(b"child!");
    let got = read_available(c, &rd);
    c.check(got == want, || {
        format!("read {} bytes, want the 1000 queued then \"child!\" ({:?}...)", got.len(), &got[..got.len().min(16)])
    });
    c.ok("write", wr.write_all(b"root"));
    let mut buf = [0u8; 8];
    let n = c.ok("read (read-write end)", (&rdwr).read(&mut buf)).unwrap_or(0);
    c.same("bytes through the FIFO", &b"root"[..], &buf[..n]);
    let _ = std::fs::remove_file(&path);
    s.finish()
}
