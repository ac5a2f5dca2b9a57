//! The file-system seam.
//!
//! Every byte Varve reads or writes goes through [`FileSystem`] and [`File`].
//! Production code uses [`StdFs`]; tests use `MemFs` (built with the
//! `testing` feature, see `crate::testing`), an in-memory file system that
//! can simulate power loss (dropping, keeping or tearing every write that
//! was not synced, and forgetting unsynced creates, renames and removes),
//! flip bits, and fail chosen calls with an I/O error.
//!
//! The seam is deliberately small: positioned reads and writes, `fdatasync`,
//! length changes, and the handful of directory operations a log-structured
//! engine needs. Files are shared (`Arc<dyn File>`) and all methods take
//! `&self`, so one handle can serve concurrent positioned readers.

#[cfg(feature = "testing")]
mod mem;
mod std_fs;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

#[cfg(feature = "testing")]
pub use mem::{CrashMode, FaultKind, MemFs};
pub use std_fs::StdFs;

/// What a path names, from [`FileSystem::kind`] (which follows links;
/// [`FileSystem::entry_kind`] tells links apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Anything that is not a directory: a regular file (or a socket, a
    /// FIFO, a device).
    File,
    /// A directory.
    Dir,
}

/// How [`FileSystem::open_file`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading only.
    Read,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Create a new file for reading and writing; fails with
    /// [`io::ErrorKind::AlreadyExists`] if it exists.
    CreateNew,
    /// Create the file if it is missing, or open it for reading and writing
    /// if it exists (its contents are kept).
    CreateOrOpen,
}

/// An open file. All I/O is positioned, so a handle can be shared between
/// threads without a cursor.
#[allow(clippy::len_without_is_empty)]
pub trait File: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at or past the end of the file).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`, extending the file if needed.
    ///
    /// # Errors
    /// The underlying I/O error; some bytes may have been written.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes the file's data (and the metadata needed to read it, such as
    /// its length) durable: `fdatasync`.
    ///
    /// # Errors
    /// The underlying I/O error. After a failed sync the state of unsynced
    /// data is unknown; callers must not retry as if nothing happened.
    fn sync_data(&self) -> io::Result<()>;

    /// Asks the operating system to start writing `len_bytes` at `offset`
    /// to the device without waiting for it (Linux's `sync_file_range`
    /// with `SYNC_FILE_RANGE_WRITE`), so that a later
    /// [`sync_data`](File::sync_data) has less left to wait for. A hint
    /// only: it makes nothing durable, and a file system may ignore it
    /// (the default does).
    ///
    /// # Errors
    /// The underlying I/O error; callers may ignore it, as the sync that
    /// follows reports any failure to write.
    fn start_writeback(&self, offset: u64, len_bytes: u64) -> io::Result<()> {
        let _ = (offset, len_bytes);
        Ok(())
    }

    /// The file's current length in bytes.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn len(&self) -> io::Result<u64>;

    /// Truncates or extends (with zeros) the file to `len_bytes`.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;

    /// Reserves space for `len_bytes` at `offset` without writing it
    /// (Linux's `fallocate` in its default mode): the range reads as
    /// zeros, the file's length grows to cover it, and a later write into
    /// it changes neither the length nor, mostly, the allocation, so the
    /// `fdatasync` after it has only data to make durable. Returns
    /// `false`, having changed nothing, where the file system cannot
    /// reserve space without writing it (the default).
    ///
    /// # Errors
    /// The underlying I/O error, such as `ENOSPC`; part of the range may
    /// then be reserved (and the length grown over it).
    fn allocate(&self, offset: u64, len_bytes: u64) -> io::Result<bool> {
        let _ = (offset, len_bytes);
        Ok(false)
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    ///
    /// # Errors
    /// [`io::ErrorKind::UnexpectedEof`] if the file ends first, or the
    /// underlying I/O error.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file ended before the requested range",
                ));
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

/// A held directory lock; released when dropped.
pub trait DirLock: Send + Sync + Debug {}

/// The file-system operations Varve uses.
pub trait FileSystem: Send + Sync + Debug {
    /// Opens (or creates) the file at `path` according to `mode`.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`], [`io::ErrorKind::AlreadyExists`] or the
    /// underlying I/O error.
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>>;

    /// Creates a directory and any missing parents.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The names of the entries of a directory, sorted.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] or the underlying I/O error.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Removes a file.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] or the underlying I/O error.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes an empty directory.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] or the underlying I/O error.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;

    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Creates `to` as a hard link to `from`.
    ///
    /// # Errors
    /// The underlying I/O error ([`io::ErrorKind::Unsupported`] where the
    /// file system cannot link; callers fall back to copying).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Makes the directory's entries (creates, renames, removes) durable.
    /// The empty path means the current directory (the parent of a bare
    /// relative name).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// What `path` is: a [`PathKind::File`], a [`PathKind::Dir`], or
    /// `None` if nothing is there.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn kind(&self, path: &Path) -> io::Result<Option<PathKind>>;

    /// Takes an exclusive advisory lock on the file `path` (created if
    /// missing). Fails with [`io::ErrorKind::WouldBlock`] if another holder
    /// (in this or another process) has it.
    ///
    /// # Errors
    /// [`io::ErrorKind::WouldBlock`] or the underlying I/O error.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>>;

    /// What the entry at `path` is, without following a symbolic link
    /// (`lstat`), or `None` if it does not exist. Code that deletes uses
    /// it so a link is never taken for what it points to. The default
    /// (for file systems without links) asks [`kind`](Self::kind).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn entry_kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        Ok(self.kind(path)?.map(|kind| match kind {
            PathKind::Dir => EntryKind::Dir,
            PathKind::File => EntryKind::File,
        }))
    }

    /// `path` with every symbolic link resolved (`realpath`); `path` must
    /// exist. The default (for file systems without links) returns it
    /// unchanged.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotFound`] or the underlying I/O error.
    fn resolve_links(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        Ok(path.to_path_buf())
    }
}

/// What a directory entry is, as [`FileSystem::entry_kind`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory (not a link to one).
    Dir,
    /// A symbolic link (to anything, or dangling).
    Symlink,
    /// Anything else: a socket, a FIFO, a device.
    Other,
}

/// Writes `data` to `path` atomically and durably: a temporary file is
/// written and synced, renamed over `path`, and the directory is synced.
///
/// # Errors
/// The underlying I/O error; `path` then holds either its old or its new
/// contents.
pub fn write_file_atomic(fs: &dyn FileSystem, path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = Path::new(&tmp_name);
    if fs.kind(tmp)?.is_some() {
        fs.remove_file(tmp)?;
    }
    let file = fs.open_file(tmp, OpenMode::CreateNew)?;
    file.write_all_at(data, 0)?;
    file.sync_data()?;
    drop(file);
    fs.rename(tmp, path)?;
    fs.sync_dir(dir)
}

/// Creates the directory `path` and any missing parents, and makes each
/// new directory's entry durable by syncing its parent (deepest first, so
/// that once a directory's own entry is durable everything created under
/// it is too). A directory that already exists is left as it is.
///
/// A bare `create_dir_all` is not enough: a new directory's name lives in
/// its parent, and like any other name it can vanish in a power loss until
/// the parent is synced.
///
/// # Errors
/// The underlying I/O error.
pub fn create_dir_all_durably(fs: &dyn FileSystem, path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    for ancestor in path.ancestors() {
        if ancestor.as_os_str().is_empty() || fs.kind(ancestor)?.is_some() {
            break;
        }
        missing.push(ancestor);
    }
    fs.create_dir_all(path)?;
    for parent in missing.into_iter().filter_map(Path::parent) {
        // The parent of a relative path's first component is "", which
        // names the current directory (see `FileSystem::sync_dir`).
        fs.sync_dir(parent)?;
    }
    Ok(())
}

/// Reads a whole file into memory.
///
/// # Errors
/// The underlying I/O error.
pub fn read_file(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open_file(path, OpenMode::Read)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}
