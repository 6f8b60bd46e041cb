use super::restore::Placement;
use super::*;

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
    let ignore = Options { mode: Mode::Ignore, root: None };
    let p = Placement::prepare(None, &["/somewhere/nowhere"], &ignore, pid).expect("ignored");
    p.join_process(Pid(i32::MAX), "/somewhere/nowhere").expect("nothing joined");
    let p = Placement::prepare(None, &["", ""], &Options::default(), pid).expect("nothing to place");
    p.join_thread(Pid(i32::MAX), "", "/x").expect("nothing joined");
}

#[test]
fn v1_membership_other_than_ours_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("7")).expect("mkdir");
    std::fs::write(dir.path().join("7/cgroup"), "9:name=systemd:/box\n4:memory:/\n0::/a\n").expect("write");
    let root = ProcRoot::new(dir.path());
    let ours = "9:name=systemd:/\n4:memory:/\n0::/\n";
    let err = check_v1(&root, Pid(7), ours).expect_err("refused").to_string();
    assert!(err.contains("pid 7") && err.contains("name=systemd") && err.contains("/box"), "{err}");
    let same = "9:name=systemd:/box\n4:memory:/\n0::/b\n";
    check_v1(&root, Pid(7), same).expect("the same v1 cgroups as ours");
}

#[test]
fn a_cgroup_namespace_root_is_the_path_less_what_the_namespace_shows() {
    assert_eq!(super::ns_root_of("/a/b/c", "/c").as_deref(), Some("/a/b"));
    assert_eq!(super::ns_root_of("/a/b", "/").as_deref(), Some("/a/b"));
    assert_eq!(super::ns_root_of("/c", "/c").as_deref(), Some("/"));
    assert_eq!(super::ns_root_of("/a/x", "/../x"), None);
    assert_eq!(super::ns_root_of("/a/b", "/zz"), None);
}
