//! A process holding a device node of the test's (argument: its path, a node of /dev/null's
//! device 1:3) open read-write with O_APPEND. After the restore it checks that the fd is still that
//! device (fstat's rdev), with its flags, and still behaves as it: a write succeeds, a read gives
//! end of file.

use stasis_tests::workload::{self, OrFail};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

fn main() {
    let mut s = workload::start();
    let path = std::env::args().nth(1).ok_or("no argument").or_fail("the node's path");
    let mut f = std::fs::OpenOptions::new().read(true).append(true).open(&path).or_fail("opening the node");
    let flags = stasis_tests::raw::get_fl(&f).or_fail("F_GETFL");
    let rdev = f.metadata().or_fail("fstat").rdev();
    s.ready();
    s.wait_for_wake();
    let meta = f.metadata().or_fail("fstat after the restore");
    s.checker.same("the device of the fd", &rdev, &meta.rdev());
    s.checker.same("the fd's flags", &flags, &stasis_tests::raw::get_fl(&f).or_fail("F_GETFL"));
    s.checker.check(f.write_all(b"x").is_ok(), || "a write to the device failed".into());
    let mut buf = [0u8; 4];
    s.checker.same("a read of the device", &0, &f.read(&mut buf).or_fail("reading the device"));
    s.finish()
}
