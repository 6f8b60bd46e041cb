//! AIO contexts (`io_setup`) come back with their ids (ring addresses), slots, ring sizes and the
//! completed events not yet reaped. Argument 1 picks the case:
//!
//! - `rings`: three contexts are made and the middle one destroyed, so the two left are in slots 0
//!   and 2: a small one (one page, 127 events) whose head and tail have gone round the ring, with
//!   15 events pending across its end, and a larger one (four pages, made read-only) with 5
//!   pending. Each read is an `IOCB_CMD_PREAD` of a file (buffered, so it completes at once) with
//!   its own `aio_data`, length and offset. A child forked after has its parent's rings mapped but no context (fork
//!   does not copy them) and one context of its own with 3 pending events. After the restore each
//!   process checks: every ring's header (slot, nr, head, tail), `io_getevents` returns exactly the
//!   pending events (data, obj, res, res2) and then none, the parent's rings are no contexts in the
//!   child, a new `io_submit` + `io_getevents` works and reads the right bytes, `io_destroy` works
//!   and unmaps the ring.
//! - `rings-alone`: `rings` without the child (a childless process, which a lazy restore serves).
//! - `orphan`: a child forked while its parent had a context keeps the ring's mapping after the
//!   parent destroys the context: a ring no process owns, which the dump refuses naming the
//!   child and the mapping (the output says `CHILD <pid>` and `RING <address>`). Woken after the
//!   refused dump, the child still maps it (no context of its own) and the parent makes a new one.
//! - `inflight`: an `IOCB_CMD_POLL` (POLLIN) on an empty pipe stays in flight (`RING <address>` and
//!   `WRITE_FD <fd>`, the pipe's write end, are printed). When something writes to the pipe while
//!   the process is frozen, the request completes and the dump refuses the context. Woken after,
//!   the process reaps exactly that completion (POLLIN | POLLRDNORM), and a new read works.

use stasis_tests::raw::{self, IoEvent, Iocb, IOCB_CMD_POLL, IOCB_CMD_PREAD};
use stasis_tests::workload::{self, read_own_memory, Checker, OrFail, TreeParent, WAKE};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;

/// Bytes of the file the reads read.
const FILE_LEN: usize = 64 * 1024;

/// The byte at `offset` of the file.
fn byte_at(offset: usize) -> u8 {
    (offset * 7 + offset / 251) as u8
}

/// The file the reads read, `byte_at` each byte.
fn data_file() -> File {
    let path = workload::work_dir().join("aio-data");
    let bytes: Vec<u8> = (0..FILE_LEN).map(byte_at).collect();
    std::fs::write(&path, bytes).or_fail("write the data file");
    File::open(&path).or_fail("open the data file")
}

/// One context and the requests submitted to it (boxed: their addresses are the events' `obj`).
struct Ctx {
    name: &'static str,
    id: u64,
    // Boxed so that they stay where they were submitted as the vector grows.
    #[allow(clippy::vec_box)]
    iocbs: Vec<Box<Iocb>>,
    bufs: Vec<Vec<u8>>,
}

impl Ctx {
    fn new(name: &'static str, nr_events: u32) -> Ctx {
        let id = match raw::io_setup(nr_events) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                workload::skip("a kernel without AIO (io_setup: ENOSYS)")
            }
            r => r.or_fail(&format!("io_setup {name}")),
        };
        Ctx { name, id, iocbs: Vec::new(), bufs: Vec::new() }
    }

    /// Submit `n` reads of `file`, request `i` reading `len(i)` bytes at `7 * i`.
    fn submit(&mut self, file: &File, n: usize, base: u64) {
        let first = self.iocbs.len();
        for k in 0..n {
            let i = first + k;
            let len = 1 + (i * 13) % 200;
            self.bufs.push(vec![0u8; len]);
            let buf = self.bufs.last_mut().expect("pushed").as_mut_ptr() as u64;
            self.iocbs.push(Box::new(Iocb {
                data: base + i as u64,
                opcode: IOCB_CMD_PREAD,
                fildes: file.as_raw_fd() as u32,
                buf,
                nbytes: len as u64,
                offset: (i * 7) as i64,
                ..Default::default()
            }));
        }
        let refs: Vec<&Iocb> = self.iocbs[first..].iter().map(|b| &**b).collect();
        let took = raw::io_submit(self.id, &refs).or_fail(&format!("io_submit {}", self.name));
        if took != n {
            workload::say(&format!("FAIL: io_submit {}: {took} of {n}", self.name));
            std::process::exit(1);
        }
    }

    /// Reap exactly `n` events.
    fn reap(&self, n: usize) {
        let got = raw::io_getevents(self.id, n, n, 5000).or_fail(&format!("io_getevents {}", self.name));
        if got.len() != n {
            workload::say(&format!("FAIL: io_getevents {}: {} of {n}", self.name, got.len()));
            std::process::exit(1);
        }
    }
}

/// The ring's header words: id, nr, head, tail, magic, compat, incompat, header length.
fn header(ctx: u64) -> Vec<u32> {
    let b = read_own_memory(ctx, 32).or_fail("read a ring header");
    b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

/// The events from head to tail, read from the ring's memory (nothing reaped).
fn pending(ctx: u64) -> Vec<IoEvent> {
    let h = header(ctx);
    let (nr, mut i, tail) = (h[1], h[2], h[3]);
    let mut out = Vec::new();
    while i != tail {
        let b = read_own_memory(ctx + 32 + i as u64 * 32, 32).or_fail("read a ring event");
        let w = |k: usize| u64::from_le_bytes(b[k * 8..k * 8 + 8].try_into().expect("8 bytes"));
        out.push(IoEvent { data: w(0), obj: w(1), res: w(2) as i64, res2: w(3) as i64 });
        i = (i + 1) % nr;
    }
    out
}

/// What a context looked like before the dump.
struct Seen {
    header: Vec<u32>,
    pending: Vec<IoEvent>,
}

fn seen(ctx: &Ctx) -> Seen {
    Seen { header: header(ctx.id), pending: pending(ctx.id) }
}

fn is_ring(addr: u64) -> bool {
    workload::own_map_at(addr).is_some_and(|m| m.path.contains("[aio]"))
}

/// After the restore: the header, the pending events, then a new read, then io_destroy.
fn check_ctx(c: &mut Checker, file: &File, mut ctx: Ctx, before: &Seen) {
    let name = ctx.name;
    c.check(is_ring(ctx.id), || format!("{name}: no /[aio] mapping at {:#x}", ctx.id));
    c.same(&format!("{name}: ring header"), &before.header, &header(ctx.id));
    let n = before.pending.len();
    let got = c.ok(&format!("{name}: io_getevents"), raw::io_getevents(ctx.id, 0, n + 8, 0));
    c.same(&format!("{name}: pending events"), &Some(before.pending.clone()), &got);
    let again = c.ok(&format!("{name}: io_getevents again"), raw::io_getevents(ctx.id, 0, 8, 0));
    c.same(&format!("{name}: events left"), &Some(0), &again.map(|e| e.len()));
    let first = ctx.iocbs.len();
    ctx.submit(file, 3, 9000);
    let got = c.ok(&format!("{name}: io_getevents of new reads"), raw::io_getevents(ctx.id, 3, 3, 5000));
    let want: Vec<IoEvent> = (first..first + 3)
        .map(|i| IoEvent {
            data: 9000 + i as u64,
            obj: &*ctx.iocbs[i] as *const Iocb as u64,
            res: ctx.bufs[i].len() as i64,
            res2: 0,
        })
        .collect();
    c.same(&format!("{name}: events of new reads"), &Some(want), &got);
    for i in first..first + 3 {
        let off = i * 7;
        let ok = ctx.bufs[i].iter().enumerate().all(|(k, &b)| b == byte_at(off + k));
        c.check(ok, || format!("{name}: new read {i} read other bytes"));
    }
    c.ok(&format!("{name}: io_destroy"), raw::io_destroy(ctx.id));
    c.check(!is_ring(ctx.id), || format!("{name}: ring still mapped after io_destroy"));
}

/// A ring of another process's context, mapped here by the fork: no context of this process.
fn check_not_ours(c: &mut Checker, what: &str, id: u64) {
    c.check(is_ring(id), || format!("{what}: no /[aio] mapping at {id:#x}"));
    let r = raw::io_getevents(id, 0, 1, 0);
    c.check(matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EINVAL)), || format!("{what}: io_getevents: {r:?}"));
}

fn child(file: &File, parents: [u64; 2], link: TreeParent) -> i32 {
    let mut s = workload::start();
    let mut own = Ctx::new("child ctx", 1);
    own.submit(file, 3, 5000);
    let before = seen(&own);
    link.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    let c = &mut s.checker;
    for (k, id) in parents.iter().enumerate() {
        check_not_ours(c, &format!("parent ring {k} in the child"), *id);
    }
    check_ctx(c, file, own, &before);
    link.report(s.into_checker())
}

fn rings(s: &mut workload::Session, with_child: bool) {
    let file = data_file();
    let mut small = Ctx::new("small", 8);
    let gap = Ctx::new("gap", 1);
    let mut large = Ctx::new("large", 200);
    raw::io_destroy(gap.id).or_fail("io_destroy gap");
    // Round the small ring: 110 reaped, then 30 more (past its end at 127), 15 of them reaped. Its
    // head is then beyond what one task gets at once from an empty ring (120 of 126 requests here).
    small.submit(&file, 110, 1000);
    small.reap(110);
    small.submit(&file, 30, 1000);
    small.reap(15);
    large.submit(&file, 5, 3000);
    // The kernel reaches a ring through its own mapping: the process's may be read-only.
    raw::protect_ring(large.id, 4 * 4096, libc::PROT_READ).or_fail("mprotect the large ring");
    let (small_seen, large_seen) = (seen(&small), seen(&large));
    let c = &mut s.checker;
    c.same("small: slot", &0, &small_seen.header[0]);
    c.same("large: slot", &2, &large_seen.header[0]);
    c.same("small: head, tail", &(125, 13), &(small_seen.header[2], small_seen.header[3]));
    let kid = with_child.then(|| workload::fork_child("child", |link| child(&file, [small.id, large.id], link)));
    if let Some(kid) = &kid {
        kid.line().or_fail("ready line of the child");
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    if let Some(kid) = &kid {
        c.ok("wake the child", raw::kill(kid.pid, WAKE));
    }
    check_ctx(c, &file, small, &small_seen);
    check_ctx(c, &file, large, &large_seen);
    if let Some(kid) = kid {
        kid.collect(c);
    }
}

fn orphan_child(ring: u64, link: TreeParent) -> i32 {
    let mut s = workload::start();
    link.send("ready\n").or_fail("ready line");
    s.wait_for_wake();
    check_not_ours(&mut s.checker, "dead ring in the child", ring);
    link.report(s.into_checker())
}

fn orphan(s: &mut workload::Session) {
    let file = data_file();
    let mut ctx = Ctx::new("parent ctx", 1);
    ctx.submit(&file, 2, 100);
    let ring = ctx.id;
    let kid = workload::fork_child("child", |link| orphan_child(ring, link));
    kid.line().or_fail("ready line of the child");
    raw::io_destroy(ring).or_fail("io_destroy in the parent");
    workload::say(&format!("CHILD {}", kid.pid));
    workload::say(&format!("RING {ring:x}"));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    c.ok("wake the child", raw::kill(kid.pid, WAKE));
    c.check(!is_ring(ring), || "the destroyed ring is still mapped in the parent".into());
    check_ctx(c, &file, Ctx::new("new ctx", 1), &Seen { header: header_of_new(), pending: Vec::new() });
    kid.collect(c);
}

fn inflight(s: &mut workload::Session) {
    let file = data_file();
    // A FIFO cannot be polled through AIO (EINVAL): a pipe, whose write end stays open here.
    let (pipe, writer) = std::io::pipe().or_fail("pipe");
    let mut ctx = Ctx::new("poll ctx", 1);
    let poll = Box::new(Iocb {
        data: 77,
        opcode: IOCB_CMD_POLL,
        fildes: pipe.as_raw_fd() as u32,
        buf: libc::POLLIN as u64,
        ..Default::default()
    });
    raw::io_submit(ctx.id, &[&poll]).or_fail("io_submit the poll");
    let early = raw::io_getevents(ctx.id, 0, 1, 0).or_fail("io_getevents before the dump");
    if !early.is_empty() {
        workload::say(&format!("FAIL: setup: the poll of an empty pipe completed: {early:?}"));
        std::process::exit(2);
    }
    workload::say(&format!("RING {:x}", ctx.id));
    workload::say(&format!("WRITE_FD {}", writer.as_raw_fd()));
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let got = c.ok("io_getevents of the poll", raw::io_getevents(ctx.id, 1, 4, 5000));
    let mask = (libc::POLLIN | libc::POLLRDNORM) as i64;
    let want = IoEvent { data: 77, obj: &*poll as *const Iocb as u64, res: mask, res2: 0 };
    c.same("the poll's completion", &Some(vec![want]), &got);
    let mut byte = [0u8; 1];
    c.ok("read the pipe", (&pipe).read_exact(&mut byte));
    drop(writer);
    ctx.submit(&file, 1, 500);
    let got = c.ok("io_getevents of a new read", raw::io_getevents(ctx.id, 1, 1, 5000));
    c.same("a new read's result", &Some(ctx.bufs[0].len() as i64), &got.and_then(|e| e.first().map(|e| e.res)));
    c.ok("io_destroy", raw::io_destroy(ctx.id));
}

/// What a new context's header reads: slot 0, 127 events, empty.
fn header_of_new() -> Vec<u32> {
    vec![0, 127, 0, 0, 0xa10a_10a1, 1, 0, 32]
}

fn main() {
    let mut s = workload::start();
    match workload::mode(1, &["rings", "rings-alone", "orphan", "inflight"]) {
        Some("rings") => rings(&mut s, true),
        Some("rings-alone") => rings(&mut s, false),
        Some("orphan") => orphan(&mut s),
        Some("inflight") => inflight(&mut s),
        _ => workload::unknown_mode(&std::env::args().nth(1).unwrap_or_default(), "rings|rings-alone|orphan|inflight"),
    }
    s.finish()
}
