//! Descriptors that are not opened for I/O. Argument:
//!
//! - `o_path`: `O_PATH` descriptors of a regular file, a directory, `/dev/null`, and a symlink
//!   opened with `O_PATH | O_NOFOLLOW` (the link itself); each keeps its flags, its file type
//!   and inode, and its `/proc/self/fd` link.

use stasis_tests::raw;
use stasis_tests::workload::{self, OrFail};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

/// (link, F_GETFL, file type bits, inode) of `fd`.
fn describe(fd: BorrowedFd<'_>) -> (String, i32, u32, u64) {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).or_fail("readlink");
    let m = File::from(fd.try_clone_to_owned().or_fail("dup")).metadata().or_fail("fstat");
    (link.to_string_lossy().into_owned(), raw::get_fl(fd).or_fail("F_GETFL"), m.mode() & libc::S_IFMT, m.ino())
}

fn open(path: &std::path::Path, flags: i32) -> File {
    OpenOptions::new().read(true).custom_flags(flags).open(path).or_fail(&format!("open {}", path.display()))
}

fn o_path(s: &mut workload::Session) {
    let dir = workload::work_dir();
    std::fs::write(dir.join("file.txt"), "some bytes\n").or_fail("file");
    std::fs::create_dir_all(dir.join("sub")).or_fail("dir");
    let _ = std::fs::remove_file(dir.join("link"));
    std::os::unix::fs::symlink("file.txt", dir.join("link")).or_fail("symlink");
    let fds = [
        open(&dir.join("file.txt"), libc::O_PATH),
        open(&dir.join("sub"), libc::O_PATH | libc::O_DIRECTORY),
        open(std::path::Path::new("/dev/null"), libc::O_PATH),
        open(&dir.join("link"), libc::O_PATH | libc::O_NOFOLLOW),
    ];
    let before: Vec<_> = fds.iter().map(|f| describe(f.as_fd())).collect();
    s.ready();
    s.wait_for_wake();
    for (f, want) in fds.iter().zip(&before) {
        s.checker.same(&format!("O_PATH fd {}", f.as_raw_fd()), want, &describe(f.as_fd()));
    }
    s.checker.same("the symlink fd's type", &libc::S_IFLNK, &before[3].2);
}

fn main() {
    let mut s = workload::start();
    match std::env::args().nth(1).as_deref() {
        Some("o_path") => o_path(&mut s),
        other => workload::skip(&format!("unknown mode {other:?}")),
    }
    s.finish()
}
