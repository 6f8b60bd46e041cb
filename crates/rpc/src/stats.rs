//! The messages of CRIU's `images/stats.proto` and the framing of the `stats-dump` and
//! `stats-restore` files Podman (through go-criu) reads for `--print-stats`: two little-endian
//! magics (the service-image magic, then the stats magic), the payload's length as a
//! little-endian u32, then one `stats_entry`. Times are in microseconds.

use prost::Message;

/// `stats-dump`, written by a dump into the work directory.
pub const DUMP_FILE: &str = "stats-dump";
/// `stats-restore`, written by a restore into the work directory.
pub const RESTORE_FILE: &str = "stats-restore";
/// CRIU's magic of its "service" images (not process images).
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;
/// CRIU's magic of the stats files.
pub const STATS_MAGIC: u32 = 0x5709_3306;

/// `dump_stats_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DumpStatsEntry {
    #[prost(uint32, required, tag = "1")]
    pub freezing_time: u32,
    #[prost(uint32, required, tag = "2")]
    pub frozen_time: u32,
    #[prost(uint32, required, tag = "3")]
    pub memdump_time: u32,
    #[prost(uint32, required, tag = "4")]
    pub memwrite_time: u32,
    #[prost(uint64, required, tag = "5")]
    pub pages_scanned: u64,
    #[prost(uint64, required, tag = "6")]
    pub pages_skipped_parent: u64,
    #[prost(uint64, required, tag = "7")]
    pub pages_written: u64,
    #[prost(uint32, optional, tag = "8")]
    pub irmap_resolve: Option<u32>,
    #[prost(uint64, required, tag = "9")]
    pub pages_lazy: u64,
    #[prost(uint64, optional, tag = "10")]
    pub page_pipes: Option<u64>,
    #[prost(uint64, optional, tag = "11")]
    pub page_pipe_bufs: Option<u64>,
    #[prost(uint64, optional, tag = "12")]
    pub shpages_scanned: Option<u64>,
    #[prost(uint64, optional, tag = "13")]
    pub shpages_skipped_parent: Option<u64>,
    #[prost(uint64, optional, tag = "14")]
    pub shpages_written: Option<u64>,
}

/// `restore_stats_entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RestoreStatsEntry {
    #[prost(uint64, required, tag = "1")]
    pub pages_compared: u64,
    #[prost(uint64, required, tag = "2")]
    pub pages_skipped_cow: u64,
    #[prost(uint32, required, tag = "3")]
    pub forking_time: u32,
    #[prost(uint32, required, tag = "4")]
    pub restore_time: u32,
    #[prost(uint64, optional, tag = "5")]
    pub pages_restored: Option<u64>,
}

/// `stats_entry`: the one message of a stats file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatsEntry {
    #[prost(message, optional, tag = "1")]
    pub dump: Option<DumpStatsEntry>,
    #[prost(message, optional, tag = "2")]
    pub restore: Option<RestoreStatsEntry>,
}

/// The bytes of a stats file holding `entry`.
pub fn file_bytes(entry: &StatsEntry) -> Vec<u8> {
    let payload = entry.encode_to_vec();
    let mut out = Vec::with_capacity(12 + payload.len());
    out.extend_from_slice(&IMG_SERVICE_MAGIC.to_le_bytes());
    out.extend_from_slice(&STATS_MAGIC.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The entry of a stats file's bytes, or why they are not one.
pub fn parse_file(bytes: &[u8]) -> Result<StatsEntry, String> {
    let word = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if word(0) != Some(IMG_SERVICE_MAGIC) || word(4) != Some(STATS_MAGIC) {
        return Err("not a CRIU stats file (magic)".into());
    }
    let len = word(8).ok_or("no payload length")? as usize;
    let payload = bytes.get(12..12 + len).ok_or("payload shorter than its length")?;
    StatsEntry::decode(payload).map_err(|e| format!("stats_entry: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stats_file_round_trips() {
        let dump = DumpStatsEntry { frozen_time: 1234, pages_written: 7, ..Default::default() };
        let entry = StatsEntry { dump: Some(dump), restore: None };
        let bytes = file_bytes(&entry);
        assert_eq!(&bytes[..4], &[0x40, 0x59, 0x10, 0x55]);
        assert_eq!(parse_file(&bytes).unwrap(), entry);
        assert!(parse_file(&bytes[..10]).is_err());
    }
}
