//! `inventory.img`: the table of contents of an image and the network lock it records.

use serde::Serialize;

/// `inventory.img`: the image's table of contents, written last (by rename) so that an image without
/// it is known to be incomplete.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Inventory {
    /// Format version of the image as a whole (major, minor).
    #[prost(uint32, tag = "1")]
    pub format_major: u32,
    #[prost(uint32, tag = "2")]
    pub format_minor: u32,
    /// Version of the stasis that wrote the image.
    #[prost(string, tag = "3")]
    pub tool_version: String,
    /// `uname -r` of the machine the image was taken on.
    #[prost(string, tag = "4")]
    pub kernel_release: String,
    /// XSAVE feature mask (XCR0) of the CPU the image was taken on; restore needs all of them.
    #[prost(uint64, tag = "5")]
    pub xfeatures: u64,
    /// The feature flags of the dump's CPU (`/proc/cpuinfo`); `restore --cpu-cap=cpu|ins` requires
    /// them (all of them, or those of instruction-set extensions).
    #[prost(string, repeated, tag = "11")]
    pub cpu_flags: Vec<String>,
    /// PID of the root of the checkpointed tree.
    #[prost(int32, tag = "6")]
    pub root_pid: i32,
    /// Every other file of the image with its size and checksum.
    #[prost(message, repeated, tag = "7")]
    pub files: Vec<FileDigest>,
    /// Wall-clock time of the checkpoint, milliseconds since the epoch.
    #[prost(uint64, tag = "8")]
    pub created_unix_ms: u64,
    #[prost(uint32, tag = "9")]
    pub page_size: u32,
    /// The dump was taken with `--shell-job`: terminal fds are external.
    #[prost(bool, tag = "10")]
    pub shell_job: bool,
    /// The network lock the dump left on the dumped connections (restore removes it).
    #[prost(message, optional, tag = "350")]
    pub network_lock: Option<NetworkLock>,
    /// A pre-dump: memory only (pages, page maps, layouts and the tree), the parent of a later
    /// dump made with `--prev-images-dir`; not restorable by itself.
    #[prost(bool, tag = "450")]
    pub pre_dump: bool,
    /// With a parent image (the `parent` symlink of the directory): that image's
    /// `created_unix_ms`, checked at restore so that a replaced parent is refused by name.
    #[prost(uint64, tag = "451")]
    pub parent_created_unix_ms: u64,
}

/// A firewall table dropping every packet of the dumped TCP connections, from the dump until the
/// restored tree runs, so that peers retransmit into silence instead of being reset.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct NetworkLock {
    /// `nftables`.
    #[prost(string, tag = "1")]
    pub method: String,
    /// The nftables table (family `inet`): `stasis-PID-MS`.
    #[prost(string, tag = "2")]
    pub table: String,
}

/// One file listed in the inventory.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct FileDigest {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint64, tag = "2")]
    pub size: u64,
    /// xxh3-64 of the file's bytes; for a page file, of its chunk checksums (see `PageMap`).
    #[prost(uint64, tag = "3")]
    pub checksum: u64,
}
