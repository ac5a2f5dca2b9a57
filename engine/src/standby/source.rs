//! [`SourceStandby`]: a standby that follows a [`RecordSource`] — a Kafka
//! topic partition through the bridge's `KafkaSource`, or any other
//! source — instead of an in-process primary.
//!
//! The usual start is a [`restore`](crate::restore) from the same source,
//! which leaves a store whose changelog ends at the source's end offset
//! when the restore began; the standby then applies every record from
//! there on, with the source's offsets, exactly as a [`Standby`](super::Standby)
//! applies its primary's. It commits nothing upstream: its position is its
//! own changelog's end, made durable every 100 ms.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use varve_changelog::RecordSource;
use varve_changelog::fs::{FileSystem, StdFs};

use super::follower::{Halt, IDLE_WAIT, POLL_BYTES, Shared, groups};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::memtable::seqno_of_offset;
use crate::options::Options;
use crate::replicate::check_replica_position;
use crate::state::DbInner;

/// How often the follower makes the standby's changelog durable.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);

/// How often the follower asks the source for its end offset (for
/// [`SourceStandby::lag`]) while records keep coming.
const BOUNDS_INTERVAL: Duration = Duration::from_secs(1);

/// A standby replica that follows a [`RecordSource`] in a background
/// thread: a store of its own that applies the source's records with the
/// source's offsets, serves reads (through `Deref` to [`Db`]), refuses
/// writes, and can be [promoted](SourceStandby::promote) to a writable
/// store.
///
/// With the `kafka` feature this is how a machine keeps a warm copy of a
/// store from its changelog topic: restore from a `KafkaSource`, then
/// follow a second `KafkaSource` of the same partition (see
/// `docs/KAFKA.md`).
///
/// # Examples
/// ```
/// # fn main() -> varve::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use varve::varve_changelog::{Log, LogOptions, LogSource, Record};
/// use varve::{Options, RestoreOptions, SourceStandby};
/// // Any RecordSource will do; here a changelog of its own.
/// let upstream = std::sync::Arc::new(Log::open(dir.path().join("upstream"), LogOptions::default())?);
/// upstream.append(&[Record::put("k", "v1")])?;
/// varve::restore(dir.path().join("copy"), &mut LogSource::new(upstream.clone()), RestoreOptions::default())?;
/// let standby = SourceStandby::follow(LogSource::new(upstream.clone()), dir.path().join("copy"), Options::default())?;
/// upstream.append(&[Record::put("k", "v2")])?;
/// assert!(standby.wait_for_offset(2, Duration::from_secs(10))?);
/// assert_eq!(standby.get("k")?.as_deref(), Some(&b"v2"[..]));
/// let db = standby.promote()?; // writable, continuing at offset 2
/// db.put("k", "v3")?;
/// # Ok(()) }
/// ```
pub struct SourceStandby {
    // Declared first so it is dropped (the follower stopped) before the
    // store closes.
    follower: SourceFollower,
    db: Db,
}

impl std::fmt::Debug for SourceStandby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceStandby")
            .field("path", &self.db.path())
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for SourceStandby {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

impl SourceStandby {
    /// Opens (or creates) the store in `dir` and follows `source` from the
    /// store's changelog end: a store restored from `source` continues at
    /// the offset its restore stopped at; a reopened standby resumes where
    /// it stopped.
    ///
    /// # Errors
    /// [`Error::Stale`] if the store's position is below the source's
    /// start offset (the records it needs are gone: restore it again) or
    /// past the source's end (it holds records the source lacks);
    /// [`Error::Source`] for the source's errors; the errors of
    /// [`Db::open`] for `dir`.
    pub fn follow<S>(source: S, dir: impl AsRef<Path>, opts: Options) -> Result<SourceStandby>
    where
        S: RecordSource + Send + 'static,
    {
        SourceStandby::follow_with_fs(source, Arc::new(StdFs), dir, opts)
    }

    /// As [`SourceStandby::follow`], with the store opened through the
    /// file-system seam `fs`.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// use varve::varve_changelog::fs::MemFs;
    /// use varve::varve_changelog::{Log, LogOptions, LogSource};
    /// use varve::{Options, SourceStandby};
    /// let upstream = Arc::new(Log::open(dir.path(), LogOptions::default())?);
    /// let fs = Arc::new(MemFs::new());
    /// let standby = SourceStandby::follow_with_fs(LogSource::new(upstream), fs, "/standby", Options::default())?;
    /// assert_eq!(standby.position(), 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`SourceStandby::follow`].
    pub fn follow_with_fs<S>(
        mut source: S,
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        opts: Options,
    ) -> Result<SourceStandby>
    where
        S: RecordSource + Send + 'static,
    {
        let db = Db::open(dir, opts.fs(fs))?;
        db.inner().lifecycle.set_replica(true);
        let position = db.changelog().next_offset();
        let bounds = source.bounds().map_err(source_error)?;
        check_replica_position(position, bounds)?;
        source.seek(position).map_err(source_error)?;
        let shared = Arc::new(Shared::new(position));
        let source_end = Arc::new(AtomicU64::new(bounds.end_offset));
        let worker = SourceWorker {
            source,
            standby: db.inner().clone(),
            shared: shared.clone(),
            source_end: source_end.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("varve-source-standby".to_owned())
            .spawn(move || worker.run())
            .map_err(|e| Error::io("spawn standby thread", db.path(), e))?;
        tracing::info!(standby = %db.path().display(), position, "standby following a record source");
        Ok(SourceStandby {
            follower: SourceFollower {
                shared,
                source_end,
                thread: Some(thread),
            },
            db,
        })
    }

    /// The next source offset the standby will apply: every record below
    /// it is applied and visible to reads.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.follower.shared.position.load(Ordering::Acquire)
    }

    /// Records the standby is behind: the source's end offset as last
    /// seen (asked at most once a second while records flow, and whenever
    /// the standby has caught up) minus [`position`](Self::position).
    ///
    /// # Errors
    /// The error that stopped the follower.
    pub fn lag(&self) -> Result<u64> {
        if let Some(halt) = self.follower.shared.halted() {
            return Err(halt.to_error());
        }
        let end = self.follower.source_end.load(Ordering::Acquire);
        Ok(end.saturating_sub(self.position()))
    }

    /// The error that stopped the follower, if it stopped.
    #[must_use]
    pub fn error(&self) -> Option<Error> {
        self.follower.shared.halted().map(|h| h.to_error())
    }

    /// Whether the follower thread is still applying records.
    #[must_use]
    pub fn is_following(&self) -> bool {
        self.follower
            .shared
            .is_following(self.follower.thread.as_ref())
    }

    /// Waits until the standby has applied everything below `offset`, up
    /// to `timeout`; `Ok(false)` on timeout.
    ///
    /// # Errors
    /// The error that stopped the follower.
    pub fn wait_for_offset(&self, offset: u64, timeout: Duration) -> Result<bool> {
        self.follower.shared.wait_for_offset(offset, timeout)
    }

    /// Stops following, makes the changelog durable and returns the store
    /// as a writable [`Db`] whose writes continue at
    /// [`position`](Self::position). It does not catch up first: a remote
    /// source may hold more; [`wait_for_offset`](Self::wait_for_offset)
    /// the offset you need before promoting.
    ///
    /// # Errors
    /// The error that stopped the follower, or the changelog sync's error.
    pub fn promote(self) -> Result<Db> {
        let SourceStandby { mut follower, db } = self;
        follower.stop();
        if let Some(Halt::Failed(e)) = follower.shared.halted() {
            return Err(e);
        }
        db.inner().sync_log()?;
        db.inner().lifecycle.set_replica(false);
        tracing::info!(store = %db.path().display(), next_offset = db.changelog().next_offset(), "source standby promoted");
        Ok(db)
    }

    /// Stops following and closes the store.
    ///
    /// # Errors
    /// The error that stopped the follower, else those of [`Db::close`].
    pub fn close(self) -> Result<()> {
        let SourceStandby { mut follower, db } = self;
        follower.stop();
        let closed = db.close();
        match follower.shared.halted() {
            Some(Halt::Failed(e)) => Err(e),
            _ => closed,
        }
    }
}

/// The standby's handle on its follower thread.
struct SourceFollower {
    shared: Arc<Shared>,
    source_end: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl SourceFollower {
    fn stop(&mut self) {
        self.shared.stop_thread(&mut self.thread);
    }
}

impl Drop for SourceFollower {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The follower thread's state.
struct SourceWorker<S> {
    source: S,
    standby: Arc<DbInner>,
    shared: Arc<Shared>,
    source_end: Arc<AtomicU64>,
}

impl<S: RecordSource> SourceWorker<S> {
    fn run(mut self) {
        let mut last_sync = Instant::now();
        let mut last_bounds = Instant::now();
        while !self.shared.stop.load(Ordering::Acquire) {
            let applied = match self.step() {
                Ok(applied) => applied,
                Err(e) => {
                    self.shared.halt(Halt::Failed(e));
                    break;
                }
            };
            if !applied || last_bounds.elapsed() >= BOUNDS_INTERVAL {
                // A failed look at the end only leaves `lag` stale.
                if let Ok(bounds) = self.source.bounds() {
                    self.source_end.store(bounds.end_offset, Ordering::Release);
                }
                last_bounds = Instant::now();
            }
            if !applied {
                std::thread::sleep(IDLE_WAIT);
            }
            if last_sync.elapsed() >= SYNC_INTERVAL {
                if let Err(e) = self.standby.sync_log() {
                    self.shared.halt(Halt::Failed(e));
                    break;
                }
                last_sync = Instant::now();
            }
        }
        if let Err(e) = self.standby.sync_log() {
            tracing::warn!(error = %e, "standby could not sync its changelog on stopping");
        }
    }

    /// Polls the source once and applies what it returned; `Ok(false)`
    /// when it returned nothing new.
    fn step(&mut self) -> Result<bool> {
        let position = self.shared.position.load(Ordering::Acquire);
        let mut records = self.source.poll(POLL_BYTES).map_err(source_error)?;
        records.retain(|r| r.offset >= position);
        if records.is_empty() {
            return Ok(false);
        }
        if let Some(bad) = records.iter().find(|r| seqno_of_offset(r.offset).is_none()) {
            // Not a file of ours: the source gave data the store cannot hold.
            let what = format!(
                "the source gave a record at offset {}, beyond the sequence-number range (offsets must be below {})",
                bad.offset,
                crate::key::SeqNo::MAX.0
            );
            return Err(source_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                what,
            )));
        }
        for group in groups(&records) {
            self.standby.apply_replicated(group)?;
            if let Some(last) = group.last() {
                self.shared.advance(last.offset + 1);
                self.source_end.fetch_max(last.offset + 1, Ordering::AcqRel);
            }
        }
        Ok(true)
    }
}

fn source_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    Error::Source(Arc::new(e))
}
