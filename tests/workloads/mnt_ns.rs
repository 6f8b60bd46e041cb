//! A process in a mount namespace of its own (`unshare(CLONE_NEWNS)`, every mount made private,
//! the test mounts of other tests under /tmp and /run detached), with mounts under `WORK/m`:
//! - `t`: a tmpfs (`size=2m,mode=751`) holding a file with data (its mtime set), a sparse file of
//!   1 MiB with one page of data in its middle, owned by 65534:65534 with mode 0640, a directory
//!   of mode 0710, a symlink and a hard link;
//! - `file`: a bind mount of the file `t/data`;
//! - `ro`: a read-only bind mount of `t` (nosuid, noexec too);
//! - `proc`: a proc;
//! - `s` and `sl`: a shared tmpfs and a slave bind mount of it;
//! - `pts`, `mq`, `sys`, `cg`: a new devpts instance (`ptmxmode=666`), an mqueue, a sysfs and a
//!   cgroup2, read-only.
//!
//! It keeps `t/data` open at offset 3. After the wake it checks the mounts of its mountinfo under
//! `WORK/m` (mount point, root, type, per-mount flags, superblock options; `sl`'s master is `s`'s
//! peer group, the others private), the files with their metadata and data extents, that the open
//! file is `t/data` at its offset and is the file `file` shows, that `ro` refuses writes, that its
//! proc shows itself, and that a tmpfs mounted on `s/x` now propagates to `sl/x`.
//!
//! With the argument `overlay` it also mounts an overlayfs at `WORK/m/o` (the dump must refuse it);
//! with `pty`, it holds the master of a pty of its devpts `pts` open (the dump must refuse it);
//! with `external`, a bind mount at `WORK/m/ext` of the directory `WORK/src` holding a file
//! `marker`, checked after the wake to show `marker` (its root is not compared: the test restores
//! it from another directory, as `--external mnt[KEY]:PATH` allows); with `skip`, a tmpfs at
//! `WORK/m/skip` with a tmpfs at `skip/sub` under it, which the test leaves out with `--skip-mnt`:
//! after the wake neither is mounted and the rest is as before; with `skip-held`, the same, and a
//! file of `skip/sub` held open (the dump must refuse to leave it out; every mount is then checked);
//! with `ext-shared` or `ext-master`, the test's shared tmpfs `WORK/hs` (mounted by the test in its
//! own namespace before the start) stays a peer of its group there, or becomes its slave: after the
//! wake its propagation fields name the same group, and the tmpfs the test mounted at `hs/x` after
//! the restore has propagated to it; with `auto`, the test's private tmpfs `WORK/ha` (mounted by
//! the test before the start, holding a file `before`) is bind-mounted at `WORK/m/auto` and its
//! copy at `WORK/ha` unmounted, so only stasis's namespace shows that tmpfs at its own path: after
//! the wake `auto` still holds `before`, and also `after`, which the test wrote into `WORK/ha`
//! after the restore (the restored mount is that same tmpfs, not a copy of its files); with `ramfs`,
//! an empty ramfs (`mode=710`) at `WORK/m/ramfs`, which the test restores with `--enable-fs ramfs`
//! (checked with the other mounts; a file made in it after the wake works); with `ramfs-full`, the
//! same holding a file (the dump must refuse it: its files would not be saved).

use stasis_tests::workload::{self, Checker, OrFail};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

const DATA: &[u8] = b"the data of a file in a tmpfs of the namespace";
const SPARSE_SIZE: u64 = 1 << 20;
const SPARSE_AT: u64 = 512 << 10;
const MTIME: u64 = 1_600_000_000;

fn sh(script: &str) {
    let out = Command::new("sh").arg("-ec").arg(script).output().or_fail("running sh");
    if !out.status.success() {
        workload::say(&format!("FAIL: sh -ec {script:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        std::process::exit(1);
    }
}

/// The fields compared of the mounts under `base`: point, root, type, per-mount flags, superblock
/// options, and the propagation fields (peer group ids replaced by the mount point of the first
/// mount of the group).
fn mounts_under(base: &str) -> Vec<(String, String, String, String, String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").or_fail("mountinfo");
    let lines: Vec<Vec<String>> = text.lines().map(|l| l.split(' ').map(String::from).collect()).collect();
    let group_of = |tag: &str| -> String {
        let want = format!("shared:{tag}");
        lines.iter().find(|f| f.contains(&want)).map_or(format!("outside {tag}"), |f| f[4].clone())
    };
    let mut out = Vec::new();
    for f in &lines {
        if !f[4].starts_with(base) {
            continue;
        }
        let root = if f[4].ends_with("/ext") { "-".to_string() } else { f[3].clone() };
        let Some(dash) = f.iter().position(|x| x == "-") else { continue };
        let mut prop: Vec<String> = f[6..dash]
            .iter()
            .map(|t| match t.split_once(':') {
                Some((kind, n)) => format!("{kind}:{}", group_of(n)),
                None => t.clone(),
            })
            .collect();
        prop.sort();
        out.push((f[4].clone(), root, f[dash + 1].clone(), f[5].clone(), f[dash + 3].clone(), prop.join(" ")));
    }
    out
}

fn main() {
    let mut s = workload::start();
    let mode = workload::mode(
        1,
        &[
            "plain",
            "overlay",
            "external",
            "pty",
            "skip",
            "skip-held",
            "ext-shared",
            "ext-master",
            "auto",
            "ramfs",
            "ramfs-full",
        ],
    )
    .unwrap_or("plain");
    let base = workload::work_dir().join("m");
    let b = base.display().to_string();
    match stasis_tests::raw::unshare(libc::CLONE_NEWNS) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => workload::skip("unshare needs CAP_SYS_ADMIN"),
        Err(e) => Err::<(), _>(e).or_fail("unshare(CLONE_NEWNS)"),
    }
    // The test's shared tmpfs WORK/hs, of stasis's namespace, stays a peer (`ext-shared`) or
    // becomes a slave (`ext-master`) of its peer group there.
    let hs = workload::work_dir().join("hs").display().to_string();
    let ha = workload::work_dir().join("ha").display().to_string();
    let ext = mode.starts_with("ext-");
    let private = match ext {
        true => format!(
            "for m in $(awk '{{print $5}}' /proc/self/mountinfo); do [ \"$m\" = {hs} ] || mount --make-private \"$m\"; done"
        ),
        false => "mount --make-rprivate /".to_string(),
    };
    if mode == "ext-master" {
        sh(&format!("mount --make-slave {hs}"));
    }
    // Other tests' mounts come and go: none of them is kept in this namespace.
    sh(&format!(
        "{private}
         for m in $(awk '$5 ~ \"^/(tmp|run)/\" {{print $5}}' /proc/self/mountinfo | sort -r); do [ \"$m\" = {hs} ] || [ \"$m\" = {ha} ] || umount -l \"$m\" 2>/dev/null || true; done
         mkdir -p {b}/t {b}/ro {b}/proc {b}/s {b}/sl
         touch {b}/file
         mount -t tmpfs -o size=2m,mode=751 tmpfs-of-t {b}/t
         mount -t tmpfs shared-s {b}/s
         mount --make-shared {b}/s
         mkdir {b}/s/x"
    ));
    let t = base.join("t");
    fs::write(t.join("data"), DATA).or_fail("t/data");
    let f = fs::File::options().write(true).open(t.join("data")).or_fail("t/data for times");
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(MTIME)).or_fail("mtime");
    drop(f);
    let sparse = fs::File::create(t.join("sparse")).or_fail("t/sparse");
    sparse.set_len(SPARSE_SIZE).or_fail("sparse size");
    std::os::unix::fs::FileExt::write_all_at(&sparse, &[0x5a; 4096], SPARSE_AT).or_fail("sparse page");
    drop(sparse);
    std::os::unix::fs::chown(t.join("sparse"), Some(65534), Some(65534)).or_fail("chown sparse");
    fs::set_permissions(t.join("sparse"), fs::Permissions::from_mode(0o640)).or_fail("chmod sparse");
    fs::create_dir(t.join("dir")).or_fail("t/dir");
    fs::set_permissions(t.join("dir"), fs::Permissions::from_mode(0o710)).or_fail("chmod dir");
    std::os::unix::fs::symlink("data", t.join("link")).or_fail("t/link");
    fs::hard_link(t.join("data"), t.join("dir/hard")).or_fail("t/dir/hard");
    sh(&format!(
        "mount --bind {b}/t/data {b}/file
         mount --bind {b}/t {b}/ro
         mount -o remount,bind,ro,nosuid,noexec {b}/ro
         mount -t proc proc {b}/proc
         mount --bind {b}/s {b}/sl
         mount --make-slave {b}/sl
         mkdir -p {b}/pts {b}/mq {b}/sys {b}/cg
         mount -t devpts -o newinstance,ptmxmode=666,mode=620 devpts {b}/pts
         mount -t mqueue mq {b}/mq
         mount -t sysfs -o ro sys {b}/sys
         mount -t cgroup2 -o ro cg {b}/cg"
    ));
    if mode == "external" {
        let src = workload::work_dir().join("src");
        fs::create_dir_all(&src).or_fail("work/src");
        fs::write(src.join("marker"), "external").or_fail("work/src/marker");
        sh(&format!("mkdir -p {b}/ext; mount --bind {} {b}/ext", src.display()));
    }
    if mode == "auto" {
        sh(&format!("mkdir -p {b}/auto; mount --bind {ha} {b}/auto; umount {ha}"));
    }
    if mode.starts_with("ramfs") {
        sh(&format!("mkdir -p {b}/ramfs; mount -t ramfs -o mode=710 ram {b}/ramfs"));
    }
    if mode == "ramfs-full" {
        sh(&format!("echo x > {b}/ramfs/file"));
    }
    if mode == "overlay" {
        sh(&format!(
            "mkdir -p {b}/l {b}/u {b}/w {b}/o
             mount -t overlay overlay -o lowerdir={b}/l,upperdir={b}/u,workdir={b}/w {b}/o"
        ));
    }
    let _pty = (mode == "pty")
        .then(|| fs::File::options().read(true).write(true).open(base.join("pts/ptmx")).or_fail("pts/ptmx"));
    let skipped = format!("{b}/skip");
    let _held = mode.starts_with("skip").then(|| {
        sh(&format!(
            "mkdir -p {skipped}
             mount -t tmpfs left-out {skipped}
             mkdir {skipped}/sub
             mount -t tmpfs left-out-too {skipped}/sub
             echo x > {skipped}/sub/f"
        ));
        (mode == "skip-held").then(|| fs::File::open(format!("{skipped}/sub/f")).or_fail("open skip/sub/f"))
    });
    // What the restore makes again: all but the mounts left out (`skip-held` is not restored: the
    // dump refuses it and the process runs on with every mount).
    let kept = |point: &String| !(mode == "skip" && point.starts_with(&skipped));
    let mut open = fs::File::open(t.join("data")).or_fail("open t/data");
    open.seek(SeekFrom::Start(3)).or_fail("seek");
    let before: Vec<_> = mounts_under(&b).into_iter().filter(|m| kept(&m.0)).collect();
    let all_before: Vec<String> = mount_points().into_iter().filter(kept).collect();
    let hs_before = ext.then(|| propagation_of(&hs));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.same("mounts under the work dir", &before, &mounts_under(&b));
    // The test mounts a tmpfs at WORK/hs/x in its own namespace before the wake.
    let late = format!("{hs}/x");
    let all_after: Vec<String> = mount_points().into_iter().filter(|p| !(ext && p.starts_with(&late))).collect();
    c.same("every mount point of the namespace", &all_before, &all_after);
    if let Some(before) = hs_before {
        c.same("hs's peer group or master (stasis's group)", &before, &propagation_of(&hs));
        c.same("mounts propagated from stasis's hs/x", &1, &mounts_under(&late).len());
    }
    check_files(c, &base);
    if mode == "external" {
        let marker = fs::read_to_string(base.join("ext/marker")).map_err(|e| e.to_string());
        c.same("ext/marker", &Ok("external".to_string()), &marker);
    }
    if mode == "auto" {
        let read = |f: &str| fs::read_to_string(base.join("auto").join(f)).map_err(|e| e.to_string());
        c.same("auto/before", &Ok("before".to_string()), &read("before"));
        c.same(
            "auto/after (written into stasis's WORK/ha after the restore)",
            &Ok("after".to_string()),
            &read("after"),
        );
    }
    if mode == "ramfs" {
        let made = fs::write(base.join("ramfs/new"), "new").and_then(|()| fs::read_to_string(base.join("ramfs/new")));
        c.same("a file made in the ramfs after the restore", &Ok("new".to_string()), &made.map_err(|e| e.to_string()));
    }
    check_open(c, &base, &mut open);
    let ro = fs::write(base.join("ro/data"), b"x").map_err(|e| e.raw_os_error());
    c.same("writing through the read-only bind mount", &Err(Some(libc::EROFS)), &ro);
    let stat = fs::read_to_string(base.join("proc/self/stat")).unwrap_or_default();
    let pid = stat.split(' ').next().and_then(|p| p.parse::<u32>().ok());
    c.same("pid in its proc mount", &Some(std::process::id()), &pid);
    sh(&format!("mount -t tmpfs late {b}/s/x"));
    let propagated = mounts_under(&format!("{b}/sl/x")).len();
    c.same("mounts propagated from s/x to the slave sl/x", &1, &propagated);
    s.finish();
}

/// The propagation fields of the mount at `point` (`shared:N`, `master:N`), as mountinfo has them.
fn propagation_of(point: &str) -> String {
    let text = fs::read_to_string("/proc/self/mountinfo").or_fail("mountinfo");
    let line = text.lines().map(|l| l.split(' ').collect::<Vec<_>>()).rfind(|f| f[4] == point);
    line.map(|f| f[6..].iter().take_while(|x| **x != "-").copied().collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn mount_points() -> Vec<String> {
    let text = fs::read_to_string("/proc/self/mountinfo").or_fail("mountinfo");
    text.lines().filter_map(|l| l.split(' ').nth(4).map(String::from)).collect()
}

fn check_files(c: &mut Checker, base: &Path) {
    let t = base.join("t");
    c.same("t/data", &Ok(DATA.to_vec()), &fs::read(t.join("data")).map_err(|e| e.to_string()));
    let meta = |p: &str| fs::symlink_metadata(t.join(p)).or_fail(p);
    let data = meta("data");
    c.same("t/data mtime", &(MTIME as i64), &data.mtime());
    let sp = meta("sparse");
    c.same(
        "t/sparse size, mode, owner",
        &(SPARSE_SIZE, 0o100640, 65534, 65534),
        &(sp.size(), sp.mode(), sp.uid(), sp.gid()),
    );
    let f = fs::File::open(t.join("sparse")).or_fail("t/sparse");
    let extents = stasis_tests::raw::data_extents(&f, SPARSE_SIZE).map_err(|e| e.to_string());
    c.same("t/sparse data extents", &Ok(vec![(SPARSE_AT, SPARSE_AT + 4096)]), &extents);
    let mut page = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut page, SPARSE_AT).or_fail("sparse page");
    c.check(page.iter().all(|&b| b == 0x5a), || "t/sparse: its page of data changed".into());
    c.same("t/dir mode", &0o40710, &meta("dir").mode());
    c.same(
        "t/link target",
        &Ok("data".into()),
        &fs::read_link(t.join("link")).map(|p| p.display().to_string()).map_err(|e| e.to_string()),
    );
    c.same("t/dir/hard is t/data", &data.ino(), &meta("dir/hard").ino());
    c.same("t root mode", &0o40751, &fs::metadata(&t).or_fail("t").mode());
    let file = fs::metadata(base.join("file")).or_fail("file");
    c.same("file is a bind mount of t/data", &(data.dev(), data.ino()), &(file.dev(), file.ino()));
}

fn check_open(c: &mut Checker, base: &Path, open: &mut fs::File) {
    c.same("offset of the open file", &3, &open.stream_position().or_fail("position"));
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).or_fail("read the open file");
    c.same("rest of the open file", &DATA[3..].to_vec(), &rest);
    let (fd, path) = (open.metadata().or_fail("fstat"), fs::metadata(base.join("t/data")).or_fail("t/data"));
    c.same("the open file is t/data", &(path.dev(), path.ino()), &(fd.dev(), fd.ino()));
}
