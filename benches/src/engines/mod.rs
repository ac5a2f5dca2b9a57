//! The stores the runner drives, behind one trait, [`KvEngine`].
//!
//! Varve is always built. Each peer is behind a cargo feature of the same
//! name (`rocksdb`, `fjall`, `sled`) so that the default build and CI need
//! none of them. How each peer is configured, and why, is written down in
//! `benches/README.md`.

#[cfg(feature = "fjall")]
pub mod fjall;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
#[cfg(feature = "sled")]
pub mod sled;
pub mod varve;
pub mod varve_partitioned;

use std::fmt;
use std::path::Path;

/// Every engine name the runner knows, built in or not.
pub const ENGINE_NAMES: &[&str] = &["varve", "rocksdb", "fjall", "sled"];

/// Why an engine call did not do its job.
#[derive(Debug)]
#[non_exhaustive]
pub enum EngineError {
    /// The engine has no such operation (for example a manual compaction);
    /// the runner reports the workload as skipped rather than inventing a
    /// figure.
    Unsupported(String),
    /// The engine failed: its own error, as text.
    Failed(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unsupported(what) => write!(f, "not supported: {what}"),
            EngineError::Failed(what) => write!(f, "engine error: {what}"),
        }
    }
}

impl std::error::Error for EngineError {}

/// The result of an engine call.
pub type Result<T> = std::result::Result<T, EngineError>;

/// Wraps any displayable engine error as [`EngineError::Failed`].
pub(crate) fn failed(error: impl fmt::Display) -> EngineError {
    EngineError::Failed(error.to_string())
}

/// One operation of a [`KvEngine::write_batch`].
#[derive(Clone, Copy, Debug)]
pub enum BatchOp<'a> {
    /// Set `key` to `value`.
    Put(&'a [u8], &'a [u8]),
    /// Remove `key`.
    Delete(&'a [u8]),
}

/// Settings every engine is opened with, so that the comparison is fair.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Block (or page) cache capacity in bytes.
    pub cache_size_bytes: usize,
    /// Varve only: open a partitioned store of this many partitions on
    /// one shared budget (`--partitions`).
    pub partitions: Option<u32>,
    /// Varve with `partitions` only: the shared write-buffer budget in
    /// bytes (`--write-buffer-size`); default one store's.
    pub write_buffer_size_bytes: Option<usize>,
}

/// A key-value store as the workloads see it. Every call that writes takes
/// `sync`: when true the write must be durable (survive power loss) when
/// the call returns; when false it must at least have reached the engine's
/// write-ahead log (in the OS page cache or the engine's own log buffer,
/// as documented per engine).
pub trait KvEngine: Send + Sync {
    /// The engine's name as given to `--engine`.
    fn name(&self) -> &'static str;
    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// The engine's write error.
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()>;
    /// The length of `key`'s value, or `None` if it is absent. (Engines
    /// return values in different types; the length is what every one can
    /// give without a copy.)
    ///
    /// # Errors
    /// The engine's read error.
    fn get(&self, key: &[u8]) -> Result<Option<usize>>;
    /// Removes `key`.
    ///
    /// # Errors
    /// The engine's write error.
    fn delete(&self, key: &[u8], sync: bool) -> Result<()>;
    /// Applies `ops` atomically.
    ///
    /// # Errors
    /// The engine's write error.
    fn write_batch(&self, ops: &[BatchOp<'_>], sync: bool) -> Result<()>;
    /// Applies `ops` through the engine's fastest bulk-load path, as a
    /// state restore of Kafka Streams or Samza would (for RocksDB: the WAL
    /// off); durable only after [`flush`](Self::flush). By default an
    /// unsynced [`write_batch`](Self::write_batch).
    ///
    /// # Errors
    /// The engine's write error.
    fn bulk_write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()> {
        self.write_batch(ops, false)
    }
    /// Reads up to `limit` entries in key order from the first key
    /// `>= start`; returns the entries read and their key + value bytes.
    ///
    /// # Errors
    /// The engine's read error.
    fn scan(&self, start: &[u8], limit: usize) -> Result<(usize, u64)>;
    /// Visits every entry, in key order or (`reverse`) backwards, calling
    /// `visit` with each entry's key + value bytes.
    ///
    /// # Errors
    /// The engine's read error.
    fn scan_all(&self, reverse: bool, visit: &mut dyn FnMut(usize)) -> Result<()>;
    /// Makes everything written so far durable and, where the engine has
    /// one, writes the memtable out to a table.
    ///
    /// # Errors
    /// The engine's error.
    fn flush(&self) -> Result<()>;
    /// A full manual compaction of the whole key range.
    ///
    /// # Errors
    /// [`EngineError::Unsupported`] if the engine cannot compact on demand.
    fn compact(&self) -> Result<()>;
    /// The store's shape in a few words (tables per level, files), for the
    /// `compact` workload's report; `None` if the engine cannot tell.
    fn shape(&self) -> Option<String>;
    /// Closes the store, syncing what it must.
    ///
    /// # Errors
    /// The engine's error.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Opens (creating) engine `name` in `dir`.
///
/// # Errors
/// [`EngineError::Unsupported`] for an unknown engine or one whose cargo
/// feature is not enabled in this build; the engine's open error.
pub fn open(name: &str, dir: &Path, config: &EngineConfig) -> Result<Box<dyn KvEngine>> {
    match name {
        "varve" => match config.partitions {
            Some(n) => Ok(Box::new(varve_partitioned::VarvePartitionedEngine::open(
                dir, n, config,
            )?)),
            None => Ok(Box::new(varve::VarveEngine::open(dir, config)?)),
        },
        #[cfg(feature = "fjall")]
        "fjall" => Ok(Box::new(fjall::FjallEngine::open(dir, config)?)),
        #[cfg(feature = "sled")]
        "sled" => Ok(Box::new(sled::SledEngine::open(dir, config)?)),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Ok(Box::new(rocksdb::RocksDbEngine::open(dir, config)?)),
        known if ENGINE_NAMES.contains(&known) => Err(EngineError::Unsupported(format!(
            "engine {known} is not built in: rebuild with `--features {known}`"
        ))),
        other => Err(EngineError::Unsupported(format!(
            "unknown engine {other} (known: {})",
            ENGINE_NAMES.join(", ")
        ))),
    }
}

/// An item of an engine's iterator: a key and its value, or the
/// engine's error.
pub(crate) trait Entry {
    /// The entry's key + value bytes.
    fn size(self) -> Result<usize>;
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>, E: fmt::Display> Entry for std::result::Result<(K, V), E> {
    fn size(self) -> Result<usize> {
        let (key, value) = self.map_err(failed)?;
        Ok(key.as_ref().len() + value.as_ref().len())
    }
}

/// Reads `entries` (an engine's iterator, already limited) for
/// [`KvEngine::scan`]: how many there were and their key + value bytes.
pub(crate) fn count_entries(entries: impl Iterator<Item: Entry>) -> Result<(usize, u64)> {
    let (mut count, mut bytes) = (0, 0);
    visit_each(entries, &mut |size| {
        count += 1;
        bytes += size as u64;
    })?;
    Ok((count, bytes))
}

/// Calls `visit` with each entry's key + value bytes, stopping at the
/// first error.
pub(crate) fn visit_each(
    entries: impl Iterator<Item: Entry>,
    visit: &mut dyn FnMut(usize),
) -> Result<()> {
    for entry in entries {
        visit(entry.size()?);
    }
    Ok(())
}

/// [`KvEngine::scan_all`] over an engine's iterator of every entry that
/// can also run backwards.
pub(crate) fn visit_all(
    entries: impl DoubleEndedIterator<Item: Entry>,
    reverse: bool,
    visit: &mut dyn FnMut(usize),
) -> Result<()> {
    if reverse {
        visit_each(entries.rev(), visit)
    } else {
        visit_each(entries, visit)
    }
}

/// A [`KvEngine::shape`] from one description per non-empty level, or
/// `empty` when there is none.
pub(crate) fn levels_shape(levels: Vec<String>, empty: &str) -> String {
    if levels.is_empty() {
        empty.to_owned()
    } else {
        levels.join("; ")
    }
}

/// Calls `visit` with the path and metadata of every file under `dir`,
/// at any depth. Directories or files that vanish during the walk are
/// skipped.
pub fn for_each_file(dir: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                visit(&entry.path(), &meta);
            }
        }
    }
}

/// A summary of the files under `dir`: how many there are of each
/// extension and their total size, e.g. `"3 sst (12.1 MiB), 1 log (4.0 MiB)"`.
/// Engines without a level report of their own describe their shape so.
pub fn files_shape(dir: &Path) -> String {
    let mut by_ext = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for_each_file(dir, &mut |path, meta| {
        let ext = path
            .extension()
            .map_or_else(|| "other".to_owned(), |e| e.to_string_lossy().into_owned());
        let slot = by_ext.entry(ext).or_default();
        slot.0 += 1;
        slot.1 += meta.len();
    });
    by_ext
        .iter()
        .map(|(ext, (count, bytes))| {
            format!(
                "{count} {ext} ({:.1} MiB)",
                *bytes as f64 / (1 << 20) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
