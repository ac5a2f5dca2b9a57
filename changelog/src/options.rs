//! Options of a [`Log`](crate::Log).

use std::sync::Arc;

use crate::fs::{FileSystem, StdFs};

/// When appended records are made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every `append` returns only after its batch is durable. Concurrent
    /// appenders share one `fdatasync` (group commit).
    Always,
    /// A background thread syncs every `interval_ms` milliseconds.
    IntervalMs(u64),
    /// Only explicit [`Log::sync`](crate::Log::sync) calls sync.
    Manual,
}

/// What to do with damage found below the recovery point on open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Fail the open with [`Error::Corruption`](crate::Error::Corruption).
    Strict,
    /// Truncate the log at the damage, report what was cut, and open.
    Tolerant,
}

/// Options for opening a [`Log`](crate::Log). Every field has a documented
/// default ([`LogOptions::default`]).
///
/// # Examples
/// ```
/// use varve_changelog::{LogOptions, SyncPolicy};
/// let opts = LogOptions::default().sync_policy(SyncPolicy::Always);
/// assert_eq!(opts.index_interval_bytes, 4096);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LogOptions {
    /// Roll to a new segment when the active one would exceed this size.
    /// Default 64 MiB.
    pub segment_size_bytes: u64,
    /// Roll when the active segment's records span more than this many
    /// milliseconds of record time. Default 7 days.
    pub segment_age_ms: u64,
    /// Bytes of log between two offset index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// The largest batch an `append` may write. Default 16 MiB; at most
    /// [`MAX_BATCH_SIZE_BYTES`](crate::batch::MAX_BATCH_SIZE_BYTES).
    pub max_batch_size_bytes: usize,
    /// When appends become durable. Default [`SyncPolicy::Manual`].
    pub sync_policy: SyncPolicy,
    /// Grow the active segment ahead of the data in chunks of this many
    /// bytes (reserving the space with `fallocate` where the file system
    /// can, else writing zeros), so that a synced append need not grow the
    /// file. `None` (the default) means 1 MiB under
    /// [`SyncPolicy::Always`], else off.
    pub preallocate_bytes: Option<u64>,
    /// Where the file system cannot reserve space without writing it,
    /// preallocate by writing zeros (`true`, the default) or not at all
    /// (`false`: each synced append then also commits a new file length,
    /// but no byte is written twice).
    pub preallocate_with_zeros: bool,
    /// Damage handling on open. Default [`RecoveryMode::Strict`].
    pub recovery: RecoveryMode,
    /// Retention by total size: delete the oldest segments while the log is
    /// larger. Default `None` (unbounded).
    pub retention_bytes: Option<u64>,
    /// Retention by age: delete segments whose newest record is older.
    /// Default `None` (unbounded).
    pub retention_ms: Option<u64>,
    /// Retention never deletes records at or above the smallest committed
    /// consumer position. Default `false`.
    pub retain_for_consumers: bool,
    /// The cleaner keeps a key's latest tombstone this long (record time)
    /// before removing it. Default 24 hours.
    pub tombstone_retention_ms: u64,
    /// The file system the log lives on. Default [`StdFs`], the real one;
    /// tests use `MemFs` or a fault-injecting wrapper (feature `testing`).
    pub fs: Arc<dyn FileSystem>,
}

crate::option_setters!(LogOptions {
    segment_size_bytes: u64,
    segment_age_ms: u64,
    index_interval_bytes: u64,
    max_batch_size_bytes: usize,
    sync_policy: SyncPolicy,
    preallocate_bytes: Option<u64>,
    preallocate_with_zeros: bool,
    recovery: RecoveryMode,
    retention_bytes: Option<u64>,
    retention_ms: Option<u64>,
    retain_for_consumers: bool,
    tombstone_retention_ms: u64,
    fs: Arc<dyn FileSystem>,
});

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_size_bytes: 64 << 20,
            segment_age_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            max_batch_size_bytes: 16 << 20,
            sync_policy: SyncPolicy::Manual,
            preallocate_bytes: None,
            preallocate_with_zeros: true,
            recovery: RecoveryMode::Strict,
            retention_bytes: None,
            retention_ms: None,
            retain_for_consumers: false,
            tombstone_retention_ms: 24 * 3600 * 1000,
            fs: Arc::new(StdFs),
        }
    }
}

impl LogOptions {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) naming the
    /// bad option.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::Error::InvalidArgument(what.to_owned()));
        if self.segment_size_bytes < 4096 || self.segment_size_bytes > u64::from(u32::MAX) {
            return bad("segment_size_bytes must be between 4 KiB and 4 GiB");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be positive");
        }
        if self.max_batch_size_bytes < 1024
            || self.max_batch_size_bytes > crate::batch::MAX_BATCH_SIZE_BYTES
        {
            return bad("max_batch_size_bytes must be between 1 KiB and 64 MiB");
        }
        if let SyncPolicy::IntervalMs(0) = self.sync_policy {
            return bad("sync interval must be positive");
        }
        Ok(())
    }

    pub(crate) fn effective_preallocate_bytes(&self) -> u64 {
        match (self.preallocate_bytes, self.sync_policy) {
            (Some(n), _) => n,
            (None, SyncPolicy::Always) => 1 << 20,
            (None, _) => 0,
        }
    }
}
