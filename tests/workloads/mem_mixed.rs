//! Memory of varied compressibility, for compressed page files (`--compress`): a text-like area
//! that compresses well, an area of pseudo-random bytes that does not, an area of zero pages
//! written once, a sparse area (one page in 37 written, the rest never touched), and shared
//! anonymous memory. After the wake every byte of each is checked against what was written.

use stasis_tests::raw::{Mapping, SharedWords, PAGE};
use stasis_tests::workload::{self, pattern_word, OrFail};
use std::sync::atomic::Ordering;

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const MIB: usize = 1 << 20;

/// Byte `i` of the text-like area: words from a small vocabulary, page-dependent.
fn text_byte(i: usize) -> u8 {
    const WORDS: &[&[u8]] = &[b"checkpoint ", b"restore ", b"page ", b"stasis ", b"memory ", b"frame\n"];
    let page = i / PAGE;
    let w = WORDS[(i / 11 + page) % WORDS.len()];
    w[i % 11 % w.len()]
}

/// Byte `i` of the random area (xorshift of the index: no two pages alike).
fn random_byte(i: usize) -> u8 {
    let mut x = (i as u64 / 8).wrapping_add(0x5eed_1234_abcd_ef01);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x.to_le_bytes()[i % 8]
}

fn main() {
    let mut s = workload::start();
    let text = Mapping::anon(3 * MIB, RW).or_fail("mmap text");
    text.write(0, &(0..3 * MIB).map(text_byte).collect::<Vec<u8>>());
    let random = Mapping::anon(3 * MIB, RW).or_fail("mmap random");
    random.write(0, &(0..3 * MIB).map(random_byte).collect::<Vec<u8>>());
    let zeros = Mapping::anon(MIB, RW).or_fail("mmap zeros");
    zeros.write(0, &vec![0u8; MIB]);
    let sparse = Mapping::anon(16 * MIB, RW).or_fail("mmap sparse");
    let pages = 16 * MIB / PAGE;
    for p in (0..pages).step_by(37) {
        sparse.fill_words(p * PAGE, PAGE, |w| pattern_word(p as u64 + 1, w));
    }
    let shared = SharedWords::anon(MIB).or_fail("mmap shared");
    for (i, w) in shared.words().iter().enumerate() {
        w.store(pattern_word(0x5a5a, i), Ordering::SeqCst);
    }
    s.ready();
    s.wait_for_wake();
    let c = &mut s.checker;
    let got = text.read(0, 3 * MIB);
    let bad = got.iter().enumerate().position(|(i, &b)| b != text_byte(i));
    c.check(bad.is_none(), || format!("text area differs at byte {bad:?}"));
    let got = random.read(0, 3 * MIB);
    let bad = got.iter().enumerate().position(|(i, &b)| b != random_byte(i));
    c.check(bad.is_none(), || format!("random area differs at byte {bad:?}"));
    let bad = zeros.read(0, MIB).iter().position(|&b| b != 0);
    c.check(bad.is_none(), || format!("zero area differs at byte {bad:?}"));
    for p in 0..pages {
        let bad = if p % 37 == 0 {
            sparse.first_word_mismatch(p * PAGE, PAGE, |w| pattern_word(p as u64 + 1, w)).is_some()
        } else {
            sparse.read(p * PAGE, PAGE).iter().any(|&b| b != 0)
        };
        c.check(!bad, || format!("sparse area page {p} differs"));
    }
    let bad = shared.words().iter().enumerate().position(|(i, w)| w.load(Ordering::SeqCst) != pattern_word(0x5a5a, i));
    c.check(bad.is_none(), || format!("shared area differs at word {bad:?}"));
    s.finish()
}
