//! Options of a [`Db`](crate::Db) and of its writes.

use std::sync::Arc;
use std::time::Duration;

use varve_changelog::fs::{FileSystem, StdFs};

/// The largest key the store accepts, in bytes.
pub const MAX_KEY_SIZE_BYTES: usize = 64 << 10;
/// The largest value the store accepts, in bytes.
pub const MAX_VALUE_SIZE_BYTES: usize = 8 << 20;

/// What the changelog keeps once its records are in tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangelogRetention {
    /// Plain write-ahead-log behaviour: segments wholly below the flushed
    /// offset are deleted.
    UntilFlushed,
    /// Like `UntilFlushed`, but also keep everything the named consumers
    /// (a Kafka shipper, a standby) have not committed yet.
    UntilShipped,
    /// Keep the latest record of every key (log compaction), so that the
    /// changelog alone can rebuild the store, like a compacted Kafka topic.
    /// Tombstones are kept for `tombstone_retention_ms`.
    Compact {
        /// How long the cleaner keeps a key's latest tombstone.
        tombstone_retention_ms: u64,
    },
}

/// Options for opening a [`Db`](crate::Db). Defaults are documented on each
/// field and given by [`Options::default`].
///
/// # Examples
/// ```
/// let opts = varve_db::Options::default().memtable_size_bytes(8 << 20);
/// assert_eq!(opts.block_size_bytes, 4096);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Create the store if the directory is missing or empty. Default true.
    pub create_if_missing: bool,
    /// Size at which the active memtable becomes immutable and is flushed.
    /// Default 64 MiB.
    pub memtable_size_bytes: usize,
    /// Immutable memtables allowed to wait for flushing before writers are
    /// held (a write stall). Default 2.
    pub max_immutable_memtables: usize,
    /// Target size of an SST data block. Default 4096 bytes.
    pub block_size_bytes: usize,
    /// Bloom filter bits per key (0 disables filters). Default 10 (about 1%
    /// false positives).
    pub bloom_bits_per_key: u32,
    /// Capacity of the block cache, which holds decoded data blocks of
    /// tables. Default 64 MiB; 0 disables the cache.
    pub cache_size_bytes: usize,
    /// Most table files kept open at once (each open table also holds its
    /// index and filter in memory). Default 1000; at least 16.
    pub max_open_tables: usize,
    /// Compression of the data blocks of new tables. Default
    /// [`Compression::None`]. Each block records its own compression, so a
    /// store may hold tables written with either.
    pub compression: Compression,
    /// Background compaction threads. Default 1; at least 1.
    pub compaction_threads: usize,
    /// Level shape, compaction triggers and write-stall thresholds.
    pub compaction: CompactionOptions,
    /// Background sync of the changelog every so many milliseconds for
    /// writes without `sync: true`; `None` (the default) syncs only on
    /// `sync: true` writes, `flush()` and close.
    pub sync_interval_ms: Option<u64>,
    /// What the changelog keeps. Default [`ChangelogRetention::UntilFlushed`].
    pub changelog_retention: ChangelogRetention,
    /// Size of a changelog segment. Default 64 MiB.
    pub changelog_segment_size_bytes: u64,
    /// Size at which the manifest is rotated: a new manifest holding a
    /// snapshot of the current state replaces it (`CURRENT` is switched,
    /// the old file removed). The threshold is raised to twice the size of
    /// the last snapshot, so a large state does not rotate on every edit.
    /// Default 4 MiB; at least 1 byte (tests use a few hundred bytes to
    /// rotate often).
    pub manifest_rotate_size_bytes: u64,
    /// Makes this a TTL store (like Samza's RocksDB TTL stores): a value
    /// is treated as absent once more than `ttl` has passed since it was
    /// written (its changelog record's timestamp), and compaction removes
    /// it. Expiry is lazy and best effort: reads never return an expired
    /// value, but its bytes stay on disk until a compaction reaches them.
    /// Recorded in the manifest at creation: a TTL store cannot be opened
    /// without a TTL, nor a plain store with one
    /// ([`Error::IncompatibleOptions`](crate::Error::IncompatibleOptions));
    /// the duration itself may change between opens. At least 1 ms.
    /// Default `None`. See `docs/TTL.md`.
    pub ttl: Option<Duration>,
    /// The wall clock used for record timestamps and TTL expiry. Default
    /// [`SystemClock`](crate::SystemClock); tests use a
    /// [`ManualClock`](crate::ManualClock).
    pub clock: Arc<dyn crate::Clock>,
    /// The file system the store lives on. Default [`StdFs`], the real
    /// one; tests use `MemFs` or a fault-injecting wrapper (feature
    /// `testing`).
    pub fs: Arc<dyn FileSystem>,
    /// One block cache, write-buffer budget and set of background threads
    /// shared with other stores (see
    /// [`SharedResources`](crate::SharedResources)); set with
    /// [`Options::shared_resources`]. With it, `cache_size_bytes` and
    /// `compaction_threads` are ignored and `memtable_size_bytes` is the
    /// bound of one memtable inside the shared budget. Default `None`:
    /// the store has its own cache and threads.
    pub shared: Option<Arc<crate::SharedResources>>,
}

varve_changelog::option_setters!(Options {
    create_if_missing: bool,
    memtable_size_bytes: usize,
    max_immutable_memtables: usize,
    block_size_bytes: usize,
    bloom_bits_per_key: u32,
    cache_size_bytes: usize,
    max_open_tables: usize,
    compression: Compression,
    compaction_threads: usize,
    compaction: CompactionOptions,
    sync_interval_ms: Option<u64>,
    changelog_retention: ChangelogRetention,
    changelog_segment_size_bytes: u64,
    manifest_rotate_size_bytes: u64,
    ttl: Option<Duration>,
    clock: Arc<dyn crate::Clock>,
    fs: Arc<dyn FileSystem>,
});

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            memtable_size_bytes: 64 << 20,
            max_immutable_memtables: 2,
            block_size_bytes: 4096,
            bloom_bits_per_key: 10,
            cache_size_bytes: 64 << 20,
            max_open_tables: 1000,
            compression: Compression::None,
            compaction_threads: 1,
            compaction: CompactionOptions::default(),
            sync_interval_ms: None,
            changelog_retention: ChangelogRetention::UntilFlushed,
            changelog_segment_size_bytes: 64 << 20,
            manifest_rotate_size_bytes: 4 << 20,
            ttl: None,
            clock: Arc::new(crate::SystemClock),
            fs: Arc::new(StdFs),
            shared: None,
        }
    }
}

impl Options {
    /// Makes the store use `resources` (a block cache, a write-buffer
    /// budget and background threads shared with other stores) instead of
    /// its own.
    ///
    /// # Examples
    /// ```
    /// let shared = varve_db::SharedResources::new(varve_db::SharedOptions::default()).unwrap();
    /// let opts = varve_db::Options::default().shared_resources(shared);
    /// assert!(opts.shared.is_some());
    /// ```
    #[must_use]
    pub fn shared_resources(mut self, resources: Arc<crate::SharedResources>) -> Self {
        self.shared = Some(resources);
        self
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the
    /// bad option.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::Error::InvalidArgument(what.to_owned()));
        if self.memtable_size_bytes < 4096 {
            return bad("memtable_size_bytes must be at least 4096");
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1");
        }
        if !(256..=(1 << 20)).contains(&self.block_size_bytes) {
            return bad("block_size_bytes must be between 256 bytes and 1 MiB");
        }
        if self.bloom_bits_per_key > 64 {
            return bad("bloom_bits_per_key must be at most 64");
        }
        if self.sync_interval_ms == Some(0) {
            return bad("sync_interval_ms must be positive");
        }
        if self.changelog_segment_size_bytes < 64 << 10 {
            return bad("changelog_segment_size_bytes must be at least 64 KiB");
        }
        if self.manifest_rotate_size_bytes == 0 {
            return bad("manifest_rotate_size_bytes must be at least 1");
        }
        if self.max_open_tables < 16 {
            return bad("max_open_tables must be at least 16");
        }
        if self.ttl.is_some_and(|ttl| ttl.as_millis() == 0) {
            return bad("ttl must be at least 1 ms");
        }
        if self.compaction_threads == 0 {
            return bad("compaction_threads must be at least 1");
        }
        self.compaction.validate()
    }
}

/// Block compression for new tables. On-disk values of the block trailer's
/// compression byte are listed in `docs/format/sst.md`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Blocks are stored as they are.
    #[default]
    None,
    /// Blocks are compressed with LZ4 (block format) when that saves at
    /// least an eighth of their size; other blocks are stored as they are.
    Lz4,
}

/// How the tree is shaped and when writers are slowed or held.
///
/// Levels are sized dynamically, as RocksDB's
/// `level_compaction_dynamic_level_bytes`: the last level holds whatever
/// the data needs, each level above it targets a tenth (the multiplier) of
/// the level below, and levels whose target would fall under
/// `level_base_size_bytes` stay empty (unless they already hold data), so
/// L0 compacts straight into the highest level that has a target (the
/// *base level*, which may itself still be empty). About 90 % of the data
/// then lives in the last level.
///
/// # Examples
/// ```
/// let c = varve_db::CompactionOptions::default().level0_compaction_trigger(8);
/// assert!(c.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionOptions {
    /// L0 tables that start a compaction into the base level. Default 4.
    pub level0_compaction_trigger: usize,
    /// L0 tables at which each write group is delayed by 1 ms. Default 20.
    pub level0_slowdown_trigger: usize,
    /// L0 tables at which writers are held until compaction catches up.
    /// Default 36.
    pub level0_stop_trigger: usize,
    /// The last level's smallest target, and the size below which the
    /// levels above get no target (and so stay empty); the base level's
    /// target ends up between this and `level_size_multiplier` times it.
    /// Default 256 MiB.
    pub level_base_size_bytes: u64,
    /// Size ratio between a level and the one above it. Default 10.
    pub level_size_multiplier: u64,
    /// Size at which a compaction output table is closed (at the next user
    /// key). Default 64 MiB.
    pub target_table_size_bytes: u64,
    /// Estimated bytes waiting for compaction at which writes are delayed.
    /// Default 64 GiB.
    pub pending_compaction_slowdown_bytes: u64,
    /// Estimated bytes waiting for compaction at which writers are held.
    /// Default 256 GiB.
    pub pending_compaction_stop_bytes: u64,
    /// Run compactions automatically. Default true; when false only
    /// [`Db::compact_range`](crate::Db::compact_range) compacts, and the
    /// compaction write stalls (L0 and pending bytes) are off.
    pub auto: bool,
}

varve_changelog::option_setters!(CompactionOptions {
    level0_compaction_trigger: usize,
    level0_slowdown_trigger: usize,
    level0_stop_trigger: usize,
    level_base_size_bytes: u64,
    level_size_multiplier: u64,
    target_table_size_bytes: u64,
    pending_compaction_slowdown_bytes: u64,
    pending_compaction_stop_bytes: u64,
    auto: bool,
});

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            level0_compaction_trigger: 4,
            level0_slowdown_trigger: 20,
            level0_stop_trigger: 36,
            level_base_size_bytes: 256 << 20,
            level_size_multiplier: 10,
            target_table_size_bytes: 64 << 20,
            pending_compaction_slowdown_bytes: 64 << 30,
            pending_compaction_stop_bytes: 256 << 30,
            auto: true,
        }
    }
}

impl CompactionOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the
    /// bad option.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::Error::InvalidArgument(what.to_owned()));
        if self.level0_compaction_trigger == 0 {
            return bad("level0_compaction_trigger must be at least 1");
        }
        if self.level0_slowdown_trigger < self.level0_compaction_trigger
            || self.level0_stop_trigger < self.level0_slowdown_trigger
        {
            return bad("L0 triggers must satisfy compaction <= slowdown <= stop");
        }
        if self.level_size_multiplier < 2 {
            return bad("level_size_multiplier must be at least 2");
        }
        if self.level_base_size_bytes < 4096 || self.target_table_size_bytes < 4096 {
            return bad("level_base_size_bytes and target_table_size_bytes must be at least 4096");
        }
        if self.pending_compaction_stop_bytes < self.pending_compaction_slowdown_bytes {
            return bad("pending_compaction_stop_bytes must be at least the slowdown threshold");
        }
        Ok(())
    }
}

/// Options of one write.
///
/// # Examples
/// ```
/// let durable = varve_db::WriteOptions::default().sync(true);
/// assert!(durable.sync);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// When true, the write is durable (survives power loss) when `write`
    /// returns. Concurrent sync writers share one `fdatasync`.
    pub sync: bool,
}

varve_changelog::option_setters!(WriteOptions { sync: bool });
