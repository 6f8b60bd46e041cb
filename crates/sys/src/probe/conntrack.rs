//! Probe of ctnetlink: a conntrack dump of a new, empty network namespace of a thread of ours
//! (never stasis's own table), which answers with no entry where conntrack and ctnetlink exist.

use super::Probed;

/// Lists the conntrack table of a network namespace a short-lived thread makes.
pub(super) fn probe_conntrack() -> Probed {
    let answer = std::thread::spawn(|| {
        crate::ns::unshare(&[crate::ns::Kind::Net]).map_err(|e| Probed::failed("unshare(CLONE_NEWNET)", e.errno()))?;
        crate::conntrack::dump(libc::AF_INET as u8).map_err(|e| Probed::failed(e.call, e.errno()))
    })
    .join();
    match answer {
        Ok(Ok(_)) => Probed::yes("ctnetlink lists a new network namespace's table"),
        Ok(Err(no)) => no,
        Err(_) => Probed::no("the probe's thread panicked"),
    }
}
