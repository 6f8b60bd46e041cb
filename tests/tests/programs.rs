//! Real programs checkpointed and restored, then queried: CPython with a table in memory, OpenJDK
//! with counting threads, Node.js with a timer, each serving `tests/programs/*` on a unix socket,
//! and PostgreSQL (a postmaster and its helpers, run as the postgres user) queried with psql.
//! Each is asked something before the dump and after the restore (a running total must carry on),
//! then checks itself (`verify`). The `*_with_an_outside_reader` variants hold a pipe to a
//! reader outside the tree (their stdout) and are ignored until external pipes are supported.

use stasis_tests::harness::{ask, find_program, program_file, skip, Case, Running, Workload};
use std::path::PathBuf;

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

    /// Start, ask, dump (killing it), restore, ask again: the total carries on and `check` approves
    /// of the state before and after; then `verify`.
    fn round_trip(&self, compare_proc: bool, check: impl Fn(&str, &str) -> Result<(), String>) {
        let case = &self.case;
        let Some(mut run) = case.start() else { return };
        let pid = run.pid();
        self.expect("add 5", "5");
        let before = self.ask("state");
        let snapshot = compare_proc.then(|| case.settled_snapshot(pid));
        let images = case.images("images");
        case.dump_ok(&run, &images, &[]);
        case.reap_dumped(&mut run);
        let mut restored: Running = case.restore_ok(&images, pid, &[]);
        if let Some(snapshot) = snapshot {
            case.compare(&snapshot, pid);
        }
        self.expect("add 7", "12");
        let after = self.ask("state");
        if let Err(e) = check(&before, &after) {
            case.fail(&format!("state before the dump {before:?}, after the restore {after:?}: {e}"));
        }
        self.expect("verify", "PASS");
        case.finish(&mut restored);
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
