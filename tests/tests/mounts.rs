//! Mount namespaces: a process in a mount namespace of its own, with a tmpfs holding files (sparse,
//! with modes and owners), bind mounts of a file and of a directory (read-only), a proc, and a
//! shared tmpfs with a slave copy, is restored into a new namespace with the same mounts; the
//! workload checks its mountinfo, its files and its open file from inside. A filesystem stasis
//! does not make again (overlayfs) is refused by name, naming the mount point, and the process
//! runs on. A bind mount named external at the dump is restored from the path given for its key.
//! A tmpfs that stasis's namespace shows elsewhere is refused, or external with `--ext-mount-map
//! auto`, which also finds bind mounts of stasis's directories.

use stasis_tests::harness::{Case, Workload};

#[test]
fn a_mount_namespace_with_tmpfs_binds_proc_and_propagation() {
    let case = Case::new("mnt_ns", Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")));
    case.checkpoint_restore(&[], &[]);
}

#[test]
fn an_overlay_mount_is_refused_by_name() {
    if !std::fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("\toverlay\n") {
        return stasis_tests::harness::skip("this kernel has no overlayfs");
    }
    let case = Case::new("mnt_ns_overlay", Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("overlay"));
    let Some(mut run) = case.start() else { return };
    let r = case.dump(&run, &case.images("images"), &[], &[]);
    case.expect_failed(&r, "dump", &[&["the mount at"], &["/m/o"], &["overlay filesystem"], &["not supported"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// `--external mnt[POINT]:KEY` at the dump: the bind mount of a directory outside the namespace is
/// not saved; restore refuses without `--external mnt[KEY]:PATH`, naming the key, and with it
/// mounts PATH there (the original directory was moved away meanwhile).
#[test]
fn an_external_bind_mount_comes_from_the_path_given_at_restore() {
    let case = Case::new("mnt_ns_external", Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("external"));
    let Some(mut run) = case.start() else { return };
    let work = case.dir.work();
    let point = format!("{}/m/ext", work.display());
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--external", &format!("mnt[{point}]:shared-data")]);
    case.reap_dumped(&mut run);
    let moved = work.join("moved");
    std::fs::rename(work.join("src"), &moved).unwrap_or_else(|e| case.fail(&format!("moving work/src: {e}")));
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore", &[&["--external mnt[shared-data]"]]);
    case.expect_no_process_left(run.pid());
    let map = format!("mnt[shared-data]:{}", moved.display());
    let mut restored = case.restore_ok(&images, run.pid(), &["--external", &map]);
    case.finish(&mut restored);
}

/// A pty of a devpts instance of the namespace, held by the tree, is refused by name (its ptys are
/// not made again in the new instance), naming the fd and the mount point.
#[test]
fn a_pty_of_the_namespace_s_devpts_is_refused_by_name() {
    let case = Case::new("mnt_ns_pty", Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("pty"));
    let Some(mut run) = case.start() else { return };
    let r = case.dump(&run, &case.images("images"), &[], &[]);
    case.expect_failed(&r, "dump", &[&["of the devpts instance mounted at"], &["/m/pts"], &["not supported"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// The tree is the init of its own PID namespace (`unshare --pid --fork --mount --mount-proc`) with
/// its own mount namespace: its procs show that PID namespace; restore makes them (and every mount
/// after them) once the root exists, with the root's PID namespace (`pidns`).
#[test]
fn procs_of_the_tree_s_pid_namespace() {
    // unshare's own complaint when its child is killed by the dump would land in the log.
    let unshare = "exec unshare --pid --fork --mount --mount-proc \"$0\" 2>/dev/null";
    let w = Workload::new("mnt_ns", "sh").arg("-c").arg(unshare).arg(env!("CARGO_BIN_EXE_mnt_ns"));
    let case = Case::new("mnt_ns_pid", w);
    let Some(mut run) = case.start() else { return };
    case.checkpoint_restore_init(&mut run);
}

/// `--skip-mnt POINT`: the tmpfs at POINT and the one under it are not saved and not made again;
/// the workload checks every other mount and that those two are gone. Leaving out a mount whose
/// file the tree holds open is refused by name, naming the fd and the mount, and the tree runs on.
#[test]
fn skip_mnt_leaves_a_mount_and_its_submounts_out() {
    let case = Case::new("mnt_ns_skip", Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("skip"));
    let Some(mut run) = case.start() else { return };
    let point = format!("{}/m/skip", case.dir.work().display());
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--skip-mnt", &point]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    case.finish(&mut restored);
}

#[test]
fn skip_mnt_of_a_mount_in_use_is_refused_by_name() {
    let w = Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("skip-held");
    let case = Case::new("mnt_ns_skip_held", w);
    let Some(mut run) = case.start() else { return };
    let point = format!("{}/m/skip", case.dir.work().display());
    let r = case.dump(&run, &case.images("images"), &["--skip-mnt", &point], &[]);
    let sub = format!("{point}/sub");
    case.expect_failed(&r, "dump", &[&["fd "], &[&sub], &["--skip-mnt leaves out"], &["not supported"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// A tmpfs of stasis's namespace at `WORK/hs` (shared, with a directory `x`) or `WORK/ha`
/// (private, with a file `before`), unmounted when dropped.
struct HostShared(std::path::PathBuf);

impl HostShared {
    fn mount(case: &Case) -> HostShared {
        Self::mount_at(case, "hs", "mount --make-shared {p} && mkdir {p}/x")
    }

    fn mount_private(case: &Case) -> HostShared {
        Self::mount_at(case, "ha", "mount --make-private {p} && printf before > {p}/before")
    }

    /// A tmpfs at `WORK/NAME`, then `then` with `{p}` its path.
    fn mount_at(case: &Case, name: &str, then: &str) -> HostShared {
        let hs = case.dir.work().join(name);
        std::fs::create_dir_all(&hs).unwrap_or_else(|e| case.fail(&format!("mkdir {}: {e}", hs.display())));
        let p = hs.display().to_string();
        let script = format!("mount -t tmpfs host-{name} {p} && {}", then.replace("{p}", &p));
        let ok = std::process::Command::new("sh").arg("-ec").arg(&script).status().is_ok_and(|s| s.success());
        if !ok {
            case.fail(&format!("sh -ec {script:?} failed"));
        }
        HostShared(hs)
    }

    /// A tmpfs at `hs/x`, which propagates to the peers and slaves of `hs`.
    fn mount_late(&self, case: &Case) {
        let x = self.0.join("x");
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "late-x"]).arg(&x).status();
        if !ok.is_ok_and(|s| s.success()) {
            case.fail(&format!("mount -t tmpfs late-x {}", x.display()));
        }
    }
}

impl Drop for HostShared {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-R").arg("-l").arg(&self.0).status();
    }
}

/// A mount of the namespace in a peer group of stasis's namespace (`ext-shared`), or a slave of
/// one (`ext-master`): refused by name without `--enable-external-sharing` /
/// `--enable-external-masters` (the tree runs on), restored with it as a peer or slave of the
/// same group, to which a mount made there after the restore propagates.
fn external_propagation(mode: &str, option: &str) {
    let case = Case::new(&format!("mnt_ns_{mode}"), Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg(mode));
    let hs = HostShared::mount(&case);
    let Some(mut run) = case.start() else { return };
    let point = format!("{}/hs", case.dir.work().display());
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump", &[&["the mount at"], &[&point], &[option], &["not supported"]]);
    case.expect_untouched(&run);
    case.dump_ok(&run, &images, &[option]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    hs.mount_late(&case);
    case.finish(&mut restored);
}

#[test]
fn a_mount_sharing_a_peer_group_with_stasis_s_namespace_stays_its_peer() {
    external_propagation("ext-shared", "--enable-external-sharing");
}

#[test]
fn a_slave_of_a_peer_group_of_stasis_s_namespace_stays_its_slave() {
    external_propagation("ext-master", "--enable-external-masters");
}

/// A private tmpfs of stasis's namespace (`WORK/ha`) that the namespace shows only at another
/// point (`WORK/m/auto`): refused by name without `--ext-mount-map auto`, naming the mount, the
/// path and the options (a new tmpfs would not share its files; the tree runs on). With it, the
/// dump saves it as external, keyed by `WORK/ha`; restore without the option refuses naming the
/// key, and with it mounts that same tmpfs: a file the test writes into `WORK/ha` after the
/// restore is seen by the workload at `auto`.
#[test]
fn a_tmpfs_stasis_s_namespace_shows_elsewhere_is_external_with_ext_mount_map_auto() {
    let case = Case::new("mnt_ns_auto", Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("auto"));
    let ha = HostShared::mount_private(&case);
    let Some(mut run) = case.start() else { return };
    let point = format!("{}/m/auto", case.dir.work().display());
    let path = ha.0.display().to_string();
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    let refused: &[&[&str]] = &[&["the mount at"], &[&point], &[&path], &["--ext-mount-map auto"], &["not supported"]];
    case.expect_failed(&r, "dump", refused);
    case.expect_untouched(&run);
    case.dump_ok(&run, &images, &["--ext-mount-map", "auto"]);
    case.reap_dumped(&mut run);
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore", &[&[&format!("--external mnt[{path}]")], &["--ext-mount-map auto"]]);
    case.expect_no_process_left(run.pid());
    let mut restored = case.restore_ok(&images, run.pid(), &["--ext-mount-map", "auto"]);
    std::fs::write(ha.0.join("after"), "after").unwrap_or_else(|e| case.fail(&format!("writing {path}/after: {e}")));
    case.finish(&mut restored);
}

/// `--ext-mount-map auto` also finds a bind mount of a directory of stasis's namespace (of the
/// filesystem of the test's work directory), and restore copies that directory again.
#[test]
fn ext_mount_map_auto_finds_a_bind_mount_of_a_directory_of_stasis_s_namespace() {
    let w = Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("external");
    let case = Case::new("mnt_ns_auto_dir", w);
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--ext-mount-map", "auto"]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, run.pid(), &["--ext-mount-map", "auto"]);
    case.finish(&mut restored);
}

/// `--enable-fs ramfs`: an empty ramfs of the namespace, refused without the option (naming it), is
/// mounted anew with its options; one holding a file is refused even with it (its files are not
/// saved), and the tree runs on.
#[test]
fn enable_fs_mounts_an_empty_ramfs_again_and_refuses_one_with_files() {
    let case = Case::new("mnt_ns_ramfs", Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("ramfs"));
    let Some(mut run) = case.start() else { return };
    let point = format!("{}/m/ramfs", case.dir.work().display());
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    case.expect_failed(&r, "dump", &[&["the mount at"], &[&point], &["--enable-fs ramfs"], &["not supported"]]);
    case.expect_untouched(&run);
    case.dump_ok(&run, &images, &["--enable-fs", "ramfs"]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    case.finish(&mut restored);

    let full = Case::new("mnt_ns_ramfs_full", Workload::new("mnt_ns", env!("CARGO_BIN_EXE_mnt_ns")).arg("ramfs-full"));
    let Some(mut run) = full.start() else { return };
    let r = full.dump(&run, &full.images("images"), &["--enable-fs", "all"], &[]);
    full.expect_failed(&r, "dump", &[&["the mount at"], &["ramfs holding files"], &["not supported"]]);
    full.expect_untouched(&run);
    full.finish(&mut run);
}
