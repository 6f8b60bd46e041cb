//! A process's memory (`mm-PID.img`) and its page map (`pagemap-PID.img`).

use serde::Serialize;

/// `mm-PID.img`: the address space layout and the mm fields.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MmImage {
    #[prost(message, repeated, tag = "1")]
    pub vmas: Vec<Vma>,
    #[prost(message, optional, tag = "2")]
    pub fields: Option<MmFields>,
    /// The auxiliary vector as (key, value) words, as `/proc/PID/auxv` gives it.
    #[prost(uint64, repeated, tag = "3")]
    pub auxv: Vec<u64>,
    /// Path of `/proc/PID/exe`.
    #[prost(string, tag = "4")]
    pub exe_path: String,
    /// xxh3-64 of the vDSO text; restore needs the same vDSO.
    #[prost(uint64, tag = "5")]
    pub vdso_checksum: u64,
    /// Guard regions (`MADV_GUARD_INSTALL`): never read at dump, installed again at restore.
    #[prost(message, repeated, tag = "200")]
    pub guards: Vec<PageRun>,
    /// `mlockall` flags still in force for future mappings: `MCL_FUTURE` (2), with `MCL_ONFAULT` (4).
    #[prost(uint32, tag = "201")]
    pub mlock_future: u32,
    /// `membarrier` registrations, the `MEMBARRIER_CMD_REGISTER_*` bits
    /// `MEMBARRIER_CMD_GET_REGISTRATIONS` returns.
    #[prost(uint32, tag = "202")]
    pub membarrier: u32,
    /// KSM merges every area of the process (`prctl(PR_SET_MEMORY_MERGE, 1)`).
    #[prost(bool, tag = "203")]
    pub ksm_merge_any: bool,
    /// The process's AIO contexts (`io_setup`), each with its ring (`VmaKind::AioRing`).
    #[prost(message, repeated, tag = "260")]
    pub aio_rings: Vec<AioRing>,
}

/// An AIO context of the process (`io_setup(2)`): its ring, by the header the kernel keeps in
/// its first page (`struct aio_ring`), and the completed events not yet reaped.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AioRing {
    /// The ring's address, which is the context's id (`aio_context_t`).
    #[prost(uint64, tag = "1")]
    pub start: u64,
    /// The ring's length in bytes (whole pages).
    #[prost(uint64, tag = "2")]
    pub len: u64,
    /// `aio_ring.id`: the context's slot in the process's table of contexts.
    #[prost(uint32, tag = "3")]
    pub id: u32,
    /// `aio_ring.nr`: events the ring holds.
    #[prost(uint32, tag = "4")]
    pub nr: u32,
    /// `aio_ring.head`: the next event to reap.
    #[prost(uint32, tag = "5")]
    pub head: u32,
    /// `aio_ring.tail`: where the next completion goes.
    #[prost(uint32, tag = "6")]
    pub tail: u32,
    /// The events from `head` to `tail` (wrapping at `nr`), in ring order.
    #[prost(message, repeated, tag = "7")]
    pub events: Vec<AioEvent>,
}

/// A completed AIO request (`struct io_event`).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AioEvent {
    #[prost(uint64, tag = "1")]
    pub data: u64,
    #[prost(uint64, tag = "2")]
    pub obj: u64,
    #[prost(int64, tag = "3")]
    pub res: i64,
    #[prost(int64, tag = "4")]
    pub res2: i64,
}

/// What backs a memory area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration, Serialize)]
#[repr(i32)]
pub enum VmaKind {
    /// Private anonymous memory (also `[heap]` and `[stack]`, see `Vma::name`).
    Anon = 0,
    /// A file mapping (private or shared).
    File = 1,
    /// Shared anonymous memory.
    SharedAnon = 2,
    Vdso = 3,
    Vvar = 4,
    VvarVclock = 5,
    Vsyscall = 6,
    /// An attached SysV shared memory segment (`inode` is its id).
    SysvShm = 7,
    /// The ring of an AIO context (`/[aio] (deleted)`): made again by `io_setup`, never saved as
    /// memory (see `MmImage::aio_rings`); in a child, the ring of its parent's context it has from
    /// the fork.
    AioRing = 8,
    /// The uprobes area (`[uprobes]`): never saved, the kernel maps it again when a probe is hit
    /// (dumped and restored only with `--allow-uprobes`).
    Uprobes = 9,
}

#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct Vma {
    #[prost(uint64, tag = "1")]
    pub start: u64,
    #[prost(uint64, tag = "2")]
    pub end: u64,
    /// PROT_* bits.
    #[prost(uint32, tag = "3")]
    pub prot: u32,
    /// MAP_SHARED (1) or MAP_PRIVATE (2), plus MAP_GROWSDOWN where the area grows down and
    /// MAP_NORESERVE where it is not accounted (`nr` in VmFlags).
    #[prost(uint32, tag = "4")]
    pub flags: u32,
    #[prost(enumeration = "VmaKind", tag = "5")]
    pub kind: i32,
    /// The name `/proc/PID/maps` shows: a path, `[heap]`, `[stack]`, `[anon:NAME]`, or empty.
    #[prost(string, tag = "6")]
    pub name: String,
    /// File offset of `start`.
    #[prost(uint64, tag = "7")]
    pub offset: u64,
    #[prost(uint64, tag = "8")]
    pub dev: u64,
    #[prost(uint64, tag = "9")]
    pub inode: u64,
    /// madvise state to reapply, `MADV_BIT_*` bits.
    #[prost(uint32, tag = "10")]
    pub madvise: u32,
    /// `mlock`ed (`lo` in VmFlags).
    #[prost(bool, tag = "11")]
    pub locked: bool,
    /// A mapping of an unlinked file or memfd: restore maps the file made again from `files.img`
    /// (the entry whose `ino` is `inode`).
    #[prost(bool, tag = "12")]
    pub ghost: bool,
    /// The most access the area allows (`mr`, `mw`, `me` in VmFlags) as PROT_* bits: what
    /// `mprotect` may grant. A shared file mapping has PROT_WRITE here when its file was open for
    /// writing; restore opens the file so again. Zero in images made before this field: the
    /// protection then stands for it.
    #[prost(uint32, tag = "200")]
    pub may: u32,
    /// A `MAP_DROPPABLE` area (`dp`): its pages may be dropped under memory pressure.
    #[prost(bool, tag = "201")]
    pub droppable: bool,
    /// `mlock2(MLOCK_ONFAULT)`: locked as pages fault in (`lf`), with `locked`.
    #[prost(bool, tag = "202")]
    pub lock_on_fault: bool,
    /// The area had a guard region once (`gu` in VmFlags, Linux 6.18: the kernel never clears it).
    #[prost(bool, tag = "203")]
    pub maybe_guard: bool,
    /// A hugetlb area (`ht` in VmFlags: MAP_HUGETLB): its page size in bytes (smaps
    /// `KernelPageSize`, 2 MiB or 1 GiB), also in `flags` as `MAP_HUGETLB | log2(size) <<
    /// MAP_HUGE_SHIFT`. Its pages are saved and filled in whole huge pages. Zero for other areas.
    #[prost(uint64, tag = "240")]
    pub hugetlb_page_size: u64,
    /// Sealed with `mseal` (`sl` in VmFlags): sealed again once the task's memory is complete.
    #[prost(bool, tag = "248")]
    pub sealed: bool,
}

/// `Vma::madvise` bits.
pub const MADV_BIT_DONTFORK: u32 = 1;
pub const MADV_BIT_DONTDUMP: u32 = 2;
pub const MADV_BIT_HUGEPAGE: u32 = 4;
pub const MADV_BIT_NOHUGEPAGE: u32 = 8;
pub const MADV_BIT_WIPEONFORK: u32 = 16;
pub const MADV_BIT_MERGEABLE: u32 = 32;
pub const MADV_BIT_SEQUENTIAL: u32 = 64;
pub const MADV_BIT_RANDOM: u32 = 128;

/// The mm fields `prctl(PR_SET_MM_MAP)` sets.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MmFields {
    #[prost(uint64, tag = "1")]
    pub start_code: u64,
    #[prost(uint64, tag = "2")]
    pub end_code: u64,
    #[prost(uint64, tag = "3")]
    pub start_data: u64,
    #[prost(uint64, tag = "4")]
    pub end_data: u64,
    #[prost(uint64, tag = "5")]
    pub start_brk: u64,
    #[prost(uint64, tag = "6")]
    pub brk: u64,
    #[prost(uint64, tag = "7")]
    pub start_stack: u64,
    #[prost(uint64, tag = "8")]
    pub arg_start: u64,
    #[prost(uint64, tag = "9")]
    pub arg_end: u64,
    #[prost(uint64, tag = "10")]
    pub env_start: u64,
    #[prost(uint64, tag = "11")]
    pub env_end: u64,
}

/// `pagemap-PID.img`: which pages `pages-PID.img` holds, in file order.
///
/// The page file holds the pages of `runs` back to back, starting at `PAGE_DATA_OFFSET`. Its data is
/// checksummed in chunks of `chunk_size` bytes (the last one may be shorter).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PageMap {
    #[prost(message, repeated, tag = "1")]
    pub runs: Vec<PageRun>,
    #[prost(uint64, tag = "2")]
    pub chunk_size: u64,
    #[prost(uint64, repeated, tag = "3")]
    pub chunk_checksums: Vec<u64>,
    /// Sum of `nr_pages` over `runs`.
    #[prost(uint64, tag = "4")]
    pub total_pages: u64,
    /// Pages a child still shares copy-on-write with its parent: not in the page file; restore keeps
    /// them shared by forking the child from its restored parent.
    #[prost(message, repeated, tag = "5")]
    pub inherited: Vec<PageRun>,
    /// Pages present at the dump but not written since the parent image (`parent` symlink): their
    /// bytes are in the parent's page file, or in its parent's (restore follows the chain).
    #[prost(message, repeated, tag = "452")]
    pub in_parent: Vec<PageRun>,
    /// Ranges whose writes were tracked from this dump on (userfaultfd write-protect), for the next
    /// incremental dump; informational.
    #[prost(message, repeated, tag = "453")]
    pub tracked: Vec<PageRun>,
    /// Pages of `runs` punched out of the page file (`--auto-dedup`, `stasis dedup`) because a
    /// newer image of the chain holds them: holes that read as zeros (the chunk checksums are of
    /// the zeros). Restore of this image itself, or an in-parent page resolved to one, is refused.
    #[prost(message, repeated, tag = "620")]
    pub punched: Vec<PageRun>,
    /// How the page file's data is stored: 0 raw pages, 1 zstd frames, one per chunk
    /// (`--compress`; see `stasis_image::compress`).
    #[prost(int32, tag = "621")]
    pub compression: i32,
    /// With `compression`: the size in bytes of each chunk's frame, in file order (frame k starts
    /// at 4096 plus the sizes of the frames before it).
    #[prost(uint64, repeated, tag = "622")]
    pub frame_sizes: Vec<u64>,
}

/// Consecutive pages starting at `vaddr`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct PageRun {
    #[prost(uint64, tag = "1")]
    pub vaddr: u64,
    #[prost(uint64, tag = "2")]
    pub nr_pages: u64,
}
