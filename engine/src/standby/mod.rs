//! [`Standby`]: a second store that follows a changelog — an in-process
//! primary's, or any [`RecordSource`] such as a Kafka topic partition —
//! and can be promoted to take the primary's place.
//!
//! The standby is an ordinary store in *replica mode*: a background thread
//! (the follower, `follower.rs`) reads its source from the standby's own
//! changelog end and applies what it reads with the source's offsets (see
//! `replicate.rs`), so the standby's position in the source is its own
//! `next_offset`, and a reopened standby resumes from there. What the
//! follower reads is an `Upstream` (`upstream.rs`): any record source
//! (`source.rs`), or the in-process primary (`primary.rs`), which also
//! registers the standby as a named consumer on the primary's changelog
//! so that
//! [`ChangelogRetention::UntilShipped`](crate::ChangelogRetention::UntilShipped)
//! keeps every record the standby has not made durable. See
//! `docs/STANDBY.md`.

mod follower;
mod primary;
mod register;
mod shared;
mod source;
mod upstream;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use varve_changelog::RecordSource;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::options::Options;

use follower::{Follower, Worker};
use primary::PrimarySource;
use shared::{Halt, Shared};
use source::Polled;
use upstream::{EndProbe, Upstream};

/// How far a standby reads its source before [`Standby::promote`] makes
/// it writable.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use varve_db::{CatchUp, Db, Options, Standby};
/// let primary = Db::open(dir.path().join("p"), Options::default())?;
/// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
/// primary.put("k", "v")?;
/// primary.close()?;
/// // Failover: everything the primary acknowledged, nothing lost.
/// let db = standby.promote(CatchUp::ToEnd)?;
/// assert_eq!(db.get("k")?.as_deref(), Some(&b"v"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatchUp {
    /// Apply every record up to the source's end offset as of the call,
    /// then promote; fail rather than promote short of it. The end is an
    /// in-process primary's changelog end (every record of a closed
    /// primary's changelog, read from its directory), a `KafkaSource`'s
    /// high watermark, any source's
    /// [`bounds`](RecordSource::bounds)`().end_offset`.
    ToEnd,
    /// Promote at [`position`](Standby::position): read nothing more from
    /// the source (it may be unreachable, or you waited for the offset
    /// you need with [`wait_for_offset`](Standby::wait_for_offset)).
    None,
}

/// A standby replica: a store of its own that follows a changelog in a
/// background thread, serves reads (through `Deref` to [`Db`]), refuses
/// writes, and can be [promoted](Standby::promote) to a writable store
/// that continues the source's offsets.
///
/// It follows either an in-process primary [`Db`]
/// ([`follow`](Standby::follow): a named consumer on the primary's
/// changelog) or any [`RecordSource`]
/// ([`follow_source`](Standby::follow_source): a Kafka topic partition
/// through the bridge's `KafkaSource`, a `LogSource`, a source of your
/// own). Both behave the same; only what the source does upstream
/// differs. Reads on a standby see a prefix of the source's history:
/// every replicated group becomes visible whole, in offset order.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use varve_db::{CatchUp, ChangelogRetention, Db, Options, Standby};
/// let opts = Options::default().changelog_retention(ChangelogRetention::UntilShipped);
/// let primary = Db::open(dir.path().join("primary"), opts)?;
/// primary.put("k", "v1")?;
/// let standby = Standby::follow(&primary, dir.path().join("standby"), "standby-1", Options::default())?;
/// primary.put("k", "v2")?;
/// assert!(standby.wait_for_offset(primary.changelog().next_offset(), Duration::from_secs(10))?);
/// assert_eq!(standby.get("k")?.as_deref(), Some(&b"v2"[..]));
/// assert_eq!(standby.lag()?, 0);
/// assert!(standby.put("k", "v3").is_err()); // a standby refuses writes
/// primary.close()?;
/// let db = standby.promote(CatchUp::ToEnd)?; // writable, continuing at offset 2
/// db.put("k", "v3")?;
/// assert_eq!(db.changelog().next_offset(), 3);
/// # Ok(()) }
/// ```
pub struct Standby {
    // Declared first so it is dropped (the follower stopped) before the
    // store closes.
    follower: Follower,
    db: Db,
    /// The source's end offset, for `lag`.
    end: EndProbe,
    /// What the standby follows, for `Debug` and logs.
    source: String,
}

impl std::fmt::Debug for Standby {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standby")
            .field("path", &self.db.path())
            .field("source", &self.source)
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

impl Standby {
    /// Opens (or creates) the standby store in `dir` and follows the
    /// in-process `primary`'s changelog as its named consumer `name`, from
    /// the standby's own changelog end (0 for a new store: it catches up
    /// from the primary's first record in the background).
    ///
    /// The standby holds the primary weakly and commits its durable
    /// position on the primary's changelog every ~100 ms. The primary
    /// should use [`ChangelogRetention::UntilShipped`](crate::ChangelogRetention::UntilShipped);
    /// with other retention settings the primary may delete records the
    /// standby has not applied yet, and the standby then stops with
    /// [`Error::Stale`]. Reopening with the same `dir` and `name` resumes
    /// where the standby stopped. A new standby of a primary whose
    /// changelog no longer starts at offset 0 needs a restore first.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use varve_db::{Db, Options, Standby};
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
        if primary.inner().lifecycle.is_closing() {
            return Err(Error::Closed);
        }
        let db = open_replica(dir, opts)?;
        let (upstream, position, end) = PrimarySource::register(primary, db.changelog(), name)?;
        let source = format!("primary {} as consumer {name:?}", primary.path().display());
        tracing::info!(standby = %db.path().display(), primary = %primary.path().display(), name, position, "standby following");
        let thread = format!("varve-standby-{name}");
        Standby::start(db, Box::new(upstream), position, end, source, thread)
    }

    /// Opens (or creates) the store in `dir` and follows `source` from the
    /// store's changelog end: a store [restored](crate::restore()) from the
    /// same source continues at the offset its restore stopped at; a
    /// reopened standby resumes where it stopped. It commits nothing
    /// upstream: its position is its own changelog's end, made durable
    /// every ~100 ms and on close.
    ///
    /// With the `kafka` feature this is how a machine keeps a warm copy of
    /// a store from its changelog topic: restore from a `KafkaSource`,
    /// then follow a second `KafkaSource` of the same partition (see
    /// `docs/KAFKA.md`).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use varve_db::varve_changelog::{Log, LogOptions, LogSource, Record};
    /// use varve_db::{CatchUp, Options, RestoreOptions, Standby};
    /// // Any RecordSource will do; here a changelog of its own.
    /// let upstream = Arc::new(Log::open(dir.path().join("upstream"), LogOptions::default())?);
    /// upstream.append(&[Record::put("k", "v1")])?;
    /// let copy = dir.path().join("copy");
    /// varve_db::restore(&copy, &mut LogSource::new(upstream.clone()), RestoreOptions::default())?;
    /// let standby = Standby::follow_source(LogSource::new(upstream.clone()), &copy, Options::default())?;
    /// upstream.append(&[Record::put("k", "v2")])?;
    /// assert!(standby.wait_for_offset(2, Duration::from_secs(10))?);
    /// assert_eq!(standby.get("k")?.as_deref(), Some(&b"v2"[..]));
    /// let db = standby.promote(CatchUp::None)?; // writable, continuing at offset 2
    /// db.put("k", "v3")?;
    /// assert_eq!(db.changelog().next_offset(), 3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Stale`] if the store's position is below the source's
    /// start offset (the records it needs are gone: restore it again) or
    /// past the source's end (it holds records the source lacks);
    /// [`Error::Source`] for the source's errors; the errors of
    /// [`Db::open`] for `dir`.
    pub fn follow_source<S>(source: S, dir: impl AsRef<Path>, opts: Options) -> Result<Standby>
    where
        S: RecordSource + Send + 'static,
    {
        let db = open_replica(dir, opts)?;
        let position = db.changelog().next_offset();
        let (upstream, end) = Polled::start(source, position)?;
        tracing::info!(standby = %db.path().display(), position, "standby following a record source");
        let (source, thread) = (
            "record source".to_owned(),
            "varve-source-standby".to_owned(),
        );
        Standby::start(db, Box::new(upstream), position, end, source, thread)
    }

    /// Starts the follower of `upstream` on `db` at `position`.
    fn start(
        db: Db,
        upstream: Box<dyn Upstream>,
        position: u64,
        end: EndProbe,
        source: String,
        thread: String,
    ) -> Result<Standby> {
        let shared = Arc::new(Shared::new(position));
        let worker = Worker::new(upstream, db.inner().clone(), shared);
        let follower = Follower::spawn(worker, thread)
            .map_err(|e| Error::io("spawn standby thread", db.path(), e))?;
        Ok(Standby {
            follower,
            db,
            end,
            source,
        })
    }

    /// The next source offset the standby will apply: every record below
    /// it is applied and visible to reads.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve_db::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// primary.put("a", "1")?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// standby.wait_for_offset(1, std::time::Duration::from_secs(10))?;
    /// assert_eq!(standby.position(), 1);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn position(&self) -> u64 {
        self.follower.shared.position()
    }

    /// How many offsets the standby is behind: the source's end offset
    /// minus [`position`](Standby::position). For an in-process primary the
    /// end is its changelog's `next_offset` now; for a record source, its
    /// end offset as last seen (asked at most once a second while records
    /// flow, and whenever the standby has caught up).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve_db::{Db, Options, Standby};
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
        Ok((self.end)()?.saturating_sub(self.position()))
    }

    /// The error that stopped the follower thread, if it stopped on its
    /// own: [`Error::Stale`] (the source deleted records the standby
    /// needs, or the two diverged), the source's error
    /// ([`Error::Source`]), the standby store's own failure (I/O,
    /// [`Error::ReadOnly`]), or [`Error::Source`] when the in-process
    /// primary was closed (which [`promote`](Standby::promote) takes as a
    /// failover, not a failure).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve_db::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// assert!(standby.error().is_none());
    /// primary.close()?;
    /// while standby.is_following() {
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    /// }
    /// assert!(matches!(standby.error(), Some(varve_db::Error::Source(_))));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn error(&self) -> Option<Error> {
        self.follower.shared.halted().map(|h| h.to_error())
    }

    /// Whether the follower thread is still following its source.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve_db::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// assert!(standby.is_following());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn is_following(&self) -> bool {
        self.follower.is_following()
    }

    /// Blocks until the standby has applied every source record below
    /// `offset` (its [`position`](Standby::position) reaches `offset`), or
    /// `timeout` passes. Returns whether it got there.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve_db::{Db, Options, Standby};
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
        self.follower.shared.wait_for_offset(offset, timeout)
    }

    /// Stops following and returns the standby's store as a writable
    /// [`Db`]: the follower thread is stopped, the standby reads its
    /// source as far as `catch_up` says, syncs its changelog, deregisters
    /// its consumer name on an in-process primary, and leaves replica
    /// mode. The next write gets the offset after the last replicated
    /// record; nothing is rebuilt.
    ///
    /// With [`CatchUp::ToEnd`] the end caught up to is the source's end
    /// offset as of this call. For an in-process primary that is still
    /// open, its changelog end now; for one that is closing or closed,
    /// every record it holds: a closed (or dropped) primary's changelog is
    /// opened from its directory and read to its end, so a standby
    /// promoted after its primary closed holds every write the primary
    /// acknowledged. Stop writing to the primary first: writes it accepts
    /// after this call are not in the promoted store. With
    /// [`CatchUp::None`] the store is promoted at
    /// [`position`](Standby::position).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve_db::{CatchUp, Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// for i in 0..1000 {
    ///     primary.put(format!("k{i}"), "v")?;
    /// }
    /// primary.close()?; // the standby may not have applied everything yet
    /// let db = standby.promote(CatchUp::ToEnd)?;
    /// assert_eq!(db.get("k999")?.as_deref(), Some(&b"v"[..]));
    /// db.put("next", "x")?; // continues the primary's offsets
    /// assert_eq!(db.changelog().next_offset(), 1001);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The follower's error if it stopped on one other than the primary
    /// being closed ([`Error::Stale`], the source's or the standby's own
    /// failure). With [`CatchUp::ToEnd`], errors reading the source (for a
    /// closed primary, the errors of opening its changelog:
    /// [`Error::Changelog`] with `Locked` if something reopened it), in
    /// which case the standby is not promoted short of the end; errors
    /// catching up or syncing. The store is closed on error; it can be
    /// reopened with [`Db::open`] (which opens it writable) or followed
    /// again.
    pub fn promote(self, catch_up: CatchUp) -> Result<Db> {
        let Standby {
            mut follower, db, ..
        } = self;
        let worker = follower.stop();
        if let Some(Halt::Failed(e)) = follower.shared.halted() {
            return Err(e);
        }
        let Some(mut worker) = worker else {
            return Err(Error::InvalidArgument(
                "the standby's follower thread is gone".into(),
            ));
        };
        if catch_up == CatchUp::ToEnd {
            worker.catch_up()?;
        }
        db.inner().sync_log()?;
        worker.upstream.promoted()?;
        db.inner().lifecycle.set_replica(false);
        tracing::info!(store = %db.path().display(), next_offset = db.changelog().next_offset(), ?catch_up, "standby promoted");
        Ok(db)
    }

    /// Stops following and closes the standby store. An in-process
    /// primary keeps its registration (so that retention keeps what the
    /// standby needs to resume); remove it with
    /// [`Log::remove_position`](varve_changelog::Log::remove_position) if
    /// the standby is gone for good. Dropping a standby does the same,
    /// ignoring errors.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve_db::{Db, Options, Standby};
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
        let Standby {
            mut follower, db, ..
        } = self;
        drop(follower.stop());
        let closed = db.close();
        match follower.shared.halted() {
            Some(Halt::Failed(e)) => Err(e),
            _ => closed,
        }
    }
}

/// Opens the store in `dir` in replica mode.
fn open_replica(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
    let db = Db::open(dir, opts)?;
    db.inner().lifecycle.set_replica(true);
    Ok(db)
}
