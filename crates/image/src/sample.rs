//! A sample image of one process, for the tests of this crate and of the readers of images (the
//! renderer of `stasis show`): not part of the format. Built with the `sample` feature.

use std::path::Path;

use crate::model::*;
use crate::{ImageDir, ImageKind};

pub const PID: i32 = 4242;

pub fn sample_inventory() -> Inventory {
    Inventory {
        tool_version: "0.1.0".into(),
        kernel_release: "6.18.0-test".into(),
        xfeatures: 0x2e7,
        root_pid: PID,
        created_unix_ms: 1_709_210_096_000,
        ..Default::default()
    }
}

pub fn sample_pstree() -> PsTree {
    PsTree {
        processes: vec![ProcessEntry {
            pid: PID,
            ppid: 1,
            pgid: PID,
            sid: PID,
            threads: vec![PID, PID + 1],
            stopped: false,
            ..Default::default()
        }],
        group_helpers: vec![],
        session_helpers: vec![],
        namespaces: vec![],
        cgroups: Some(CgroupSet {
            root: "/job".into(),
            dirs: vec![CgroupDir {
                path: "/job".into(),
                settings: vec![CgroupSetting { name: "pids.max".into(), value: "64".into() }],
            }],
            v1: vec![CgroupV1Set {
                controllers: "cpu,cpuacct".into(),
                root: "/job".into(),
                dirs: vec![CgroupDir {
                    path: "/job".into(),
                    settings: vec![CgroupSetting { name: "cpu.shares".into(), value: "512".into() }],
                }],
            }],
        }),
        mounts: None,
    }
}

pub fn sample_core(tid: i32) -> TaskCore {
    TaskCore {
        pid: tid,
        comm: "workload".into(),
        cgroup: "/job".into(),
        cgroups_v1: vec![CgroupV1Path { controllers: "cpu,cpuacct".into(), path: "/job".into() }],
        regs: Some(GpRegs { rip: 0x4011d0, rsp: 0x7ffd_0000_1000, rax: u64::MAX - 3, ..Default::default() }),
        xstate: (0..=255).collect(),
        sigmask: 1 << 9,
        sigactions: vec![
            SigAction { signo: 2, handler: 0x401000, flags: 0x0400_0000, restorer: 0x401100, mask: 0 },
            SigAction { signo: 13, handler: 1, ..Default::default() },
        ],
        pending: vec![PendingSignal { shared: true, signo: 10, siginfo: vec![10; 128] }],
        rlimits: vec![RLimit { resource: 7, cur: 1024, max: u64::MAX }],
        creds: Some(Creds {
            uid: 1000,
            euid: 1000,
            groups: vec![4, 27],
            cap_bnd: 0x1ff_ffff_ffff,
            ..Default::default()
        }),
        cwd: "/tmp".into(),
        root: "/".into(),
        ..Default::default()
    }
}

pub fn sample_mm() -> MmImage {
    MmImage {
        vmas: vec![
            Vma {
                start: 0x40_0000,
                end: 0x40_4000,
                prot: 5,
                flags: 2,
                kind: VmaKind::File as i32,
                name: "/usr/bin/workload".into(),
                ..Default::default()
            },
            Vma {
                start: 0x7ffd_0000_0000,
                end: 0x7ffd_0000_8000,
                prot: 3,
                flags: 2 | 0x100,
                kind: VmaKind::Anon as i32,
                name: "[stack]".into(),
                ..Default::default()
            },
        ],
        fields: Some(MmFields { start_code: 0x40_0000, end_code: 0x40_4000, ..Default::default() }),
        auxv: vec![6, 4096, 0, 0],
        exe_path: "/usr/bin/workload".into(),
        vdso_checksum: 0x1234,
        ..Default::default()
    }
}

pub fn sample_fds() -> FdTable {
    FdTable {
        fds: vec![FdEntry { fd: 0, file_id: 1, cloexec: false }, FdEntry { fd: 3, file_id: 2, cloexec: true }],
        ..Default::default()
    }
}

pub fn sample_files() -> FileTable {
    FileTable {
        files: vec![
            FileEntry {
                id: 1,
                owner: None,
                flags: 2,
                kind: Some(FileKind::CharDevice(CharDevice {
                    path: "/dev/null".into(),
                    rdev: 0x103,
                    ..Default::default()
                })),
            },
            FileEntry {
                id: 2,
                owner: None,
                flags: 0o2001,
                kind: Some(FileKind::Regular(RegularFile {
                    path: "/tmp/log".into(),
                    pos: 77,
                    size: 77,
                    mode: 0o100644,
                    ..Default::default()
                })),
            },
        ],
    }
}

/// A page map of `pages` pages in two runs inside the sample stack area (without checksums).
pub fn sample_runs(pages: u64) -> Vec<PageRun> {
    let first = pages / 2;
    let mut runs = vec![PageRun { vaddr: 0x7ffd_0000_0000, nr_pages: first }];
    if pages > first {
        runs.push(PageRun { vaddr: 0x7ffd_0000_0000 + (first + 1) * 4096, nr_pages: pages - first });
    }
    runs.retain(|r| r.nr_pages > 0);
    runs
}

/// Page data whose every page differs.
pub fn page_data(pages: u64) -> Vec<u8> {
    (0..pages * 4096).map(|i| (i / 4096 * 7 + i % 251) as u8).collect()
}

/// Write a complete image of one process (two threads, `pages` pages in chunks of `chunk_size`)
/// into `path` and commit its inventory.
pub fn write_image(path: &Path, pages: u64, chunk_size: u64) -> ImageDir {
    use std::io::Write;
    let dir = ImageDir::create(path).unwrap();
    let pid = Some(PID);
    dir.write_records(ImageKind::PsTree, None, &[sample_pstree()]).unwrap();
    let cores = [sample_core(PID), sample_core(PID + 1)];
    dir.write_records(ImageKind::Core, pid, &cores).unwrap();
    dir.write_records(ImageKind::Mm, pid, &[sample_mm()]).unwrap();
    dir.write_records(ImageKind::Fds, pid, &[sample_fds()]).unwrap();
    dir.write_records(ImageKind::Files, None, &[sample_files()]).unwrap();
    dir.write_records(ImageKind::Ipc, None, &[crate::model::IpcImage::default()]).unwrap();
    let writer = dir.create_pages(PID, chunk_size).unwrap();
    let data = page_data(pages);
    writer.file().write_all(&data).unwrap();
    let (chunk_checksums, _) = writer.finish(data.len() as u64).unwrap();
    let map =
        PageMap { runs: sample_runs(pages), chunk_size, chunk_checksums, total_pages: pages, ..Default::default() };
    dir.write_records(ImageKind::PageMap, pid, &[map]).unwrap();
    dir.commit_inventory(sample_inventory(), false).unwrap();
    dir
}
