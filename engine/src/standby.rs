//! [`Standby`]: a second store that follows a primary's changelog and can
//! be promoted to take its place.
//!
//! The standby is an ordinary store in *replica mode*: a background thread
//! (the follower) reads the primary's changelog from the standby's own
//! changelog end and applies what it reads with the primary's offsets
//! (see `replicate.rs`), so the standby's position in the primary's
//! changelog is its own `next_offset`, and a reopened standby resumes
//! from there. The follower registers as a named consumer on the primary's
//! changelog, so that a primary with
//! [`ChangelogRetention::UntilShipped`](crate::ChangelogRetention::UntilShipped)
//! keeps every record the standby has not made durable. See
//! `docs/STANDBY.md`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use varve_changelog::fs::{FileSystem, StdFs};
use varve_changelog::{Log, LogSource, RecordSource, SourceBounds, StoredRecord};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::options::{ChangelogRetention, Options};
use crate::replicate::check_position;
use crate::state::DbInner;

/// Bytes of keys and values the follower reads from the primary at once.
const POLL_BYTES: usize = 1 << 20;
/// The most records applied as one replica group (one changelog batch).
const GROUP_RECORDS_MAX: usize = 4096;
/// The most estimated bytes applied as one replica group; well below the
/// changelog's batch limit.
const GROUP_BYTES_MAX: usize = 1 << 20;
/// Bytes a record adds to a batch beyond its key and value (an estimate
/// on the safe side).
const RECORD_OVERHEAD_BYTES: usize = 64;
/// How long the follower waits for new records before checking whether
/// it must stop.
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How often the follower syncs its changelog and commits its position on
/// the primary (when it applied something since the last time).
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// A standby replica: a store of its own that follows a primary [`Db`]'s
/// changelog in a background thread, serves reads (through `Deref` to
/// [`Db`]), refuses writes, and can be [promoted](Standby::promote) to a
/// writable store that continues the primary's offsets.
///
/// Reads on a standby see a prefix of the primary's history: every
/// replicated group becomes visible whole, in offset order.
///
/// Standbys are in-process: the standby holds a weak reference to the
/// primary (a changelog directory is locked by the process that owns it,
/// so a standby in another process cannot read it yet).
///
/// # Examples
/// ```
/// # fn main() -> varve::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use varve::{ChangelogRetention, Db, Options, Standby};
/// let opts = Options {
///     changelog_retention: ChangelogRetention::UntilShipped,
///     ..Options::default()
/// };
/// let primary = Db::open(dir.path().join("primary"), opts)?;
/// primary.put("k", "v1")?;
/// let standby = Standby::follow(&primary, dir.path().join("standby"), "standby-1", Options::default())?;
/// primary.put("k", "v2")?;
/// assert!(standby.wait_for_offset(primary.changelog().next_offset(), Duration::from_secs(10))?);
/// assert_eq!(standby.get("k")?.as_deref(), Some(&b"v2"[..]));
/// assert_eq!(standby.lag()?, 0);
/// assert!(standby.put("k", "v3").is_err()); // a standby refuses writes
/// standby.close()?;
/// # Ok(()) }
/// ```
pub struct Standby {
    // Declared first so it is dropped (the follower stopped) before the
    // store closes.
    follower: Follower,
    db: Db,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby")
            .field("path", &self.db.path())
            .field("name", &self.follower.name)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Standby {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

/// Why the follower thread stopped on its own.
#[derive(Clone, Debug)]
enum Halt {
    /// The primary was closed or dropped: nothing more to follow. Not a
    /// failure of the standby (promotion is what comes next).
    PrimaryGone,
    /// The standby cannot go on: stale, diverged, or its own store failed.
    Failed(Error),
}

/// The error given for a standby whose primary is gone.
#[derive(Debug)]
struct PrimaryClosed;

impl std::fmt::Display for PrimaryClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the primary store was closed; the standby stopped following (promote it, or follow the reopened primary)",
        )
    }
}

impl std::error::Error for PrimaryClosed {}

impl Halt {
    fn to_error(&self) -> Error {
        match self {
            Halt::PrimaryGone => Error::Source(Arc::new(PrimaryClosed)),
            Halt::Failed(e) => e.clone(),
        }
    }
}

/// What the follower thread and the handle share.
struct Shared {
    stop: AtomicBool,
    /// The next primary offset to apply: every record below it is applied.
    position: AtomicU64,
    halt: Mutex<Option<Halt>>,
    progress: Mutex<()>,
    progress_cv: Condvar,
}

impl Shared {
    fn advance(&self, position: u64) {
        self.position.store(position, Ordering::Release);
        let _g = self.progress.lock();
        self.progress_cv.notify_all();
    }

    fn halt(&self, halt: Halt) {
        if let Halt::Failed(e) = &halt {
            tracing::error!(error = %e, "standby stopped following");
        } else {
            tracing::info!("standby stopped following: the primary is closed");
        }
        self.halt.lock().get_or_insert(halt);
        let _g = self.progress.lock();
        self.progress_cv.notify_all();
    }

    fn halted(&self) -> Option<Halt> {
        self.halt.lock().clone()
    }
}

/// The follower thread's handle and what it works on; stops the thread
/// when dropped.
struct Follower {
    name: String,
    shared: Arc<Shared>,
    standby: Arc<DbInner>,
    primary: Weak<DbInner>,
    thread: Option<JoinHandle<()>>,
}

impl Standby {
    /// Opens (or creates) the standby store in `dir` and starts following
    /// `primary`'s changelog as the named consumer `name`, from the
    /// standby's own changelog end (0 for a new store: it catches up from
    /// the primary's first record in the background).
    ///
    /// The primary should use
    /// [`ChangelogRetention::UntilShipped`]; with other retention
    /// settings the primary may delete records the standby has not
    /// applied yet, and the standby then stops with [`Error::Stale`].
    /// Reopening with the same `dir` and `name` resumes where the standby
    /// stopped. A new standby of a primary whose changelog no longer starts
    /// at offset 0 needs a restore or checkpoint first (not supported here
    /// yet).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// assert_eq!(primary.changelog().position("s1"), Some(0)); // registered
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Stale`] if the standby's position is below the primary's
    /// changelog start (records it needs are gone), past its end, or its
    /// last record differs from the primary's at the same offset (the two
    /// have diverged); [`Error::Closed`] if the primary is closing;
    /// the errors of [`Db::open`] for `dir`; the changelog's errors for a
    /// bad `name` (empty or longer than 255 bytes).
    pub fn follow(
        primary: &Db,
        dir: impl AsRef<Path>,
        name: &str,
        opts: Options,
    ) -> Result<Standby> {
        Standby::follow_with_fs(primary, Arc::new(StdFs), dir, name, opts)
    }

    /// As [`Standby::follow`], with the standby's store opened through the
    /// file-system seam `fs` (for fault tests with
    /// [`varve_changelog::fs::MemFs`]).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// use varve::varve_changelog::fs::MemFs;
    /// use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path(), Options::default())?;
    /// let fs = Arc::new(MemFs::new());
    /// let standby = Standby::follow_with_fs(&primary, fs, "standby", "s1", Options::default())?;
    /// assert_eq!(standby.position(), 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Standby::follow`].
    pub fn follow_with_fs(
        primary: &Db,
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        name: &str,
        opts: Options,
    ) -> Result<Standby> {
        let primary_inner = primary.inner();
        if primary_inner.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if primary_inner.opts.changelog_retention != ChangelogRetention::UntilShipped {
            tracing::warn!(
                primary = %primary.path().display(),
                "the primary's changelog retention ignores consumer positions: a standby that falls behind becomes stale"
            );
        }
        let db = Db::open_with_fs(fs, dir, opts)?;
        db.inner().replica.store(true, Ordering::Release);
        let position = register(&primary_inner.log, db.changelog(), name)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            position: AtomicU64::new(position),
            halt: Mutex::new(None),
            progress: Mutex::new(()),
            progress_cv: Condvar::new(),
        });
        let mut follower = Follower {
            name: name.to_owned(),
            shared,
            standby: db.inner().clone(),
            primary: Arc::downgrade(primary_inner),
            thread: None,
        };
        let worker = follower.worker(position);
        let thread = std::thread::Builder::new()
            .name(format!("varve-standby-{name}"))
            .spawn(move || worker.run())
            .map_err(|e| Error::io("spawn standby thread", db.path(), e))?;
        follower.thread = Some(thread);
        tracing::info!(standby = %db.path().display(), primary = %primary.path().display(), name, position, "standby following");
        Ok(Standby { follower, db })
    }

    /// The next primary changelog offset the standby will apply: every
    /// record below it is applied and visible to reads.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// primary.put("a", "1")?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// standby.wait_for_offset(1, std::time::Duration::from_secs(10))?;
    /// assert_eq!(standby.position(), 1);
    /// # Ok(()) }
    /// ```
    pub fn position(&self) -> u64 {
        self.follower.shared.position.load(Ordering::Acquire)
    }

    /// How many offsets the standby is behind: the primary's changelog end
    /// minus [`position`](Standby::position).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// assert_eq!(standby.lag()?, 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The error that stopped the follower (see [`Standby::error`]),
    /// including [`Error::Source`] once the primary is closed.
    pub fn lag(&self) -> Result<u64> {
        if let Some(halt) = self.follower.shared.halted() {
            return Err(halt.to_error());
        }
        let primary = self
            .follower
            .primary
            .upgrade()
            .ok_or_else(|| Halt::PrimaryGone.to_error())?;
        Ok(primary.log.next_offset().saturating_sub(self.position()))
    }

    /// The error that stopped the follower thread, if it stopped on its
    /// own: [`Error::Stale`] (the primary deleted records the standby
    /// needs, or the two diverged), the standby store's own failure (I/O,
    /// [`Error::ReadOnly`]), or [`Error::Source`] when the primary was
    /// closed.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// assert!(standby.error().is_none());
    /// primary.close()?;
    /// while standby.is_following() {
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    /// }
    /// assert!(matches!(standby.error(), Some(varve::Error::Source(_))));
    /// # Ok(()) }
    /// ```
    pub fn error(&self) -> Option<Error> {
        self.follower.shared.halted().map(|h| h.to_error())
    }

    /// Whether the follower thread is still following the primary.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// assert!(standby.is_following());
    /// # Ok(()) }
    /// ```
    pub fn is_following(&self) -> bool {
        self.follower.shared.halted().is_none()
            && self
                .follower
                .thread
                .as_ref()
                .is_some_and(|t| !t.is_finished())
    }

    /// Blocks until the standby has applied every primary record below
    /// `offset` (its [`position`](Standby::position) reaches `offset`), or
    /// `timeout` passes. Returns whether it got there.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve::{Db, Options, Standby};
    /// # use std::time::Duration;
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// primary.put("a", "1")?;
    /// assert!(standby.wait_for_offset(primary.changelog().next_offset(), Duration::from_secs(10))?);
    /// assert!(!standby.wait_for_offset(1_000, Duration::from_millis(1))?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The error that stopped the follower before it got there (see
    /// [`Standby::error`]).
    pub fn wait_for_offset(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let shared = &self.follower.shared;
        let deadline = Instant::now() + timeout;
        let mut g = shared.progress.lock();
        loop {
            if self.position() >= offset {
                return Ok(true);
            }
            if let Some(halt) = shared.halted() {
                return Err(halt.to_error());
            }
            if shared.progress_cv.wait_until(&mut g, deadline).timed_out() {
                return Ok(self.position() >= offset);
            }
        }
    }

    /// Stops following and returns the standby's store as a writable
    /// [`Db`]: the follower thread is stopped, the standby catches up to
    /// the primary's changelog end as of this call (if the primary is
    /// still open), syncs its changelog, deregisters its consumer name on
    /// the primary, and leaves replica mode. The next write gets the
    /// offset after the last replicated record; nothing is rebuilt.
    ///
    /// Promote while the primary takes no more writes (or is gone):
    /// writes the primary accepts after this call are not in the promoted
    /// store. A closed primary is not an error: promotion is how a standby
    /// takes over. If the primary is gone its registration cannot be
    /// removed; remove it with
    /// [`Log::remove_position`](varve_changelog::Log::remove_position)
    /// after reopening it if it should not hold back retention.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// primary.put("a", "1")?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// standby.wait_for_offset(1, std::time::Duration::from_secs(10))?;
    /// drop(primary); // the primary dies
    /// let db = standby.promote()?;
    /// assert_eq!(db.get("a")?.as_deref(), Some(&b"1"[..]));
    /// db.put("b", "2")?; // offset 1: continues the primary's offsets
    /// assert_eq!(db.changelog().next_offset(), 2);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The follower's error if it stopped on one other than the primary
    /// being closed ([`Error::Stale`], the standby's own I/O failure),
    /// errors catching up or syncing. The store is closed on error; it can
    /// be reopened with [`Db::open`] (which opens it writable) or
    /// [`Standby::follow`].
    pub fn promote(self) -> Result<Db> {
        let Standby { mut follower, db } = self;
        follower.stop();
        if let Some(Halt::Failed(e)) = follower.shared.halted() {
            return Err(e);
        }
        let primary = follower.primary.upgrade();
        if let Some(primary) = primary
            .as_ref()
            .filter(|p| !p.closing.load(Ordering::Acquire))
        {
            let target = primary.log.next_offset();
            let worker = follower.worker(follower.shared.position.load(Ordering::Acquire));
            while follower.shared.position.load(Ordering::Acquire) < target {
                if !worker.step(primary)? {
                    break;
                }
            }
        }
        db.inner().sync_log()?;
        if let Some(primary) = &primary
            && let Err(e) = primary.log.remove_position(&follower.name)
        {
            tracing::warn!(name = follower.name, error = %e, "could not deregister the promoted standby on its primary");
        }
        drop(primary);
        db.inner().replica.store(false, Ordering::Release);
        tracing::info!(store = %db.path().display(), next_offset = db.changelog().next_offset(), "standby promoted");
        Ok(db)
    }

    /// Stops following and closes the standby store. Its registration on
    /// the primary stays (so that retention keeps what it needs to resume);
    /// remove it with
    /// [`Log::remove_position`](varve_changelog::Log::remove_position) if
    /// the standby is gone for good. Dropping a standby does the same,
    /// ignoring errors.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// standby.close()?;
    /// primary.changelog().remove_position("s1")?; // gone for good
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The follower's error if it stopped on one other than the primary
    /// being closed, else the store's close error.
    pub fn close(self) -> Result<()> {
        let Standby { mut follower, db } = self;
        follower.stop();
        let closed = db.close();
        match follower.shared.halted() {
            Some(Halt::Failed(e)) => Err(e),
            _ => closed,
        }
    }
}

/// Registers consumer `name` at `position` (the standby's changelog end)
/// on the primary's changelog, after checking that the standby can catch
/// up from there and holds the primary's history; checks the position
/// again after registering, as retention may have moved meanwhile.
fn register(log: &Log, standby: &Log, name: &str) -> Result<u64> {
    let position = standby.next_offset();
    check_position(position, bounds(log))?;
    check_same_history(standby, log)?;
    log.commit_position(name, position)?;
    check_position(position, bounds(log))?;
    Ok(position)
}

/// Compares the standby's last record with the primary's record at the
/// same offset: a standby whose primary lost an unsynced tail in a crash
/// and then wrote new records at the same offsets (or that follows another
/// store) holds a different history at the same position. Where the
/// primary no longer has that offset (cleaned or deleted) there is nothing
/// to compare.
fn check_same_history(standby: &Log, primary: &Log) -> Result<()> {
    let Some(ours) = last_record(standby)? else {
        return Ok(());
    };
    if ours.offset < primary.log_start_offset() || ours.offset >= primary.next_offset() {
        return Ok(());
    }
    let theirs = primary.reader(ours.offset)?.next().transpose()?;
    match theirs {
        Some(theirs) if theirs.offset == ours.offset && theirs.record != ours.record => {
            Err(Error::Stale {
                position: standby.next_offset(),
                log_start_offset: primary.log_start_offset(),
                reason: format!(
                    "the standby's record at offset {} differs from the primary's: the histories diverged (the primary lost an unsynced tail and wrote new records there, or it is another store)",
                    ours.offset
                ),
            })
        }
        _ => Ok(()),
    }
}

/// The last record `log` still holds, scanning back from its newest
/// segment (at most one non-empty segment is read).
fn last_record(log: &Log) -> Result<Option<StoredRecord>> {
    let start = log.log_start_offset();
    for base in log.segment_base_offsets().into_iter().rev() {
        let from = base.max(start);
        if from >= log.next_offset() {
            continue;
        }
        let mut last = None;
        for record in log.reader(from)? {
            last = Some(record?);
        }
        if last.is_some() {
            return Ok(last);
        }
        if base <= start {
            break;
        }
    }
    Ok(None)
}

fn bounds(log: &Log) -> SourceBounds {
    SourceBounds {
        start_offset: log.log_start_offset(),
        end_offset: log.next_offset(),
    }
}

impl Follower {
    fn worker(&self, committed: u64) -> Worker {
        Worker {
            name: self.name.clone(),
            shared: self.shared.clone(),
            standby: self.standby.clone(),
            primary: self.primary.clone(),
            committed: AtomicU64::new(committed),
        }
    }

    /// Stops the thread and waits for it.
    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            self.shared.halt(Halt::Failed(Error::InvalidArgument(
                "the standby's follower thread panicked".into(),
            )));
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The follower thread's state.
struct Worker {
    name: String,
    shared: Arc<Shared>,
    standby: Arc<DbInner>,
    primary: Weak<DbInner>,
    /// The position last committed on the primary.
    committed: AtomicU64,
}

impl Worker {
    fn run(self) {
        let mut last_commit = Instant::now();
        while !self.shared.stop.load(Ordering::Acquire) {
            let Some(primary) = self.primary.upgrade() else {
                self.shared.halt(Halt::PrimaryGone);
                return;
            };
            if primary.closing.load(Ordering::Acquire) {
                // Its changelog is still open until the last handle goes:
                // record how far the standby got, for when it reopens.
                if let Err(e) = self.commit() {
                    tracing::warn!(name = self.name, error = %e, "standby could not commit its position");
                }
                drop(primary);
                self.shared.halt(Halt::PrimaryGone);
                return;
            }
            let applied = match self.step(&primary) {
                Ok(applied) => applied,
                Err(e) => {
                    drop(primary);
                    self.shared.halt(Halt::Failed(e));
                    return;
                }
            };
            if !applied {
                primary
                    .log
                    .wait_for(self.shared.position.load(Ordering::Acquire), IDLE_WAIT);
            }
            drop(primary);
            // At most one sync and position commit per interval, busy or
            // idle (a no-op when nothing new was applied).
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                if let Err(e) = self.commit() {
                    self.shared.halt(Halt::Failed(e));
                    return;
                }
                last_commit = Instant::now();
            }
        }
        // A clean stop: let the primary's retention go as far as possible.
        if let Err(e) = self.commit() {
            tracing::warn!(name = self.name, error = %e, "standby could not commit its position on stopping");
        }
    }

    /// Reads the next records from the primary and applies them; returns
    /// whether anything new was read.
    fn step(&self, primary: &DbInner) -> Result<bool> {
        let log = &primary.log;
        let position = self.shared.position.load(Ordering::Acquire);
        let end = log.next_offset();
        check_position(position, bounds(log))?;
        if position >= end {
            return Ok(false);
        }
        let (mut records, next) = fetch(log, position)?;
        // A reader may see a batch being appended before the log's end
        // moves past it (and before the primary has applied it): apply
        // only what lies below the end read above, so the standby is
        // never ahead of the end it reports against.
        let read_past_end = records.last().is_some_and(|r| r.offset >= end);
        records.retain(|r| r.offset < end);
        for group in groups(&records) {
            self.standby.apply_replicated(group)?;
            if let Some(last) = group.last() {
                self.shared.advance(last.offset + 1);
            }
        }
        if records.is_empty() || read_past_end {
            // Every record in [position, end) is applied; offsets without
            // records there were emptied by a compaction.
            self.shared.advance(end);
        } else {
            self.shared.advance(next);
        }
        Ok(true)
    }

    /// Makes the standby's changelog durable, then tells the primary how
    /// far it got: the primary's retention may then delete below it.
    fn commit(&self) -> Result<()> {
        let durable = self.standby.log.next_offset();
        if durable == self.committed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.standby.sync_log()?;
        let Some(primary) = self.primary.upgrade() else {
            return Ok(());
        };
        match primary.log.commit_position(&self.name, durable) {
            Ok(()) => self.committed.store(durable, Ordering::Release),
            // The primary's problem, not the standby's: retry next time.
            Err(e) => {
                tracing::warn!(name = self.name, error = %e, "standby could not commit its position")
            }
        }
        Ok(())
    }
}

/// The records at and after `position` (about [`POLL_BYTES`] of them) and
/// the offset after the last one the read looked at.
fn fetch(log: &Log, position: u64) -> Result<(Vec<StoredRecord>, u64)> {
    let mut source = LogSource::new(log);
    let read = source.seek(position).and_then(|()| source.poll(POLL_BYTES));
    match read {
        Ok(records) => Ok((records, source.position())),
        Err(e) => {
            // Retention may have moved the start past us since the check.
            check_position(position, bounds(log))?;
            Err(e.into())
        }
    }
}

/// Splits `records` into groups small enough for one changelog batch.
fn groups(records: &[StoredRecord]) -> impl Iterator<Item = &[StoredRecord]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0usize;
        let mut n = 0;
        while n < rest.len() && n < GROUP_RECORDS_MAX && (n == 0 || bytes < GROUP_BYTES_MAX) {
            let r = &rest[n].record;
            bytes += r.key.len() + r.value.as_ref().map_or(0, |v| v.len()) + RECORD_OVERHEAD_BYTES;
            n += 1;
        }
        let (group, tail) = rest.split_at(n);
        rest = tail;
        Some(group)
    })
}
