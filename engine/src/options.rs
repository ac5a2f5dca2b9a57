//! Options of a [`Db`](crate::Db) and of its writes.

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
/// let opts = varve::Options { memtable_size_bytes: 8 << 20, ..varve::Options::default() };
/// assert_eq!(opts.block_size_bytes, 4096);
/// ```
#[derive(Clone, Debug)]
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
    /// Block cache capacity. Default 64 MiB. Reserved: the block cache is
    /// not built yet, so this has no effect today.
    pub cache_size_bytes: usize,
    /// Background sync of the changelog every so many milliseconds for
    /// writes without `sync: true`; `None` (the default) syncs only on
    /// `sync: true` writes, `flush()` and close.
    pub sync_interval_ms: Option<u64>,
    /// What the changelog keeps. Default [`ChangelogRetention::UntilFlushed`].
    pub changelog_retention: ChangelogRetention,
    /// Size of a changelog segment. Default 64 MiB.
    pub changelog_segment_size_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            memtable_size_bytes: 64 << 20,
            max_immutable_memtables: 2,
            block_size_bytes: 4096,
            bloom_bits_per_key: 10,
            cache_size_bytes: 64 << 20,
            sync_interval_ms: None,
            changelog_retention: ChangelogRetention::UntilFlushed,
            changelog_segment_size_bytes: 64 << 20,
        }
    }
}

impl Options {
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
        Ok(())
    }
}

/// Options of one write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// When true, the write is durable (survives power loss) when `write`
    /// returns. Concurrent sync writers share one `fdatasync`.
    pub sync: bool,
}
