//! Memory of every private kind comes back byte for byte: heap (one large and many small
//! allocations), stack, .data/.bss, private anonymous mappings (dense, sparse, partly discarded,
//! grown with mremap), PROT_NONE guard areas and mprotect'ed regions (whose hidden contents are
//! read through /proc/self/mem), private file mappings (written pages COW'd, unwritten ones from
//! the file), the read-only file-backed mappings (code, RELRO) and the vDSO, which must sit where
//! the auxiliary vector says and keep clock_gettime working.

use stasis_tests::raw::{self, Mapping, PAGE};
use stasis_tests::workload::{self, pattern_fill, pattern_word, Checker, MapEntry, OrFail};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static DATA_WORD: AtomicU64 = AtomicU64::new(0x1234_5678_9abc_def0);
static BSS_WORD: AtomicU64 = AtomicU64::new(0);
static BSS_BUF: Mutex<[u8; 65536]> = Mutex::new([0; 65536]);

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const AT_SYSINFO_EHDR: u64 = 33;

/// A region and the bytes and permissions it must hold.
struct Expect {
    name: &'static str,
    addr: u64,
    bytes: Vec<u8>,
    /// (page offset, page count, perms) runs.
    perms: Vec<(usize, usize, &'static str)>,
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern_fill(&mut v, seed);
    v
}

fn fill(m: &Mapping, seed: u64) {
    m.fill_words(0, m.len(), |i| pattern_word(seed, i));
}

fn anon(len: usize) -> Mapping {
    Mapping::anon(len, RW).or_fail("mmap anonymous")
}

fn set_up_anon(keep: &mut Vec<Mapping>, expects: &mut Vec<Expect>) {
    let dense = anon(2 << 20);
    fill(&dense, 4);
    expects.push(Expect {
        name: "dense anon",
        addr: dense.addr() as u64,
        bytes: pattern(2 << 20, 4),
        perms: vec![(0, 512, "rw-p")],
    });

    let sparse = anon(64 << 20);
    let mut bytes = vec![0u8; 64 << 20];
    for k in 0..64usize {
        sparse.write((k << 20) + 123, &[k as u8 + 1]);
        bytes[(k << 20) + 123] = k as u8 + 1;
    }
    expects.push(Expect { name: "sparse anon", addr: sparse.addr() as u64, bytes, perms: vec![(0, 16384, "rw-p")] });

    let discarded = anon(16 * PAGE);
    fill(&discarded, 5);
    discarded.discard(4 * PAGE, 4 * PAGE).or_fail("madvise");
    let mut bytes = pattern(16 * PAGE, 5);
    bytes[4 * PAGE..8 * PAGE].fill(0);
    expects.push(Expect {
        name: "partly discarded anon",
        addr: discarded.addr() as u64,
        bytes,
        perms: vec![(0, 16, "rw-p")],
    });

    let prot = anon(16 * PAGE);
    fill(&prot, 6);
    prot.protect(4 * PAGE, 4 * PAGE, libc::PROT_NONE).or_fail("mprotect none");
    prot.protect(8 * PAGE, 4 * PAGE, libc::PROT_READ).or_fail("mprotect r");
    prot.protect(12 * PAGE, 4 * PAGE, libc::PROT_READ | libc::PROT_EXEC).or_fail("mprotect rx");
    let perms = vec![(0, 4, "rw-p"), (4, 4, "---p"), (8, 4, "r--p"), (12, 4, "r-xp")];
    expects.push(Expect { name: "mprotect'ed anon", addr: prot.addr() as u64, bytes: pattern(16 * PAGE, 6), perms });

    let ro = anon(1 << 20);
    fill(&ro, 7);
    ro.protect(0, 1 << 20, libc::PROT_READ).or_fail("mprotect ro");
    expects.push(Expect {
        name: "read-only anon",
        addr: ro.addr() as u64,
        bytes: pattern(1 << 20, 7),
        perms: vec![(0, 256, "r--p")],
    });

    let guard = Mapping::anon(1 << 20, libc::PROT_NONE).or_fail("mmap guard");
    expects.push(Expect {
        name: "guard area",
        addr: guard.addr() as u64,
        bytes: vec![0; 1 << 20],
        perms: vec![(0, 256, "---p")],
    });

    let small = anon(4 * PAGE);
    fill(&small, 8);
    let grown = small.remap(8 * PAGE).or_fail("mremap");
    let mut bytes = pattern(8 * PAGE, 8);
    bytes[4 * PAGE..].fill(0);
    expects.push(Expect { name: "mremap'ed anon", addr: grown.addr() as u64, bytes, perms: vec![(0, 8, "rw-p")] });

    keep.extend([dense, sparse, discarded, prot, ro, guard, grown]);
}

fn set_up_files(keep: &mut Vec<Mapping>, expects: &mut Vec<Expect>) {
    let path = workload::work_dir().join("mem_basic.data");
    let content = pattern(16 * PAGE, 9);
    std::fs::write(&path, &content).or_fail("write data file");
    let file = std::fs::File::open(&path).or_fail("open data file");

    let private = Mapping::file_private(&file, 0, 16 * PAGE, RW).or_fail("mmap file private");
    let written = pattern(16 * PAGE, 10);
    let mut bytes = content.clone();
    for page in [2, 3, 10] {
        private.write(page * PAGE, &written[page * PAGE..(page + 1) * PAGE]);
        bytes[page * PAGE..(page + 1) * PAGE].copy_from_slice(&written[page * PAGE..(page + 1) * PAGE]);
    }
    expects.push(Expect {
        name: "written MAP_PRIVATE file",
        addr: private.addr() as u64,
        bytes,
        perms: vec![(0, 16, "rw-p")],
    });

    let ro = Mapping::file_private(&file, 4 * PAGE as u64, 8 * PAGE, libc::PROT_READ).or_fail("mmap file ro");
    let bytes = content[4 * PAGE..12 * PAGE].to_vec();
    expects.push(Expect { name: "read-only file mapping", addr: ro.addr() as u64, bytes, perms: vec![(0, 8, "r--p")] });
    keep.extend([private, ro]);
}

fn verify(c: &mut Checker, e: &Expect) {
    match workload::read_own_memory(e.addr, e.bytes.len()) {
        Ok(now) => {
            let bad = now.iter().zip(&e.bytes).position(|(a, b)| a != b);
            c.check(bad.is_none(), || format!("{} at {:#x}: first difference at offset {bad:?}", e.name, e.addr));
        }
        Err(err) => c.check(false, || format!("{} at {:#x}: reading memory: {err}", e.name, e.addr)),
    }
    for &(page, count, perms) in &e.perms {
        for p in [page, page + count - 1] {
            let addr = e.addr + (p * PAGE) as u64;
            let got = workload::own_map_at(addr).map(|m| m.perms);
            c.check(got.as_deref() == Some(perms), || format!("{} page {p}: perms {got:?}, want {perms}", e.name));
        }
    }
}

/// Hashes of every mapping that must not change: read-only file-backed ones and the vDSO.
fn stable_mappings() -> Vec<(MapEntry, u64)> {
    let maps = workload::own_maps().or_fail("read maps");
    maps.into_iter()
        .filter(|m| (m.path.starts_with('/') && !m.perms.contains('w')) || m.path == "[vdso]")
        .filter_map(|m| {
            let bytes = workload::read_own_memory(m.start, (m.end - m.start) as usize).ok()?;
            let h = workload::hash(&bytes);
            Some((m, h))
        })
        .collect()
}

fn verify_stable(c: &mut Checker, before: &[(MapEntry, u64)]) {
    let after = stable_mappings();
    for (m, h) in before {
        let now = after.iter().find(|(a, _)| a.start == m.start);
        c.check(now.is_some_and(|(a, ah)| a == m && ah == h), || {
            format!(
                "mapping {:x}-{:x} {} {}: now {:?}",
                m.start,
                m.end,
                m.perms,
                m.path,
                now.map(|(a, ah)| (a, *ah == *h))
            )
        });
    }
}

fn verify_vdso(c: &mut Checker, mono_before: std::time::Duration) {
    let ehdr = raw::getauxval(AT_SYSINFO_EHDR);
    let vdso = workload::own_maps().ok().and_then(|m| m.into_iter().find(|m| m.path == "[vdso]"));
    c.check(vdso.as_ref().is_some_and(|v| v.start == ehdr), || format!("AT_SYSINFO_EHDR {ehdr:#x}, [vdso] {vdso:?}"));
    for (name, clock) in [("monotonic", libc::CLOCK_MONOTONIC), ("realtime", libc::CLOCK_REALTIME)] {
        let vdso_t = c.ok("clock_gettime (vdso)", raw::clock_gettime(clock));
        let sys_t = c.ok("clock_gettime (syscall)", raw::clock_gettime_syscall(clock));
        if let (Some(v), Some(s)) = (vdso_t, sys_t) {
            let gap = v.abs_diff(s);
            c.check(gap.as_secs() < 1, || format!("{name} clock: vdso {v:?} vs syscall {s:?}"));
        }
    }
    let mono = raw::clock_gettime(libc::CLOCK_MONOTONIC).unwrap_or_default();
    c.check(mono >= mono_before, || format!("monotonic clock went back: {mono_before:?} -> {mono:?}"));
}

fn main() {
    let mut s = workload::start();
    let mut heap = vec![0u8; 4 << 20];
    pattern_fill(&mut heap, 1);
    let small: Vec<Box<[u8; 100]>> = (0..1000u64)
        .map(|i| {
            let mut b = Box::new([0u8; 100]);
            pattern_fill(&mut b[..], 1000 + i);
            b
        })
        .collect();
    let mut stack = [0u8; 64 * 1024];
    pattern_fill(&mut stack, 2);
    DATA_WORD.fetch_add(1, Ordering::SeqCst);
    BSS_WORD.store(0xfeed_f00d, Ordering::SeqCst);
    pattern_fill(&mut BSS_BUF.lock().or_fail("lock")[..], 3);
    let (mut keep, mut expects) = (Vec::new(), Vec::new());
    set_up_anon(&mut keep, &mut expects);
    set_up_files(&mut keep, &mut expects);
    let stable = stable_mappings();
    let brk = raw::current_brk();
    let mono = raw::clock_gettime(libc::CLOCK_MONOTONIC).or_fail("clock_gettime");

    s.ready();
    s.wait_for_wake();
    let brk_after = raw::current_brk();

    let c = &mut s.checker;
    c.check(workload::pattern_mismatch(&heap, 1).is_none(), || "4 MiB heap buffer differs".into());
    let bad = (0..1000u64).find(|&i| workload::pattern_mismatch(&small[i as usize][..], 1000 + i).is_some());
    c.check(bad.is_none(), || format!("small heap allocation {bad:?} differs"));
    c.check(workload::pattern_mismatch(&stack, 2).is_none(), || "stack array differs".into());
    c.same(".data word", &0x1234_5678_9abc_def1, &DATA_WORD.load(Ordering::SeqCst));
    c.same(".bss word", &0xfeed_f00d, &BSS_WORD.load(Ordering::SeqCst));
    let bss_ok = BSS_BUF.lock().is_ok_and(|b| workload::pattern_mismatch(&b[..], 3).is_none());
    c.check(bss_ok, || ".bss buffer differs".into());
    for e in &expects {
        verify(c, e);
    }
    verify_stable(c, &stable);
    c.same("program break", &brk, &brk_after);
    verify_vdso(c, mono);
    drop(keep);
    s.finish()
}
