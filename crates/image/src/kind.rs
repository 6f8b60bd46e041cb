//! The kinds of image file: their names in the image directory and their magic numbers.

use std::fmt;

/// One kind of file in an image directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageKind {
    /// `inventory.img`: [`crate::model::Inventory`].
    Inventory,
    /// `pstree.img`: [`crate::model::PsTree`].
    PsTree,
    /// `core-PID.img`: one [`crate::model::TaskCore`] per thread, the main thread first.
    Core,
    /// `mm-PID.img`: [`crate::model::MmImage`].
    Mm,
    /// `pagemap-PID.img`: [`crate::model::PageMap`].
    PageMap,
    /// `pages-PID.img`: raw pages (not a record file).
    Pages,
    /// `fds-PID.img`: [`crate::model::FdTable`].
    Fds,
    /// `files.img`: [`crate::model::FileTable`].
    Files,
    /// `ipc.img`: [`crate::model::IpcImage`] (SysV shared memory segments).
    Ipc,
}

impl ImageKind {
    /// Every kind, in the order the format document lists them.
    pub const ALL: [ImageKind; 9] = [
        ImageKind::Inventory,
        ImageKind::PsTree,
        ImageKind::Core,
        ImageKind::Mm,
        ImageKind::PageMap,
        ImageKind::Pages,
        ImageKind::Fds,
        ImageKind::Files,
        ImageKind::Ipc,
    ];

    /// The stem of the file name: `core` for `core-PID.img`, `inventory` for `inventory.img`.
    pub fn stem(self) -> &'static str {
        match self {
            ImageKind::Inventory => "inventory",
            ImageKind::PsTree => "pstree",
            ImageKind::Core => "core",
            ImageKind::Mm => "mm",
            ImageKind::PageMap => "pagemap",
            ImageKind::Pages => "pages",
            ImageKind::Fds => "fds",
            ImageKind::Files => "files",
            ImageKind::Ipc => "ipc",
        }
    }

    /// Whether there is one file of this kind per process (named with the PID).
    pub fn per_process(self) -> bool {
        matches!(self, ImageKind::Core | ImageKind::Mm | ImageKind::PageMap | ImageKind::Pages | ImageKind::Fds)
    }

    /// Whether the file is a record file (header, length-prefixed records, trailer); only page files
    /// are not.
    pub fn is_record_file(self) -> bool {
        self != ImageKind::Pages
    }

    /// The file's name in the image directory: `core-4242.img`, `pstree.img`.
    ///
    /// `pid` is ignored for kinds that are not per process; a per-process kind without a pid gives
    /// `core-?.img`, a name that the reading and writing functions reject.
    pub fn file_name(self, pid: Option<i32>) -> String {
        match (self.per_process(), pid) {
            (true, Some(pid)) => format!("{}-{pid}.img", self.stem()),
            (true, None) => format!("{}-?.img", self.stem()),
            (false, _) => format!("{}.img", self.stem()),
        }
    }

    /// The kind magic, the second word of the file header. Each is four ASCII letters, stored little
    /// endian so that a hex dump of the file shows them in order.
    pub fn magic(self) -> u32 {
        u32::from_le_bytes(*self.magic_tag())
    }

    /// The four letters of the kind magic.
    pub fn magic_tag(self) -> &'static [u8; 4] {
        match self {
            ImageKind::Inventory => b"INVT",
            ImageKind::PsTree => b"PSTR",
            ImageKind::Core => b"CORE",
            ImageKind::Mm => b"MMAP",
            ImageKind::PageMap => b"PGMP",
            ImageKind::Pages => b"PAGE",
            ImageKind::Fds => b"FDTB",
            ImageKind::Files => b"FILE",
            ImageKind::Ipc => b"IPCS",
        }
    }

    /// The kind whose magic is `magic`, if any.
    pub fn from_magic(magic: u32) -> Option<ImageKind> {
        ImageKind::ALL.into_iter().find(|k| k.magic() == magic)
    }

    /// Parse a file name of the image directory into its kind and pid. Only canonical names are
    /// accepted (`core-42.img`, not `core-042.img` or `core-+42.img`), and pids must be positive.
    pub fn parse_file_name(name: &str) -> Option<(ImageKind, Option<i32>)> {
        let stem = name.strip_suffix(".img")?;
        ImageKind::ALL.into_iter().find_map(|kind| {
            if !kind.per_process() {
                return (stem == kind.stem()).then_some((kind, None));
            }
            let digits = stem.strip_prefix(kind.stem())?.strip_prefix('-')?;
            let pid: i32 = digits.parse().ok()?;
            (pid > 0 && pid.to_string() == digits).then_some((kind, Some(pid)))
        })
    }

    /// A description of a kind magic found in a file, for error messages.
    pub(crate) fn describe_magic(magic: u32) -> String {
        match ImageKind::from_magic(magic) {
            Some(kind) => format!("{kind}"),
            None => "unknown".to_owned(),
        }
    }
}

impl fmt::Display for ImageKind {
    /// The file name pattern: `core-PID.img`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.per_process() {
            write!(f, "{}-PID.img", self.stem())
        } else {
            write!(f, "{}.img", self.stem())
        }
    }
}
