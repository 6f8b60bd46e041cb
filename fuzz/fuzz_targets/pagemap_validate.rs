//! Fuzz `validate_pagemap` with page maps decoded from arbitrary protobuf bytes, and check what it
//! promises for the maps it accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use stasis_image::model::PageMap;
use stasis_image::{validate_pagemap, PAGE_DATA_OFFSET, PAGE_SIZE};

fuzz_target!(|data: &[u8]| {
    let Ok(map) = PageMap::decode(data) else {
        return;
    };
    let Ok(data_len) = validate_pagemap("pagemap-1.img", &map) else {
        return;
    };
    let pages: u64 = map.runs.iter().map(|r| r.nr_pages).sum();
    assert_eq!(pages, map.total_pages);
    assert_eq!(data_len, pages * PAGE_SIZE);
    assert!(data_len.checked_add(PAGE_DATA_OFFSET).is_some());
    if data_len > 0 {
        assert!(map.chunk_size > 0 && map.chunk_size % PAGE_SIZE == 0);
        assert_eq!(map.chunk_checksums.len() as u64, data_len.div_ceil(map.chunk_size));
    }
    for pair in map.runs.windows(2) {
        assert!(pair[0].vaddr + pair[0].nr_pages * PAGE_SIZE <= pair[1].vaddr);
    }
});
