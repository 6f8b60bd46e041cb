//! TCP on loopback: listeners (IPv4, IPv6, dual-stack, SO_REUSEPORT), bound and unbound sockets,
//! established connections with `--tcp-established` (both ends in the tree, queues both ways, a
//! full send queue), their refusal without it, the network lock (made at dump, removed at restore,
//! removed on every failure), a client outside the tree streaming through a checkpoint, and
//! Python's http.server answering after a restore. Ports are the kernel's picks; traffic stays on
//! 127.0.0.1 and ::1.

use stasis_tests::harness::{Case, Running};
use stasis_tests::workload;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The nftables lock tables of dumps of `pid` now present; `None` when `nft` cannot be run.
fn lock_tables(pid: i32) -> Option<Vec<String>> {
    let out = std::process::Command::new("nft").args(["list", "tables"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let prefix = format!("table inet stasis-{pid}-");
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().filter(|l| l.starts_with(&prefix)).map(|l| l["table inet ".len()..].to_string()).collect())
}

/// Whether the network lock can be tested here (says why not).
fn have_nft() -> bool {
    if lock_tables(0).is_none() {
        stasis_tests::harness::skip("nft (Debian's nftables package) cannot list tables here");
        return false;
    }
    true
}

fn expect_no_lock(case: &Case, pid: i32, when: &str) {
    let left = lock_tables(pid).unwrap_or_default();
    if !left.is_empty() {
        for t in &left {
            let _ = std::process::Command::new("nft").args(["delete", "table", "inet", t]).status();
        }
        case.fail(&format!("network lock left {when}: {left:?}"));
    }
}

fn expect_lock(case: &Case, pid: i32, images: &Path) {
    let tables = lock_tables(pid).unwrap_or_default();
    let inventory = case.stasis().command().args(["show", "--json"]).arg(images).output().expect("stasis show");
    let shown = String::from_utf8_lossy(&inventory.stdout);
    if tables.len() != 1 || !shown.contains(&tables[0]) {
        case.fail(&format!("after the dump: lock tables {tables:?}, the inventory should name the one table"));
    }
}

#[test]
fn listeners_bound_and_unbound_sockets() {
    let case = Case::new("tcp_listen", workload!("tcp_sockets").arg("listen"));
    case.checkpoint_restore(&[], &[]);
}

#[test]
fn established_connections_in_the_tree() {
    if !have_nft() {
        return;
    }
    let case = Case::new("tcp_established", workload!("tcp_sockets").arg("connections"));
    let Some(mut run) = case.start() else { return };
    let before = case.settled_snapshot(run.pid());
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--tcp-established"]);
    case.reap_dumped(&mut run);
    expect_lock(&case, run.pid(), &images);
    let mut restored = case.restore_ok(&images, run.pid(), &["--tcp-established"]);
    expect_no_lock(&case, run.pid(), "after the restore");
    case.compare(&before, restored.pid());
    case.finish(&mut restored);
}

/// Half-closed connections (FIN-WAIT-2 and CLOSE-WAIT, data queued both ways) come back in their
/// states: the peer's FIN is sent to the restored socket again, ours is queued again.
#[test]
fn half_closed_connections() {
    if !have_nft() {
        return;
    }
    let case = Case::new("tcp_states", workload!("tcp_states"));
    case.checkpoint_restore(&["--tcp-established"], &["--tcp-established"]);
}

/// A connect in progress (its SYN unanswered: the test's listener has a full accept queue) is
/// made again at restore; once the test empties the queue the restored connect completes.
#[test]
fn a_connect_in_progress() {
    let fd = stasis_tests::raw::tcp_socket(libc::AF_INET).expect("socket");
    stasis_tests::raw::bind_inet(std::os::fd::AsFd::as_fd(&fd), "127.0.0.1:0".parse().unwrap()).expect("bind");
    let listener = stasis_tests::raw::listen_inet(fd, 0).expect("listen");
    let at = listener.local_addr().expect("address");
    // The one connection a backlog of 0 takes: later SYNs are dropped.
    let filler = TcpStream::connect(at).expect("connect");
    let case = Case::new("tcp_syn_sent", workload!("tcp_states").arg("syn-sent").arg(at.port().to_string()));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &[]);
    case.reap_dumped(&mut run);
    let mut restored = case.restore_ok(&images, run.pid(), &[]);
    let _ = listener.accept();
    drop(filler);
    case.finish(&mut restored);
}

/// Without --tcp-established the dump fails naming the connection and the option, and the tree
/// runs on; a restore of an image with connections needs the option too.
#[test]
fn an_established_connection_needs_the_option() {
    let case = Case::new("tcp_refused", workload!("tcp_sockets").arg("connections"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let r = case.dump(&run, &images, &[], &[]);
    let needles: &[&[&str]] = &[&["established tcp connection"], &["127.0.0.1:"], &[" -> "], &["--tcp-established"]];
    case.expect_failed(&r, "dump of established connections without --tcp-established", needles);
    case.expect_untouched(&run);
    expect_no_lock(&case, run.pid(), "after a refused dump");
    case.dump_ok(&run, &images, &["--tcp-established", "--network-lock", "skip"]);
    case.reap_dumped(&mut run);
    expect_no_lock(&case, run.pid(), "after a dump with --network-lock skip");
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &[], &[]);
    case.expect_failed(&r, "restore of connections without --tcp-established", &[&["--tcp-established"]]);
    case.expect_no_process_left(run.pid());
    let mut restored = case.restore_ok(&images, run.pid(), &["--tcp-established"]);
    case.finish(&mut restored);
}

/// The port of the `PORT <port>` line of the `tcp_backlog` workload.
fn listening_port(case: &Case, run: &Running) -> u16 {
    let text = run.log_text();
    let port = text.lines().find_map(|l| l.strip_prefix("PORT ")?.trim().parse::<u16>().ok());
    port.unwrap_or_else(|| case.fail(&format!("no `PORT <port>` line:\n{text}")))
}

/// How many connections wait in the accept queue of the TCP listener on 127.0.0.1:`port` (the
/// `rx_queue` of its line in /proc/net/tcp), if it is listed.
fn accept_queue(port: u16) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.get(1) == Some(&local.as_str()) && w.get(3) == Some(&"0A"))
            .then(|| u32::from_str_radix(w.get(4)?.split(':').nth(1)?, 16).ok())
            .flatten()
    })
}

/// A connection waiting in a listener's accept queue (its client outside the tree believes it
/// established) cannot be put back in the queue by a restore: the dump fails naming the listener,
/// the count and `--skip-in-flight`, and the tree runs on; the workload then accepts the
/// connection, which was kept.
#[test]
fn a_connection_waiting_to_be_accepted_is_refused_and_kept() {
    let case = Case::new("tcp_backlog", workload!("tcp_backlog"));
    let Some(mut run) = case.start() else { return };
    let port = listening_port(&case, &run);
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    client.write_all(b"queued\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(30);
    while accept_queue(port) != Some(1) {
        if Instant::now() > deadline {
            case.fail(&format!(
                "the listener on port {port} has {:?} connections queued after 30 s",
                accept_queue(port)
            ));
        }
        std::thread::yield_now();
    }
    let r = case.dump(&run, &case.images("images"), &["--tcp-established"], &[]);
    let needles: &[&[&str]] =
        &[&["1 connections not yet accepted"], &[&format!("127.0.0.1:{port}")], &["--skip-in-flight"]];
    case.expect_failed(&r, "dump of a listener with a connection not yet accepted", needles);
    case.expect_untouched(&run);
    case.finish(&mut run);
    let mut answer = String::new();
    client.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&client), &mut answer);
    if answer != format!("accepted {}\n", run.pid()) {
        case.fail(&format!("answer {answer:?} from the workload, want `accepted {}`", run.pid()));
    }
}

/// A connection that comes into the accept queue during the dump, after the listener was dumped
/// (here made by the post-dump action script, which waits until it is queued), fails the dump
/// too, by name, before the images are committed; the tree runs on and accepts it.
#[test]
fn a_connection_queued_during_the_dump_is_refused() {
    let case = Case::new("tcp_backlog_late", workload!("tcp_backlog"));
    let Some(mut run) = case.start() else { return };
    let port = listening_port(&case, &run);
    let client = case.dir.join("client.py");
    let program = format!(
        "import socket, time\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         s.sendall(b'queued\\n')\n\
         deadline = time.monotonic() + 30\n\
         def queued():\n\
         \tfor l in open('/proc/net/tcp').read().splitlines()[1:]:\n\
         \t\tw = l.split()\n\
         \t\tif w[1] == '0100007F:{port:04X}' and w[3] == '0A':\n\
         \t\t\treturn int(w[4].split(':')[1], 16)\n\
         while queued() != 1 and time.monotonic() < deadline:\n\
         \ttime.sleep(0.001)\n"
    );
    std::fs::write(&client, program).expect("client.py");
    let script = format!("[ \"$CRTOOLS_SCRIPT_ACTION\" != post-dump ] || python3 {}", client.display());
    let r = case.dump(&run, &case.images("images"), &["--action-script", &script], &[]);
    let needles: &[&[&str]] = &[&["1 connections not yet accepted that came during the dump"], &["--skip-in-flight"]];
    case.expect_failed(&r, "dump of a listener a connection came to during the dump", needles);
    case.expect_untouched(&run);
    case.finish(&mut run);
}

/// A dump that fails after the sockets were put in repair mode removes the lock and takes them out
/// of repair mode: the connections go on and the workload passes.
#[test]
fn a_failed_dump_removes_the_lock_and_repair_mode() {
    if !have_nft() {
        return;
    }
    let case = Case::new("tcp_dump_fault", workload!("tcp_sockets").arg("connections"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let env = [("STASIS_FAULT", "dump-fail-after-memory")];
    let r = case.dump(&run, &images, &["--tcp-established"], &env);
    case.expect_failed(&r, "dump failing after memory", &[&["dump-fail-after-memory"]]);
    case.expect_untouched(&run);
    expect_no_lock(&case, run.pid(), "after a failed dump");
    case.finish(&mut run);
}

/// The same with `--network-lock iptables`, and a failed restore after it: no chain is left.
#[test]
fn failed_dumps_and_restores_remove_the_iptables_lock() {
    if iptables_chains(0).is_none() {
        return stasis_tests::harness::skip("iptables (Debian's iptables package) cannot list chains here");
    }
    let case = Case::new("tcp_iptables_faults", workload!("tcp_sockets").arg("connections"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    let args = ["--tcp-established", "--network-lock", "iptables"];
    let r = case.dump(&run, &images, &args, &[("STASIS_FAULT", "dump-fail-after-memory")]);
    case.expect_failed(&r, "dump failing after memory", &[&["dump-fail-after-memory"]]);
    case.expect_untouched(&run);
    let left = iptables_chains(run.pid()).unwrap_or_default();
    if !left.is_empty() {
        case.fail(&format!("iptables lock chains left after a failed dump: {left:?}"));
    }
    case.dump_ok(&run, &images, &args);
    case.reap_dumped(&mut run);
    let env = [("STASIS_FAULT", "restore-fail-after-memory")];
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &args, &env);
    case.expect_failed(&r, "restore failing after memory", &[&["restore-fail-after-memory"]]);
    case.expect_no_process_left(run.pid());
    let left = iptables_chains(run.pid()).unwrap_or_default();
    if !left.is_empty() {
        case.fail(&format!("iptables lock chains left after a failed restore: {left:?}"));
    }
}

/// A restore that fails removes the lock and leaves no process.
#[test]
fn a_failed_restore_removes_the_lock() {
    if !have_nft() {
        return;
    }
    let case = Case::new("tcp_restore_fault", workload!("tcp_sockets").arg("connections"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--tcp-established"]);
    case.reap_dumped(&mut run);
    expect_lock(&case, run.pid(), &images);
    let env = [("STASIS_FAULT", "restore-fail-after-memory")];
    let (r, _) = case.stasis().restore_detached(&case.dir, &images, &["--tcp-established"], &env);
    case.expect_failed(&r, "restore failing after memory", &[&["restore-fail-after-memory"]]);
    case.expect_no_process_left(run.pid());
    expect_no_lock(&case, run.pid(), "after a failed restore");
}

/// `--leave-running` with connections: unlocked and out of repair mode before the tree runs on.
#[test]
fn leave_running_keeps_the_connections() {
    if !have_nft() {
        return;
    }
    let case = Case::new("tcp_leave_running", workload!("tcp_sockets").arg("connections"));
    let Some(mut run) = case.start() else { return };
    let images = case.images("images");
    case.dump_ok(&run, &images, &["--tcp-established", "-R"]);
    expect_no_lock(&case, run.pid(), "after a dump with --leave-running");
    case.finish(&mut run);
}

/// The value after `PORT ` in the workload's output.
fn port_of(run: &Running) -> u16 {
    let log = run.log_text();
    log.lines().find_map(|l| l.strip_prefix("PORT ")).and_then(|p| p.trim().parse().ok()).expect("PORT line")
}

/// What the streaming client saw.
#[derive(Default)]
struct Stream {
    sent: AtomicU64,
    echoed: AtomicU64,
    stop: AtomicBool,
    error: std::sync::Mutex<Option<String>>,
}

impl Stream {
    fn failed(&self, what: String) {
        self.error.lock().unwrap().get_or_insert(what);
    }
}

/// Writes consecutive u64 sequence numbers until told to stop (at most 300 s), then shuts down.
fn writer(mut conn: TcpStream, st: Arc<Stream>) {
    let start = Instant::now();
    let mut next = 0u64;
    while !st.stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(300) {
        let chunk: Vec<u8> = (next..next + 512).flat_map(u64::to_le_bytes).collect();
        if let Err(e) = conn.write_all(&chunk) {
            return st.failed(format!("write after {} bytes: {e}", next * 8));
        }
        next += 512;
        st.sent.store(next * 8, Ordering::SeqCst);
    }
    if let Err(e) = conn.shutdown(Shutdown::Write) {
        st.failed(format!("shutdown: {e}"));
    }
}

/// Reads the echo, checking every sequence number, until the end of the stream.
fn reader(mut conn: TcpStream, st: Arc<Stream>) {
    let mut buf = vec![0u8; 64 << 10];
    let mut partial = Vec::new();
    let mut next = 0u64;
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return st.failed(format!("read after {} echoed bytes: {e}", next * 8)),
        };
        partial.extend_from_slice(&buf[..n]);
        let whole = partial.len() / 8 * 8;
        for w in partial[..whole].chunks_exact(8) {
            let got = u64::from_le_bytes(w.try_into().unwrap());
            if got != next {
                return st.failed(format!("echo: sequence number {next} expected, got {got}"));
            }
            next += 1;
        }
        partial.drain(..whole);
        st.echoed.store(next * 8, Ordering::SeqCst);
    }
}

/// Wait (at most `limit`) until `cond`; false on timeout.
fn wait_until(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// THE PROOF: this test is a client outside the tree, streaming sequence numbers through an
/// established loopback connection to an echo server that is checkpointed with
/// `--tcp-established`, killed and restored. Neither side sees a reset, and every byte arrives, in
/// order, both ways (each side checks the sequence numbers).
#[test]
fn a_client_outside_the_tree_streams_through_a_checkpoint() {
    if !have_nft() {
        return;
    }
    stream_through_a_checkpoint("tcp_stream", &[]);
}

/// The same under CRIU's default lock, `--network-lock iptables`: a chain of the dump's own in the
/// filter tables of iptables and ip6tables, there after the dump and gone after the restore.
#[test]
fn a_client_streams_through_a_checkpoint_under_the_iptables_lock() {
    if iptables_chains(0).is_none() {
        return stasis_tests::harness::skip("iptables (Debian's iptables package) cannot list chains here");
    }
    stream_through_a_checkpoint("tcp_stream_iptables", &["--network-lock", "iptables"]);
}

/// The iptables (`v6`: ip6tables) lock chains of dumps of `pid` now present; `None` when the
/// program cannot be run.
fn iptables_chains_of(program: &str, pid: i32) -> Option<Vec<String>> {
    let out = std::process::Command::new(program).args(["-w", "-n", "-L"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let prefix = format!("Chain stasis-{pid}-");
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().filter(|l| l.starts_with(&prefix)).map(|l| l["Chain ".len()..].to_string()).collect())
}

/// [`iptables_chains_of`] for both families, v4 then v6.
fn iptables_chains(pid: i32) -> Option<Vec<String>> {
    let mut all = iptables_chains_of("iptables", pid)?;
    all.extend(iptables_chains_of("ip6tables", pid)?);
    Some(all)
}

/// A client outside the tree streams through a checkpoint with `lock` given to dump and restore;
/// the lock (nftables table or iptables chains) is there between the two and gone after.
fn stream_through_a_checkpoint(name: &str, lock: &[&str]) {
    let iptables = lock.contains(&"iptables");
    let case = Case::new(name, workload!("tcp_stream").self_finishing());
    let Some(mut run) = case.start() else { return };
    let conn = TcpStream::connect(("127.0.0.1", port_of(&run))).expect("connect to the server");
    conn.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    conn.set_write_timeout(Some(Duration::from_secs(120))).expect("timeout");
    let st = Arc::new(Stream::default());
    let w = std::thread::spawn({
        let (c, st) = (conn.try_clone().expect("clone"), st.clone());
        move || writer(c, st)
    });
    let r = std::thread::spawn({
        let st = st.clone();
        move || reader(conn, st)
    });
    let flowing = |st: &Stream, at: u64| st.echoed.load(Ordering::SeqCst) > at + (1 << 20);
    if !wait_until(Duration::from_secs(60), || flowing(&st, 0)) {
        case.fail("the stream did not start");
    }
    let images = case.images("images");
    let args: Vec<&str> = ["--tcp-established"].iter().chain(lock).copied().collect();
    case.dump_ok(&run, &images, &args);
    let at_dump = st.echoed.load(Ordering::SeqCst);
    case.reap_dumped(&mut run);
    if iptables {
        let chains = iptables_chains(run.pid()).unwrap_or_default();
        if chains.len() != 2 || chains[0] != chains[1] {
            case.fail(&format!("after the dump: iptables lock chains {chains:?}, want one in each family"));
        }
    }
    let mut restored = case.restore_ok(&images, run.pid(), &args);
    expect_no_lock(&case, run.pid(), "after the restore");
    let left = iptables_chains(run.pid()).unwrap_or_default();
    if !left.is_empty() {
        case.fail(&format!("iptables lock chains left after the restore: {left:?}"));
    }
    let resumed = wait_until(Duration::from_secs(90), || flowing(&st, at_dump));
    st.stop.store(true, Ordering::SeqCst);
    let _ = w.join();
    let _ = r.join();
    if let Some(e) = st.error.lock().unwrap().clone() {
        case.fail(&format!("the client saw: {e}"));
    }
    if !resumed {
        case.fail(&format!("the stream did not go on after the restore ({at_dump} bytes echoed at the dump)"));
    }
    let (sent, echoed) = (st.sent.load(Ordering::SeqCst), st.echoed.load(Ordering::SeqCst));
    if sent != echoed {
        case.fail(&format!("sent {sent} bytes, {echoed} echoed"));
    }
    eprintln!("streamed {sent} bytes, {at_dump} echoed when the dump ended");
    case.finish(&mut restored);
}

/// Python's http.server, bound on 127.0.0.1 at a port the kernel picks, answers after a restore.
#[test]
fn python_http_server_answers_after_restore() {
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"].into_iter().find(|p| Path::new(p).exists());
    let Some(python) = python else {
        return stasis_tests::harness::skip("no python3 in /usr/bin or /usr/local/bin");
    };
    let case = Case::new("http_server", workload!("tcp_stream"));
    let work = case.dir.work();
    std::fs::write(work.join("hello.txt"), "hello from before the checkpoint\n").expect("write hello.txt");
    let log = work.join("http.log");
    let mut cmd = std::process::Command::new(python);
    cmd.args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"]).current_dir(&work);
    cmd.stdin(std::process::Stdio::null());
    cmd.stdout(std::fs::File::create(&log).expect("log"))
        .stderr(std::fs::File::create(work.join("http.err")).expect("log"));
    stasis_tests::raw::stdio_only_on_spawn(&mut cmd);
    stasis_tests::raw::setsid_on_spawn(&mut cmd);
    let mut server = Running::spawn(&mut cmd, "http.server", Some(log.clone()), false).expect("spawn http.server");
    let port = wait_for_port(&log).unwrap_or_else(|| case.fail("http.server printed no port"));
    let get = |port: u16| http_get(port, "/hello.txt");
    if !get(port).is_ok_and(|b| b.contains("hello from before")) {
        case.fail(&format!("http.server does not answer before the dump: {:?}", get(port)));
    }
    let images = case.images("images");
    case.dump_ok(&server, &images, &[]);
    case.reap_dumped(&mut server);
    let mut restored = case.restore_ok(&images, server.pid(), &[]);
    let answer = get(port);
    restored.kill_and_reap();
    match answer {
        Ok(body) if body.contains("hello from before") => {}
        other => case.fail(&format!("http.server after the restore: {other:?}")),
    }
}

fn wait_for_port(log: &Path) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text.split("port ").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse().ok());
        if port.is_some() {
            return port;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
