//! The page server on loopback (port 0, so parallel tests never collide): a dump sends its pages
//! to `stasis page-server`, the small images are copied beside them and the tree restores from the
//! server's directory (also over a socket the caller connected, `--ps-socket FD`); a server killed mid-dump and one that is not there fail the dump with the
//! tree running on and no image on either side.

use stasis_tests::harness::{proc_state, wait_child, Case, EXIT_TIMEOUT, STASIS_TIMEOUT};
use stasis_tests::raw::{self, Exit};
use stasis_tests::workload;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `stasis page-server --port 0` on 127.0.0.1, killed on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(case: &Case, dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with(case, dir, env, &[])
    }

    fn start_with(case: &Case, dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Server {
        std::fs::create_dir_all(dir).expect("server dir");
        let log = case.dir.unique("page-server", "log");
        case.dir.watch_log(&log);
        let mut cmd = case.stasis().command();
        cmd.args(["page-server", "--port", "0", "--address", "127.0.0.1", "-vv", "-D"]).arg(dir).arg("-o").arg(&log);
        cmd.args(extra).envs(env.iter().copied()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("start stasis page-server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut line).expect("read the page server's first line");
        let port = line
            .trim()
            .strip_prefix("page-server listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| case.fail(&format!("page server printed {line:?}")));
        Server { child, port, log }
    }

    fn port(&self) -> String {
        self.port.to_string()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait(&mut self) -> Exit {
        wait_child(&mut self.child, STASIS_TIMEOUT).0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

fn page_server_args(port: &str) -> [&str; 5] {
    ["--page-server", "--address", "127.0.0.1", "--port", port]
}

#[test]
fn dump_to_a_page_server_then_restore_from_its_directory() {
    round_trip("ps_round_trip", false);
}

/// The same over a socket this test connected to the server, given as `--ps-socket 5`.
#[test]
fn dump_over_a_ps_socket_then_restore() {
    round_trip("ps_socket_round_trip", true);
}

fn round_trip(name: &str, over_socket: bool) {
    let case = Case::new(name, workload!("mem_big").arg("48"));
    let Some(mut run) = case.start() else { return };
    let served = case.images("served");
    let mut server = Server::start(&case, &served, &[]);
    let local = case.images("local");
    let port = server.port();
    if over_socket {
        let conn = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("port"))).expect("connect");
        std::fs::create_dir_all(&local).expect("images dir");
        let log = case.dir.unique("dump", "log");
        let mut cmd = case.stasis().command();
        raw::pass_fd_on_spawn(&mut cmd, std::os::fd::AsFd::as_fd(&conn), 5);
        cmd.args(["dump", "-t", &run.pid().to_string(), "-D", local.to_str().unwrap(), "-vv", "-o"]).arg(&log);
        cmd.args(["--page-server", "--ps-socket", "5"]).stdin(Stdio::null());
        let out = cmd.output().expect("stasis dump");
        drop(conn);
        if !out.status.success() {
            case.fail(&format!("dump over --ps-socket failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
    } else {
        case.dump_ok(&run, &local, &page_server_args(&port));
    }
    let exit = server.wait();
    if exit != Exit::Code(0) {
        case.fail(&format!("page server ended with {exit:?}; log {}", server.log.display()));
    }
    let pages = format!("pages-{}.img", run.pid());
    if names(&served) != [pages.clone()] {
        case.fail(&format!("the page server's directory holds {:?}, expected [{pages}]", names(&served)));
    }
    if names(&local).iter().any(|n| n.starts_with("pages-")) || !local.join("inventory.img").exists() {
        case.fail(&format!("the dump's directory holds {:?}", names(&local)));
    }
    case.reap_dumped(&mut run);
    for name in names(&local) {
        std::fs::copy(local.join(&name), served.join(&name)).expect("copy the small images");
    }
    let mut restored = case.restore_ok(&served, run.pid(), &[]);
    case.finish(&mut restored);
}

#[test]
fn a_page_server_killed_mid_dump_fails_the_dump_and_the_tree_runs_on() {
    let case = Case::new("ps_killed", workload!("mem_big").arg("48"));
    let Some(mut run) = case.start() else { return };
    let served = case.images("served");
    // The server stops itself once some pages have arrived; it is killed there, mid-file.
    let server = Server::start(&case, &served, &[("STASIS_FAULT", "page-server-stop-mid-file")]);
    let server_pid = server.pid();
    let killer = std::thread::spawn(move || {
        let deadline = Instant::now() + STASIS_TIMEOUT;
        while Instant::now() < deadline {
            if proc_state(server_pid).is_some_and(|(s, _)| s == 'T') {
                return raw::kill(server_pid, libc::SIGKILL).is_ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    });
    let local = case.images("local");
    let port = server.port();
    let r = case.dump(&run, &local, &page_server_args(&port), &[]);
    if !killer.join().unwrap_or(false) {
        case.fail(&format!("the page server never stopped mid-file:\n{}", r.describe()));
    }
    case.expect_failed(&r, "dump to a page server killed mid-dump", &[&["page server 127.0.0.1"]]);
    drop(server);
    case.expect_untouched(&run);
    for dir in [&local, &served] {
        if !names(dir).is_empty() {
            case.fail(&format!("the failed dump left {:?} in {}", names(dir), dir.display()));
        }
    }
    case.finish(&mut run);
}

#[test]
fn no_page_server_fails_the_dump_before_anything() {
    let case = Case::new("ps_refused", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    // A port nobody listens on: taken from the kernel, then given back.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let local = case.images("local");
    let port = port.to_string();
    let r = case.dump(&run, &local, &page_server_args(&port), &[]);
    case.expect_failed(&r, "dump to no page server", &[&[&format!("page server 127.0.0.1:{port}: connecting")]]);
    case.expect_untouched(&run);
    if !names(&local).is_empty() {
        case.fail(&format!("the failed dump left {:?}", names(&local)));
    }
    case.finish(&mut run);
}

/// The small images of `from` (all but the page files) copied into a new directory `to`.
fn small_images(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("image dir");
    for name in names(from).into_iter().filter(|n| !n.starts_with("pages-")) {
        std::fs::copy(from.join(&name), to.join(&name)).expect("copy the small images");
    }
}

/// `stasis lazy-pages -D dir --page-server --address 127.0.0.1 --port port`, once it listens.
fn lazy_daemon(case: &Case, dir: &Path, port: &str, env: &[(&str, &str)]) -> Child {
    let log = case.dir.unique("lazy-pages", "log");
    case.dir.watch_log(&log);
    let mut cmd = case.stasis().command();
    cmd.args(["lazy-pages", "-vv", "--page-server", "--address", "127.0.0.1", "--port", port, "-D"]).arg(dir);
    cmd.arg("-o").arg(&log).envs(env.iter().copied()).stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("start stasis lazy-pages");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("read its first line");
    if !line.starts_with("lazy-pages listening on ") {
        case.fail(&format!("lazy-pages printed {line:?}"));
    }
    child
}

fn no_userfaultfd() -> bool {
    match raw::userfaultfd() {
        Ok(_) => false,
        Err(e) => {
            stasis_tests::harness::skip(&format!("userfaultfd(2) fails here ({e}): lazy restore cannot work"));
            true
        }
    }
}

#[test]
fn a_lazy_restore_fetching_its_pages_from_a_page_server() {
    if no_userfaultfd() {
        return;
    }
    let case = Case::new("ps_lazy", workload!("mem_big").arg("48"));
    let Some(mut run) = case.start() else { return };
    let source = case.images("source");
    case.dump_ok(&run, &source, &[]);
    case.reap_dumped(&mut run);
    let mut server = Server::start_with(&case, &source, &[], &["--lazy-pages"]);
    let here = case.images("here");
    small_images(&source, &here);
    let mut daemon = lazy_daemon(&case, &here, &server.port(), &[]);
    let mut restored = case.restore_ok(&here, run.pid(), &["--lazy-pages"]);
    case.finish(&mut restored);
    let (exit, _) = wait_child(&mut daemon, STASIS_TIMEOUT);
    if exit != Exit::Code(0) {
        case.fail(&format!("lazy-pages ended with {exit:?}"));
    }
    if server.wait() != Exit::Code(0) {
        case.fail("the page server did not end well once the daemon was done");
    }
    if names(&here).iter().any(|n| n.starts_with("pages-") || n.ends_with(".socket")) {
        case.fail(&format!("lazy-pages left {:?}", names(&here)));
    }
}

#[test]
fn a_page_server_lost_mid_lazy_restore_takes_the_tree_with_it() {
    if no_userfaultfd() {
        return;
    }
    let case = Case::new("ps_lazy_lost", workload!("mem_big").arg("64"));
    let Some(mut run) = case.start() else { return };
    let source = case.images("source");
    case.dump_ok(&run, &source, &[]);
    case.reap_dumped(&mut run);
    // The daemon fetches pages only when they are faulted, and the server stops itself once it
    // served 32 MiB: only the woken process's heap check gets that far. It is killed there.
    let fault = [("STASIS_FAULT", "page-server-stop-after-get")];
    let server = Server::start_with(&case, &source, &fault, &["--lazy-pages"]);
    let here = case.images("here");
    small_images(&source, &here);
    let mut daemon = lazy_daemon(&case, &here, &server.port(), &[("STASIS_FAULT", "lazy-pages-on-demand-only")]);
    let mut restored = case.restore_ok(&here, run.pid(), &["--lazy-pages"]);
    restored.signal(libc::SIGUSR1).expect("wake the restored process");
    let server_pid = server.pid();
    let deadline = Instant::now() + STASIS_TIMEOUT;
    while proc_state(server_pid).is_none_or(|(s, _)| s != 'T') {
        if Instant::now() > deadline {
            case.fail("the page server never stopped");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    raw::kill(server_pid, libc::SIGKILL).expect("kill the page server");
    drop(server);
    match restored.wait_exit(EXIT_TIMEOUT) {
        Ok(Exit::Signal(libc::SIGKILL)) => {}
        other => case.fail(&format!("the restored process ended with {other:?}, expected SIGKILL")),
    }
    let (exit, _) = wait_child(&mut daemon, STASIS_TIMEOUT);
    if exit == Exit::Code(0) {
        case.fail("lazy-pages succeeded without its page server");
    }
    case.expect_no_process_left(run.pid());
    if names(&here).iter().any(|n| n.starts_with("pages-") || n.ends_with(".socket")) {
        case.fail(&format!("lazy-pages left {:?}", names(&here)));
    }
}

#[test]
fn a_page_server_in_the_background_with_d() {
    let case = Case::new("ps_daemon", workload!("basic"));
    let Some(mut run) = case.start() else { return };
    let served = case.images("served");
    std::fs::create_dir_all(&served).expect("server dir");
    let pidfile = case.dir.join("page-server.pid");
    let log = case.dir.unique("page-server", "log");
    case.dir.watch_log(&log);
    let mut cmd = case.stasis().command();
    cmd.args(["page-server", "-d", "--port", "0", "--address", "127.0.0.1", "-vv", "-D"]).arg(&served);
    cmd.arg("--pidfile").arg(&pidfile).arg("-o").arg(&log);
    let out = cmd.output().expect("run stasis page-server -d");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let port = stdout.trim().strip_prefix("page-server listening on 127.0.0.1:").unwrap_or_default().to_string();
    if !out.status.success() || port.parse::<u16>().is_err() {
        case.fail(&format!("page-server -d: {}, stdout {stdout:?}", out.status));
    }
    let text = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let server: i32 = text.trim().parse().unwrap_or_else(|_| case.fail(&format!("--pidfile holds {text:?}")));
    let local = case.images("local");
    case.dump_ok(&run, &local, &page_server_args(&port));
    // The server, now a child of this test (the subreaper), ends once the dump committed.
    let deadline = Instant::now() + STASIS_TIMEOUT;
    let exit = loop {
        match raw::try_waitpid(server) {
            Ok(Some(exit)) => break exit,
            _ if Instant::now() > deadline => case.fail("the page server in the background did not end"),
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    if exit != Exit::Code(0) || names(&served) != [format!("pages-{}.img", run.pid())] {
        case.fail(&format!("page server ended with {exit:?}, its directory holds {:?}", names(&served)));
    }
    case.reap_dumped(&mut run);
}
