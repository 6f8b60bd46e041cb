use super::opts::command_line;
use super::Caller;
use stasis_rpc::{CriuOpts, ExtMountMap, InheritFd};
use stasis_sys::Pid;

fn me() -> Caller {
    let pid = std::process::id() as i32;
    Caller { pid, pidfd: stasis_sys::fd::pidfd_open(Pid(pid)).expect("pidfd of this test") }
}

fn args(command: &str, o: &CriuOpts) -> Vec<String> {
    let line = command_line(command, o, &me()).expect("a command line");
    line.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

/// The options runc 1.1 sends with a checkpoint of a container, as a command line, and what the
/// one option table refuses of them.
#[test]
fn runc_s_dump_request_is_refused_by_name() {
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
    for want in ["--tree", "4242", "--root", "--manage-cgroups", "--empty-ns", "--ext-mount-map", "--freeze-cgroup"] {
        assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
    }
    assert!(!a.iter().any(|x| x == "--shell-job" || x == "--leave-running"), "false flags were passed: {a:?}");
    let cli = crate::parse(a.into_iter().map(Into::into).collect()).expect("parses");
    let (criu, cmd) = cli.command.parts().1.expect("CRIU's options");
    let err = format!("{:#}", criu.check(cmd).expect_err("refused"));
    for named in ["--freeze-cgroup", "--manage-cgroups", "--ext-mount-map"] {
        assert!(err.contains(named), "{named} not named in: {err}");
    }
    assert!(!err.contains("--root"), "--root is restore's: {err}");
    assert!(!err.contains("--empty-ns"), "--empty-ns net is built: {err}");
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
