//! Memory that changes between the rounds of an incremental dump. Each SIGUSR2 is one round of
//! writes of known patterns (then `ROUND k` is printed); SIGUSR1 (after the restore) verifies every
//! page against the model of what was written when. Mode (argument 1):
//! - `simple`: a 32 MiB anonymous area (1 MiB rewritten per round), a private file mapping, shared
//!   anonymous memory and the heap, one page of each written per round;
//! - `layout`: `simple`, and between rounds an area unmapped and a new one mapped (round 1), an
//!   area grown with mremap and part of the big area made read-only (round 2);
//! - `tree`: `simple` in the root, a child writing its own area each round, and a second child
//!   forked in round 1 (a process new since the pre-dump);
//! - `threads`: `simple`, and a second thread writing its own area each round;
//! - `own-uffd`: `simple` with a userfaultfd of its own until round 1 (its writes cannot be
//!   tracked, so the next dump is a full one).

use stasis_tests::raw::{self, Mapping, SigSet, PAGE};
use stasis_tests::workload::{self, pattern_word, Checker, OrFail, TreeParent, WAKE};

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const ROUND: i32 = libc::SIGUSR2;
/// Byte of the mapped file where its pages were never written.
const FILE_BYTE: u8 = 0x5a;

/// An area and the seed each of its pages was last written with (0: never, it reads as its file).
struct Region {
    name: &'static str,
    map: Mapping,
    seeds: Vec<u64>,
}

impl Region {
    fn new(name: &'static str, map: Mapping, seed: u64) -> Region {
        let pages = map.len() / PAGE;
        let mut r = Region { name, map, seeds: vec![0; pages] };
        if seed != 0 {
            (0..pages).for_each(|p| r.write(p, seed));
        }
        r
    }

    fn anon(name: &'static str, len: usize, seed: u64) -> Region {
        Region::new(name, Mapping::anon(len, RW).or_fail("mmap"), seed)
    }

    fn write(&mut self, page: usize, seed: u64) {
        self.map.fill_words(page * PAGE, PAGE, |w| pattern_word(seed, w));
        self.seeds[page] = seed;
    }

    fn verify(&self, c: &mut Checker) {
        for (p, &seed) in self.seeds.iter().enumerate() {
            let bad = if seed == 0 {
                self.map.read(p * PAGE, PAGE).iter().any(|&b| b != FILE_BYTE)
            } else {
                self.map.first_word_mismatch(p * PAGE, PAGE, |w| pattern_word(seed, w)).is_some()
            };
            c.check(!bad, || {
                format!("{} page {p} ({:#x}) is not what seed {seed} wrote", self.name, self.map.addr() + p * PAGE)
            });
        }
    }
}

/// The state of one process.
struct State {
    regions: Vec<Region>,
    heap: Vec<u64>,
}

impl State {
    fn simple() -> State {
        let path = workload::work_dir().join(format!("mem_rounds.{}.file", std::process::id()));
        std::fs::write(&path, vec![FILE_BYTE; 64 * PAGE]).or_fail("write the mapped file");
        let file = std::fs::File::open(&path).or_fail("open the mapped file");
        let mapped = Mapping::file_private(&file, 0, 64 * PAGE, RW).or_fail("mmap the file");
        let _ = std::fs::remove_file(&path);
        let shared =
            Mapping::with_flags(64 * PAGE, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, None, 0).or_fail("mmap shared");
        let mut file_region = Region::new("private file mapping", mapped, 0);
        (0..8).for_each(|p| file_region.write(p, 2));
        let regions = vec![Region::anon("big area", 32 << 20, 1), file_region, Region::new("shared anon", shared, 3)];
        State { regions, heap: (0..(1 << 17)).map(|i| pattern_word(4, i)).collect() }
    }

    fn region(&mut self, name: &str) -> &mut Region {
        self.regions.iter_mut().find(|r| r.name == name).or_fail(name)
    }

    /// Round `k` of every mode: 1 MiB of the big area, a page of the file and shared mappings, a
    /// heap word.
    fn round(&mut self, k: usize) {
        let seed = 100 + k as u64;
        let big = self.region("big area");
        (k * 256..(k + 1) * 256).for_each(|p| big.write(p % big.seeds.len(), seed));
        self.region("private file mapping").write(8 + k, seed);
        self.region("shared anon").write(k, seed);
        self.heap[k] = seed;
    }

    fn verify(&self, c: &mut Checker) {
        self.regions.iter().for_each(|r| r.verify(c));
        let bad =
            self.heap.iter().enumerate().filter(|&(i, &w)| w != pattern_word(4, i) && w != 100 + i as u64).count();
        c.check(bad == 0, || format!("{bad} heap words differ"));
    }
}

trait OrFailOption<T> {
    fn or_fail(self, what: &str) -> T;
}

impl<T> OrFailOption<T> for Option<T> {
    fn or_fail(self, what: &str) -> T {
        self.unwrap_or_else(|| workload::skip(&format!("setup: no {what}")))
    }
}

/// The changes of `layout` mode in round `k`.
fn layout_round(st: &mut State, k: usize) {
    match k {
        1 => {
            st.regions.retain(|r| r.name != "unmapped in round 1");
            st.regions.push(Region::anon("mapped in round 1", 1 << 20, 9));
        }
        2 => {
            let i = st.regions.iter().position(|r| r.name == "grown in round 2").or_fail("grown area");
            let old = st.regions.remove(i);
            let mut seeds = old.seeds.clone();
            let map = old.map.remap(4 << 20).or_fail("mremap");
            seeds.resize(1024, 0);
            let mut grown = Region { name: old.name, map, seeds };
            (512..1024).for_each(|p| grown.write(p, 10));
            st.regions.push(grown);
            st.region("big area").map.protect(0, 1 << 20, libc::PROT_READ).or_fail("mprotect");
        }
        _ => {}
    }
}

/// A child of `tree` mode: its own area, written on each `round k` line, verified on `verify`.
fn child(link: TreeParent, seed: u64, mib: usize) -> i32 {
    let mut area = Region::anon("child area", mib << 20, seed);
    loop {
        let line = match link.line() {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => return 2,
        };
        if let Some(k) = line.strip_prefix("round ").and_then(|k| k.parse::<usize>().ok()) {
            (k * 64..(k + 1) * 64).for_each(|p| area.write(p % area.seeds.len(), seed + 100 + k as u64));
            let _ = link.send("ok\n");
        } else {
            let mut c = Checker::default();
            area.verify(&mut c);
            return link.report(c);
        }
    }
}

/// The second thread of `threads` mode: its own area, written on each round it is sent, verified
/// on 0.
struct Writer {
    to: std::sync::mpsc::Sender<usize>,
    from: std::sync::mpsc::Receiver<Vec<String>>,
}

impl Writer {
    fn start() -> Writer {
        let (to, rx) = std::sync::mpsc::channel::<usize>();
        let (tx, from) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut area = Region::anon("thread area", 8 << 20, 41);
            let _ = tx.send(Vec::new());
            for k in rx {
                if k == 0 {
                    let mut c = Checker::default();
                    area.verify(&mut c);
                    let _ = tx.send(if c.passed() { Vec::new() } else { vec!["the thread's area differs".into()] });
                    return;
                }
                (k * 64..(k + 1) * 64).for_each(|p| area.write(p, 141 + k as u64));
                let _ = tx.send(Vec::new());
            }
        });
        let w = Writer { to, from };
        w.from.recv().or_fail("the thread's start");
        w
    }

    fn round(&self, k: usize) {
        self.to.send(k).or_fail("tell the thread");
        self.from.recv().or_fail("the thread's answer");
    }

    fn verify(self, c: &mut Checker) {
        let _ = self.to.send(0);
        match self.from.recv() {
            Ok(failures) => failures.into_iter().for_each(|f| c.check(false, || f)),
            Err(e) => c.check(false, || format!("the thread: {e}")),
        }
    }
}

fn main() {
    let mut s = workload::start();
    let mode = workload::mode(1, &["simple", "layout", "tree", "threads", "own-uffd"]).unwrap_or("simple");
    raw::set_recording_handler(ROUND, 0, SigSet::empty()).or_fail("SIGUSR2 handler");
    raw::sigprocmask(libc::SIG_BLOCK, SigSet::of(&[ROUND])).or_fail("block SIGUSR2");
    let mut st = State::simple();
    if mode == "layout" {
        st.regions.push(Region::anon("unmapped in round 1", 1 << 20, 7));
        st.regions.push(Region::anon("grown in round 2", 2 << 20, 8));
    }
    let mut children = Vec::new();
    if mode == "tree" {
        children.push(workload::fork_child("first child", |link| child(link, 21, 8)));
    }
    let mut own_uffd = (mode == "own-uffd").then(|| raw::userfaultfd().or_fail("userfaultfd"));
    let writer = (mode == "threads").then(Writer::start);
    s.ready();
    let mask = raw::blocked_mask();
    let mut done = 0;
    while !s.woke() {
        if (raw::handler_record(ROUND).count as usize) > done {
            done += 1;
            st.round(done);
            match mode {
                "layout" => layout_round(&mut st, done),
                "tree" => {
                    for c in &children {
                        c.send(&format!("round {done}\n")).or_fail("tell a child");
                        c.expect_line(&mut s.checker, "round", "ok");
                    }
                    if done == 1 {
                        children.push(workload::fork_child("child forked in round 1", |link| child(link, 31, 1)));
                    }
                }
                "threads" => writer.as_ref().or_fail("writer").round(done),
                _ => drop(own_uffd.take()),
            }
            workload::say(&format!("ROUND {done}"));
            continue;
        }
        raw::sigsuspend(mask.without(WAKE).without(ROUND));
    }
    st.verify(&mut s.checker);
    if let Some(w) = writer {
        w.verify(&mut s.checker);
    }
    for c in children {
        c.send("verify\n").or_fail("tell a child");
        c.collect(&mut s.checker);
    }
    s.finish()
}
