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

mod follower;
mod register;
mod source;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use varve_changelog::fs::{FileSystem, StdFs};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::options::{ChangelogRetention, Options};

use follower::{Follower, Halt, PrimaryChangelog, Shared};
use register::register;
pub use source::SourceStandby;

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
/// let opts = Options::default().changelog_retention(ChangelogRetention::UntilShipped);
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
        if primary_inner.lifecycle.is_closing() {
            return Err(Error::Closed);
        }
        if primary_inner.opts.changelog_retention != ChangelogRetention::UntilShipped {
            tracing::warn!(
                primary = %primary.path().display(),
                "the primary's changelog retention ignores consumer positions: a standby that falls behind becomes stale"
            );
        }
        let db = Db::open(dir, opts.fs(fs))?;
        db.inner().lifecycle.set_replica(true);
        let position = register(&primary_inner.log, db.changelog(), name)?;
        let shared = Arc::new(Shared::new(position));
        let mut follower = Follower {
            name: name.to_owned(),
            shared,
            standby: db.inner().clone(),
            primary: Arc::downgrade(primary_inner),
            primary_changelog: PrimaryChangelog {
                fs: primary_inner.fs.clone(),
                dir: primary.changelog().dir().to_owned(),
                opts: crate::open::log_options(&primary_inner.opts),
            },
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
        self.follower
            .shared
            .is_following(self.follower.thread.as_ref())
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
        self.follower.shared.wait_for_offset(offset, timeout)
    }

    /// Stops following and returns the standby's store as a writable
    /// [`Db`]: the follower thread is stopped, the standby catches up to
    /// the end of the primary's changelog, syncs its changelog,
    /// deregisters its consumer name on the primary, and leaves replica
    /// mode. The next write gets the offset after the last replicated
    /// record; nothing is rebuilt.
    ///
    /// The end caught up to is the primary's changelog end as of this
    /// call if the primary is still open, and every record it holds if it
    /// is closed: a closed (or dropped) primary's changelog is opened from
    /// its directory and read to its end, so a standby promoted after its
    /// primary closed holds every write the primary acknowledged. Promote
    /// while the primary takes no more writes: writes it accepts after
    /// this call are not in the promoted store.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # use varve::{Db, Options, Standby};
    /// let primary = Db::open(dir.path().join("p"), Options::default())?;
    /// let standby = Standby::follow(&primary, dir.path().join("s"), "s1", Options::default())?;
    /// for i in 0..1000 {
    ///     primary.put(format!("k{i}"), "v")?;
    /// }
    /// primary.close()?; // the standby may not have applied everything yet
    /// let db = standby.promote()?;
    /// assert_eq!(db.get("k999")?.as_deref(), Some(&b"v"[..]));
    /// db.put("next", "x")?; // continues the primary's offsets
    /// assert_eq!(db.changelog().next_offset(), 1001);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The follower's error if it stopped on one other than the primary
    /// being closed ([`Error::Stale`], the standby's own I/O failure);
    /// errors reading the primary's changelog (for a closed primary, the
    /// errors of opening it: [`Error::Changelog`] with `Locked` if
    /// something reopened it), in which case the standby is not promoted
    /// short of the primary's end; errors catching up or syncing. The
    /// store is closed on error; it can be reopened with [`Db::open`]
    /// (which opens it writable) or [`Standby::follow`].
    pub fn promote(self) -> Result<Db> {
        let Standby { mut follower, db } = self;
        follower.stop();
        if let Some(Halt::Failed(e)) = follower.shared.halted() {
            return Err(e);
        }
        let worker = follower.worker(follower.shared.position.load(Ordering::Acquire));
        let catch_up = |log: &varve_changelog::Log| -> Result<()> {
            let target = log.next_offset();
            while follower.shared.position.load(Ordering::Acquire) < target {
                if !worker.step(log)? {
                    break;
                }
            }
            Ok(())
        };
        let deregister = |log: &varve_changelog::Log| {
            if let Err(e) = log.remove_position(&follower.name) {
                tracing::warn!(name = follower.name, error = %e, "could not deregister the promoted standby on its primary");
            }
        };
        match follower.primary.upgrade() {
            Some(primary) => {
                catch_up(&primary.log)?;
                db.inner().sync_log()?;
                deregister(&primary.log);
            }
            None => {
                let PrimaryChangelog { fs, dir, opts } = &follower.primary_changelog;
                let log = varve_changelog::Log::open(dir, opts.clone().fs(fs.clone()))
                    .inspect_err(|e| {
                        tracing::error!(standby = %db.path().display(), position = follower.shared.position.load(Ordering::Acquire), error = %e,
                            "cannot read the closed primary's changelog to catch up; not promoted");
                    })?;
                catch_up(&log)?;
                db.inner().sync_log()?;
                deregister(&log);
                log.close()?;
            }
        }
        db.inner().lifecycle.set_replica(false);
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
