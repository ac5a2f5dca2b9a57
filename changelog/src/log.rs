//! [`Log`]: the segmented changelog.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::{self, BatchHeader};
use crate::error::{Error, Result};
use crate::filename::{META_FILE, POSITIONS_FILE};
use crate::fs::{DirLock, FileSystem};
use crate::meta::LogMeta;
use crate::options::{LogOptions, SyncPolicy};
use crate::positions;
use crate::record::Record;
use crate::recovery::{self, RecoveryReport};
use crate::segment::Segment;

/// What an [`append`](Log::append) assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// Encoded size of the batch in bytes.
    pub size_bytes: usize,
}

/// The appender's state, guarded by one mutex.
#[derive(Debug)]
pub(crate) struct AppendState {
    pub(crate) active: Arc<Segment>,
    pub(crate) next_offset: u64,
    pub(crate) buf: Vec<u8>,
}

/// Where the next batch goes, as [`Log::append_encoded`] tells its encoder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchSlot {
    /// The log's next offset: the batch's base offset.
    pub(crate) base_offset: u64,
    /// Every offset below this one is durable: the batch's claim.
    pub(crate) durable_offset: u64,
}

#[derive(Debug, Default)]
struct SyncState {
    synced_offset: u64,
    syncing: bool,
}

/// Shared innards of a [`Log`], also held by its background flusher.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) opts: LogOptions,
    pub(crate) append: Mutex<AppendState>,
    pub(crate) segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    pub(crate) next_offset: AtomicU64,
    pub(crate) log_start_offset: AtomicU64,
    /// `SyncState::synced_offset`, readable without the sync lock: the
    /// durability claim written into each new batch.
    durable_offset: AtomicU64,
    sync: Mutex<SyncState>,
    sync_cv: Condvar,
    appended_cv: Condvar,
    appended_mutex: Mutex<()>,
    failure: Mutex<Option<String>>,
    failed: AtomicBool,
    closed: AtomicBool,
    pub(crate) positions: Mutex<BTreeMap<String, u64>>,
    /// Serializes retention and cleaning.
    pub(crate) maintenance: Mutex<()>,
    /// One writer of `log.meta` at a time.
    meta_lock: Mutex<()>,
    _lock: Box<dyn DirLock>,
}

/// A segmented, append-only log of records with dense `u64` offsets, as a
/// Kafka partition's log: the write-ahead log of the Varve engine.
///
/// One process at a time may open a directory (it is locked). All methods
/// take `&self`; appends from many threads are serialized and, under
/// [`SyncPolicy::Always`], share `fdatasync` calls (group commit).
///
/// # Examples
/// ```
/// use varve_changelog::{Log, LogOptions, Record};
/// # fn main() -> varve_changelog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path(), LogOptions::default())?;
/// let info = log.append(&[Record::put("k1", "v1"), Record::tombstone("k0")])?;
/// assert_eq!((info.base_offset, info.last_offset), (0, 1));
/// log.sync()?;
/// let records: Vec<_> = log.reader(0)?.collect::<Result<_, _>>()?;
/// assert_eq!(records.len(), 2);
/// assert_eq!(records[1].offset, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Log {
    pub(crate) inner: Arc<Inner>,
    report: RecoveryReport,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, on the file system of
    /// [`LogOptions::fs`] (the real one by default).
    ///
    /// # Errors
    /// [`Error::Locked`] if the log is open elsewhere, [`Error::NotALog`]
    /// if the directory holds anything else, [`Error::Corruption`] for
    /// damage below the recovery point (strict recovery), I/O errors.
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> Result<Log> {
        let fs = opts.fs.clone();
        opts.validate()?;
        let dir = dir.as_ref().to_owned();
        let lock = recovery::prepare_dir(fs.as_ref(), &dir)?;
        let recovered = recovery::recover(fs.as_ref(), &dir, &opts)?;
        let positions = positions::read(fs.as_ref(), &dir.join(POSITIONS_FILE))?;
        let active = recovered
            .segments
            .last()
            .cloned()
            .ok_or_else(|| Error::corruption(&dir, 0, "no segments after recovery"))?;
        let next_offset = active.next_offset();
        let inner = Arc::new(Inner {
            fs,
            opts,
            append: Mutex::new(AppendState {
                active,
                next_offset,
                buf: Vec::new(),
            }),
            segments: RwLock::new(Arc::new(recovered.segments)),
            next_offset: AtomicU64::new(next_offset),
            log_start_offset: AtomicU64::new(recovered.log_start_offset),
            durable_offset: AtomicU64::new(next_offset),
            sync: Mutex::new(SyncState {
                synced_offset: next_offset,
                syncing: false,
            }),
            sync_cv: Condvar::new(),
            appended_cv: Condvar::new(),
            appended_mutex: Mutex::new(()),
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            positions: Mutex::new(positions),
            maintenance: Mutex::new(()),
            meta_lock: Mutex::new(()),
            dir,
            _lock: lock,
        });
        let flusher = match inner.opts.sync_policy {
            SyncPolicy::IntervalMs(ms) => Some(spawn_flusher(Arc::downgrade(&inner), ms)),
            _ => None,
        };
        Ok(Log {
            inner,
            report: recovered.report,
            flusher,
        })
    }

    /// What recovery found and did when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends `records` as one atomic batch and returns the offsets
    /// assigned: dense and increasing. Under [`SyncPolicy::Always`] the
    /// batch is durable when this returns.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty slice,
    /// [`Error::BatchTooLarge`], [`Error::ReadOnly`] after a failed sync,
    /// [`Error::Closed`], or the I/O error of the write.
    pub fn append(&self, records: &[Record]) -> Result<AppendInfo> {
        if records.is_empty() {
            return Err(Error::InvalidArgument(
                "append needs at least one record".into(),
            ));
        }
        if records.len() > u32::MAX as usize / 2 {
            return Err(Error::InvalidArgument(
                "too many records in one batch".into(),
            ));
        }
        let estimate = batch::encoded_size(records);
        self.append_encoded(estimate, |buf, slot| {
            Ok(batch::encode_batch_claiming(
                buf,
                slot.base_offset,
                slot.durable_offset,
                records,
            ))
        })
    }

    /// The write path shared by [`append`](Log::append) and
    /// [`append_at`](Log::append_at): refuses a batch whose `estimate` is
    /// far over the limit, then, under the append lock, has `encode` write
    /// one batch into the reused buffer (it gets the log's next offset and
    /// durable offset, and may refuse), writes it, wakes tailers and, under
    /// [`SyncPolicy::Always`], syncs.
    pub(crate) fn append_encoded(
        &self,
        estimate: usize,
        encode: impl FnOnce(&mut Vec<u8>, BatchSlot) -> Result<BatchHeader>,
    ) -> Result<AppendInfo> {
        let inner = &self.inner;
        if estimate > inner.opts.max_batch_size_bytes.saturating_mul(2) {
            return Err(Error::BatchTooLarge {
                size_bytes: estimate,
                max_bytes: inner.opts.max_batch_size_bytes,
            });
        }
        inner.check_writable()?;
        let info = {
            let mut st = inner.append.lock();
            let mut buf = std::mem::take(&mut st.buf);
            buf.clear();
            let slot = BatchSlot {
                base_offset: st.next_offset,
                durable_offset: inner.durable_offset.load(Ordering::Acquire),
            };
            let result = encode(&mut buf, slot)
                .and_then(|header| inner.write_batch(&mut st, &buf, &header).map(|()| header));
            st.buf = buf;
            let header = result?;
            AppendInfo {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                size_bytes: header.length as usize,
            }
        };
        inner.notify_appended();
        if inner.opts.sync_policy == SyncPolicy::Always {
            inner.sync_to(info.last_offset + 1)?;
        }
        Ok(info)
    }

    /// Makes every record appended so far durable (`fdatasync`); concurrent
    /// callers share one sync.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] if this or an earlier sync failed: the log then
    /// refuses writes for good (a failed sync is never retried as if
    /// nothing happened).
    pub fn sync(&self) -> Result<()> {
        let target = self.inner.next_offset.load(Ordering::Acquire);
        self.inner.sync_to(target)
    }

    /// The offset below which every record is durable.
    pub fn synced_offset(&self) -> u64 {
        self.inner.sync.lock().synced_offset
    }

    /// The offset the next append will get (the log end offset).
    pub fn next_offset(&self) -> u64 {
        self.inner.next_offset.load(Ordering::Acquire)
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.inner.log_start_offset.load(Ordering::Acquire)
    }

    /// The cause of the failure that made the log read-only, if any.
    pub fn failure(&self) -> Option<String> {
        self.inner.failure.lock().clone()
    }

    /// Closes the segment being written and starts a new one at the next
    /// offset (does nothing if the active segment is empty).
    ///
    /// # Errors
    /// I/O errors; a failed sync makes the log read-only.
    pub fn roll(&self) -> Result<()> {
        self.inner.check_writable()?;
        let mut st = self.inner.append.lock();
        if st.active.size_bytes() == 0 {
            return Ok(());
        }
        self.inner.roll(&mut st)
    }

    /// Blocks until the log holds records at `offset` or beyond (that is,
    /// `next_offset() > offset`), or `timeout` passes. Returns whether
    /// records arrived. For followers that tail the log.
    pub fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.inner.appended_mutex.lock();
        loop {
            if self.next_offset() > offset {
                return true;
            }
            if self.inner.closed.load(Ordering::Acquire)
                || self
                    .inner
                    .appended_cv
                    .wait_until(&mut guard, deadline)
                    .timed_out()
            {
                return self.next_offset() > offset;
            }
        }
    }

    /// Number of segments and total bytes of the log's data files.
    pub fn size(&self) -> (usize, u64) {
        let segs = self.inner.segments_snapshot();
        (segs.len(), segs.iter().map(|s| s.size_bytes()).sum())
    }

    /// Bytes in the segment being written.
    pub fn active_segment_size_bytes(&self) -> u64 {
        self.inner.append.lock().active.size_bytes()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<u64> {
        self.inner
            .segments_snapshot()
            .iter()
            .map(|s| s.base_offset)
            .collect()
    }

    /// Syncs everything, records a clean recovery point, and closes the log.
    /// Dropping the log does the same, ignoring errors.
    ///
    /// # Errors
    /// The sync or meta-write error.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.notify_appended();
        if let Some(handle) = self.flusher.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
        if self.inner.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let st = self.inner.append.lock();
        // A closed log's segments end where their data does.
        st.active.trim_preallocation()?;
        st.active.sync()?;
        let next = st.next_offset;
        drop(st);
        self.inner.write_meta(Some(next))
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(dir = %self.inner.dir.display(), error = %e, "changelog close failed");
        }
    }
}

fn spawn_flusher(inner: std::sync::Weak<Inner>, interval_ms: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        loop {
            std::thread::park_timeout(Duration::from_millis(interval_ms));
            let Some(inner) = inner.upgrade() else { return };
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            let target = inner.next_offset.load(Ordering::Acquire);
            if let Err(e) = inner.sync_to(target) {
                tracing::error!(error = %e, "interval sync failed; changelog is read-only");
                return;
            }
        }
    })
}

impl Inner {
    pub(crate) fn segments_snapshot(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().clone()
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.failed.load(Ordering::Acquire) {
            let cause = self.failure.lock().clone().unwrap_or_default();
            return Err(Error::ReadOnly { cause });
        }
        Ok(())
    }

    /// Records a sync failure: from now on the log refuses writes.
    pub(crate) fn fail(&self, e: &Error) -> Error {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            *failure = Some(e.to_string());
            tracing::error!(error = %e, "changelog sync failed; the log is now read-only");
        }
        self.failed.store(true, Ordering::Release);
        Error::ReadOnly {
            cause: failure.clone().unwrap_or_default(),
        }
    }

    pub(crate) fn write_batch(
        &self,
        st: &mut AppendState,
        buf: &[u8],
        header: &BatchHeader,
    ) -> Result<()> {
        if buf.len() > self.opts.max_batch_size_bytes {
            return Err(Error::BatchTooLarge {
                size_bytes: buf.len(),
                max_bytes: self.opts.max_batch_size_bytes,
            });
        }
        if self.should_roll(&st.active, buf.len() as u64, header) {
            self.roll(st)?;
        }
        st.active.append(
            buf,
            header,
            self.opts.index_interval_bytes,
            self.opts.effective_preallocate_bytes(),
            self.opts.preallocate_with_zeros,
        )?;
        st.next_offset = header.next_offset();
        self.next_offset.store(st.next_offset, Ordering::Release);
        Ok(())
    }

    fn should_roll(&self, active: &Segment, batch_bytes: u64, header: &BatchHeader) -> bool {
        let size = active.size_bytes();
        if size == 0 {
            return false;
        }
        let too_big = size + batch_bytes > self.opts.segment_size_bytes;
        let too_old = active.first_timestamp_ms().is_some_and(|first| {
            header.max_timestamp_ms.saturating_sub(first) >= self.opts.segment_age_ms as i64
        });
        let offsets_full = header.last_offset() - active.base_offset > u64::from(u32::MAX - 1);
        too_big || too_old || offsets_full
    }

    /// Seals the active segment and starts a new one at `st.next_offset`.
    pub(crate) fn roll(&self, st: &mut AppendState) -> Result<()> {
        if let Err(e) = st.active.seal(self.fs.as_ref()) {
            return Err(
                if matches!(
                    e,
                    Error::Io {
                        op: "sync segment",
                        ..
                    }
                ) {
                    self.fail(&e)
                } else {
                    e
                },
            );
        }
        let base = st.next_offset;
        let segment = Arc::new(Segment::create(self.fs.as_ref(), &self.dir, base)?);
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| self.fail(&Error::io("sync directory", &self.dir, e)))?;
        {
            let mut segs = self.segments.write();
            let mut list = segs.as_ref().clone();
            list.push(segment.clone());
            *segs = Arc::new(list);
        }
        st.active = segment;
        self.mark_synced(&mut self.sync.lock(), base);
        self.write_meta(Some(base))
    }

    /// Rewrites `log.meta` with the current log start offset and, if given,
    /// a new recovery point.
    pub(crate) fn write_meta(&self, recovery_point: Option<u64>) -> Result<()> {
        let _one_writer = self.meta_lock.lock();
        let path = self.dir.join(META_FILE);
        let old = LogMeta::read(self.fs.as_ref(), &path)?;
        let log_start_offset = self.log_start_offset.load(Ordering::Acquire);
        let recovery_point = recovery_point
            .unwrap_or(old.recovery_point)
            .max(log_start_offset);
        let meta = LogMeta {
            log_start_offset,
            recovery_point,
        };
        if meta != old {
            meta.write(self.fs.as_ref(), &path)?;
        }
        Ok(())
    }

    /// Records that everything below `upto` is durable.
    fn mark_synced(&self, s: &mut SyncState, upto: u64) {
        s.synced_offset = s.synced_offset.max(upto);
        self.durable_offset
            .store(s.synced_offset, Ordering::Release);
    }

    /// Waits until everything below `target` is durable, syncing as the
    /// leader of a group if nobody else is.
    pub(crate) fn sync_to(&self, target: u64) -> Result<()> {
        let mut s = self.sync.lock();
        loop {
            if self.failed.load(Ordering::Acquire) {
                let cause = self.failure.lock().clone().unwrap_or_default();
                return Err(Error::ReadOnly { cause });
            }
            if s.synced_offset >= target {
                return Ok(());
            }
            if s.syncing {
                self.sync_cv.wait(&mut s);
                continue;
            }
            s.syncing = true;
            drop(s);
            let (segment, upto) = {
                let st = self.append.lock();
                (st.active.clone(), st.next_offset)
            };
            let result = segment.sync();
            s = self.sync.lock();
            s.syncing = false;
            match result {
                Ok(()) => self.mark_synced(&mut s, upto),
                Err(e) => {
                    self.fail(&e);
                }
            }
            self.sync_cv.notify_all();
        }
    }

    pub(crate) fn notify_appended(&self) {
        let _guard = self.appended_mutex.lock();
        self.appended_cv.notify_all();
    }
}
