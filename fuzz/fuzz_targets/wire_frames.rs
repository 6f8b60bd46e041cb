//! Fuzz the page server's frame reader (`stasis_image::wire::read_frame`) on a stream of frames.
//!
//! With the first input byte's low bit set, the header checksum of the first frame is recomputed,
//! so that the fuzzer reaches the payload decoding. Whatever decodes must encode and read back to
//! the same frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stasis_image::wire::{read_frame, write_frame};

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    if control & 1 != 0 && bytes.len() >= 24 {
        let len = (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize).min(bytes.len() - 24);
        let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
        hasher.update(&bytes[..16]);
        hasher.update(&bytes[24..24 + len]);
        let sum = hasher.digest().to_le_bytes();
        bytes[16..24].copy_from_slice(&sum);
    }
    let mut input = bytes.as_slice();
    while let Ok(frame) = read_frame(&mut input) {
        let mut again = Vec::new();
        write_frame(&mut again, &frame).expect("a read frame writes");
        assert_eq!(read_frame(&mut again.as_slice()).expect("a written frame reads"), frame);
    }
});
