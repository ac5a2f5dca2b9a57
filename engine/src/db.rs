//! [`Db`]: the handle of an open store.

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use varve_changelog::{Log, RecoveryReport};

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::iter::bounds::{bounds_of, prefix_bounds};
use crate::iter::db_iter::Iter;
use crate::iter::level::TableOpener;
use crate::key::SeqNo;
use crate::metrics::Histogram;
use crate::options::{Options, WriteOptions};
use crate::snapshot::Snapshot;
use crate::state::{DbInner, SuperVersion};
use crate::stats::Stats;

/// An open Varve store: an ordered key-value map on disk whose
/// write-ahead log is a [`varve_changelog::Log`].
///
/// `Db` is `Send + Sync`; share it with an `Arc`. Keys and values are
/// bytes; keys sort in unsigned byte order.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let db = varve_db::Db::open(dir.path(), varve_db::Options::default())?;
/// db.put("fruit:apple", "red")?;
/// db.put("fruit:kiwi", "green")?;
/// db.delete("fruit:apple")?;
/// assert_eq!(db.get("fruit:kiwi")?.as_deref(), Some(&b"green"[..]));
/// let keys: Vec<_> = db.prefix("fruit:").map(|kv| kv.map(|(k, _)| k)).collect::<Result<_, _>>()?;
/// assert_eq!(keys, vec![bytes::Bytes::from("fruit:kiwi")]);
/// db.close()?;
/// # Ok(()) }
/// ```
pub struct Db {
    inner: Arc<DbInner>,
    flusher: Option<JoinHandle<()>>,
    compactors: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Logs a warning naming what changelog recovery removed, if anything.
fn warn_if_recovery_cut(store: &Path, report: &RecoveryReport) {
    let Some((segment, byte)) = &report.truncated_at else {
        if report.segments_removed > 0 {
            tracing::warn!(
                store = %store.display(),
                segments_removed = report.segments_removed,
                "changelog recovery removed segments"
            );
        }
        return;
    };
    tracing::warn!(
        store = %store.display(),
        segment = %segment.display(),
        byte,
        truncated_bytes = report.truncated_bytes,
        segments_removed = report.segments_removed,
        reason = report.truncation_reason.as_deref().unwrap_or("not given"),
        next_offset = report.next_offset,
        "changelog recovery cut the log"
    );
}

impl Db {
    /// Opens the store in `path`, creating it if the directory is missing
    /// or empty (unless `create_if_missing` is off). Recovery replays the
    /// changelog from the manifest's flushed offset.
    ///
    /// # Errors
    /// [`Error::Locked`] if the store is open elsewhere,
    /// [`Error::NotAStore`] if the directory holds something else (it is
    /// not modified), [`Error::Corruption`], [`Error::InvalidArgument`] for
    /// bad options, I/O errors.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> Result<Db> {
        let inner = Arc::new(crate::open::open_inner(path.as_ref(), opts)?);
        warn_if_recovery_cut(&inner.path, inner.log.recovery_report());
        let mut db = Db {
            inner,
            flusher: None,
            compactors: Vec::new(),
        };
        if let Some(shared) = &db.inner.opts.shared {
            // The shared pools flush and compact it.
            shared.register(&db.inner);
            return Ok(db);
        }
        let flusher = {
            let inner = db.inner.clone();
            std::thread::Builder::new()
                .name("varve-flush".into())
                .spawn(move || inner.flush_loop())
                .map_err(|e| Error::io("spawn flush thread", path.as_ref(), e))?
        };
        db.flusher = Some(flusher);
        for i in 0..db.inner.opts.compaction_threads {
            let inner = db.inner.clone();
            let handle = std::thread::Builder::new()
                .name(format!("varve-compact-{i}"))
                .spawn(move || inner.compaction_loop())
                .map_err(|e| Error::io("spawn compaction thread", path.as_ref(), e))?;
            db.compactors.push(handle);
        }
        Ok(db)
    }

    /// The value of `key`, or `None` if it is absent or deleted.
    ///
    /// # Errors
    /// I/O or corruption errors from the tables.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        // The view first, then the sequence number: a compaction installed
        // in the view dropped only versions hidden at an older number.
        let start = Instant::now();
        let sv = self.inner.super_version();
        let seqno = self.inner.visible();
        let found = self.inner.get_in(&sv, key.as_ref(), seqno);
        self.record_get(start, &found);
        found
    }

    fn record_get(&self, start: Instant, found: &Result<Option<Bytes>>) {
        let m = &self.inner.metrics;
        m.gets.record_since(start);
        if let Ok(Some(v)) = found {
            m.read_bytes.add(v.len() as u64);
        }
    }

    /// Looks up several keys at one consistent point; the result has one
    /// entry per key, in order.
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn get_all<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        let sv = self.inner.super_version();
        let seqno = self.inner.visible();
        keys.iter()
            .map(|k| {
                let start = Instant::now();
                let found = self.inner.get_in(&sv, k.as_ref(), seqno);
                self.record_get(start, &found);
                found
            })
            .collect()
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn contains(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Sets `key` to `value` (not synced; see [`Db::write`]).
    ///
    /// # Errors
    /// [`Error::KeyTooLarge`], [`Error::ValueTooLarge`],
    /// [`Error::ReadOnly`] after a failed sync, I/O errors.
    pub fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        self.write_timed(batch, false, &self.inner.metrics.puts)
    }

    /// Deletes `key` (not synced; see [`Db::write`]): a blind tombstone
    /// write that reads nothing. [`Db::remove`] reads first and returns
    /// the value the key had.
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn delete(&self, key: impl Into<Bytes>) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete(key);
        self.write_timed(batch, false, &self.inner.metrics.deletes)
    }

    /// Applies `batch` atomically. With `sync: true` the batch survives
    /// power loss once this returns; concurrent writers are committed as
    /// one changelog append and share one `fdatasync` (group commit).
    ///
    /// # Errors
    /// As [`Db::put`]; after a failed sync every waiting writer gets
    /// [`Error::ReadOnly`] and the store refuses writes from then on.
    pub fn write(&self, batch: WriteBatch, opts: WriteOptions) -> Result<()> {
        self.write_timed(batch, opts.sync, &self.inner.metrics.writes)
    }

    /// Writes `batch`, recording its latency in `h`.
    fn write_timed(&self, batch: WriteBatch, sync: bool, h: &Histogram) -> Result<()> {
        let start = Instant::now();
        let result = self.inner.write(batch, sync);
        h.record_since(start);
        result
    }

    /// A user's iterator between two bounds at a fresh snapshot: its
    /// creation timed, the entries it returns counted.
    fn user_iter(&self, lower: Bound<Bytes>, upper: Bound<Bytes>) -> Iter {
        let start = Instant::now();
        let iter = self.inner.snapshot_iter(lower, upper);
        self.inner.metrics.ranges.record_since(start);
        iter.counting(self.inner.metrics.clone())
    }

    /// The entries whose keys lie in `range` (any Rust range of byte
    /// strings), in key order; `.rev()` for reverse order.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let (lower, upper) = bounds_of(&range);
        self.user_iter(lower, upper)
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        self.user_iter(lower, upper)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter {
        self.range::<&[u8], _>(..)
    }

    /// A consistent read view as of now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.inner.clone())
    }

    /// Writes the memtable to a table and syncs the changelog: everything
    /// written before the call is durable when it returns.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] after a failed sync, I/O errors.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_writable()?;
        self.inner
            .with_write_leadership(|| self.inner.switch_memtable());
        while !self.inner.super_version().imm.is_empty() {
            // The flush thread may have failed meanwhile (a failed table
            // sync): a failed store flushes no more.
            self.inner.check_writable()?;
            self.inner
                .flush_oldest_immutable()
                .map_err(|e| self.inner.fail(&e))?;
        }
        self.inner.sync_log()?;
        self.inner.check_writable()
    }

    /// Flushes the memtable, then compacts every table holding keys in
    /// `range` down to the last level, dropping overwritten versions and
    /// tombstones that no snapshot needs. Runs in the calling thread;
    /// background compactions continue meanwhile. Excluded bounds are
    /// treated as included (compacting a little more is harmless).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = varve_db::Db::open(dir.path(), varve_db::Options::default())?;
    /// for round in 0..3 {
    ///     db.put("key", format!("value {round}"))?;
    ///     db.flush()?;
    /// }
    /// db.compact_range::<&[u8], _>(..)?;
    /// let stats = db.stats()?;
    /// assert_eq!(stats.levels.iter().map(|l| l.tables).sum::<usize>(), 1);
    /// assert_eq!(db.get("key")?.as_deref(), Some(&b"value 2"[..]));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`] after a failed sync, [`Error::Closed`], I/O and
    /// corruption errors from the tables read.
    pub fn compact_range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Result<()> {
        self.flush()?;
        let bound = |b: Bound<&K>| match b {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.as_ref().to_vec()),
            Bound::Unbounded => None,
        };
        let (lower, upper) = (bound(range.start_bound()), bound(range.end_bound()));
        if lower.is_none() && upper.is_none() {
            return self.inner.compact_range(None);
        }
        let version = self.inner.super_version().version.clone();
        let largest = crate::version::Level::all()
            .flat_map(|l| version.tables(l).iter())
            .map(|t| t.largest_user_key().to_vec())
            .max()
            .unwrap_or_default();
        let lower = lower.unwrap_or_default();
        let upper = upper.unwrap_or(largest);
        if lower > upper {
            return Ok(());
        }
        self.inner.compact_range(Some((&lower, &upper)))
    }

    /// A report on the store: its levels, write and space amplification,
    /// compaction work, stalls, cache and changelog (see [`Stats`]).
    /// Space amplification needs the live data size, so this reads every
    /// live entry: meant for tools, tests and benchmarks, not a hot path.
    ///
    /// # Errors
    /// I/O and corruption errors from reading the tables.
    pub fn stats(&self) -> Result<Stats> {
        let inner = &self.inner;
        let mut stats = Stats::from_counters(&inner.counters);
        let version = inner.super_version().version.clone();
        let shape = crate::compaction::shape(&version, &inner.opts.compaction);
        stats.levels = Stats::levels_of(&version, &shape.targets_bytes);
        stats.table_bytes = stats.levels.iter().map(|l| l.size_bytes).sum();
        let mut live = 0u64;
        // Not through `all()`: the report's own scan is not a user range.
        for entry in inner.snapshot_iter(Bound::Unbounded, Bound::Unbounded) {
            let (key, value) = entry?;
            live += (key.len() + value.len()) as u64;
        }
        stats.live_data_bytes = live;
        stats.space_amp = crate::stats::ratio(stats.table_bytes, live);
        stats.pending_compaction_bytes =
            crate::compaction::estimated_pending_bytes(&version, &inner.opts.compaction);
        if let Some(cache) = &inner.block_cache {
            stats.cache = cache.stats();
        }
        stats.open_tables = inner.tables.len();
        let log = &inner.log;
        stats.changelog = crate::stats::ChangelogStats {
            size_bytes: log.size().1,
            log_start_offset: log.log_start_offset(),
            next_offset: log.next_offset(),
            flushed_offset: version.flushed_offset(),
        };
        Ok(stats)
    }

    pub(crate) fn inner(&self) -> &Arc<DbInner> {
        &self.inner
    }

    /// The store's changelog (read access, consumer positions, tailing).
    pub fn changelog(&self) -> &Log {
        &self.inner.log
    }

    /// What changelog recovery found and did when this store was opened:
    /// whether it cut a torn tail (the segment and byte of the cut, why,
    /// how many bytes and whole segments it removed) and where the log
    /// ends. A cut removes only batches that were never acknowledged as
    /// durable; it is also logged as a `tracing` warning at open, and
    /// `varve info` shows what the next open would cut.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = varve_db::Db::open(dir.path(), varve_db::Options::default())?;
    /// let report = db.changelog_recovery_report();
    /// assert!(report.created && report.truncated_at.is_none());
    /// # Ok(()) }
    /// ```
    pub fn changelog_recovery_report(&self) -> &RecoveryReport {
        self.inner.log.recovery_report()
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The sequence number of the newest visible write: the changelog offset
    /// of that write plus one (0 for an empty store).
    pub fn latest_seqno(&self) -> u64 {
        self.inner.visible().0
    }

    /// Syncs the changelog and closes the store (dropping does the same,
    /// ignoring errors). Acknowledged writes are never lost by closing.
    ///
    /// # Errors
    /// The sync error, or the failure that made the store read-only.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.inner.lifecycle.is_closing() {
            return Ok(());
        }
        self.inner.lifecycle.begin_close();
        {
            let _g = self.inner.flush.signal.lock();
            self.inner.flush.cv.notify_all();
        }
        if let Some(handle) = self.flusher.take() {
            let _ = handle.join();
        }
        {
            let _g = self.inner.compaction.state.lock();
            self.inner.compaction.cv.notify_all();
        }
        for handle in self.compactors.drain(..) {
            let _ = handle.join();
        }
        if let Some(shared) = &self.inner.opts.shared {
            // No pool job runs on the store after this; what its flush
            // thread would still have flushed is flushed here.
            shared.unregister(self.inner.store_id);
            self.flush_immutables_at_close();
        }
        if let Some(cause) = self.inner.lifecycle.failure() {
            return Err(Error::ReadOnly { cause });
        }
        self.inner.log.sync().map_err(Error::from)
    }
}

impl Db {
    /// Flushes the immutable memtables left at close (a store on shared
    /// resources; its own flush thread does this otherwise).
    fn flush_immutables_at_close(&self) {
        let inner = &self.inner;
        // Bounded: each round flushes one of them or fails the store.
        for _ in 0..inner.super_version().imm.len() {
            if inner.lifecycle.has_failed() {
                return;
            }
            if let Err(e) = inner.flush_oldest_immutable() {
                tracing::error!(error = %e, "flush failed");
                inner.fail(&e);
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(store = %self.inner.path.display(), error = %e, "close failed");
        }
    }
}

impl DbInner {
    /// The newest version of `key` visible at `seqno`.
    pub(crate) fn get_at(&self, key: &[u8], seqno: SeqNo) -> Result<Option<Bytes>> {
        self.get_in(&self.super_version(), key, seqno)
    }

    /// The newest version of `key` visible at `seqno` in the view `sv`.
    pub(crate) fn get_in(
        &self,
        sv: &SuperVersion,
        key: &[u8],
        seqno: SeqNo,
    ) -> Result<Option<Bytes>> {
        Ok(self.versioned_in(sv, key, seqno)?.map(|found| found.value))
    }

    /// An iterator between two bounds at a snapshot taken now, which it
    /// holds for as long as it lives.
    pub(crate) fn snapshot_iter(
        self: &Arc<Self>,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
    ) -> Iter {
        let snapshot = Snapshot::new(self.clone());
        let seqno = SeqNo(snapshot.seqno());
        self.iter_at(lower, upper, seqno).holding(snapshot)
    }

    /// An iterator over `[lower, upper]` at `seqno`.
    pub(crate) fn iter_at(
        self: &Arc<Self>,
        lower: Bound<Bytes>,
        upper: Bound<Bytes>,
        seqno: SeqNo,
    ) -> Iter {
        let ttl = self.opts.expiry().map(|e| (e, self.path.clone()));
        let inner = self.clone();
        Iter::merging(lower, upper, seqno, ttl, move || inner.children())
    }

    /// The internal iterators over the memtables and tables of the
    /// current view.
    fn children(self: &Arc<Self>) -> Vec<Box<dyn InternalIterator>> {
        let sv = self.super_version();
        let table = |n| self.table(n);
        let inner = Arc::clone(self);
        let open: TableOpener = Arc::new(move |n| inner.table(n));
        sv.sources(&table).children(&open)
    }
}
