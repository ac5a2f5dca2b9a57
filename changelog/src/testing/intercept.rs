//! [`InterceptFs`]: a file system that calls a hook before each operation
//! of the one it wraps.

use crate::fs::PathKind;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::fs::{DirLock, EntryKind, File, FileSystem, OpenMode};

/// Which operation the hook of an [`InterceptFs`] is about to let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// [`FileSystem::open_file`] with this mode.
    Open(OpenMode),
    /// [`File::read_at`] or [`File::read_exact_at`] of an open file.
    Read,
    /// [`File::write_all_at`] of an open file.
    Write,
    /// [`File::sync_data`] of an open file.
    SyncData,
    /// [`File::len`] of an open file.
    Len,
    /// [`File::set_len`] of an open file.
    SetLen,
    /// [`File::allocate`] of an open file.
    Allocate,
    /// [`FileSystem::create_dir_all`].
    CreateDirAll,
    /// [`FileSystem::list_dir`].
    ListDir,
    /// [`FileSystem::remove_file`].
    RemoveFile,
    /// [`FileSystem::remove_dir`].
    RemoveDir,
    /// [`FileSystem::rename`] (the target is [`Op::to`]).
    Rename,
    /// [`FileSystem::hard_link`] (the new name is [`Op::to`]).
    HardLink,
    /// [`FileSystem::sync_dir`].
    SyncDir,
    /// [`FileSystem::kind`], [`FileSystem::entry_kind`] or
    /// [`FileSystem::resolve_links`].
    Stat,
    /// [`FileSystem::lock`].
    Lock,
}

impl OpKind {
    /// Whether this is a sync: [`OpKind::SyncData`] or [`OpKind::SyncDir`].
    #[must_use]
    pub fn is_sync(self) -> bool {
        matches!(self, OpKind::SyncData | OpKind::SyncDir)
    }
}

/// One operation, as the hook sees it before it runs.
#[derive(Clone, Copy, Debug)]
pub struct Op<'a> {
    /// What is about to be done.
    pub kind: OpKind,
    /// The path it is done to (for file operations, the path the file was
    /// opened by; for a rename or link, the source).
    pub path: &'a Path,
    /// The second path of a rename or link.
    pub to: Option<&'a Path>,
}

impl Op<'_> {
    /// Whether the path ends in `.{ext}` (`"sst"`, `"log"`).
    #[must_use]
    pub fn has_extension(&self, ext: &str) -> bool {
        self.path.extension().is_some_and(|e| e == ext)
    }

    /// Whether the path's file name starts with `prefix` (`"MANIFEST-"`).
    #[must_use]
    pub fn name_starts_with(&self, prefix: &str) -> bool {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
    }
}

/// The hook of an [`InterceptFs`]: `Ok(())` lets the operation run, an
/// error is returned in its place (the operation does not run). A hook may
/// also count, record, sleep or block before it answers.
pub type Hook = dyn Fn(&Op<'_>) -> io::Result<()> + Send + Sync;

/// A file system that asks a hook before each operation of the file system
/// it wraps (and of every file opened through it).
///
/// # Examples
///
/// Fail every sync of a table file:
///
/// ```
/// use std::io;
/// use std::sync::Arc;
/// use varve_changelog::fs::{FileSystem, OpenMode};
/// use varve_changelog::testing::{InterceptFs, MemFs, OpKind};
///
/// let fs = InterceptFs::new(Arc::new(MemFs::new()), |op| {
///     if op.kind == OpKind::SyncData && op.has_extension("sst") {
///         return Err(io::Error::other("injected table sync failure"));
///     }
///     Ok(())
/// });
/// let table = fs.open_file("/1.sst".as_ref(), OpenMode::CreateNew).unwrap();
/// assert!(table.sync_data().is_err());
/// let other = fs.open_file("/1.log".as_ref(), OpenMode::CreateNew).unwrap();
/// assert!(other.sync_data().is_ok());
/// ```
#[derive(Clone)]
pub struct InterceptFs {
    inner: Arc<dyn FileSystem>,
    hook: Arc<Hook>,
}

impl InterceptFs {
    /// Wraps `inner`; `hook` is asked before each operation.
    pub fn new(
        inner: Arc<dyn FileSystem>,
        hook: impl Fn(&Op<'_>) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        InterceptFs {
            inner,
            hook: Arc::new(hook),
        }
    }

    /// The wrapped file system.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn FileSystem> {
        &self.inner
    }

    fn ask(&self, kind: OpKind, path: &Path, to: Option<&Path>) -> io::Result<()> {
        (self.hook)(&Op { kind, path, to })
    }

    /// Asks the hook about `kind` on `path`, then runs `op` on the wrapped
    /// file system.
    fn pass<T>(
        &self,
        kind: OpKind,
        path: &Path,
        op: impl FnOnce(&dyn FileSystem) -> io::Result<T>,
    ) -> io::Result<T> {
        self.ask(kind, path, None)?;
        op(self.inner.as_ref())
    }
}

impl fmt::Debug for InterceptFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterceptFs")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A file opened through an [`InterceptFs`].
struct InterceptFile {
    inner: Arc<dyn File>,
    path: PathBuf,
    hook: Arc<Hook>,
}

impl InterceptFile {
    /// Asks the hook about `kind` on this file, then runs `op` on the
    /// wrapped file.
    fn pass<T>(&self, kind: OpKind, op: impl FnOnce(&dyn File) -> io::Result<T>) -> io::Result<T> {
        (self.hook)(&Op {
            kind,
            path: &self.path,
            to: None,
        })?;
        op(self.inner.as_ref())
    }
}

impl fmt::Debug for InterceptFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterceptFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl File for InterceptFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.pass(OpKind::Read, |f| f.read_at(buf, offset))
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.pass(OpKind::Write, |f| f.write_all_at(buf, offset))
    }
    fn sync_data(&self) -> io::Result<()> {
        self.pass(OpKind::SyncData, |f| f.sync_data())
    }
    /// A hint, not an operation a hook sees: it changes nothing a crash
    /// could keep or lose.
    fn start_writeback(&self, offset: u64, len_bytes: u64) -> io::Result<()> {
        self.inner.start_writeback(offset, len_bytes)
    }
    fn len(&self) -> io::Result<u64> {
        self.pass(OpKind::Len, |f| f.len())
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.pass(OpKind::SetLen, |f| f.set_len(len_bytes))
    }
    fn allocate(&self, offset: u64, len_bytes: u64) -> io::Result<bool> {
        self.pass(OpKind::Allocate, |f| f.allocate(offset, len_bytes))
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.pass(OpKind::Read, |f| f.read_exact_at(buf, offset))
    }
}

impl FileSystem for InterceptFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        self.ask(OpKind::Open(mode), path, None)?;
        Ok(Arc::new(InterceptFile {
            inner: self.inner.open_file(path, mode)?,
            path: path.to_path_buf(),
            hook: Arc::clone(&self.hook),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.pass(OpKind::CreateDirAll, path, |fs| fs.create_dir_all(path))
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.pass(OpKind::ListDir, path, |fs| fs.list_dir(path))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.pass(OpKind::RemoveFile, path, |fs| fs.remove_file(path))
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.pass(OpKind::RemoveDir, path, |fs| fs.remove_dir(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.ask(OpKind::Rename, from, Some(to))?;
        self.inner.rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.ask(OpKind::HardLink, from, Some(to))?;
        self.inner.hard_link(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.pass(OpKind::SyncDir, path, |fs| fs.sync_dir(path))
    }
    fn kind(&self, path: &Path) -> io::Result<Option<PathKind>> {
        self.pass(OpKind::Stat, path, |fs| fs.kind(path))
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        self.pass(OpKind::Lock, path, |fs| fs.lock(path))
    }
    fn entry_kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        self.pass(OpKind::Stat, path, |fs| fs.entry_kind(path))
    }
    fn resolve_links(&self, path: &Path) -> io::Result<PathBuf> {
        self.pass(OpKind::Stat, path, |fs| fs.resolve_links(path))
    }
}
