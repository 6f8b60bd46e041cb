//! Namespaces: a tree in UTS, IPC and PID namespaces of its own is restored into new namespaces of
//! the same kinds, each workload checking from inside what it had (names, SysV objects and queues,
//! its pids at every level); the kinds stasis does not restore are refused by name, and the tree
//! runs on.

use stasis_tests::harness::{checkpoint_restore, standalone, Case, Running, Workload};
use stasis_tests::workload;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

#[test]
fn uts_and_ipc_namespaces_with_their_names_segments_and_queues() {
    checkpoint_restore("ns_uts_ipc", workload!("ns_uts_ipc"));
}

#[test]
fn uts_and_ipc_namespaces_standalone() {
    standalone("ns_uts_ipc_standalone", workload!("ns_uts_ipc"));
}

/// The root is the init of its own PID namespace (the workload's first process only unshares it
/// and forks the init, as `unshare -pf` does): every process and thread gets its ids back at both
/// levels, an orphan stays the init's child, and the init still ignores signals it has no handler
/// for.
#[test]
fn the_init_of_a_pid_namespace_with_an_orphan_and_a_thread() {
    let case = Case::new("ns_pid", workload!("ns_pid"));
    let Some(mut run) = case.start() else { return };
    case.checkpoint_restore_init(&mut run);
}

/// PID namespaces nested inside the tree, three levels from stasis's: the root (in ours) and
/// the first init each unshared one and forked its init; every id comes back at every level,
/// and the root and the first init still send their next children into their child's namespace.
#[test]
fn nested_pid_namespaces_made_by_the_tree() {
    checkpoint_restore("ns_pid_nested", workload!("ns_pid_nested"));
}

/// A process in a time namespace of its own (made by `unshare --time --fork` with offsets far
/// above the uptime): restored in a new one with the same offsets, its clocks go on.
#[test]
fn a_time_namespace_with_its_offsets() {
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        return stasis_tests::harness::skip("this kernel has no time namespaces");
    }
    // unshare's own complaint when its child is killed by the dump would land in the log.
    let unshare = "exec unshare --time --fork --monotonic=1000000 --boottime=2000000 \"$0\" 2>/dev/null";
    let w = Workload::new("ns_time", "sh").arg("-c").arg(unshare).arg(env!("CARGO_BIN_EXE_ns_time"));
    let case = Case::new("ns_time", w);
    let Some(mut run) = case.start() else { return };
    // unshare's only child is the process in the new time namespace.
    case.checkpoint_restore_init(&mut run);
}

/// A tree in a user namespace of its own (maps of two ranges, `setgroups` denied): the root, with
/// the unmapped id it started with and UTS and IPC namespaces owned by its user namespace, and a
/// child with mapped ids and no capabilities come back in a new user namespace with the same maps,
/// ids, groups and capabilities, their namespaces owned by it.
#[test]
fn a_tree_in_a_user_namespace_of_its_own() {
    checkpoint_restore("ns_user", workload!("ns_user").arg("deny"));
}

#[test]
fn a_tree_in_a_user_namespace_standalone() {
    standalone("ns_user_standalone", workload!("ns_user").arg("allow"));
}

/// The same with `setgroups` allowed, the root being root inside (mapped ids and groups), and a
/// network namespace owned by the user namespace too.
#[test]
fn a_tree_in_a_user_namespace_with_setgroups_allowed_and_a_network_namespace() {
    checkpoint_restore("ns_user_allow", workload!("ns_user").arg("allow"));
}

/// The init of a PID namespace made inside a user namespace is refused by name (its children,
/// forked inside the user namespace, could not get their pids at stasis's level), and it runs on.
#[test]
fn a_pid_namespace_inside_a_user_namespace_is_refused_by_name() {
    let case = Case::new("ns_user_pid", workload!("ns_user").arg("pid"));
    let Some(mut run) = case.start() else { return };
    let init = case.init_of(&run);
    let r = case.stasis().dump(&case.dir, init, &case.images("images"), &[], &[]);
    case.expect_failed(&r, "dump", &[&["a pid namespace of its own with a user namespace"], &["not supported"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// A process with threads in a user namespace of its own is refused by name (a thread made
/// inside the namespace cannot be given its id at stasis's level), and the tree runs on untouched.
#[test]
fn threads_in_a_user_namespace_are_refused_by_name() {
    let case = Case::new("ns_user_thread", workload!("ns_user").arg("thread"));
    let Some(mut run) = case.start() else { return };
    let r = case.dump(&run, &case.images("images"), &[], &[]);
    case.expect_failed(&r, "dump", &[&["threads in a user namespace"], &["not supported"]]);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// A server in a network namespace of its own, reached through a veth whose peer is outside
/// (`--external veth[vin0]:PEER`): after the restore (which makes the veth again, with its peer
/// here, up) the peer is given its address again, as a container engine would, and the server
/// answers; the workload checks its addresses, route, sysctl and loopback.
#[test]
fn a_server_in_its_own_network_namespace_answers_through_a_veth() {
    let case = Case::new("ns_net", workload!("ns_net"));
    let Some(mut run) = case.start() else { return };
    let text = run.log_text();
    let net = text.lines().find_map(|l| l.strip_prefix("NET ")).map(|l| l.split(' ').map(String::from).collect());
    let Some([peer, peer_addr, addr]): Option<[String; 3]> = net.and_then(|v: Vec<String>| v.try_into().ok()) else {
        case.fail(&format!("no `NET <peer> <peer address> <address>` line:\n{text}"))
    };
    configure_peer(&case, &peer, &peer_addr);
    let r = case.dump(&run, &case.images("refused"), &[], &[]);
    case.expect_failed(&r, "dump without --external", &[&["--external veth[vin0]"]]);
    case.expect_untouched(&run);
    refused_with_a_firewall_table(&case, &run, &peer);
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--external", &format!("veth[vin0]:{peer}")]);
    case.reap_dumped(&mut run);
    failed_restore_leaves_no_veth(&case, &images, run.pid(), &peer);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    configure_peer(&case, &peer, &peer_addr);
    let target: std::net::SocketAddr = format!("{addr}:8080").parse().expect("address");
    let mut conn = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(20))
        .unwrap_or_else(|e| case.fail(&format!("connect to {target} after the restore: {e}")));
    conn.write_all(b"ping\n").expect("ping");
    case.finish(&mut restored);
    let mut answer = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let _ = BufReader::new(&conn).read_line(&mut answer);
    if answer != format!("pong {}\n", run.pid()) {
        case.fail(&format!("answer {answer:?} from the restored server"));
    }
}

/// What the firewall of the namespace cannot give back makes the dump fail by name, and the tree
/// runs on: a legacy iptables rule, then an iptables-nft rule with an xtables target (REJECT).
/// Each rule is removed again; the legacy table and iptables-nft's chains stay, empty, and the
/// dump that follows takes them (an empty legacy table with policies ACCEPT is as good as none).
/// Skipped where iptables-legacy or iptables is missing.
fn refused_with_a_firewall_table(case: &Case, run: &Running, peer: &str) {
    let pid = run.pid().to_string();
    let tool = |cmd: &str, verb: &str, target: &str| {
        std::process::Command::new("nsenter")
            .args(["-t", &pid, "-n", cmd, verb, "INPUT", "-p", "tcp", "--dport", "9", "-j", target])
            .status()
            .is_ok_and(|s| s.success())
    };
    let external = ["--external".to_string(), format!("veth[vin0]:{peer}")];
    let external: Vec<&str> = external.iter().map(String::as_str).collect();
    let refusals: [(&str, &str, &[&[&str]]); 2] = [
        ("iptables-legacy", "DROP", &[&["legacy x_tables"], &["ip_tables_names"], &["-A INPUT"]]),
        ("iptables", "REJECT", &[&["xtables extension target REJECT"], &["chain INPUT"]]),
    ];
    for (cmd, target, needles) in refusals {
        if !tool(cmd, "-A", target) {
            eprintln!("{cmd} is not usable here: its refusal is not checked");
            continue;
        }
        let r = case.dump(run, &case.images(&format!("refused-{cmd}")), &external, &[]);
        let removed = tool(cmd, "-D", target);
        case.expect_failed(&r, &format!("dump with an {cmd} rule"), needles);
        case.expect_untouched(run);
        if !removed {
            case.fail(&format!("could not remove the {cmd} rule again"));
        }
    }
}

/// The firewall of a network namespace of the tree (an nftables table with a set and a counted
/// reject rule, iptables-nft rules and a chain of its own) comes back before the tree runs: the
/// workload finds the same ruleset and the rules still act.
#[test]
fn a_firewall_in_its_own_network_namespace() {
    let case = Case::new("ns_firewall", workload!("ns_firewall"));
    case.checkpoint_restore(&[], &[]);
}

/// A restore that fails once the namespace is made (a fault after the memory) leaves nothing: no
/// process, and the veth pair goes with the namespace (the kernel removes it shortly after).
fn failed_restore_leaves_no_veth(case: &Case, images: &std::path::Path, pid: i32, peer: &str) {
    let env = [("STASIS_FAULT", "restore-fail-after-memory")];
    let r = case.stasis().restore_detached(&case.dir, images, &[], &env).0;
    case.expect_failed(&r, "restore with a fault", &[&["fault injected"]]);
    case.expect_no_process_left(pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/sys/class/net/{peer}")).exists() {
        if std::time::Instant::now() > deadline {
            case.fail(&format!("veth {peer} still here 20 s after the failed restore"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Give the veth's peer (here) its address and set it up.
fn configure_peer(case: &Case, peer: &str, addr: &str) {
    for args in [vec!["addr", "replace", &format!("{addr}/30"), "dev", peer], vec!["link", "set", peer, "up"]] {
        let out = std::process::Command::new("ip").args(&args).output().expect("ip");
        if !out.status.success() {
            case.fail(&format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
        }
    }
}

/// A network namespace named external at the dump (`--external net[INODE]:KEY`, as runc names a
/// container's namespace it did not make) is not saved; the restore joins the one given as
/// `--inherit-fd fd[N]:KEY` (kept alive here by an fd of it), and without it refuses by name.
#[test]
fn an_external_network_namespace_is_joined_at_restore() {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let w = Workload::new("basic", "unshare").arg("--net").arg(env!("CARGO_BIN_EXE_basic"));
    let case = Case::new("ns_external_net", w);
    let Some(mut run) = case.start() else { return };
    let path = format!("/proc/{}/ns/net", run.pid());
    let netns = std::fs::File::open(&path).unwrap_or_else(|e| case.fail(&format!("{path}: {e}")));
    let inode = netns.metadata().expect("netns inode").ino();
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--external", &format!("net[{inode}]:extNetNS")]);
    case.reap_dumped(&mut run);
    let r = case.stasis().restore_detached(&case.dir, &images, &[], &[]).0;
    case.expect_failed(&r, "restore without the namespace", &[&["--inherit-fd fd[N]:extNetNS"]]);
    let mut restored =
        case.restore_ok_passing(&images, run.pid(), &["--inherit-fd", "fd[9]:extNetNS"], netns.as_fd(), 9);
    let now = std::fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
    if now != inode {
        case.fail(&format!("restored in network namespace {now}, want the external {inode}"));
    }
    case.finish(&mut restored);
}
