//! AIO contexts (`io_setup(2)`): each is a ring the kernel maps into the process (`/[aio]
//! (deleted)`, a shared mapping of the anonymous "aio" filesystem that cannot grow, `de`), whose
//! address is the context's id. This module owns the rings, on both sides.
//!
//! Dump: a ring is never saved as memory. Its first page starts with `struct aio_ring` (`id`, `nr`,
//! `head`, `tail`, `magic`, `compat_features`, `incompat_features`, `header_length`: eight `u32`),
//! followed by `nr` `struct io_event`s (32 bytes each); the context's slot in the process's table
//! (`id`), `nr`, `head`, `tail` and the completed events not yet reaped (`head` to `tail`, wrapping
//! at `nr`) are saved. Whether a ring belongs to a context of the process itself is asked of the
//! kernel with an injected `io_getevents(ring, 0, 0)`, which fails with EINVAL for any other
//! address: fork does not copy contexts, but it does copy the ring's mapping, so a child may map
//! its parent's ring, live, without a context. Such a ring is kept if the parent's context is saved
//! at the same address (the restored child gets it again by being forked), and refused otherwise.
//!
//! Requests still in flight (submitted, not completed) cannot be carried, and the kernel shows them
//! nowhere a process outside could read them (they are counted only in the context's private
//! request accounting). One that completes while the tree is frozen does show: its event moves the
//! ring's tail, which nothing of the frozen process can, so the rings are read again once
//! everything else is dumped ([`recheck`]) and a ring whose head or tail moved is refused. One that
//! stays in flight through the whole dump is a documented limit.
//!
//! Restore, in the task, after its layout (each ring's range held by a placeholder mapping meanwhile,
//! so that no new ring lands there): for each slot up to the highest saved one, `io_setup`
//! with the number of events that makes a ring of the saved size (slots with no saved context get
//! a context destroyed once all are made, so each context keeps its slot), the ring checked to hold
//! the saved `nr`, then `mremap`ped to its address (the kernel follows the move). The kernel keeps
//! its own copy of the tail, so the ring's memory alone cannot set it: `head` reads of `/dev/null`
//! are submitted and reaped, which brings both to `head`, then one read per pending event is
//! submitted and left unreaped, which brings the tail to `tail` and counts the pending events
//! against the context's requests as the originals were; their events are then overwritten with the
//! saved ones.

use crate::error::{Error, Result};
use crate::files::FdImporter;
use stasis_image::model::{AioEvent, AioRing, MmImage, Vma, VmaKind};
use stasis_sys::inject::InjectError;
use stasis_sys::mem::ProcMem;
use stasis_sys::remote::{IoEvent, Iocb, Remote};
use stasis_sys::Pid;
use std::collections::HashSet;
use std::os::fd::AsFd;

const PAGE: u64 = 4096;
/// `sizeof(struct aio_ring)`.
const HEADER: u64 = 32;
const EVENT: u64 = IoEvent::SIZE as u64;
/// `AIO_RING_MAGIC`, `AIO_RING_COMPAT_FEATURES`, `AIO_RING_INCOMPAT_FEATURES` (fs/aio.c).
const MAGIC: u32 = 0xa10a_10a1;
const COMPAT: u32 = 1;
const INCOMPAT: u32 = 0;
/// Requests submitted (or events reaped) per injected call while the kernel's tail is advanced.
const BATCH: u64 = 1024;
/// The highest slot an image may ask for.
const MAX_ID: u32 = 4096;
/// The longest ring an image may ask for: 64 MiB, two million events (the default
/// `/proc/sys/fs/aio-max-nr` allows 65536 requests in all).
const MAX_LEN: u64 = 64 << 20;

/// The ring's header: `struct aio_ring` up to `header_length`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Header {
    id: u32,
    nr: u32,
    head: u32,
    tail: u32,
    magic: u32,
    compat: u32,
    incompat: u32,
    header_length: u32,
}

impl Header {
    fn parse(b: &[u8]) -> Header {
        let w = |i: usize| u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        Header {
            id: w(0),
            nr: w(1),
            head: w(2),
            tail: w(3),
            magic: w(4),
            compat: w(5),
            incompat: w(6),
            header_length: w(7),
        }
    }
}

/// Events a ring of `len` bytes holds, as the kernel sizes it (`aio_setup_ring`).
pub fn events_in(len: u64) -> u64 {
    (len - HEADER) / EVENT
}

/// The `nr_events` to give `io_setup` for a ring of `pages` pages: the kernel makes room for
/// `2 * max(nr_events, 4 * possible CPUs) + 2` events and rounds up to whole pages.
pub fn setup_events(pages: u64) -> u64 {
    pages * PAGE / EVENT / 2 - 2
}

/// The events from `head` to `tail` of a ring of `nr` events whose event area is `events`.
fn pending(events: &[u8], nr: u32, head: u32, tail: u32) -> Vec<AioEvent> {
    let mut out = Vec::new();
    let mut i = head;
    while i != tail {
        let at = i as usize * IoEvent::SIZE;
        let e = IoEvent::from_bytes(events[at..at + IoEvent::SIZE].try_into().expect("32 bytes"));
        out.push(AioEvent { data: e.data, obj: e.obj, res: e.res, res2: e.res2 });
        i = (i + 1) % nr;
    }
    out
}

/// Is `ring` a context of the calling process? `io_getevents` with no room for events fails with
/// EINVAL for any other address.
fn owned(inj: &mut dyn Remote, ring: u64) -> Result<bool> {
    match inj.io_getevents(ring, 0, 0, (0, 0)) {
        Ok(_) => Ok(true),
        Err(InjectError::Failed { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The contexts of the stopped process `pid` whose rings are among `vmas`; the rings it maps
/// without owning them are checked later against its parent (see [`check_inherited`]).
pub fn dump(inj: &mut dyn Remote, pid: Pid, vmas: &[Vma]) -> Result<Vec<AioRing>> {
    let mut out = Vec::new();
    for v in vmas.iter().filter(|v| super::kind(v) == VmaKind::AioRing) {
        // The probe below would store the head back reduced modulo nr: refused before. (The ring of
        // a destroyed context cannot be read at all: its pages are gone.)
        if let Some(h) = header(inj, v.start).ok().filter(|h| h.head >= h.nr) {
            return Err(Error::Unsupported {
                pid,
                what: format!("AIO ring {:#x}-{:#x} with head {} of {} events", v.start, v.end, h.head, h.nr),
            });
        }
        if owned(inj, v.start)? {
            out.push(dump_ring(inj, pid, v)?);
        }
    }
    Ok(out)
}

fn dump_ring(inj: &mut dyn Remote, pid: Pid, v: &Vma) -> Result<AioRing> {
    let len = v.end - v.start;
    let refuse = |why: String| Error::Unsupported { pid, what: format!("AIO context {:#x}: {why}", v.start) };
    let mut bytes = vec![0u8; len as usize];
    inj.read(v.start, &mut bytes)?;
    let h = Header::parse(&bytes);
    if (h.magic, h.compat, h.incompat, h.header_length as u64) != (MAGIC, COMPAT, INCOMPAT, HEADER) {
        return Err(refuse(format!("a ring header stasis does not know ({h:?})")));
    }
    if h.nr as u64 != events_in(len) || h.head >= h.nr || h.tail >= h.nr {
        return Err(refuse(format!("a ring of {len} bytes with nr {}, head {}, tail {}", h.nr, h.head, h.tail)));
    }
    let events = pending(&bytes[HEADER as usize..], h.nr, h.head, h.tail);
    Ok(AioRing { start: v.start, len, id: h.id, nr: h.nr, head: h.head, tail: h.tail, events })
}

/// The last look at the rings of `pid`, still frozen, once everything else is dumped: a head or
/// tail that moved since they were saved means a request that was in flight completed meanwhile
/// (nothing of the frozen process can move them), and the dump is refused naming the context.
pub fn recheck(pid: Pid, rings: &[AioRing]) -> Result<()> {
    if rings.is_empty() {
        return Ok(());
    }
    let path = format!("/proc/{pid}/mem");
    let mem = ProcMem::open(pid).map_err(Error::io(&path))?;
    for r in rings {
        let mut b = [0u8; HEADER as usize];
        mem.read(r.start, &mut b).map_err(Error::io(&path))?;
        let h = Header::parse(&b);
        if (h.head, h.tail) != (r.head, r.tail) {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "AIO context {:#x} with requests in flight (one completed during the dump: head {} tail {} became head {} tail {})",
                    r.start, r.head, r.tail, h.head, h.tail
                ),
            });
        }
    }
    Ok(())
}

/// A ring process `pid` maps without owning it must be a ring its parent has at the same address
/// (the parent's context, or one the parent has from its own parent), which the restored child
/// gets by being forked; any other is refused by name. Parents are checked before their children.
pub fn check_inherited(pid: Pid, mm: &MmImage, parent: Option<&MmImage>) -> Result<()> {
    for v in mm.vmas.iter().filter(|v| super::kind(v) == VmaKind::AioRing) {
        if mm.aio_rings.iter().any(|r| r.start == v.start) {
            continue;
        }
        // The parent's same area passed this check too: its own context, or its parent's ring.
        let from_parent = parent.is_some_and(|p| super::pages::inheritable(v, &p.vmas));
        if !from_parent {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "mapping {:#x}-{:#x} {}: the ring of an AIO context of another process (from before a fork, no longer mapped there by the parent)",
                    v.start, v.end, v.name
                ),
            });
        }
    }
    Ok(())
}

/// Every AIO context of `mm` in the restored task `pid`, after its layout (which left the rings'
/// ranges free); `kept` are the areas a child has from its parent, its parent's rings among them.
pub fn restore(inj: &mut dyn Remote, imp: &mut FdImporter, pid: Pid, mm: &MmImage, kept: &HashSet<u64>) -> Result<()> {
    validate(pid, mm, kept)?;
    let Some(max_id) = mm.aio_rings.iter().map(|r| r.id).max() else {
        return Ok(());
    };
    // Each ring's range held until the ring moves over it, so that no new ring lands there.
    for r in &mm.aio_rings {
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u32;
        inj.mmap(r.start, r.len, libc::PROT_NONE as u32, flags, -1, 0)?;
    }
    let null = std::fs::File::open("/dev/null").map_err(Error::io("/dev/null"))?;
    let fd = imp.import(inj, null.as_fd())?;
    let mut spare = Vec::new();
    for id in 0..=max_id {
        match mm.aio_rings.iter().find(|r| r.id == id) {
            Some(r) => {
                restore_ring(inj, pid, fd, r)?;
                let v = mm.vmas.iter().find(|v| v.start == r.start).expect("validated");
                if v.prot != (libc::PROT_READ | libc::PROT_WRITE) as u32 {
                    inj.mprotect(r.start, r.len, v.prot)?;
                }
            }
            None => spare.push(inj.io_setup(1)?),
        }
    }
    for ctx in spare {
        inj.io_destroy(ctx)?;
    }
    inj.close(fd)?;
    Ok(())
}

/// The image's contexts are whole: each ring an area of its own size and events, each slot once,
/// and every ring area a context's or a kept one.
fn validate(pid: Pid, mm: &MmImage, kept: &HashSet<u64>) -> Result<()> {
    let bad = |what: String| Error::Incompatible { file: format!("mm-{pid}.img"), what };
    let mut ids = HashSet::new();
    for r in &mm.aio_rings {
        let area = mm.vmas.iter().find(|v| v.start == r.start && super::kind(v) == VmaKind::AioRing);
        let fits = area.is_some_and(|v| v.end - v.start == r.len)
            && r.len % PAGE == 0
            && r.len > HEADER
            && r.len <= MAX_LEN
            && r.nr as u64 == events_in(r.len)
            && r.head < r.nr
            && r.tail < r.nr
            && r.events.len() as u64 == (r.tail as u64 + r.nr as u64 - r.head as u64) % r.nr as u64;
        if !fits || r.id > MAX_ID || !ids.insert(r.id) {
            return Err(bad(format!("AIO context {:#x} (slot {}) does not match its ring area", r.start, r.id)));
        }
    }
    for v in mm.vmas.iter().filter(|v| super::kind(v) == VmaKind::AioRing) {
        if !kept.contains(&v.start) && !mm.aio_rings.iter().any(|r| r.start == v.start) {
            return Err(bad(format!("AIO ring area {:#x}-{:#x} has no context", v.start, v.end)));
        }
    }
    Ok(())
}

/// Make context `r` again at its address with its slot, head, tail and pending events.
fn restore_ring(inj: &mut dyn Remote, pid: Pid, null: i32, r: &AioRing) -> Result<()> {
    let failed =
        |what: String| Error::Failed { pid, what: format!("AIO context {:#x} (slot {}): {what}", r.start, r.id) };
    let step = |e: InjectError| Error::Step {
        pid,
        what: format!("AIO context {:#x} (slot {})", r.start, r.id),
        source: Box::new(e.into()),
    };
    let ctx = inj.io_setup(setup_events(r.len / PAGE) as u32).map_err(step)?;
    let h = header(inj, ctx)?;
    if h.nr != r.nr || h.id != r.id {
        inj.io_destroy(ctx)?;
        return Err(failed(format!(
            "this kernel made a ring of {} events in slot {}, the image's has {} (a machine with more possible CPUs?)",
            h.nr, h.id, r.nr
        )));
    }
    if ctx != r.start {
        inj.mremap_to(ctx, r.len, r.start).map_err(step)?;
    }
    let dummy = Iocb { opcode: Iocb::CMD_PREAD, fd: null as u32, buf: inj.data(), ..Default::default() };
    complete(inj, r, &dummy, r.head as u64, true)
        .map_err(|e| failed(format!("bringing the head to {}: {e}", r.head)))?;
    let n = r.events.len() as u64;
    complete(inj, r, &dummy, n, false).map_err(|e| failed(format!("making {n} pending events: {e}")))?;
    write_events(inj, r)?;
    let h = header(inj, r.start)?;
    if (h.id, h.nr, h.head, h.tail) != (r.id, r.nr, r.head, r.tail) {
        return Err(failed(format!("the ring reads {h:?} after the restore")));
    }
    Ok(())
}

fn header(inj: &mut dyn Remote, ring: u64) -> Result<Header> {
    let mut b = [0u8; HEADER as usize];
    inj.read(ring, &mut b)?;
    Ok(Header::parse(&b))
}

/// Submit `n` copies of `dummy` (each completes at once), reaping them if `reap`.
fn complete(inj: &mut dyn Remote, r: &AioRing, dummy: &Iocb, n: u64, reap: bool) -> std::result::Result<(), String> {
    let mut left = n;
    while left > 0 {
        let took = inj.io_submit_copies(r.start, dummy, left.min(BATCH)).map_err(|e| error_chain(&e))?;
        if took == 0 {
            return Err("io_submit took no request".into());
        }
        log::debug!("AIO context {:#x}: {took} of {} reads of /dev/null taken", r.start, left.min(BATCH));
        if reap {
            let got = inj.io_getevents(r.start, took, took, (10, 0)).map_err(|e| error_chain(&e))?;
            if got.len() as u64 != took || got.iter().any(|e| e.res != 0) {
                return Err(format!("{took} reads of /dev/null completed as {got:?}"));
            }
        }
        left -= took;
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

/// Overwrite the events from `head` to `tail` with the saved ones (at most two runs: to the end
/// of the ring, then from its start).
fn write_events(inj: &mut dyn Remote, r: &AioRing) -> Result<()> {
    let bytes: Vec<u8> = r
        .events
        .iter()
        .flat_map(|e| IoEvent { data: e.data, obj: e.obj, res: e.res, res2: e.res2 }.to_bytes())
        .collect();
    let first = ((r.nr - r.head) as usize).min(r.events.len()) * IoEvent::SIZE;
    let at = |slot: u32| r.start + HEADER + slot as u64 * EVENT;
    inj.write(at(r.head), &bytes[..first])?;
    if first < bytes.len() {
        inj.write(at(0), &bytes[first..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{events_in, pending, setup_events, validate, HEADER};
    use stasis_image::model::{AioEvent, AioRing, MmImage, Vma, VmaKind};
    use stasis_sys::Pid;
    use std::collections::HashSet;

    fn ring_area(start: u64, len: u64) -> Vma {
        Vma { start, end: start + len, kind: VmaKind::AioRing as i32, ..Default::default() }
    }

    fn ring(start: u64, id: u32, head: u32, tail: u32, n: usize) -> AioRing {
        let events = vec![AioEvent::default(); n];
        AioRing { start, len: 4096, id, nr: 127, head, tail, events }
    }

    #[test]
    fn dummies_are_submitted_again_until_all_are_taken() {
        use stasis_sys::remote::fake::FakeTask;
        use stasis_sys::remote::Iocb;
        let r = ring(0x10000, 0, 125, 13, 15);
        let dummy = Iocb { opcode: Iocb::CMD_PREAD, fd: 9, ..Default::default() };
        let mut t = FakeTask::new(Pid(42));
        t.reply("io_submit", 120).reply("io_submit", 5).reply("io_getevents", 120).reply("io_getevents", 5);
        super::complete(&mut t, &r, &dummy, 125, true).expect("all taken and reaped");
        assert_eq!(t.names(), ["io_submit", "io_getevents", "io_submit", "io_getevents"]);
        let counts: Vec<u64> = t.calls().iter().map(|c| c.args()[1]).collect();
        assert_eq!(counts, [125, 120, 5, 5], "{:?}", t.log());
        // A kernel that takes none is an error, not a loop.
        let mut t = FakeTask::new(Pid(42));
        t.reply("io_submit", 0);
        assert!(super::complete(&mut t, &r, &dummy, 3, false).is_err());
        // Fewer events than reads reaped is an error.
        let mut t = FakeTask::new(Pid(42));
        t.reply("io_submit", 3).reply("io_getevents", 2);
        assert!(super::complete(&mut t, &r, &dummy, 3, true).is_err());
    }

    #[test]
    fn validate_wants_whole_contexts() {
        let mm = |rings: Vec<AioRing>| MmImage {
            vmas: vec![ring_area(0x10000, 4096), ring_area(0x20000, 4096)],
            aio_rings: rings,
            ..Default::default()
        };
        let none = HashSet::new();
        let kept: HashSet<u64> = [0x20000].into();
        let ok = mm(vec![ring(0x10000, 0, 120, 3, 10)]);
        assert!(validate(Pid(1), &ok, &kept).is_ok());
        // The second area is neither a context nor kept from the parent.
        assert!(validate(Pid(1), &ok, &none).is_err());
        // Ten events pending from 120 to 3 wrapping at 127, not nine.
        assert!(validate(Pid(1), &mm(vec![ring(0x10000, 0, 120, 3, 9)]), &kept).is_err());
        assert!(validate(Pid(1), &mm(vec![ring(0x10000, 0, 127, 0, 0)]), &kept).is_err());
        let twice = mm(vec![ring(0x10000, 1, 0, 0, 0), ring(0x20000, 1, 0, 0, 0)]);
        assert!(validate(Pid(1), &twice, &none).is_err());
        let mut bad_len = ring(0x10000, 0, 0, 0, 0);
        bad_len.len = 8192;
        assert!(validate(Pid(1), &mm(vec![bad_len]), &kept).is_err());
        // A huge ring with indices near the top of u32 is refused, not overflowed.
        let mut huge = ring(0x10000, 0, u32::MAX - 2, u32::MAX - 1, 1);
        (huge.len, huge.nr) = (1 << 37, u32::MAX);
        let mut areas = mm(vec![huge]);
        areas.vmas[0].end = 0x10000 + (1 << 37);
        assert!(validate(Pid(1), &areas, &kept).is_err());
    }

    #[test]
    fn setup_events_make_rings_of_the_same_pages() {
        for pages in 1..64u64 {
            // The kernel's sizing on a machine with few CPUs: 2 * n + 2 events, whole pages.
            let n = setup_events(pages) * 2 + 2;
            let len = (HEADER + n * 32).div_ceil(4096) * 4096;
            assert_eq!(len, pages * 4096, "{pages} pages");
            assert_eq!(events_in(len), pages * 128 - 1);
        }
    }

    #[test]
    fn pending_events_wrap_at_nr() {
        let mut area = vec![0u8; 4 * 32];
        for i in 0..4u8 {
            area[i as usize * 32] = i + 1;
        }
        let got: Vec<u64> = pending(&area, 4, 3, 1).iter().map(|e| e.data).collect();
        assert_eq!(got, [4, 1]);
        assert!(pending(&area, 4, 2, 2).is_empty());
    }
}
