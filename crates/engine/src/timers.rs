//! Interval timers (`ITIMER_REAL`, `ITIMER_VIRTUAL`, `ITIMER_PROF`) with their remaining time. The
//! remaining time keeps its meaning across a checkpoint: it is counted from the moment of restore.

use crate::error::Result;
use crate::scratch::{read_u64s, write_u64s};
use stasis_image::model::ITimer;
use stasis_sys::inject::Injector;

pub fn dump(inj: &mut Injector) -> Result<Vec<ITimer>> {
    let data = inj.data();
    let mut out = Vec::new();
    for which in 0..3 {
        inj.call("getitimer", libc::SYS_getitimer, [which as u64, data, 0, 0, 0, 0])?;
        let w = read_u64s(inj, data, 4)?;
        out.push(ITimer {
            which,
            interval_sec: w[0] as i64,
            interval_usec: w[1] as i64,
            value_sec: w[2] as i64,
            value_usec: w[3] as i64,
        });
    }
    Ok(out)
}

pub fn restore(inj: &mut Injector, timers: &[ITimer]) -> Result<()> {
    let data = inj.data();
    for t in timers.iter().filter(|t| t.value_sec != 0 || t.value_usec != 0) {
        let words = [t.interval_sec as u64, t.interval_usec as u64, t.value_sec as u64, t.value_usec as u64];
        write_u64s(inj, data, &words)?;
        inj.call("setitimer", libc::SYS_setitimer, [t.which as u64, data, 0, 0, 0, 0])?;
    }
    Ok(())
}
