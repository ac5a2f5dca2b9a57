//! [`PartitionedStore`]: N stores, one per partition, with keys routed by
//! Kafka's default partitioner, as a Samza job or a Kafka Streams app
//! keeps one state store per input partition.
//!
//! Layout of a partitioned store's directory `dir`:
//!
//! ```text
//! dir/PARTITIONS          the partition count (docs/format/partitions.md)
//! dir/LOCK                held while the partitioned store is open
//! dir/partition-00000/    partition 0: an ordinary store (its own changelog)
//! dir/partition-00001/    partition 1
//! ...
//! ```
//!
//! Partition directories are named `partition-{p:05}` so `ls` lists them in
//! partition order. The partition count is fixed at creation: routing
//! depends on it, so reopening with another count would read every key from
//! the wrong partition. It is refused with
//! [`Error::IncompatibleOptions`].

use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use varve_changelog::fs::PathKind;

use bytes::Bytes;
use varve_changelog::fs::{DirLock, FileSystem, OpenMode};
use varve_changelog::partitioner::partition_for_key;

use crate::batch::{BatchOp, WriteBatch};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::iter::bounds::{bounds_of, prefix_bounds};
use crate::iter::db_iter::{Iter, KeyValue};
use crate::options::{Options, WriteOptions};
use crate::shared::{SharedOptions, SharedResources};
use std::sync::Arc;

/// The file recording the partition count.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
/// assert_eq!(std::fs::read(dir.path().join(varve_db::PARTITIONS_FILE)).unwrap().len(), 20);
/// # Ok(()) }
/// ```
pub const PARTITIONS_FILE: &str = "PARTITIONS";
/// The magic bytes starting [`PARTITIONS_FILE`].
const MAGIC: [u8; 8] = *b"VRVPARTS";
/// The format version of [`PARTITIONS_FILE`] this build writes and reads.
const FORMAT_VERSION: u32 = 1;
/// magic (8) + version (4) + count (4) + crc (4).
const FILE_SIZE_BYTES: usize = 20;
const _: () = assert!(FILE_SIZE_BYTES == MAGIC.len() + 4 + 4 + 4);
/// The most partitions a store may have (Kafka topics rarely exceed a few
/// thousand; each partition is a full store with its own changelog).
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let too_many = varve_db::PartitionedStore::open(dir.path(), varve_db::MAX_PARTITIONS + 1, varve_db::Options::default());
/// assert!(matches!(too_many, Err(varve_db::Error::InvalidArgument(_))));
/// ```
pub const MAX_PARTITIONS: u32 = 10_000;

/// The directory of partition `p` inside a partitioned store's `dir`.
///
/// # Examples
/// ```
/// let p = varve_db::partition_dir(std::path::Path::new("/data/store"), 3);
/// assert_eq!(p, std::path::Path::new("/data/store/partition-00003"));
/// ```
#[must_use]
pub fn partition_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("partition-{partition:05}"))
}

/// A store split into `N` partitions, each an independent [`Db`] with its
/// own changelog, keys routed with Kafka's default partitioner
/// ([`partition_for_key`]), so partition `p` holds exactly the keys a
/// Kafka producer would send to partition `p` of the changelog topic.
///
/// The partitions share one memory and thread budget
/// ([`SharedResources`]): by default one made from the [`Options`] given,
/// as much as one store of those options would use (a block cache of
/// `cache_size_bytes`, memtables of at most `memtable_size_bytes *
/// (1 + max_immutable_memtables)` together, one flush thread and
/// `compaction_threads` compaction threads), however many partitions
/// there are; or the caller's own, given with
/// [`Options::shared_resources`] (which may also serve other stores).
/// The other options apply to every partition.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use varve_db::{PartitionedStore, Options};
/// let store = PartitionedStore::open(dir.path(), 4, Options::default())?;
/// store.put("user:1", "ada")?;
/// store.put("user:2", "grace")?;
/// let p = store.partition_for("user:1");
/// assert_eq!(store.partition(p).get("user:1")?.as_deref(), Some(&b"ada"[..]));
/// let keys: Vec<_> = store.iter().map(|kv| kv.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, vec![bytes::Bytes::from("user:1"), bytes::Bytes::from("user:2")]);
/// store.close()?;
/// # Ok(()) }
/// ```
pub struct PartitionedStore {
    dir: PathBuf,
    partitions: Vec<Db>,
    shared: Arc<SharedResources>,
    _lock: Box<dyn DirLock>,
}

impl std::fmt::Debug for PartitionedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionedStore")
            .field("dir", &self.dir)
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

impl PartitionedStore {
    /// Opens the partitioned store in `dir` with `num_partitions`
    /// partitions, creating it if `dir` is missing or empty (and
    /// `opts.create_if_missing` is on). In an existing store, a missing
    /// partition directory is created empty if `opts.create_if_missing`
    /// is on (it completes a creation that crashed midway) and refused
    /// with [`Error::NotAStore`] otherwise.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
    /// store.close()?;
    /// let wrong = varve_db::PartitionedStore::open(dir.path(), 3, varve_db::Options::default());
    /// assert!(matches!(wrong, Err(varve_db::Error::IncompatibleOptions { .. })));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `num_partitions` is 0 or above
    /// [`MAX_PARTITIONS`]; [`Error::IncompatibleOptions`] if the store was
    /// created with another count; [`Error::Corruption`] if the
    /// `PARTITIONS` file is damaged; [`Error::NotAStore`] if `dir` holds
    /// something else (no `PARTITIONS` file); [`Error::Locked`]; and every
    /// error of [`Db::open`] for a partition.
    pub fn open(
        dir: impl AsRef<Path>,
        num_partitions: u32,
        opts: Options,
    ) -> Result<PartitionedStore> {
        let fs = opts.fs.clone();
        let dir = dir.as_ref();
        if num_partitions == 0 || num_partitions > MAX_PARTITIONS {
            return Err(Error::InvalidArgument(format!(
                "num_partitions must be between 1 and {MAX_PARTITIONS}, not {num_partitions}"
            )));
        }
        let exists = prepare_dir(fs.as_ref(), dir, opts.create_if_missing)?;
        let lock = lock_and_check_count(fs.as_ref(), dir, num_partitions, exists)?;
        let mut partitions = Vec::with_capacity(num_partitions as usize);
        // A new store creates its partitions. In an existing one a missing
        // partition (a creation that crashed midway, or a deleted
        // directory) is created empty only if `create_if_missing` is on.
        let create = !exists || opts.create_if_missing;
        let shared = match &opts.shared {
            Some(shared) => Arc::clone(shared),
            None => SharedResources::new(SharedOptions::like_one_store(&opts))?,
        };
        let opts = opts.shared_resources(Arc::clone(&shared));
        for p in 0..num_partitions {
            let opts = opts.clone().create_if_missing(create);
            partitions.push(Db::open(partition_dir(dir, p), opts)?);
        }
        Ok(PartitionedStore {
            dir: dir.to_owned(),
            partitions,
            shared,
            _lock: lock,
        })
    }

    /// The memory and thread budget the partitions share.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let opts = varve_db::Options::default().compaction_threads(2);
    /// let store = varve_db::PartitionedStore::open(dir.path(), 8, opts)?;
    /// // One flush thread and two compaction threads for all 8 partitions.
    /// assert_eq!(store.shared_resources().thread_count(), 3);
    /// assert_eq!(store.shared_resources().store_count(), 8);
    /// # Ok(()) }
    /// ```
    pub fn shared_resources(&self) -> &Arc<SharedResources> {
        &self.shared
    }

    /// The number of partitions.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 3, varve_db::Options::default())?;
    /// assert_eq!(store.num_partitions(), 3);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn num_partitions(&self) -> u32 {
        // At most MAX_PARTITIONS, checked on open.
        self.partitions.len() as u32
    }

    /// The store's directory.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 1, varve_db::Options::default())?;
    /// assert_eq!(store.path(), dir.path());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The store of partition `p` (for its changelog, snapshots, stats …).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
    /// store.put("k", "v")?;
    /// let p = store.partition_for("k");
    /// assert_eq!(store.partition(p).latest_seqno(), 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    /// If `p >= num_partitions()`.
    #[must_use]
    pub fn partition(&self, p: u32) -> &Db {
        &self.partitions[p as usize]
    }

    /// The partition `key` belongs to:
    /// `partition_for_key(key, num_partitions)`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use varve_db::varve_changelog::partitioner::partition_for_key;
    /// let store = varve_db::PartitionedStore::open(dir.path(), 5, varve_db::Options::default())?;
    /// assert_eq!(store.partition_for("foobar"), partition_for_key(b"foobar", 5));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn partition_for(&self, key: impl AsRef<[u8]>) -> u32 {
        partition_for_key(key.as_ref(), self.num_partitions())
    }

    fn db_for(&self, key: &[u8]) -> &Db {
        self.partition(self.partition_for(key))
    }

    /// The value of `key`, read from its partition.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
    /// assert_eq!(store.get("missing")?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.db_for(key.as_ref()).get(key)
    }

    /// Sets `key` to `value` in its partition.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
    /// store.put("k", "v")?;
    /// assert_eq!(store.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<()> {
        let key = key.into();
        self.db_for(&key).put(key.clone(), value)
    }

    /// Deletes `key` from its partition.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
    /// store.put("k", "v")?;
    /// store.delete("k")?;
    /// assert_eq!(store.get("k")?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Db::delete`].
    pub fn delete(&self, key: impl Into<Bytes>) -> Result<()> {
        let key = key.into();
        self.db_for(&key).delete(key.clone())
    }

    /// Applies `batch`, split by partition: each partition's share is one
    /// atomic batch of that partition, written in partition order.
    ///
    /// **A batch spanning partitions is atomic per partition only**: after
    /// a crash, or if one partition's write fails, some partitions may hold
    /// their share and others not (as with a Kafka producer writing to
    /// several partitions without transactions). Within a partition the
    /// order of operations is kept.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use varve_db::{PartitionedStore, Options, WriteBatch, WriteOptions};
    /// let store = PartitionedStore::open(dir.path(), 3, Options::default())?;
    /// let mut batch = WriteBatch::new();
    /// batch.put("a", "1").put("b", "2").delete("a");
    /// store.write(batch, WriteOptions::default().sync(true))?;
    /// assert_eq!(store.get("a")?, None);
    /// assert_eq!(store.get("b")?.as_deref(), Some(&b"2"[..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first partition's error, as [`Db::write`]; partitions before it
    /// have applied their share, partitions after it have not.
    pub fn write(&self, batch: WriteBatch, opts: WriteOptions) -> Result<()> {
        batch.validate()?;
        let mut shares: Vec<WriteBatch> = (0..self.partitions.len())
            .map(|_| WriteBatch::new())
            .collect();
        for op in batch.ops {
            let p = self.partition_for(op.key()) as usize;
            match op {
                BatchOp::Put(k, v) => shares[p].put(k, v),
                BatchOp::Delete(k) => shares[p].delete(k),
            };
        }
        for (db, share) in self.partitions.iter().zip(shares) {
            if !share.is_empty() {
                db.write(share, opts)?;
            }
        }
        Ok(())
    }

    /// The entries in `range` across all partitions, merged in key order
    /// (forward only). Each partition is read at the moment the iterator
    /// is created, but the partitions are not read at one common instant.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 4, varve_db::Options::default())?;
    /// for k in ["a", "b", "c", "d"] { store.put(k, k)?; }
    /// let keys: Vec<_> = store.range("b".."d").map(|kv| kv.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, vec![bytes::Bytes::from("b"), bytes::Bytes::from("c")]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The iterator yields `Err` (and then ends) if a partition fails.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> PartitionedIter {
        let bounds = bounds_of(&range);
        self.merged(&bounds)
    }

    /// The entries whose keys start with `prefix`, across all partitions,
    /// in key order.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 4, varve_db::Options::default())?;
    /// store.put("x:1", "")?;
    /// store.put("y:1", "")?;
    /// assert_eq!(store.prefix("x:").count(), 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`PartitionedStore::range`].
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> PartitionedIter {
        self.merged(&prefix_bounds(prefix.as_ref()))
    }

    /// Every entry of every partition, in key order.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 4, varve_db::Options::default())?;
    /// assert_eq!(store.iter().count(), 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`PartitionedStore::range`].
    pub fn iter(&self) -> PartitionedIter {
        self.merged(&(Bound::Unbounded, Bound::Unbounded))
    }

    fn merged(&self, bounds: &(Bound<Bytes>, Bound<Bytes>)) -> PartitionedIter {
        let iters = self
            .partitions
            .iter()
            .map(|db| db.range::<Bytes, _>(bounds.clone()))
            .collect();
        PartitionedIter::new(iters)
    }

    /// Each partition's metrics, in partition order (see [`Db::metrics`]).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 3, varve_db::Options::default())?;
    /// store.put("k", "v")?;
    /// let puts: u64 = store.metrics().iter().map(|m| m.puts.count).sum();
    /// assert_eq!(puts, 1);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn metrics(&self) -> Vec<crate::Metrics> {
        self.partitions.iter().map(Db::metrics).collect()
    }

    /// Flushes every partition (see [`Db::flush`]).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
    /// store.put("k", "v")?;
    /// store.flush()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first partition's error; later partitions are still flushed.
    pub fn flush(&self) -> Result<()> {
        first_error(self.partitions.iter().map(Db::flush))
    }

    /// Closes every partition (see [`Db::close`]), then releases the lock.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
    /// store.close()?;
    /// let again = varve_db::PartitionedStore::open(dir.path(), 2, varve_db::Options::default())?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The first partition's error; every partition is closed regardless.
    pub fn close(self) -> Result<()> {
        let PartitionedStore {
            partitions, _lock, ..
        } = self;
        first_error(partitions.into_iter().map(Db::close))
    }
}

fn first_error(results: impl Iterator<Item = Result<()>>) -> Result<()> {
    let mut first = Ok(());
    for r in results {
        if first.is_ok() {
            first = r;
        }
    }
    first
}

/// Locks the partitioned store in `dir`, then checks its partition count
/// (`exists`) or writes it (a new store).
pub(crate) fn lock_and_check_count(
    fs: &dyn FileSystem,
    dir: &Path,
    num_partitions: u32,
    exists: bool,
) -> Result<Box<dyn DirLock>> {
    let lock = fs
        .lock(&dir.join(crate::LOCK_FILE))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked {
                path: dir.to_owned(),
            },
            _ => Error::io("lock", dir.join(crate::LOCK_FILE), e),
        })?;
    if exists {
        let stored = read_partitions_file(fs, dir)?;
        if stored != num_partitions {
            return Err(Error::IncompatibleOptions {
                path: dir.to_owned(),
                option: "partitions",
                stored: stored.to_string(),
                given: num_partitions.to_string(),
            });
        }
    } else {
        write_partitions_file(fs, dir, num_partitions)?;
    }
    Ok(lock)
}

/// Whether `dir` already holds a partitioned store; creates it if missing.
pub(crate) fn prepare_dir(fs: &dyn FileSystem, dir: &Path, create: bool) -> Result<bool> {
    let not_a_store = |reason: &str| Error::NotAStore {
        path: dir.to_owned(),
        reason: reason.to_owned(),
    };
    match fs.kind(dir).map_err(|e| Error::io("stat", dir, e))? {
        Some(PathKind::File) => return Err(not_a_store("it is a file")),
        None if create => {
            // Durably: a new directory's name survives power loss only
            // once its parent is synced.
            varve_changelog::fs::create_dir_all_durably(fs, dir)
                .map_err(|e| Error::io("create directory", dir, e))?;
            return Ok(false);
        }
        None => {
            return Err(not_a_store(
                "the directory does not exist and create_if_missing is off",
            ));
        }
        Some(PathKind::Dir) => {}
    }
    let names = fs
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    if names.iter().any(|n| n == PARTITIONS_FILE) {
        return Ok(true);
    }
    // The PARTITIONS file is written (and synced) before any partition, so
    // a directory without it holds no partitioned store, or a creation that
    // crashed before anything but the lock and the temporary file existed.
    let tmp = format!("{PARTITIONS_FILE}.tmp");
    if names.iter().all(|n| n == crate::LOCK_FILE || *n == tmp) {
        if !create {
            return Err(not_a_store(
                "the directory is empty and create_if_missing is off",
            ));
        }
        return Ok(false);
    }
    Err(not_a_store(&format!(
        "it holds {} entries but no {PARTITIONS_FILE} file",
        names.len()
    )))
}

/// The encoded `PARTITIONS` file (see `docs/format/partitions.md`).
fn encode_partitions(num_partitions: u32) -> [u8; FILE_SIZE_BYTES] {
    let mut buf = [0u8; FILE_SIZE_BYTES];
    buf[0..8].copy_from_slice(&MAGIC);
    buf[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf[12..16].copy_from_slice(&num_partitions.to_le_bytes());
    let crc = crc32fast::hash(&buf[0..16]);
    buf[16..20].copy_from_slice(&crc.to_le_bytes());
    buf
}

/// Decodes a `PARTITIONS` file; `Err(what, offset)` on damage.
fn decode_partitions(buf: &[u8]) -> std::result::Result<u32, (String, u64)> {
    if buf.len() != FILE_SIZE_BYTES {
        return Err((
            format!("file is {} bytes, expected {FILE_SIZE_BYTES}", buf.len()),
            0,
        ));
    }
    let le32 = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let crc = crc32fast::hash(&buf[0..16]);
    if crc != le32(16) {
        return Err((
            format!(
                "checksum mismatch: stored {:#010x}, computed {crc:#010x}",
                le32(16)
            ),
            16,
        ));
    }
    if buf[0..8] != MAGIC {
        return Err(("bad magic".to_owned(), 0));
    }
    let count = le32(12);
    if count == 0 || count > MAX_PARTITIONS {
        return Err((format!("partition count {count} out of range"), 12));
    }
    Ok(count)
}

/// Reads and checks the `PARTITIONS` file of `dir`, as
/// [`PartitionedStore::open`] does, and returns the partition count.
/// Public (hidden) only so the fuzz targets and bit-flip tests can reach
/// the decoder; not part of the API.
///
/// # Errors
/// [`Error::Io`]; [`Error::Corruption`] for a wrong length, checksum,
/// magic or count; [`Error::UnsupportedVersion`].
#[doc(hidden)]
pub fn read_partitions_file(fs: &dyn FileSystem, dir: &Path) -> Result<u32> {
    let path = dir.join(PARTITIONS_FILE);
    let file = fs
        .open_file(&path, OpenMode::Read)
        .map_err(|e| Error::io("open", &path, e))?;
    let len = file.len().map_err(|e| Error::io("stat", &path, e))?;
    if len != FILE_SIZE_BYTES as u64 {
        return Err(Error::corruption(
            &path,
            0,
            format!("file is {len} bytes, expected {FILE_SIZE_BYTES}"),
        ));
    }
    let mut buf = [0u8; FILE_SIZE_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file
            .read_at(&mut buf[filled..], filled as u64)
            .map_err(|e| Error::io("read", &path, e))?;
        if n == 0 {
            return Err(Error::corruption(&path, filled as u64, "file ends early"));
        }
        filled += n;
    }
    let version = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let count = decode_partitions(&buf).map_err(|(what, at)| Error::corruption(&path, at, what))?;
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(count)
}

/// Writes the file through a temporary file, then renames it into place
/// and syncs the directory, so it is whole or absent after a crash.
fn write_partitions_file(fs: &dyn FileSystem, dir: &Path, num_partitions: u32) -> Result<()> {
    let bytes = encode_partitions(num_partitions);
    debug_assert_eq!(decode_partitions(&bytes), Ok(num_partitions));
    let tmp = dir.join(format!("{PARTITIONS_FILE}.tmp"));
    let path = dir.join(PARTITIONS_FILE);
    let _ = fs.remove_file(&tmp);
    let file = fs
        .open_file(&tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all_at(&bytes, 0)
        .map_err(|e| Error::io("write", &tmp, e))?;
    file.sync_data().map_err(|e| Error::sync(&tmp, e))?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))
}

/// The merged, key-ordered iterator of a [`PartitionedStore`]: a k-way
/// merge of one [`Iter`] per partition (partitions hold disjoint keys).
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = varve_db::PartitionedStore::open(dir.path(), 3, varve_db::Options::default())?;
/// store.put("b", "2")?;
/// store.put("a", "1")?;
/// let mut it: varve_db::PartitionedIter = store.iter();
/// assert_eq!(it.next().transpose()?.map(|(k, _)| k), Some(bytes::Bytes::from("a")));
/// # Ok(()) }
/// ```
///
/// # Errors
/// Yields `Err` (and then ends) if a partition cannot be read.
pub struct PartitionedIter {
    iters: Vec<Iter>,
    heads: Vec<Option<KeyValue>>,
    /// An error met while refilling after an entry was taken: reported on
    /// the next call, so the entry is not lost.
    pending_error: Option<Error>,
    started: bool,
    done: bool,
}

impl std::fmt::Debug for PartitionedIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionedIter")
            .field("partitions", &self.iters.len())
            .finish_non_exhaustive()
    }
}

impl PartitionedIter {
    fn new(iters: Vec<Iter>) -> Self {
        let heads = iters.iter().map(|_| None).collect();
        PartitionedIter {
            iters,
            heads,
            pending_error: None,
            started: false,
            done: false,
        }
    }

    /// Refills head `i` from its partition.
    fn refill(&mut self, i: usize) -> Result<()> {
        self.heads[i] = self.iters[i].next().transpose()?;
        Ok(())
    }
}

impl Iterator for PartitionedIter {
    type Item = Result<KeyValue>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            return Some(Err(e));
        }
        if !self.started {
            self.started = true;
            for i in 0..self.iters.len() {
                if let Err(e) = self.refill(i) {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let smallest = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|(k, _)| (k, i)))
            .min()
            .map(|(_, i)| i);
        let Some(i) = smallest else {
            self.done = true;
            return None;
        };
        let item = self.heads[i].take();
        if let Err(e) = self.refill(i) {
            self.pending_error = Some(e);
        }
        item.map(Ok)
    }
}
