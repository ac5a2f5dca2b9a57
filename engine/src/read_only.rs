//! [`ReadOnlyDb`]: a store opened for reading only, as RocksDB's
//! `DB::OpenForReadOnly`.
//!
//! Opening reads the manifest and the tables it lists, and replays the
//! changelog from the flushed offset into a memtable in memory (a torn
//! tail is left out in memory, not cut on disk). Nothing is written,
//! truncated, renamed or deleted, and the store's recorded options (its
//! TTL) apply without being given. While the handle lives it holds the
//! store's lock, so no writer changes the files under it; a store another
//! process has open is refused with [`Error::Locked`].

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use varve_changelog::fs::PathKind;

use bytes::Bytes;
use varve_changelog::fs::{DirLock, FileSystem, OpenMode};
use varve_changelog::read_only::{ReadOnlyEnd, read_records};

use crate::cache::BlockCache;
use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::iter::bounds::{bounds_of, prefix_bounds};
use crate::iter::db_iter::Iter;
use crate::iter::level::TableOpener;
use crate::key::SeqNo;
use crate::memtable::MemTable;
use crate::open::{CHANGELOG_DIR, LOCK_FILE};
use crate::options::{Compression, Options};
use crate::read_path::ReadSources;
use crate::sst::Table;
use crate::table_cache::TableCache;
use crate::ttl::{Expiry, ValueFormat};
use crate::version::{FileNumber, Level, Version, table_file_name};
use crate::write::insert_all;

/// A store opened for reading only: gets and ordered ranges over the view
/// the store had when it was opened. It has no write methods.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let db = varve_db::Db::open(dir.path(), varve_db::Options::default())?;
/// db.put("fruit:kiwi", "green")?;
/// db.close()?;
/// let ro = varve_db::ReadOnlyDb::open(dir.path(), varve_db::Options::default())?;
/// assert_eq!(ro.get("fruit:kiwi")?.as_deref(), Some(&b"green"[..]));
/// assert_eq!(ro.prefix("fruit:").count(), 1);
/// # Ok(()) }
/// ```
pub struct ReadOnlyDb {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    fs: Arc<dyn FileSystem>,
    version: Arc<Version>,
    mem: Arc<MemTable>,
    seqno: SeqNo,
    ttl: Option<Duration>,
    opts: Options,
    changelog: ReadOnlyEnd,
    tables: TableCache,
    block_cache: Option<Arc<BlockCache>>,
    _lock: Option<Box<dyn DirLock>>,
}

impl std::fmt::Debug for ReadOnlyDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyDb")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyDb {
    /// Opens the store in `path` for reading. Of `opts`, the cache sizes and
    /// the clock apply; the TTL is the one the store recorded (a `ttl` in
    /// `opts` overrides its duration for this reader). Never creates a
    /// store.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// use std::sync::Arc;
    /// use varve_db::varve_changelog::fs::{FileSystem, MemFs};
    /// let fs: Arc<dyn FileSystem> = Arc::new(MemFs::new());
    /// let db = varve_db::Db::open("/store", varve_db::Options::default().fs(fs.clone()))?;
    /// db.put("k", "v")?;
    /// db.close()?;
    /// let ro = varve_db::ReadOnlyDb::open("/store", varve_db::Options::default().fs(fs))?;
    /// assert_eq!(ro.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotAStore`] if `path` is missing or holds no store (a
    /// partitioned store's root says so), [`Error::Locked`] if another
    /// process has the store open, [`Error::RestoreIncomplete`],
    /// [`Error::IncompatibleOptions`] for a TTL given to a plain store,
    /// [`Error::Corruption`] for damage that [`Db::open`](crate::Db::open)
    /// would refuse too, I/O errors.
    pub fn open(path: impl AsRef<Path>, mut opts: Options) -> Result<ReadOnlyDb> {
        let fs = opts.fs.clone();
        let path = path.as_ref();
        opts.validate()?;
        check_store_dir(fs.as_ref(), path)?;
        let lock = lock_if_present(fs.as_ref(), path)?;
        let version = Arc::new(crate::version::read_version(fs.as_ref(), path)?);
        opts.ttl = recorded_ttl(path, &version, opts.ttl)?;
        let format = if opts.ttl.is_some() {
            ValueFormat::Timestamped
        } else {
            ValueFormat::Plain
        };
        let flushed = version.flushed_offset();
        let mem = Arc::new(MemTable::new(0));
        let log_dir = path.join(CHANGELOG_DIR);
        let changelog = read_records(fs.as_ref(), &log_dir, flushed, |r| {
            insert_all(&mem, std::slice::from_ref(&r.record), r.offset, format);
            Ok(())
        })?;
        check_flushed_offset(&log_dir, flushed, &changelog)?;
        if let Some((segment, byte, bytes, what)) = &changelog.torn_tail {
            tracing::warn!(segment = %segment.display(), byte, bytes, %what,
                "read-only open leaves out a torn changelog tail (opening for writing would cut it)");
        }
        let seqno = SeqNo(changelog.next_offset.max(version.last_seqno().0));
        let inner = Inner {
            path: path.to_owned(),
            fs,
            version,
            mem,
            seqno,
            ttl: opts.ttl,
            tables: TableCache::new(opts.max_open_tables),
            block_cache: crate::shared::block_cache_of(&opts),
            opts,
            changelog,
            _lock: lock,
        };
        Ok(ReadOnlyDb {
            inner: Arc::new(inner),
        })
    }

    /// The value of `key`, or `None` if it is absent, deleted or expired.
    ///
    /// # Errors
    /// I/O or corruption errors from the tables.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.inner.get(key.as_ref())
    }

    /// The entries whose keys lie in `range`, in key order; `.rev()` for
    /// reverse order.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let (lower, upper) = bounds_of(&range);
        self.inner.iter(lower, upper)
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        self.inner.iter(lower, upper)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The sequence number of the newest write in the view.
    pub fn latest_seqno(&self) -> u64 {
        self.inner.seqno.0
    }

    /// How far the changelog was read, and the torn tail left out, if any.
    pub fn changelog_end(&self) -> &ReadOnlyEnd {
        &self.inner.changelog
    }
}

impl crate::db::Db {
    /// Opens the store in `path` for reading only, as RocksDB's
    /// `DB::OpenForReadOnly`: nothing is written, and the store's recorded
    /// TTL applies without being given (see [`ReadOnlyDb`]).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// varve_db::Db::open(dir.path(), varve_db::Options::default())?.put("k", "v")?;
    /// let ro = varve_db::Db::open_read_only(dir.path(), varve_db::Options::default())?;
    /// assert_eq!(ro.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`ReadOnlyDb::open`].
    pub fn open_read_only(path: impl AsRef<Path>, opts: Options) -> Result<ReadOnlyDb> {
        ReadOnlyDb::open(path, opts)
    }
}

impl Options {
    /// The options a writer should open the store in `dir` with to keep
    /// what the store recorded: these options (read through their file
    /// system) with the store's TTL, and the compression of its newest table (compression is not
    /// recorded in the manifest; a store without tables gets
    /// [`Compression::None`], as does one whose newest table cannot be
    /// read). Reads the manifest and one table's properties; writes
    /// nothing.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::time::Duration;
    /// let ttl = Some(Duration::from_secs(60));
    /// let opts = varve_db::Options::default().ttl(ttl).compression(varve_db::Compression::Lz4);
    /// let db = varve_db::Db::open(dir.path(), opts)?;
    /// db.put("k", "v".repeat(100))?;
    /// db.flush()?;
    /// db.close()?;
    /// let recorded = varve_db::Options::default().recorded(dir.path())?;
    /// assert_eq!((recorded.ttl, recorded.compression), (ttl, varve_db::Compression::Lz4));
    /// varve_db::Db::open(dir.path(), recorded)?; // no IncompatibleOptions
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`ReadOnlyDb::open`], without its changelog and table checks.
    pub fn recorded(self, dir: impl AsRef<Path>) -> Result<Options> {
        let fs = self.fs.as_ref();
        let dir = dir.as_ref();
        check_store_dir(fs, dir)?;
        let _lock = lock_if_present(fs, dir)?;
        let version = crate::version::read_version(fs, dir)?;
        let newest = Level::all()
            .flat_map(|l| version.tables(l).iter())
            .map(|t| t.number)
            .max();
        let compression = match newest {
            Some(number) => table_compression(fs, dir, number),
            None => Compression::None,
        };
        Ok(self
            .ttl(version.ttl_ms().map(Duration::from_millis))
            .compression(compression))
    }
}

/// The compression table `number` was written with; a table that cannot
/// be read counts as uncompressed (compression is a preference for new
/// tables, not a format: each block records its own), so that a damaged
/// table does not stop a writer that would never read it.
fn table_compression(fs: &dyn FileSystem, dir: &Path, number: FileNumber) -> Compression {
    let path = dir.join(table_file_name(number));
    let Ok(file) = fs.open_file(&path, OpenMode::Read) else {
        return Compression::None;
    };
    match Table::open(file, path, number.0) {
        Ok(table) if table.properties().compression == "lz4" => Compression::Lz4,
        _ => Compression::None,
    }
}

/// Refuses what is not a store, without creating anything.
fn check_store_dir(fs: &dyn FileSystem, path: &Path) -> Result<()> {
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_owned(),
        reason,
    };
    match fs.kind(path).map_err(|e| Error::io("stat", path, e))? {
        None => return Err(not_a_store("the directory does not exist".into())),
        Some(PathKind::File) => return Err(not_a_store("it is a file".into())),
        Some(PathKind::Dir) => {}
    }
    if crate::restore::marker::is_restoring(fs, path)? {
        return Err(Error::RestoreIncomplete {
            path: path.to_owned(),
        });
    }
    if crate::version::VersionSet::exists(fs, path)? {
        return Ok(());
    }
    let partitions = path.join(crate::partitioned::PARTITIONS_FILE);
    if fs
        .kind(&partitions)
        .map_err(|e| Error::io("stat", &partitions, e))?
        .is_some()
    {
        let n = crate::partitioned::read_partitions_file(fs, path)?;
        return Err(not_a_store(format!(
            "it is the root of a partitioned store ({n} partitions): open one of its \
             partition directories, {}",
            crate::partitioned::partition_dir(path, 0).display()
        )));
    }
    Err(not_a_store("it has no CURRENT file".into()))
}

/// Takes the store's lock if its lock file exists (no file is created; a
/// store without one is open nowhere). The lock is held, not written.
fn lock_if_present(fs: &dyn FileSystem, path: &Path) -> Result<Option<Box<dyn DirLock>>> {
    let lock_path = path.join(LOCK_FILE);
    if fs
        .kind(&lock_path)
        .map_err(|e| Error::io("stat", &lock_path, e))?
        .is_none()
    {
        return Ok(None);
    }
    match fs.lock(&lock_path) {
        Ok(lock) => Ok(Some(lock)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::Locked {
            path: path.to_owned(),
        }),
        Err(e) => Err(Error::io("lock", lock_path, e)),
    }
}

/// The TTL a reader applies: the recorded one, or `given`'s duration for a
/// TTL store; a TTL given to a plain store is refused.
fn recorded_ttl(
    path: &Path,
    version: &Version,
    given: Option<Duration>,
) -> Result<Option<Duration>> {
    match (version.ttl_ms(), given) {
        (None, None) => Ok(None),
        (Some(_), Some(given)) => Ok(Some(given)),
        (Some(ms), None) => Ok(Some(Duration::from_millis(ms))),
        (None, Some(given)) => Err(Error::IncompatibleOptions {
            path: path.to_owned(),
            option: "ttl",
            stored: "none".into(),
            given: format!("{} ms", crate::ttl::ttl_ms(given)),
        }),
    }
}

/// Refuses a flushed offset outside the changelog's range, as opening for
/// writing does.
fn check_flushed_offset(log_dir: &Path, flushed: u64, end: &ReadOnlyEnd) -> Result<()> {
    if flushed < end.log_start_offset || flushed > end.next_offset {
        let what = format!(
            "the manifest's flushed offset {flushed} is outside the changelog's range [{}, {}]",
            end.log_start_offset, end.next_offset
        );
        return Err(Error::corruption(log_dir, 0, what));
    }
    Ok(())
}

impl Inner {
    fn expiry(&self) -> Option<Expiry> {
        let ttl = self.ttl?;
        Some(Expiry {
            ttl_ms: crate::ttl::ttl_ms(ttl),
            now_ms: self.opts.clock.now_ms(),
        })
    }

    fn table(&self, number: FileNumber) -> Result<Arc<Table>> {
        crate::table_cache::open_table(
            &self.tables,
            self.fs.as_ref(),
            &self.path,
            number,
            self.block_cache.as_ref(),
        )
    }

    fn sources<'a>(
        &'a self,
        table: &'a dyn Fn(FileNumber) -> Result<Arc<Table>>,
    ) -> ReadSources<'a> {
        ReadSources {
            mem: &self.mem,
            imm: &[],
            version: &self.version,
            table,
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        crate::batch::check_key(key)?;
        let table = |n| self.table(n);
        let found = self
            .sources(&table)
            .versioned(key, self.seqno, self.expiry(), &self.path)?;
        Ok(found.map(|f| f.value))
    }

    fn children(self: &Arc<Self>) -> Vec<Box<dyn InternalIterator>> {
        let table = |n| self.table(n);
        let inner = Arc::clone(self);
        let open: TableOpener = Arc::new(move |n| inner.table(n));
        self.sources(&table).children(&open)
    }

    fn iter(self: &Arc<Self>, lower: Bound<Bytes>, upper: Bound<Bytes>) -> Iter {
        let ttl = self.expiry().map(|e| (e, self.path.clone()));
        let inner = self.clone();
        Iter::merging(lower, upper, self.seqno, ttl, move || inner.children())
    }
}
