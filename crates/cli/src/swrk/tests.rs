use super::opts::command_line;
use super::Caller;
use stasis_rpc::{CriuOpts, ExtMountMap, InheritFd};
use stasis_sys::Pid;

fn me() -> Caller {
    let pid = std::process::id() as i32;
    Caller { pid, pidfd: stasis_sys::fd::pidfd_open(Pid(pid)).expect("pidfd of this test"), inherited: Vec::new() }
}

fn args(command: &str, o: &CriuOpts) -> Vec<String> {
    let line = command_line(command, o, &me()).expect("a command line");
    line.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

/// The options runc 1.1 sends with a checkpoint of a container, as a command line, which the
/// option table takes (`ext_mnt` as `--ext-mount-map`, `skip_mnt` as `--skip-mnt`); `tls`, not
/// built, is refused by name.
#[test]
fn runc_s_dump_request_becomes_options_stasis_takes() {
    let o = CriuOpts {
        images_dir: Some("/tmp/ckpt".into()),
        log_level: Some(4),
        log_file: Some("dump.log".into()),
        root: Some("/run/bundle/rootfs".into()),
        manage_cgroups: Some(true),
        notify_scripts: Some(true),
        pid: Some(4242),
        shell_job: Some(false),
        leave_running: Some(false),
        empty_ns: Some(libc::CLONE_NEWNET as u32),
        orphan_pts_master: Some(true),
        ext_mnt: vec![ExtMountMap { key: "/dev/null".into(), val: "/dev/null".into() }],
        freeze_cgroup: Some("/sys/fs/cgroup/freezer/c1".into()),
        ..Default::default()
    };
    let a = args("dump", &o);
    for want in
        ["--tree", "4242", "--root", "--manage-cgroups=soft", "--empty-ns", "--ext-mount-map", "--freeze-cgroup"]
    {
        assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
    }
    assert!(!a.iter().any(|x| x == "--shell-job" || x == "--leave-running"), "false flags were passed: {a:?}");
    let cli = crate::parse(a.into_iter().map(Into::into).collect()).expect("parses");
    let (criu, cmd) = cli.command.parts().1.expect("CRIU's options");
    if let Err(e) = criu.check(cmd) {
        panic!("runc's dump options refused: {e:#}");
    }
    let skip = CriuOpts { skip_mnt: vec!["/proc/kcore".into()], ..o.clone() };
    let a = args("dump", &skip);
    assert!(a.windows(2).any(|w| w == ["--skip-mnt", "/proc/kcore"]), "--skip-mnt missing from {a:?}");
    let cli = crate::parse(a.into_iter().map(Into::into).collect()).expect("parses");
    let (criu, cmd) = cli.command.parts().1.expect("CRIU's options");
    criu.check(cmd).expect("--skip-mnt taken");
    let tls = CriuOpts { tls: Some(true), ..o };
    let cli = crate::parse(args("dump", &tls).into_iter().map(Into::into).collect()).expect("parses");
    let (criu, cmd) = cli.command.parts().1.expect("CRIU's options");
    let err = format!("{:#}", criu.check(cmd).expect_err("refused"));
    assert!(err.contains("--tls"), "--tls not named in: {err}");
}

#[test]
fn caller_fds_become_ours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let images = std::fs::File::open(dir.path()).expect("open dir");
    let pipe = stasis_sys::fd::pipe().expect("pipe");
    use std::os::fd::AsRawFd;
    let o = CriuOpts {
        images_dir_fd: images.as_raw_fd(),
        inherit_fd: vec![InheritFd { key: "pipe:[1]".into(), fd: pipe.0.as_raw_fd() }],
        rst_sibling: Some(true),
        ..Default::default()
    };
    let line = command_line("restore", &o, &me()).expect("a command line");
    let a: Vec<String> = line.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    assert_eq!(line.held.len(), 2);
    let dir_fd = line.held[0].as_raw_fd();
    assert!(a.windows(2).any(|w| w == ["--images-dir".to_string(), format!("/proc/self/fd/{dir_fd}")]), "{a:?}");
    let pipe_fd = line.held[1].as_raw_fd();
    assert!(a.windows(2).any(|w| w == ["--inherit-fd".to_string(), format!("fd[{pipe_fd}]:pipe:[1]")]), "{a:?}");
    assert!(a.iter().any(|x| x == "--restore-sibling"));
    assert!(command_line("dump", &CriuOpts::default(), &me()).is_err(), "no image directory at all");
}

/// `manage_cgroups`, `manage_cgroups_mode`, `cg_root` and `freeze_cgroup` as CRIU's service reads
/// them, down to the engine's options.
#[test]
fn cgroup_fields_reach_the_engine_s_options() {
    use stasis_engine::cgroups::Mode;
    use stasis_rpc::{CgroupRoot, CriuCgMode};
    let mode_of = |o: &CriuOpts| {
        let a = args("restore", o);
        let cli = crate::parse(a.into_iter().map(Into::into).collect()).expect("parses");
        let (criu, cmd) = cli.command.parts().1.expect("CRIU's options");
        criu.check(cmd).expect("built");
        let opts = crate::restore::options(criu, true).expect("restore options");
        (opts.cgroups.mode, opts.cgroups.root)
    };
    let base = CriuOpts { images_dir: Some("/tmp/ckpt".into()), ..Default::default() };
    assert_eq!(mode_of(&base).0, Mode::Soft, "CRIU's default");
    let off = CriuOpts { manage_cgroups: Some(false), ..base.clone() };
    assert_eq!(mode_of(&off).0, Mode::Ignore, "manage_cgroups false alone is ignore");
    let on = CriuOpts { manage_cgroups: Some(true), ..base.clone() };
    assert_eq!(mode_of(&on).0, Mode::Soft);
    for (m, want) in [
        (CriuCgMode::Ignore, Mode::Ignore),
        (CriuCgMode::CgNone, Mode::None),
        (CriuCgMode::Props, Mode::Props),
        (CriuCgMode::Soft, Mode::Soft),
        (CriuCgMode::Full, Mode::Full),
        (CriuCgMode::Strict, Mode::Strict),
        (CriuCgMode::Default, Mode::Soft),
    ] {
        let o = CriuOpts { manage_cgroups: Some(false), manage_cgroups_mode: Some(m as i32), ..base.clone() };
        assert_eq!(mode_of(&o).0, want, "{m:?} overrides manage_cgroups");
    }
    let rooted = CriuOpts { cg_root: vec![CgroupRoot { ctrl: None, path: "/elsewhere".into() }], ..base.clone() };
    assert_eq!(mode_of(&rooted).1.as_deref(), Some("/elsewhere"));
    // As runc sends them: one per controller, the v2 line's with an empty one.
    let roots = [("memory", "/x"), ("", "/ctr"), ("name=systemd", "/y")];
    let cg_root = roots.iter().map(|(c, p)| CgroupRoot { ctrl: Some(c.to_string()), path: p.to_string() }).collect();
    let v1 = CriuOpts { cg_root, ..base.clone() };
    let a = args("restore", &v1);
    let cli = crate::parse(a.into_iter().map(Into::into).collect()).expect("parses");
    let criu = cli.command.parts().1.expect("CRIU's options").0;
    let opts = crate::restore::options(criu, true).expect("v1 controller roots").cgroups;
    assert_eq!(opts.root.as_deref(), Some("/ctr"));
    assert_eq!(opts.root_of("cpu,memory"), Some("/x"));
    assert_eq!(opts.root_of("name=systemd"), Some("/y"));
    assert_eq!(opts.root_of("pids"), Some("/ctr"), "the default root");
    let dump = CriuOpts { freeze_cgroup: Some("/sys/fs/cgroup/c1".into()), pid: Some(7), ..base };
    let a = args("dump", &dump);
    let cli = crate::parse(a.into_iter().map(Into::into).collect()).expect("parses");
    let crate::Command::Dump(d) = &cli.command else { panic!("a dump") };
    let opts = crate::dump::options(d).expect("dump options");
    assert_eq!(opts.freeze_cgroup.as_deref(), Some(std::path::Path::new("/sys/fs/cgroup/c1")));
}
