//! Where the pages of a dump go: a [`PageSink`] gives each process its page writer and takes the
//! finished page file. [`LocalFiles`] writes `pages-PID.img` in the image directory;
//! [`PageServerSink`] stages each page file in a memfd and sends it to a page server (see
//! [`crate::pageserver`]), committing there just before the dump writes its inventory. The page
//! maps and every other image stay in the local directory either way, as CRIU's do.

use crate::error::Result;
use crate::pageserver::Connection;
use stasis_image::{ImageDir, ImageKind, PageWriter};
use stasis_sys::Pid;
use std::fs::File;
use std::sync::Mutex;

/// The destination of a dump's page files.
pub trait PageSink: Sync {
    /// The writer of `pid`'s page file, positioned at the page data.
    fn create(&self, dir: &ImageDir, pid: Pid, chunk_size: u64) -> Result<PageWriter>;
    /// `pid`'s page file is finished: `file` holds its `size` bytes, whose page data has `checksums`.
    fn finished(&self, pid: Pid, file: &File, size: u64, chunk_size: u64, checksums: &[u64]) -> Result<()>;
    /// Every page file is finished; the inventory comes next.
    fn commit(&self) -> Result<()>;
}

/// Page files in the image directory.
pub struct LocalFiles;

impl PageSink for LocalFiles {
    fn create(&self, dir: &ImageDir, pid: Pid, chunk_size: u64) -> Result<PageWriter> {
        Ok(dir.create_pages(pid.0, chunk_size)?)
    }

    fn finished(&self, _pid: Pid, _file: &File, _size: u64, _chunk_size: u64, _checksums: &[u64]) -> Result<()> {
        // Already in place: the writer wrote it in the directory.
        Ok(())
    }

    fn commit(&self) -> Result<()> {
        // The inventory, written next, is the commit of local files.
        Ok(())
    }
}

/// Page files sent to a page server, one at a time over one connection. A page file is staged in
/// a memfd while its process's pages are written (nothing reaches the local disk), and dropped
/// once the server has checked it.
pub struct PageServerSink {
    conn: Mutex<Connection>,
}

impl PageServerSink {
    pub fn new(conn: Connection) -> PageServerSink {
        PageServerSink { conn: Mutex::new(conn) }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PageSink for PageServerSink {
    fn create(&self, dir: &ImageDir, pid: Pid, chunk_size: u64) -> Result<PageWriter> {
        crate::mem::pages::stage(dir, pid, chunk_size)
    }

    fn finished(&self, pid: Pid, file: &File, size: u64, chunk_size: u64, checksums: &[u64]) -> Result<()> {
        let name = ImageKind::Pages.file_name(Some(pid.0));
        self.conn().send_file(&name, file, size, chunk_size, checksums)
    }

    fn commit(&self) -> Result<()> {
        self.conn().commit()
    }
}
