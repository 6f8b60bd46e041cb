//! Interval timers (`ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`) with their remaining time. The
//! remaining time keeps its meaning across a checkpoint: it is counted from the moment of restore.

use crate::error::Result;
use stasis_image::model::ITimer;
use stasis_sys::remote::{IntervalTimer, Remote};

pub fn dump(inj: &mut dyn Remote) -> Result<Vec<ITimer>> {
    let mut out = Vec::new();
    for which in 0..3 {
        let t = inj.getitimer(which)?;
        out.push(ITimer {
            which,
            interval_sec: t.interval_sec,
            interval_usec: t.interval_sub,
            value_sec: t.value_sec,
            value_usec: t.value_sub,
        });
    }
    Ok(out)
}

pub fn restore(inj: &mut dyn Remote, timers: &[ITimer]) -> Result<()> {
    for t in timers.iter().filter(|t| t.value_sec != 0 || t.value_usec != 0) {
        let it = IntervalTimer {
            interval_sec: t.interval_sec,
            interval_sub: t.interval_usec,
            value_sec: t.value_sec,
            value_sub: t.value_usec,
        };
        inj.setitimer(t.which, &it)?;
    }
    Ok(())
}
