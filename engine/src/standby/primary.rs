//! [`PrimarySource`]: an in-process primary [`Db`] as a standby's
//! upstream. It reads the primary's changelog directly (held weakly),
//! registers the standby as a named consumer there and commits the
//! standby's durable position to it, drains a closing primary to its end,
//! and catches up from a closed primary's changelog files at promotion.

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use varve_changelog::fs::FileSystem;
use varve_changelog::{Log, LogOptions, LogSource, RecordSource, StoredRecord};

use super::follower::POLL_BYTES;
use super::register::{bounds, register};
use super::shared::Halt;
use super::upstream::{EndProbe, Fetched, Upstream, beyond_seqno_range};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::key::SeqNo;
use crate::options::ChangelogRetention;
use crate::replicate::check_replica_position;
use crate::state::DbInner;

/// The in-process primary a standby follows as consumer `name`.
pub(super) struct PrimarySource {
    name: String,
    primary: Weak<DbInner>,
    /// The primary once it is closing, held so that its changelog stays
    /// open until the follower has drained it and committed.
    closing: Option<Arc<DbInner>>,
    /// Where the primary's changelog lives, to read its files once the
    /// primary is gone.
    changelog: PrimaryChangelog,
    /// A gone primary's changelog, opened from its files at promotion.
    on_disk: Option<Log>,
}

/// The primary's changelog directory, file system and options.
struct PrimaryChangelog {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    opts: LogOptions,
}

impl PrimaryChangelog {
    fn open(&self) -> Result<Log> {
        Ok(Log::open(&self.dir, self.opts.clone().fs(self.fs.clone()))?)
    }
}

impl PrimarySource {
    /// Registers the standby whose changelog is `standby` as consumer
    /// `name` on `primary` (after checking that it can catch up and holds
    /// the primary's history); returns the source, the standby's position
    /// and the probe of the primary's end.
    ///
    /// # Errors
    /// `Stale`; the changelog's errors for a bad `name`.
    pub(super) fn register(
        primary: &Db,
        standby: &Log,
        name: &str,
    ) -> Result<(PrimarySource, u64, EndProbe)> {
        let inner = primary.inner();
        if inner.opts.changelog_retention != ChangelogRetention::UntilShipped {
            tracing::warn!(
                primary = %primary.path().display(),
                "the primary's changelog retention ignores consumer positions: a standby that falls behind becomes stale"
            );
        }
        let position = register(&inner.log, standby, name)?;
        let weak = Arc::downgrade(inner);
        let probe: EndProbe = Box::new(move || {
            weak.upgrade()
                .map(|p| p.log.next_offset())
                .ok_or_else(|| Halt::SourceClosed.to_error())
        });
        let source = PrimarySource {
            name: name.to_owned(),
            primary: Arc::downgrade(inner),
            closing: None,
            changelog: PrimaryChangelog {
                fs: inner.fs.clone(),
                dir: primary.changelog().dir().to_owned(),
                opts: crate::open::log_options(&inner.opts),
            },
            on_disk: None,
        };
        Ok((source, position, probe))
    }

    /// The primary, if it is still there.
    fn live(&self) -> Option<Arc<DbInner>> {
        self.closing.clone().or_else(|| self.primary.upgrade())
    }

    fn deregister(&self, log: &Log) {
        if let Err(e) = log.remove_position(&self.name) {
            tracing::warn!(name = self.name, error = %e, "could not deregister the promoted standby on its primary");
        }
    }
}

impl Upstream for PrimarySource {
    fn fetch(&mut self, position: u64) -> Result<Fetched> {
        if let Some(log) = &self.on_disk {
            return read(log, position);
        }
        let Some(primary) = self.live() else {
            return Ok(Fetched::Closed);
        };
        if !primary.lifecycle.is_closing() {
            return read(&primary.log, position);
        }
        // Its changelog stays open while it is held: apply what it
        // acknowledged before closing, then stop.
        let fetched = read(&primary.log, position);
        self.closing = Some(primary);
        match fetched {
            Ok(Fetched::Records { records, next }) if records.is_empty() && next <= position => {
                Ok(Fetched::Closed)
            }
            Ok(fetched) => Ok(fetched),
            Err(e) => {
                // Promotion catches up again and reports it.
                tracing::warn!(name = self.name, error = %e, "standby could not apply the closing primary's last records");
                Ok(Fetched::Closed)
            }
        }
    }

    fn wait(&mut self, position: u64, timeout: Duration) {
        if let Some(primary) = self.live() {
            primary.log.wait_for(position, timeout);
        }
    }

    fn commit(&mut self, durable: u64) -> Result<()> {
        match self.live() {
            Some(primary) => Ok(primary.log.commit_position(&self.name, durable)?),
            None => Ok(()),
        }
    }

    fn release(&mut self) {
        self.closing = None;
    }

    fn end_offset(&mut self) -> Result<u64> {
        if let Some(log) = &self.on_disk {
            return Ok(log.next_offset());
        }
        if let Some(primary) = self.live() {
            return Ok(primary.log.next_offset());
        }
        // Gone: read every record its changelog holds, from its files.
        let log = self.changelog.open().inspect_err(|e| {
            tracing::error!(primary = %self.changelog.dir.display(), error = %e,
                "cannot read the closed primary's changelog to catch up; not promoted");
        })?;
        let end = log.next_offset();
        self.on_disk = Some(log);
        Ok(end)
    }

    fn promoted(&mut self) -> Result<()> {
        if let Some(log) = self.on_disk.take() {
            self.deregister(&log);
            return Ok(log.close()?);
        }
        if let Some(primary) = self.live() {
            self.deregister(&primary.log);
            self.closing = None;
            return Ok(());
        }
        // Promoted without catching up after the primary closed: its
        // changelog is opened only to drop the registration.
        match self.changelog.open() {
            Ok(log) => {
                self.deregister(&log);
                if let Err(e) = log.close() {
                    tracing::warn!(name = self.name, error = %e, "could not close the old primary's changelog after deregistering");
                }
            }
            Err(e) => {
                tracing::warn!(name = self.name, error = %e, "could not open the closed primary's changelog to deregister the promoted standby");
            }
        }
        Ok(())
    }
}

/// The records of the primary's changelog `log` at and after `position`
/// (about [`POLL_BYTES`] of them), all below the end the read started at.
fn read(log: &Log, position: u64) -> Result<Fetched> {
    let end = log.next_offset();
    check_replica_position(position, bounds(log))?;
    if position >= end {
        return Ok(Fetched::Records {
            records: Vec::new(),
            next: position,
        });
    }
    let (mut records, read_to) = poll(log, position)?;
    // A reader may see a batch being appended before the log's end moves
    // past it (and before the primary has applied it): keep only what
    // lies below the end read above, so the standby is never ahead of the
    // end it reports against.
    let read_past_end = records.last().is_some_and(|r| r.offset >= end);
    records.retain(|r| r.offset < end);
    check_offsets_in_range(log, &records)?;
    // Offsets in [position, end) without records were emptied by a
    // compaction.
    let next = if records.is_empty() || read_past_end {
        end
    } else {
        read_to
    };
    Ok(Fetched::Records { records, next })
}

/// The records at and after `position` and the offset after the last one
/// the read looked at.
fn poll(log: &Log, position: u64) -> Result<(Vec<StoredRecord>, u64)> {
    let mut source = LogSource::new(log);
    let read = source.seek(position).and_then(|()| source.poll(POLL_BYTES));
    match read {
        Ok(records) => Ok((records, source.position())),
        Err(e) => {
            // Retention may have moved the start past us since the check.
            check_replica_position(position, bounds(log))?;
            Err(e.into())
        }
    }
}

/// Refuses records copied from `log` whose offsets lie beyond the
/// sequence-number range: `Corruption` naming the primary's segment and
/// the batch's byte.
fn check_offsets_in_range(log: &Log, records: &[StoredRecord]) -> Result<()> {
    let Some(bad) = beyond_seqno_range(records) else {
        return Ok(());
    };
    let (path, position) = log
        .batch_location(bad.offset)?
        .unwrap_or_else(|| (log.dir().to_path_buf(), 0));
    let what = format!(
        "record at offset {} lies beyond the sequence-number range (offsets must be below {})",
        bad.offset,
        SeqNo::MAX.0
    );
    Err(Error::corruption(path, position, what))
}
