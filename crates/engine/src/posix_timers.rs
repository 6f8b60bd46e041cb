//! POSIX timers (`timer_create`): per process, with their id, clock, notification (signal, thread
//! signalled, `sigev_value`), time left and interval.
//!
//! Dump lists them in `/proc/PID/timers` (id, signal and value, notification and its target, clock)
//! and asks the task, by injected `timer_gettime` and `timer_getoverrun`, for the rest. Restore
//! creates them in the task, after its threads (a timer may signal one of them), with the same ids:
//! `prctl(PR_TIMER_CREATE_RESTORE_IDS)` makes `timer_create` take the id it is given. The time left
//! is counted from the restore. The overrun count is recorded but not restored: no system call sets it.

use crate::error::{Error, Result};
use crate::proc::ProcRoot;
use stasis_image::model::PosixTimer;
use stasis_sys::remote::{IntervalTimer, Prctl, Remote, SigEvent};
use stasis_sys::Pid;

const SIGEV_THREAD_ID: i32 = 4;

/// The timers of `pid`, listed by `/proc/PID/timers`, with their times from the task.
pub fn dump(inj: &mut dyn Remote, root: &ProcRoot, pid: Pid) -> Result<Vec<PosixTimer>> {
    let path = root.pid_path(pid.0, "timers");
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    let mut timers = parse(&text).map_err(|what| Error::Failed { pid, what: format!("{}: {what}", path.display()) })?;
    for t in &mut timers {
        let it = inj.timer_gettime(t.id)?;
        (t.interval_sec, t.interval_nsec, t.value_sec, t.value_nsec) =
            (it.interval_sec, it.interval_sub, it.value_sec, it.value_sub);
        t.overrun = inj.timer_getoverrun(t.id)?;
    }
    Ok(timers)
}

/// Parse `/proc/PID/timers`: blocks of `ID:`, `signal: SIGNO/VALUE`, `notify: KIND/pid.N` (or
/// `tid.N`), `ClockID:`.
pub fn parse(text: &str) -> std::result::Result<Vec<PosixTimer>, String> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line.split_once(':').ok_or_else(|| format!("line without a colon: {line:?}"))?;
        let value = value.trim();
        let bad = || format!("bad line {line:?}");
        if key == "ID" {
            out.push(PosixTimer { id: value.parse().map_err(|_| bad())?, ..Default::default() });
            continue;
        }
        let t = out.last_mut().ok_or_else(|| format!("{key} before any ID"))?;
        match key {
            "signal" => {
                let (signo, val) = value.split_once('/').ok_or_else(bad)?;
                t.signo = signo.parse().map_err(|_| bad())?;
                t.sigval = u64::from_str_radix(val, 16).map_err(|_| bad())?;
            }
            "notify" => {
                let (kind, target) = value.split_once('/').ok_or_else(bad)?;
                let base = match kind {
                    "signal" => 0,
                    "none" => 1,
                    "thread" => 2,
                    _ => return Err(bad()),
                };
                let (who, n) = target.split_once('.').ok_or_else(bad)?;
                t.notify = if who == "tid" { base | SIGEV_THREAD_ID } else { base };
                t.target = n.parse().map_err(|_| bad())?;
            }
            "ClockID" => t.clockid = value.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    Ok(out)
}

/// Create the timers again in the task, each with its id, and arm those that were armed.
pub fn restore(inj: &mut dyn Remote, timers: &[PosixTimer]) -> Result<()> {
    if timers.is_empty() {
        return Ok(());
    }
    let pid = inj.pid();
    inj.prctl(Prctl::TimerCreateRestoreIds(true)).map_err(|e| Error::Step {
        pid,
        what:
            "POSIX timers: this kernel cannot create a timer with a chosen id (PR_TIMER_CREATE_RESTORE_IDS, a 2025 addition)"
                .into(),
        source: Box::new(e.into()),
    })?;
    // /proc lists the newest timer first: create them oldest first, so that it lists them as before.
    for t in timers.iter().rev() {
        let ev = SigEvent { value: t.sigval, signo: t.signo, notify: t.notify, tid: t.target };
        let got = inj.timer_create(t.clockid, &ev, t.id)?;
        if got != t.id {
            return Err(Error::Failed { pid, what: format!("POSIX timer {} was created as {got}", t.id) });
        }
        if t.value_sec != 0 || t.value_nsec != 0 {
            let it = IntervalTimer {
                interval_sec: t.interval_sec,
                interval_sub: t.interval_nsec,
                value_sec: t.value_sec,
                value_sub: t.value_nsec,
            };
            inj.timer_settime(t.id, 0, &it)?;
        }
    }
    inj.prctl(Prctl::TimerCreateRestoreIds(false))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_proc_timers() {
        let text = "ID: 3\nsignal: 12/0000000000001234\nnotify: signal/pid.30522\nClockID: 0\n\
                    ID: 7\nsignal: 10/0000000000000000\nnotify: signal/tid.30525\nClockID: 1\n\
                    ID: 8\nsignal: 14/0000000000000000\nnotify: none/pid.30522\nClockID: 2\n";
        let t = parse(text).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].id, t[0].signo, t[0].sigval, t[0].notify, t[0].target, t[0].clockid),
            (3, 12, 0x1234, 0, 30522, 0)
        );
        assert_eq!((t[1].id, t[1].notify, t[1].target, t[1].clockid), (7, 4, 30525, 1));
        assert_eq!((t[2].notify, t[2].clockid), (1, 2));
        assert!(parse("signal: 1/0\n").is_err());
    }
}
