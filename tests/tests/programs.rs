//! Real programs checkpointed and restored, then queried: CPython with a table in memory, OpenJDK
//! with counting threads, Node.js with a timer, each serving `tests/programs/*` on a unix socket,
//! and PostgreSQL (a postmaster and its helpers, run as the postgres user, listening on a unix
//! socket in the test's directory only) queried with psql. Each is asked something before the dump
//! and after the restore (a running total must carry on), then checks itself (`verify`), or, for
//! PostgreSQL, is shut down cleanly. Each runs once, the way a supervisor or a shell pipeline
//! starts it: its stdout and stderr are a pipe to a reader outside the tree (the test), handed
//! back at restore with `--inherit-fd`, and the reader must see what it printed before the dump
//! and after the restore.

use stasis_tests::harness::{ask, find_program, program_file, skip, tree_pids, wait_child, Case, OutsideReader};
use stasis_tests::harness::{Running, Workload, EXIT_TIMEOUT, INHERITED_FD};
use stasis_tests::raw::Exit;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `case`'s workload with stdout and stderr on a pipe to `reader`; `None` if it skipped.
fn start_piped(case: &Case, reader: &OutsideReader, log: &Path, wait_ready: bool) -> Option<Running> {
    let w = &case.workload;
    if wait_ready {
        w.start_with(&case.dir, reader.stdio(), reader.stdio(), log)
    } else {
        Some(w.spawn_with(&case.dir, reader.stdio(), reader.stdio(), log))
    }
}

/// Dumps `run` (killing it), checks the report names the outside pipe, and restores it with the
/// test's write end of that pipe handed back.
fn dump_and_restore_piped(case: &Case, reader: &OutsideReader, mut run: Running) -> Running {
    let pid = run.pid();
    let images = case.images("images");
    let r = case.dump(&run, &images, &["--json"], &[]);
    if !r.success() {
        case.fail(&format!("dump of {} (pid {pid}) failed:\n{}", run.name(), r.describe()));
    }
    if !r.stdout.contains(&format!("\"{}\"", reader.key())) {
        case.fail(&format!("the dump report does not list {} as leading outside:\n{}", reader.key(), r.stdout));
    }
    case.reap_dumped(&mut run);
    let inherit = reader.inherit_arg();
    case.restore_ok_passing(&images, pid, &["--inherit-fd", &inherit], reader.ours(), INHERITED_FD)
}

/// What the reader outside read, once every writer closed the pipe; it must hold `wants`.
fn outside_text(case: &Case, reader: OutsideReader, wants: &[&str]) -> String {
    let text = reader.finish().unwrap_or_else(|e| case.fail(&e));
    for want in wants {
        if !text.lines().any(|l| l.contains(want)) {
            case.fail(&format!("the reader outside the tree did not read {want:?}; it read:\n{text}"));
        }
    }
    text
}

/// A test of a program of `tests/programs/` run by `interpreter` with `args`, serving `sock` in
/// the test's work directory.
struct Served {
    case: Case,
    sock: PathBuf,
}

impl Served {
    fn new(test: &str, interpreter: &[&str], args: &[&str]) -> Option<Served> {
        let bin = match find_program(interpreter) {
            Ok(bin) => bin,
            Err(reason) => {
                skip(&format!("{test}: {reason}"));
                return None;
            }
        };
        let mut case = Case::new(test, Workload::new(test, &bin));
        let sock = case.dir.work().join("program.sock");
        case.workload = args.iter().fold(Workload::new(test, &bin), |w, a| w.arg(a)).arg(&sock).self_finishing();
        Some(Served { case, sock })
    }

    fn ask(&self, request: &str) -> String {
        ask(&self.sock, request).unwrap_or_else(|e| self.case.fail(&e))
    }

    fn expect(&self, request: &str, want: &str) {
        let got = self.ask(request);
        if got != want {
            self.case.fail(&format!("{request:?} answered {got:?}, expected {want:?}"));
        }
    }

    /// Start (stdout and stderr to a reader outside), ask, dump (killing it), restore, ask again:
    /// the total carries on and `check` approves of the state before and after; then `verify`,
    /// whose PASS the reader outside must read.
    fn round_trip(&self, compare_proc: bool, check: impl Fn(&str, &str) -> Result<(), String>) {
        let case = &self.case;
        let log = case.log_of_first_run().expect("a log");
        let reader = OutsideReader::new(&case.dir, &log);
        let Some(run) = start_piped(case, &reader, &log, true) else { return };
        let pid = run.pid();
        self.expect("add 5", "5");
        let before = self.ask("state");
        let snapshot = compare_proc.then(|| case.settled_snapshot(pid));
        let mut restored = dump_and_restore_piped(case, &reader, run);
        if let Some(snapshot) = snapshot {
            case.compare(&snapshot, pid);
        }
        self.expect("add 7", "12");
        let after = self.ask("state");
        if let Err(e) = check(&before, &after) {
            case.fail(&format!("state before the dump {before:?}, after the restore {after:?}: {e}"));
        }
        self.expect("verify", "PASS");
        // The verdict is read from the pipe, once the program and the test closed it: the log
        // the copier writes may lag behind the program's exit.
        let exit = restored.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|e| case.fail(&e));
        let text = outside_text(case, reader, &["READY"]);
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        if exit != Exit::Code(0) || last != Some("PASS") {
            case.fail(&format!("the restored program ended with {exit:?}, last line {last:?} (want PASS)"));
        }
    }
}

/// Field `n` of a `state` answer, as a number.
fn field(state: &str, n: usize) -> Result<u64, String> {
    state.split_whitespace().nth(n).and_then(|f| f.parse().ok()).ok_or(format!("no number {n} in {state:?}"))
}

#[test]
fn python_table_and_total() {
    let python = ["/usr/bin/python3"];
    let Some(t) = Served::new("python", &python, &[program_file("counter.py").to_str().expect("utf-8")]) else {
        return;
    };
    t.round_trip(true, |before, after| {
        let (b, a): (Vec<&str>, Vec<&str>) = (before.split(' ').collect(), after.split(' ').collect());
        // The table's checksum, recomputed from memory, is the same; two more queries were made; same pid.
        match (b.first() == a.first(), field(after, 1)? == field(before, 1)? + 2, b.get(2) == a.get(2)) {
            (true, true, true) => Ok(()),
            other => Err(format!("checksum, queries, pid agree: {other:?}")),
        }
    });
}

#[test]
fn node_timer_and_total() {
    let Some(t) = Served::new("node", &["/usr/bin/node"], &[program_file("counter.js").to_str().expect("utf-8")])
    else {
        return;
    };
    t.round_trip(false, |before, after| {
        // The timer went on from where it was (it was not started again), the buffer is the same.
        let (b, a): (Vec<&str>, Vec<&str>) = (before.split(' ').collect(), after.split(' ').collect());
        match (field(after, 0)? >= field(before, 0)?, b.get(1) == a.get(1), b.get(2) == a.get(2)) {
            (true, true, true) => Ok(()),
            other => Err(format!("ticks kept, buffer, pid agree: {other:?}")),
        }
    });
}

#[test]
fn java_threads_and_total() {
    let java = ["/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "/usr/bin/java"];
    let source = program_file("Counter.java");
    let args = ["-XX:-UsePerfData", "-Xmx128m", source.to_str().expect("utf-8")];
    let Some(t) = Served::new("java", &java, &args) else { return };
    t.round_trip(false, |before, after| {
        // Every thread's count went on from where it was; the array is the same; same pid.
        for i in 0..4 {
            if field(after, i)? < field(before, i)? {
                return Err(format!("thread {i} counts less after the restore"));
            }
        }
        match (field(after, 4)? == field(before, 4)?, field(after, 5)? == field(before, 5)?) {
            (true, true) => Ok(()),
            other => Err(format!("array, pid agree: {other:?}")),
        }
    });
}

/// How long initdb, the server's start and one psql may take on a busy machine.
const PG_TIMEOUT: Duration = Duration::from_secs(90);

/// A PostgreSQL cluster made by initdb in the test's directory, owned by the postgres user, whose
/// server listens on a unix socket in the test's directory and nowhere else.
struct Postgres {
    case: Case,
    bin: PathBuf,
    sock: PathBuf,
}

impl Postgres {
    /// The cluster of test `test`, made; `None` (and the skip recorded) without PostgreSQL.
    fn new(test: &str) -> Option<Postgres> {
        let found = pg_bin_dir().and_then(|bin| Ok((bin, system_user("postgres")?)));
        let (bin, (uid, gid)) = match found {
            Ok(found) => found,
            Err(reason) => {
                skip(&format!("{test}: {reason} (scripts/setup.sh installs postgresql)"));
                return None;
            }
        };
        let case = Case::new(test, Workload::new(test, bin.join("postgres")));
        let (data, sock) = (case.dir.work().join("data"), case.dir.work().join("sock"));
        for dir in [&data, &sock] {
            std::fs::create_dir(dir).unwrap_or_else(|e| case.fail(&format!("{}: {e}", dir.display())));
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| case.fail(&format!("chown {}: {e}", dir.display())));
        }
        let pg = Postgres { case, bin, sock };
        pg.initdb(&data, uid, gid);
        let args = ["-D".as_ref(), data.as_os_str(), "-k".as_ref(), pg.sock.as_os_str()];
        let settings = ["listen_addresses=", "fsync=off", "max_connections=10", "shared_buffers=16MB"];
        let w = args.iter().fold(Workload::new(test, pg.bin.join("postgres")), |w, a| w.arg(a));
        let w = settings.iter().fold(w, |w, s| w.arg("-c").arg(s));
        let mut pg = pg;
        pg.case.workload = w.env("LC_ALL", "C").user(uid, gid).self_finishing();
        Some(pg)
    }

    /// `initdb` of `data` as the postgres user (trust authentication: only this test's socket).
    fn initdb(&self, data: &Path, uid: u32, gid: u32) {
        let log = self.case.dir.join("initdb.log");
        self.case.dir.watch_log(&log);
        let out = std::fs::File::create(&log).expect("initdb log");
        let mut cmd = Command::new(self.bin.join("initdb"));
        cmd.args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C", "-D"]).arg(data);
        cmd.uid(uid).gid(gid).current_dir(self.case.dir.work()).env("LC_ALL", "C");
        cmd.stdin(Stdio::null()).stdout(out.try_clone().expect("dup")).stderr(out);
        let mut child = cmd.spawn().unwrap_or_else(|e| self.case.fail(&format!("spawn initdb: {e}")));
        let (exit, timed_out) = wait_child(&mut child, PG_TIMEOUT);
        if exit != Exit::Code(0) {
            self.case.fail(&format!("initdb ended with {exit:?} (timed out: {timed_out})"));
        }
    }

    /// Runs `query` with psql on the test's socket; its unaligned, tuples-only output.
    fn sql(&self, query: &str) -> String {
        let psql = [self.bin.join("psql"), PathBuf::from("/usr/bin/psql")].into_iter().find(|p| p.is_file());
        let psql = psql.unwrap_or_else(|| self.case.fail("psql is not installed"));
        let mut cmd = Command::new(psql);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h"]);
        cmd.arg(&self.sock).args(["-c", query]).env("PGCONNECT_TIMEOUT", "30");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| self.case.fail(&format!("spawn psql: {e}")));
        let (exit, timed_out) = wait_child(&mut child, PG_TIMEOUT);
        let read = |r: Option<&mut dyn std::io::Read>| {
            let mut text = String::new();
            r.map(|r| r.read_to_string(&mut text));
            text
        };
        let out = read(child.stdout.as_mut().map(|s| s as &mut dyn std::io::Read));
        let err = read(child.stderr.as_mut().map(|s| s as &mut dyn std::io::Read));
        if exit != Exit::Code(0) {
            self.case.fail(&format!("psql -c {query:?} ended with {exit:?} (timed out: {timed_out}):\n{err}"));
        }
        out.trim().to_string()
    }

    /// Waits until the server says it accepts connections (in `run`'s log).
    fn wait_accepting(&self, run: &Running) {
        let deadline = Instant::now() + PG_TIMEOUT;
        while !run.log_text().contains("database system is ready to accept connections") {
            if !run.exists() || Instant::now() > deadline {
                self.case.fail(&format!("the postmaster (pid {}) did not start accepting connections", run.pid()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The newest `/usr/lib/postgresql/VERSION/bin` holding postgres and initdb.
fn pg_bin_dir() -> Result<PathBuf, String> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|e| format!("/usr/lib/postgresql: {e}"))?;
    let mut found: Vec<(u32, PathBuf)> = versions
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("postgres").is_file() && bin.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(|| "no /usr/lib/postgresql/*/bin/postgres".to_string())
}

/// The postmaster's long-lived helpers below `postmaster` (pid and title: checkpointer,
/// background writer, ...), without the backends and workers that come and go.
fn pg_helpers(postmaster: i32) -> Vec<(i32, String)> {
    const HELPERS: [&str; 5] =
        ["checkpointer", "background writer", "walwriter", "autovacuum launcher", "logical replication launcher"];
    tree_pids(postmaster)
        .into_iter()
        .filter_map(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let title = String::from_utf8_lossy(&cmdline).trim_end_matches(['\0', ' ']).to_string();
            let name = title.strip_prefix("postgres: ")?;
            HELPERS.contains(&name).then(|| (p, name.to_string()))
        })
        .collect()
}

/// The uid and gid of the user `name` from /etc/passwd.
fn system_user(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))
        .ok_or_else(|| format!("no user {name}"))
}

/// PostgreSQL: rows inserted before the dump are there after the restore, the same server (same
/// start time, same processes) takes new rows, and it shuts down cleanly; its log, a pipe to the
/// test, reads on across the checkpoint.
#[test]
fn postgres_rows_and_clean_shutdown() {
    let Some(pg) = Postgres::new("postgres") else { return };
    let case = &pg.case;
    let log = case.log_of_first_run().expect("a log");
    let reader = OutsideReader::new(&case.dir, &log);
    let Some(run) = start_piped(case, &reader, &log, false) else { return };
    pg.wait_accepting(&run);
    pg.sql("create table t (k int primary key, v text)");
    pg.sql("insert into t select g, md5(g::text) from generate_series(1, 1000) g");
    let query = "select pg_postmaster_start_time(), count(*), sum(k), md5(string_agg(v, ',' order by k)) from t";
    let before = pg.sql(query);
    let helpers = pg_helpers(run.pid());
    let mut restored = dump_and_restore_piped(case, &reader, run);
    let after = pg.sql(query);
    if after != before {
        case.fail(&format!("after the restore {query:?} answered {after:?}, before the dump {before:?}"));
    }
    let now = pg_helpers(restored.pid());
    if now != helpers || helpers.len() < 2 {
        case.fail(&format!("the server's helpers were {helpers:?} before the dump, {now:?} after the restore"));
    }
    let added = pg.sql("insert into t values (1001, 'after'); select count(*), sum(k) from t");
    if added != "1001|501501" {
        case.fail(&format!("a row inserted after the restore: count and sum {added:?}, expected \"1001|501501\""));
    }
    // A fast shutdown: every backend and helper ends, a shutdown checkpoint is written.
    restored.signal(libc::SIGINT).unwrap_or_else(|e| case.fail(&format!("SIGINT to the postmaster: {e}")));
    match restored.wait_exit(EXIT_TIMEOUT) {
        Ok(Exit::Code(0)) => {}
        other => case.fail(&format!("the restored postmaster ended with {other:?}")),
    }
    let text = outside_text(case, reader, &["ready to accept connections", "database system is shut down"]);
    if let Some(bad) = text.lines().find(|l| l.contains("PANIC") || l.contains("terminated by signal")) {
        case.fail(&format!("the server's log says {bad:?}"));
    }
}
