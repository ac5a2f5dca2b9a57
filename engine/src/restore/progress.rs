//! What a restore tells its caller while it runs ([`RestoreListener`], as
//! Kafka Streams' `StateRestoreListener`) and when it ends
//! ([`RestoreReport`]).

use std::time::Duration;

/// A restore's progress so far, given to
/// [`RestoreListener::on_progress`].
///
/// # Examples
/// ```
/// use varve_db::restore::RestoreProgress;
/// fn percent(p: &RestoreProgress, start: u64) -> f64 {
///     let total = p.end_offset.saturating_sub(start).max(1);
///     100.0 * (p.offset - start) as f64 / total as f64
/// }
/// let p = RestoreProgress {
///     records: 5, bytes: 50, offset: 5, flushed_offset: 3, end_offset: 10,
///     elapsed: std::time::Duration::ZERO,
/// };
/// assert_eq!(percent(&p, 0), 50.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Records applied so far (by this run; a resumed restore starts at 0).
    pub records: u64,
    /// Key and value bytes applied so far.
    pub bytes: u64,
    /// The next offset to apply: every record below it is applied.
    pub offset: u64,
    /// The restore's checkpoint: every record below it is in the tables
    /// of the store being built, and a restore stopped now (cancelled,
    /// failed, or its process killed) resumes there, loading the records
    /// from it to `offset` again. It trails `offset` by at most the two
    /// runs a restore holds in memory (see
    /// [`RestoreOptions::memory_budget_bytes`](crate::RestoreOptions::memory_budget_bytes)).
    pub flushed_offset: u64,
    /// The offset the restore ends at (the source's end when it started).
    pub end_offset: u64,
    /// Time since the restore started.
    pub elapsed: Duration,
}

/// What a finished restore did (see [`restore`](super::restore) for an
/// example, and [`mb_per_s`](Self::mb_per_s)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RestoreReport {
    /// The offset the restore started applying at (a checkpoint's offset,
    /// a resumed restore's flushed offset, or the source's start).
    pub start_offset: u64,
    /// The offset it restored to: the store holds exactly the source's
    /// records below it, and its changelog starts there.
    pub end_offset: u64,
    /// Records applied.
    pub records: u64,
    /// Key and value bytes applied.
    pub bytes: u64,
    /// Wall time, the final compaction included.
    pub elapsed: Duration,
    /// Whether the run resumed an interrupted restore.
    pub resumed: bool,
}

impl RestoreReport {
    /// Throughput in MB/s (10^6 bytes) of key and value bytes applied.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let report = varve_db::restore::RestoreReport {
    ///     start_offset: 0, end_offset: 10, records: 10, bytes: 4_000_000,
    ///     elapsed: Duration::from_secs(2), resumed: false,
    /// };
    /// assert_eq!(report.mb_per_s(), 2.0);
    /// ```
    #[must_use]
    pub fn mb_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        self.bytes as f64 / 1e6 / secs
    }
}

/// Callbacks during a restore, called on the restoring thread.
///
/// Every method has an empty default, so implement only what you need.
///
/// # Examples
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use varve_db::restore::{RestoreListener, RestoreProgress};
/// #[derive(Default)]
/// struct Last(AtomicU64);
/// impl RestoreListener for Last {
///     fn on_progress(&self, p: &RestoreProgress) {
///         self.0.store(p.offset, Ordering::Relaxed);
///     }
/// }
/// let last = Last::default();
/// last.on_start(0, 10);
/// ```
pub trait RestoreListener: Send + Sync {
    /// The restore applies records from `start_offset` up to (excluding)
    /// `end_offset`.
    fn on_start(&self, start_offset: u64, end_offset: u64) {
        let _ = (start_offset, end_offset);
    }

    /// Called after each batch polled from the source is applied; offsets
    /// increase from call to call, flushed offsets never decrease, and the
    /// last call, made once the last run is in tables (before the final
    /// compaction), has `offset == flushed_offset == end_offset`.
    fn on_progress(&self, progress: &RestoreProgress) {
        let _ = progress;
    }

    /// The restore finished (not called when it fails or is cancelled).
    fn on_end(&self, report: &RestoreReport) {
        let _ = report;
    }
}
