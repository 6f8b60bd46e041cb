//! The memory pattern of the memory workload, `stasis-bench-memhog SIZE_MIB`, which writes it into
//! SIZE MiB of anonymous memory, prints `READY` and sleeps until killed: [`fill`] writes the
//! pattern, [`check`] recognises it.

/// Page size the pattern stamps.
const PAGE: usize = 4096;
/// Byte the pattern fills pages with (not zero, so no page of the workload is a zero page).
pub const FILL_BYTE: u8 = 0xa5;

/// Fills `buf` with the workload pattern: [`FILL_BYTE`] everywhere, and the page's index in the
/// first 8 bytes of each page.
pub fn fill(buf: &mut [u8]) {
    buf.fill(FILL_BYTE);
    for (index, page) in buf.chunks_mut(PAGE).enumerate() {
        let stamp = (index as u64).to_le_bytes();
        let n = page.len().min(stamp.len());
        page[..n].copy_from_slice(&stamp[..n]);
    }
}

/// Whether `buf` holds the pattern [`fill`] writes.
pub fn check(buf: &[u8]) -> bool {
    buf.chunks(PAGE).enumerate().all(|(index, page)| {
        let stamp = (index as u64).to_le_bytes();
        let n = page.len().min(stamp.len());
        page[..n] == stamp[..n] && page[n..].iter().all(|&b| b == FILL_BYTE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_stamps_every_page_and_check_sees_changes() {
        let mut buf = vec![0u8; 5 * PAGE + 100];
        fill(&mut buf);
        assert!(check(&buf));
        assert_eq!(&buf[PAGE..PAGE + 8], &1u64.to_le_bytes());
        assert_eq!(buf[3 * PAGE + 9], FILL_BYTE);
        buf[2 * PAGE + 100] = 0;
        assert!(!check(&buf));
    }

    #[test]
    fn pattern_on_a_short_last_page() {
        let mut buf = vec![0u8; PAGE + 3];
        fill(&mut buf);
        assert!(check(&buf));
        assert_eq!(&buf[PAGE..], &[1, 0, 0]);
    }
}
