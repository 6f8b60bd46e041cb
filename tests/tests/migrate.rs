//! Live migration between two network namespaces of this machine: the host's, where the workload
//! runs and `stasis migrate` runs, and a new one playing the other host, joined to it by a veth
//! pair this test makes (addresses in 10.213.0.0/16, reaching no other host). `stasis serve` runs
//! in the second one as pid 1 of a PID namespace of its own (`unshare -pf --mount-proc`), so that
//! the source's pids are free for the restore, with its own image directory. The workload keeps
//! rewriting its memory (each page with the pattern of a new seed) through the rounds; restored
//! there it runs in the second network namespace (it was in ours, which a dump does not save),
//! verifies every page and prints PASS. A serve that dies before the restore leaves the source
//! running on, unchanged.

use stasis_tests::harness::{skip, wait_child, Case, Running, EXIT_TIMEOUT, STASIS_TIMEOUT};
use stasis_tests::raw::Exit;
use stasis_tests::workload;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace joined to ours by a veth pair; removed on drop (which removes the pair).
struct Net {
    ns: String,
    host_if: String,
    /// The address of its end, in the namespace.
    there: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())),
    }
}

impl Net {
    fn new() -> Result<Net, String> {
        // A /30 of its own per test: 10.213.X.4Y+1 here, 10.213.X.4Y+2 there.
        let n = std::process::id() % 1000 * 4 + NEXT.fetch_add(1, Ordering::Relaxed) % 4;
        let (x, y) = (n / 64, n % 64 * 4);
        let here = format!("10.213.{x}.{}", y + 1);
        let net = Net {
            ns: format!("stm-{}-{n}", std::process::id()),
            host_if: format!("stmh{n}"),
            there: format!("10.213.{x}.{}", y + 2),
        };
        let _ = ip(&["link", "del", &net.host_if]);
        ip(&["netns", "add", &net.ns])?;
        let peer = format!("stmp{n}");
        ip(&["link", "add", &net.host_if, "type", "veth", "peer", "name", &peer, "netns", &net.ns])?;
        ip(&["addr", "add", &format!("{here}/32"), "peer", &format!("{}/32", net.there), "dev", &net.host_if])?;
        ip(&["link", "set", &net.host_if, "up"])?;
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &net.ns, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        exec(&["addr", "add", &format!("{}/32", net.there), "peer", &format!("{here}/32"), "dev", &peer])?;
        exec(&["link", "set", &peer, "up"])?;
        exec(&["link", "set", "lo", "up"])?;
        Ok(net)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// `stasis serve` in the namespace, pid 1 of a PID namespace of its own; killed on drop.
/// Shell commands mounting again under /sys/fs/cgroup what this machine has there: the cgroup2
/// hierarchy, or (a v1 or hybrid layout) the tmpfs and each v1 hierarchy with its options (a
/// hierarchy mounted again with the same controllers is the same one) and the cgroup2 one.
fn cgroup_mounts() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut cmds = Vec::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [_, at, kind, opts, ..] = f[..] else { continue };
        if !(at == "/sys/fs/cgroup" || at.starts_with("/sys/fs/cgroup/")) {
            continue;
        }
        match kind {
            "tmpfs" => cmds.push(format!("mount -t tmpfs -o mode=755 cgroup {at}")),
            "cgroup2" => cmds.push(format!("mkdir -p {at} && mount -t cgroup2 none {at}")),
            "cgroup" => {
                let keep: Vec<&str> = opts.split(',').filter(|o| !matches!(*o, "rw" | "ro" | "relatime")).collect();
                cmds.push(format!("mkdir -p {at} && mount -t cgroup -o {} cgroup {at}", keep.join(",")));
            }
            _ => {}
        }
    }
    if cmds.is_empty() {
        cmds.push("mount -t cgroup2 none /sys/fs/cgroup".into());
    }
    cmds.join(" && ")
}

struct Serve {
    child: Child,
    to: String,
    log: PathBuf,
}

impl Serve {
    fn start(case: &Case, net: &Net, dir: &Path, env: &[(&str, &str)]) -> Serve {
        std::fs::create_dir_all(dir).expect("serve's image dir");
        let log = case.dir.unique("serve", "log");
        case.dir.watch_log(&log);
        let mut cmd = Command::new("ip");
        // `ip netns exec` mounts a sysfs of the namespace over /sys, hiding the cgroup hierarchies
        // the restore puts the tree back in: mounted again there (in its own mount namespace).
        let script = format!("{} && exec unshare -pf --kill-child --mount-proc \"$@\"", cgroup_mounts());
        cmd.args(["netns", "exec", &net.ns, "sh", "-c", &script, "sh"]);
        cmd.arg(case.stasis().bin()).args(["serve", "--port", "0", "--address", &net.there, "-vv", "-D"]);
        cmd.arg(dir).arg("-o").arg(&log).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("start stasis serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("read serve's first line");
        let prefix = format!("serve listening on {}:", net.there);
        let port: u16 = line
            .trim()
            .strip_prefix(&prefix)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| case.fail(&format!("serve printed {line:?}")));
        // The rest of its output is not needed; read it so that it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Serve { child, to: format!("{}:{port}", net.there), log }
    }

    fn wait(&mut self) -> Exit {
        wait_child(&mut self.child, STASIS_TIMEOUT).0
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after `"name": ` in a JSON report.
fn number(json: &str, name: &str) -> Option<f64> {
    let key = format!("\"{name}\": ");
    let at = json.find(&key)? + key.len();
    json[at..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect::<String>().parse().ok()
}

/// The pid, in our namespace, of the process whose pid in its own (child) PID namespace is `inner`.
fn outer_pid(inner: i32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let status = std::fs::read_to_string(e.path().join("status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
        let pids: Vec<i32> = line.split_whitespace().skip(1).filter_map(|p| p.parse().ok()).collect();
        (pids.len() == 2 && pids[1] == inner && pids[0] == pid).then_some(pid)
    })
}

/// The workload's log has a last line `PASS` (or fails the test with what it has), within `timeout`.
fn expect_pass(case: &Case, log: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        if last == "PASS" {
            return;
        }
        if last.starts_with("FAIL") || Instant::now() > deadline {
            case.fail(&format!("the migrated workload did not PASS:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workload writing `rate` MiB/s over an area of `mib` MiB, and a namespace for serve.
fn setup(name: &str, mib: &str, rate: &str) -> Option<(Case, Running, Net)> {
    let case = Case::new(name, workload!("mem_writer").arg(mib).arg(rate));
    let net = match Net::new() {
        Ok(n) => n,
        Err(e) => {
            skip(&format!("no network namespace with a veth here: {e}"));
            return None;
        }
    };
    let run = case.start()?;
    Some((case, run, net))
}

fn migrate(case: &Case, run: &Running, to: &str, extra: &[&str]) -> std::process::Output {
    let log = case.dir.unique("migrate", "log");
    case.dir.watch_log(&log);
    let mut cmd = case.stasis().command();
    cmd.args(["migrate", "-t", &run.pid().to_string(), "--to", to, "--json", "-vv", "-o"]).arg(&log).args(extra);
    cmd.stdin(Stdio::null()).output().expect("run stasis migrate")
}

#[test]
fn a_process_writing_its_memory_migrates_with_pre_copy() {
    migrates("migrate_pre_copy", &[], true);
}

#[test]
fn a_process_migrates_with_the_final_dump_alone() {
    migrates("migrate_final_only", &["--max-rounds", "0"], false);
}

/// Post-copy: the final round without the page files, restored with lazy pages that serve's
/// lazy-pages daemon fetches from the source until all are in.
#[test]
fn a_process_migrates_with_post_copy() {
    migrates("migrate_lazy", &["--lazy"], false);
}

fn migrates(name: &str, extra: &[&str], pre_copy: bool) {
    let Some((case, mut run, net)) = setup(name, "64", "4") else { return };
    let log = run.log_path().expect("the workload's log").to_owned();
    let mut serve = Serve::start(&case, &net, &case.images("there"), &[]);
    let out = migrate(&case, &run, &serve.to, extra);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        case.fail(&format!("migrate failed: {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let downtime = number(&stdout, "downtime_ms").unwrap_or_else(|| case.fail(&format!("no downtime in {stdout}")));
    let rounds = stdout.matches("\"round\": ").count();
    eprintln!("{name}: {rounds} rounds, downtime {downtime:.1} ms\n{stdout}");
    if (pre_copy && rounds < 2) || (!pre_copy && rounds != 1) {
        case.fail(&format!("{rounds} rounds (pre-copy: {pre_copy}):\n{stdout}"));
    }
    if number(&stdout, "remote_pid") != Some(run.pid() as f64) {
        case.fail(&format!("restored with another pid than {}:\n{stdout}", run.pid()));
    }
    // The source is gone (killed once the other side ran the tree), and reaped here.
    case.reap_dumped(&mut run);
    let there = outer_pid(run.pid()).unwrap_or_else(|| case.fail("no migrated process in serve's PID namespace"));
    stasis_tests::raw::kill(there, workload::WAKE).unwrap_or_else(|e| case.fail(&format!("SIGUSR1: {e}")));
    expect_pass(&case, &log, EXIT_TIMEOUT);
    // serve, the migrated tree's init, ends with its root's status.
    let exit = serve.wait();
    if exit != Exit::Code(0) {
        case.fail(&format!("serve ended with {exit:?}; log {}", serve.log.display()));
    }
}

/// serve dies after the first round of pre-copy: the tree, which ran on through it, still runs,
/// the write tracking that round armed is gone with its holder, and the local rounds are removed.
#[test]
fn a_serve_dying_during_pre_copy_leaves_the_source_running_untracked() {
    let Some((case, mut run, net)) = setup("migrate_serve_dies_early", "16", "4") else { return };
    let serve = Serve::start(&case, &net, &case.images("there"), &[("STASIS_FAULT", "serve-die-after-round-1")]);
    let here = case.images("here");
    std::fs::create_dir_all(&here).expect("migrate's -D");
    let out = migrate(&case, &run, &serve.to, &["-D", here.to_str().expect("a UTF-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() || !stderr.contains("round 1") || !stderr.contains("the tree runs on here") {
        case.fail(&format!("migrate to a serve dying after round 1: {}\n{stderr}", out.status));
    }
    drop(serve);
    if std::fs::read_dir(&here).map(|d| d.count()).unwrap_or(0) != 0 {
        case.fail(&format!("rounds left in {}", here.display()));
    }
    let holders = || -> Vec<(i32, String)> {
        let procs = std::fs::read_dir("/proc").map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
        procs
            .into_iter()
            .filter_map(|e| {
                Some((e.file_name().to_str()?.parse().ok()?, std::fs::read(e.path().join("cmdline")).ok()?))
            })
            .map(|(pid, c)| (pid, String::from_utf8_lossy(&c).replace('\0', " ")))
            .filter(|(_, c)| c.contains("__track-holder") && c.contains(here.to_str().unwrap_or("?")))
            .collect()
    };
    // The holder, given up, exits (and, reparented to this subreaper, is reaped here).
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while let Some((pid, _)) = holders().first() {
        let _ = stasis_tests::raw::try_waitpid(*pid);
        if Instant::now() > deadline {
            case.fail(&format!("tracking holders left: {:?}", holders()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    case.expect_untouched(&run);
    if let Err(e) = run.finish(EXIT_TIMEOUT) {
        case.fail(&format!("the source after the failed migration: {e}"));
    }
}

/// serve dies after it received everything, before it restores: the source's hand-off fails, the
/// tree is thawed and runs on (it verifies its memory and passes), and serve's directory is empty
/// (it was killed, so it could not clean up: only what it wrote before is there, never a tree).
#[test]
fn a_serve_dying_mid_migration_leaves_the_source_running() {
    let Some((case, mut run, net)) = setup("migrate_serve_dies", "16", "4") else { return };
    let there = case.images("there");
    let serve = Serve::start(&case, &net, &there, &[("STASIS_FAULT", "serve-die-before-restore")]);
    let out = migrate(&case, &run, &serve.to, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() || !stderr.contains("the tree runs on here") {
        case.fail(&format!("migrate to a dying serve: {}\n{stdout}\n{stderr}", out.status));
    }
    drop(serve);
    case.expect_untouched(&run);
    if let Err(e) = run.finish(EXIT_TIMEOUT) {
        case.fail(&format!("the source after the failed migration: {e}"));
    }
}
