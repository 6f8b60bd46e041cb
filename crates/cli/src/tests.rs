//! The command line as a whole: parsing each command, CRIU's spellings, usage errors.

use super::*;
use crate::criu_opts::{Kind, Takes, OPTIONS};
use clap::CommandFactory;
use std::path::PathBuf;

fn parse_ok(args: &[&str]) -> Cli {
    let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    parse(args.clone()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn cli_definition_is_valid() {
    Cli::command().debug_assert();
}

#[test]
fn parses_criu_style_flags() {
    let cli = parse_ok(&["stasis", "dump", "-t", "42", "-D", "/tmp/img", "-R", "-j", "-o", "log", "-vv", "--json"]);
    let Command::Dump(d) = cli.command else { panic!("not dump") };
    let o = dump::options(&d).unwrap();
    assert_eq!((o.pid, o.leave_running, o.shell_job, d.json), (42, true, true, true));
    assert_eq!(o.dir, PathBuf::from("/tmp/img"));
    // As in CRIU, a relative log file is in the work directory, which is the image directory.
    assert_eq!(d.criu.log_file(), Some(PathBuf::from("/tmp/img/log")));
    assert_eq!(d.criu.level(), log::LevelFilter::Debug);

    let cli = parse_ok(&["stasis", "restore", "-D", "d", "-d", "--pidfile", "p", "-W", "/w"]);
    let Command::Restore(r) = cli.command else { panic!("not restore") };
    assert!(r.criu.restore_detached() && !r.criu.is_set("shell-job"));
    assert_eq!(r.criu.pidfile(), Some(PathBuf::from("/w/p")));
    let cli = parse_ok(&["stasis", "restore", "--daemon", "--pidfile", "/abs/p"]);
    let Command::Restore(r) = cli.command else { panic!("not restore") };
    assert!(r.criu.restore_detached());
    assert_eq!((r.criu.images_dir(), r.criu.pidfile()), (PathBuf::from("."), Some(PathBuf::from("/abs/p"))));
}

#[test]
fn parses_ext_unix_sk() {
    let cli = parse_ok(&["stasis", "dump", "-t", "1", "-D", "d", "--ext-unix-sk"]);
    let Command::Dump(d) = cli.command else { panic!("not dump") };
    assert!(dump::options(&d).unwrap().ext_unix_sk);
    let cli = parse_ok(&["stasis", "dump", "-t", "1", "-D", "d", "--ext-unix-sk=77", "-x=78"]);
    let Command::Dump(d) = cli.command else { panic!("not dump") };
    let o = dump::options(&d).unwrap();
    assert_eq!((o.ext_unix_sk, o.ext_unix_inodes), (false, vec![77, 78]));
    let cli = parse_ok(&["stasis", "restore", "-D", "d", "-x"]);
    let Command::Restore(r) = cli.command else { panic!("not restore") };
    assert!(r.criu.is_set("ext-unix-sk"));
}

/// A sample value of `kind`.
fn sample(kind: Kind) -> &'static str {
    match kind {
        Kind::Pid => "1",
        Kind::Fd => "9",
        Kind::Size => "64K",
        Kind::Level => "4",
        Kind::Text | Kind::Path => "x",
    }
}

/// Every spelling of every option of the table, for every command that takes CRIU's options.
#[test]
fn every_criu_option_is_accepted_by_every_command() {
    for opt in OPTIONS {
        let name = format!("--{}", opt.long);
        let spellings: Vec<Vec<String>> = match opt.takes {
            Takes::Flag => vec![vec![name]],
            Takes::Bool => vec![vec![name.clone()], vec![format!("--no-{}", opt.long)]],
            Takes::Value(_, k) => vec![vec![name.clone(), sample(k).into()], vec![format!("{name}={}", sample(k))]],
            Takes::OptValue(_, k) => vec![vec![name.clone()], vec![format!("{name}={}", sample(k))]],
        };
        for spelling in spellings {
            for cmd in [&["dump", "-t", "7"][..], &["pre-dump", "-t", "7"], &["restore"], &["check"]] {
                let mut args: Vec<&str> = vec!["stasis"];
                args.extend(cmd);
                args.extend(spelling.iter().map(String::as_str));
                parse_ok(&args);
            }
        }
    }
}

#[test]
fn options_seen_rejected_before_are_accepted() {
    for opt in [
        "--file-locks",
        "--manage-cgroups",
        "--manage-cgroups=ignore",
        "--tcp-established",
        "--tcp-close",
        "--link-remap",
        "--ghost-fiemap",
        "--no-ghost-fiemap",
        "--force-irmap",
        "--skip-in-flight",
        "--network-lock=nftables",
        "--inherit-fd=fd[3]:pipe:[123]",
        "--external=tty[88:1]",
    ] {
        parse_ok(&["stasis", "dump", "-t", "1", opt]);
        parse_ok(&["stasis", "restore", opt]);
    }
}

#[test]
fn criu_short_options() {
    parse_ok(&["stasis", "dump", "-t", "1", "-D", "d", "-W", "w", "-o", "l", "-v4", "-j", "-R", "-s", "-x", "-l"]);
    parse_ok(&["stasis", "restore", "-D", "d", "-d", "-S", "-r", "/", "-J", "net:/x", "-M", "a:b", "-L", "l", "-v0"]);
    parse_ok(&["stasis", "dump", "-t1", "-Dd", "-vvv"]);
}

#[test]
fn verbosity_follows_criu_levels() {
    use log::LevelFilter::*;
    for (args, level) in [
        (&[][..], Warn),
        (&["-v"], Info),
        (&["-vv"], Debug),
        (&["-vvv"], Trace),
        (&["-v", "-v"], Debug),
        (&["-v0"], Off),
        (&["-v1"], Error),
        (&["-v4"], Debug),
        (&["--verbosity=3"], Info),
        (&["--verbosity"], Info),
        (&["-v4", "-v"], Trace),
    ] {
        let mut all = vec!["stasis", "restore"];
        all.extend(args);
        let Command::Restore(r) = parse_ok(&all).command else { panic!("not restore") };
        assert_eq!(r.criu.level(), level, "{args:?}");
    }
}

#[test]
fn rejects_bad_usage() {
    for args in [
        &["stasis", "dump", "-D", "d"][..],
        &["stasis", "pre-dump"],
        &["stasis", "dump", "-t", "0", "-D", "d"],
        &["stasis", "dump", "-t", "x", "-D", "d"],
        &["stasis", "dump", "-t", "1", "--ghost-limit", "1G"],
        &["stasis", "dump", "-t", "1", "-vx"],
        &["stasis", "dump", "-t", "1", "--close", "-1"],
        &["stasis", "dump", "-t", "1", "--no-such-option"],
        &["stasis", "show"],
        &["stasis", "frobnicate"],
    ] {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let err = parse(args.clone()).expect_err("usage error");
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }
}
