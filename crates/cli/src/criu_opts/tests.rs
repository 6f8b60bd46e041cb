//! The option table, the checks of given options, sizes and config files.

use super::*;
use clap::{FromArgMatches, Parser};

#[derive(Parser, Debug)]
struct T {
    #[command(flatten)]
    criu: CriuArgs,
}

fn args(list: &[&str]) -> CriuArgs {
    let mut all = vec!["t"];
    all.extend(list);
    let m = <T as clap::CommandFactory>::command().try_get_matches_from(all).expect("parse");
    CriuArgs::from_arg_matches(&m).expect("matches")
}

fn refused(list: &[&str], cmd: CriuCommand) -> Option<String> {
    args(list).check(cmd).err().map(|e| format!("{e:#}"))
}

#[test]
fn unbuilt_options_are_refused_by_name() {
    let e = refused(&["--tls", "--stream", "--link-remap"], CriuCommand::Dump).expect("refused");
    assert!(e.contains("--tls (TLS for the page server)"), "{e}");
    assert!(e.contains("--stream (image streaming)"), "{e}");
    assert!(!e.contains("link-remap"), "{e}");
    for done in [
        &["--tcp-established"][..],
        &["--page-server"],
        &["--file-locks"],
        &["--network-lock", "skip"],
        &["--network-lock", "iptables"],
        &["--skip-in-flight"],
        &["--leave-stopped"],
        &["--skip-mnt", "/a"],
    ] {
        assert!(refused(done, CriuCommand::Dump).is_none(), "{done:?} refused");
    }
    for list in [&["--tls"][..], &["--stream"], &["--cgroup-props", "x"], &["--lsm-profile", "apparmor:x"]] {
        let dump_only = ["--skip-in-flight", "--tls"];
        let cmd = if dump_only.contains(&list[0]) { CriuCommand::Dump } else { CriuCommand::Restore };
        let e = refused(list, cmd).unwrap_or_else(|| panic!("{list:?} accepted"));
        assert!(e.starts_with("not built yet in stasis, nothing was touched: --"), "{e}");
        assert!(e.contains(list[0].split('=').next().unwrap_or_default()), "{e}");
    }
}

#[test]
fn done_and_moot_options_and_accepted_values_pass() {
    let list = [
        "--link-remap",
        "--ghost-fiemap",
        "--no-ghost-fiemap",
        "--force-irmap",
        "--manage-cgroups=ignore",
        "--manage-cgroups",
        "--manage-cgroups=full",
        "--freeze-cgroup",
        "/sys/fs/cgroup/c1",
        "--cpu-cap=fpu",
        "-x",
        "--tcp-established",
        "--no-tcp-established",
        "--display-stats",
        "--timeout",
        "10",
    ];
    assert_eq!(refused(&list, CriuCommand::Dump), None);
    // An option of another command is ignored, as criu ignores it.
    assert_eq!(refused(&["--tcp-close", "--lazy-pages"], CriuCommand::Check), None);
}

#[test]
fn bool_options_take_the_last_spelling() {
    assert!(!args(&["--shell-job", "--no-shell-job"]).is_set("shell-job"));
    assert!(args(&["--no-shell-job", "--shell-job"]).is_set("shell-job"));
}

#[test]
fn sizes_with_and_without_suffixes() {
    assert_eq!(parse_size("4096"), Ok(4096));
    assert_eq!(parse_size("64K"), Ok(64 << 10));
    assert_eq!(parse_size("8m"), Ok(8 << 20));
    assert!(parse_size("1G").is_err());
    assert!(parse_size("33M").is_err());
    assert!(parse_size("x").is_err());
    assert_eq!(args(&["--ghost-limit", "2M"]).ghost_limit(), 2 << 20);
    assert_eq!(args(&[]).ghost_limit(), 1 << 20);
}

#[test]
fn config_file_lines_become_options() {
    let text = "# comment\n  tcp-established\nlog-file /tmp/x.log # trailing\n\nverbosity 4\nlsm-profile \"a b\"\n";
    let got = config_args(text).expect("config");
    let want = ["--tcp-established", "--log-file", "/tmp/x.log", "--verbosity=4", "--lsm-profile", "a b"];
    assert_eq!(got, want.map(OsString::from));
    assert!(config_args("frobnicate 1\n").is_err());
}

#[test]
fn config_options_come_before_the_command_line_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.conf");
    std::fs::write(&file, "images-dir /from/config\nshell-job\n").expect("write config");
    let argv: Vec<OsString> =
        ["stasis", "restore", "--config", file.to_str().expect("utf-8"), "-D", "/cli"].map(OsString::from).to_vec();
    let out = with_config(argv).expect("with config");
    let text: Vec<String> = out.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    assert_eq!(text[..6], ["stasis", "restore", "--images-dir", "/from/config", "--shell-job", "--config"]);
    let m = <T as clap::CommandFactory>::command()
        .try_get_matches_from(out.into_iter().skip(1).collect::<Vec<_>>())
        .expect("parse");
    let c = CriuArgs::from_arg_matches(&m).expect("matches");
    assert_eq!(c.images_dir(), PathBuf::from("/cli"));
    assert!(c.is_set("shell-job"));
    assert!(with_config(["stasis", "dump", "--config=/no/such/file"].map(OsString::from).to_vec()).is_err());
}

#[test]
fn readme_has_the_option_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
    assert!(
        readme.contains(&markdown()),
        "README.md lacks the current option table; print it with \
         `cargo test -p stasis-cli print_option_table -- --ignored --nocapture`"
    );
}

#[test]
#[ignore = "prints the README's option table"]
fn print_option_table() {
    print!("{}", markdown());
}
