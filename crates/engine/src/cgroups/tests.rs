use super::restore::Placement;
use super::*;
use stasis_image::model::CgroupV1Path;

/// A cgroup hierarchy made of plain directories and files, as `dump_set` reads it.
fn fake_hierarchy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, files) in [
        ("top", &[("memory.max", "1048576\n"), ("pids.max", "max\n"), ("cgroup.subtree_control", "pids\n")][..]),
        ("top/a", &[("pids.max", "16\n"), ("cgroup.type", "domain\n")][..]),
        ("top/a/b", &[][..]),
        ("top/c", &[("cgroup.subtree_control", "\n")][..]),
    ] {
        let d = dir.path().join(path);
        std::fs::create_dir_all(&d).expect("mkdir");
        for (name, value) in files {
            std::fs::write(d.join(name), value).expect("write");
        }
    }
    dir
}

#[test]
fn the_set_holds_every_directory_from_the_common_root_down_with_the_files_that_exist() {
    let h = fake_hierarchy();
    let set = dump_set(h.path(), &["/top/a/b", "/top/c", "/top", "", "/top/a/b"]).expect("a set");
    assert_eq!(set.root, "/top");
    let paths: Vec<&str> = set.dirs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/top", "/top/a", "/top/a/b", "/top/c"]);
    let top: Vec<(&str, &str)> = set.dirs[0].settings.iter().map(|s| (s.name.as_str(), s.value.as_str())).collect();
    assert_eq!(top, [("memory.max", "1048576"), ("pids.max", "max"), ("cgroup.subtree_control", "pids")]);
    let a: Vec<&str> = set.dirs[1].settings.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(a, ["cgroup.type", "pids.max"], "the type first");
    assert!(set.dirs[2].settings.is_empty());
}

#[test]
fn the_hierarchy_root_is_never_in_the_set() {
    let h = fake_hierarchy();
    let set = dump_set(h.path(), &["/top/a", "/top/c", "/"]).expect("a set");
    assert_eq!(set.root, "/");
    let paths: Vec<&str> = set.dirs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["/top", "/top/a", "/top/c"]);
    assert!(dump_set(h.path(), &["", ""]).is_none());
    assert!(dump_set(h.path(), &["/"]).is_some_and(|s| s.dirs.is_empty()));
}

#[test]
fn modes_take_criu_s_names_and_soft_is_the_default() {
    for m in [Mode::Ignore, Mode::None, Mode::Props, Mode::Soft, Mode::Full, Mode::Strict] {
        assert_eq!(m.name().parse::<Mode>(), Ok(m));
    }
    assert_eq!("".parse::<Mode>(), Ok(Mode::Soft));
    assert_eq!(Mode::default(), Mode::Soft);
    assert!("hard".parse::<Mode>().is_err());
}

#[test]
fn no_cgroups_to_place_or_ignore_touches_nothing() {
    let pid = Pid(1);
    let ignore = Options { mode: Mode::Ignore, ..Default::default() };
    let v1 = CgroupV1Path { controllers: "no-such-controller".into(), path: "/x".into() };
    let p = Placement::prepare(None, (&["/somewhere/nowhere"], &[&v1]), &ignore, pid).expect("ignored");
    p.join_process(Pid(i32::MAX), "/somewhere/nowhere", std::slice::from_ref(&v1)).expect("nothing joined");
    let p = Placement::prepare(None, (&["", ""], &[]), &Options::default(), pid).expect("nothing to place");
    p.join_thread(Pid(i32::MAX), ("", &[]), ("/x", &[])).expect("nothing joined");
}

#[test]
fn a_v1_hierarchy_not_mounted_here_fails_the_restore_by_name() {
    let v1 = CgroupV1Path { controllers: "no-such-controller".into(), path: "/x".into() };
    let err = Placement::prepare(None, (&[], &[&v1]), &Options::default(), Pid(7)).expect_err("refused");
    assert!(err.to_string().contains("no-such-controller"), "{err}");
}

#[test]
fn a_v1_cgroup_root_is_the_controllers_own_else_the_default() {
    let opts = Options { root: Some("/d".into()), v1_roots: vec![("cpu".into(), "/c".into())], ..Default::default() };
    assert_eq!(opts.root_of("cpu,cpuacct"), Some("/c"));
    assert_eq!(opts.root_of("cpuacct"), Some("/d"));
    assert_eq!(Options::default().root_of("cpu"), None);
}

#[test]
fn a_cgroup_namespace_root_is_the_path_less_what_the_namespace_shows() {
    assert_eq!(super::ns_root_of("/a/b/c", "/c").as_deref(), Some("/a/b"));
    assert_eq!(super::ns_root_of("/a/b", "/").as_deref(), Some("/a/b"));
    assert_eq!(super::ns_root_of("/c", "/c").as_deref(), Some("/"));
    assert_eq!(super::ns_root_of("/a/x", "/../x"), None);
    assert_eq!(super::ns_root_of("/a/b", "/zz"), None);
}
