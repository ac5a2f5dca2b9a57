//! The follower thread: reads the primary's changelog, applies what it
//! reads, and commits its position on the primary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use std::path::PathBuf;

use varve_changelog::fs::FileSystem;
use varve_changelog::{Log, LogOptions, LogSource, RecordSource, StoredRecord};

use super::register::bounds;
use crate::error::{Error, Result};
use crate::key::SeqNo;
use crate::memtable::seqno_of_offset;
use crate::replicate::check_replica_position;
use crate::state::DbInner;

/// Bytes of keys and values the follower reads from the primary at once.
pub(super) const POLL_BYTES: usize = 1 << 20;
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
pub(super) const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How often the follower syncs its changelog and commits its position on
/// the primary (when it applied something since the last time).
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// Why the follower thread stopped on its own.
#[derive(Clone, Debug)]
pub(super) enum Halt {
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
    pub(super) fn to_error(&self) -> Error {
        match self {
            Halt::PrimaryGone => Error::Source(Arc::new(PrimaryClosed)),
            Halt::Failed(e) => e.clone(),
        }
    }
}

/// What the follower thread and the handle share.
pub(super) struct Shared {
    pub(super) stop: AtomicBool,
    /// The next primary offset to apply: every record below it is applied.
    pub(super) position: AtomicU64,
    pub(super) halt: Mutex<Option<Halt>>,
    pub(super) progress: Mutex<()>,
    pub(super) progress_cv: Condvar,
}

impl Shared {
    pub(super) fn advance(&self, position: u64) {
        self.position.store(position, Ordering::Release);
        let _g = self.progress.lock();
        self.progress_cv.notify_all();
    }

    pub(super) fn halt(&self, halt: Halt) {
        if let Halt::Failed(e) = &halt {
            tracing::error!(error = %e, "standby stopped following");
        } else {
            tracing::info!("standby stopped following: the primary is closed");
        }
        self.halt.lock().get_or_insert(halt);
        let _g = self.progress.lock();
        self.progress_cv.notify_all();
    }

    pub(super) fn halted(&self) -> Option<Halt> {
        self.halt.lock().clone()
    }

    /// A fresh state at `position`.
    pub(super) fn new(position: u64) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            position: AtomicU64::new(position),
            halt: Mutex::new(None),
            progress: Mutex::new(()),
            progress_cv: Condvar::new(),
        }
    }

    /// Waits until the position reaches `offset`, up to `timeout`.
    pub(super) fn wait_for_offset(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let reached = || self.position.load(Ordering::Acquire) >= offset;
        let mut g = self.progress.lock();
        loop {
            if reached() {
                return Ok(true);
            }
            if let Some(halt) = self.halted() {
                return Err(halt.to_error());
            }
            if self.progress_cv.wait_until(&mut g, deadline).timed_out() {
                return Ok(reached());
            }
        }
    }

    /// Tells the follower `thread` to stop and waits for it.
    pub(super) fn stop_thread(&self, thread: &mut Option<JoinHandle<()>>) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = thread.take()
            && thread.join().is_err()
        {
            self.halt(Halt::Failed(Error::InvalidArgument(
                "the standby's follower thread panicked".into(),
            )));
        }
    }

    /// Whether the follower `thread` is still applying records.
    pub(super) fn is_following(&self, thread: Option<&JoinHandle<()>>) -> bool {
        self.halted().is_none() && thread.is_some_and(|t| !t.is_finished())
    }
}

/// The follower thread's handle and what it works on; stops the thread
/// when dropped.
pub(super) struct Follower {
    pub(super) name: String,
    pub(super) shared: Arc<Shared>,
    pub(super) standby: Arc<DbInner>,
    pub(super) primary: Weak<DbInner>,
    /// Where the primary's changelog lives, to catch up from its files
    /// when the primary is gone.
    pub(super) primary_changelog: PrimaryChangelog,
    pub(super) thread: Option<JoinHandle<()>>,
}

/// The primary's changelog directory, file system and options.
pub(super) struct PrimaryChangelog {
    pub(super) fs: Arc<dyn FileSystem>,
    pub(super) dir: PathBuf,
    pub(super) opts: LogOptions,
}

impl Follower {
    pub(super) fn worker(&self, committed: u64) -> Worker {
        Worker {
            name: self.name.clone(),
            shared: self.shared.clone(),
            standby: self.standby.clone(),
            primary: self.primary.clone(),
            committed: AtomicU64::new(committed),
        }
    }

    /// Stops the thread and waits for it.
    pub(super) fn stop(&mut self) {
        self.shared.stop_thread(&mut self.thread);
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The follower thread's state.
pub(super) struct Worker {
    name: String,
    shared: Arc<Shared>,
    standby: Arc<DbInner>,
    primary: Weak<DbInner>,
    /// The position last committed on the primary.
    committed: AtomicU64,
}

impl Worker {
    pub(super) fn run(self) {
        let mut last_commit = Instant::now();
        while !self.shared.stop.load(Ordering::Acquire) {
            let Some(primary) = self.primary.upgrade() else {
                self.shared.halt(Halt::PrimaryGone);
                return;
            };
            if primary.lifecycle.is_closing() {
                // Its changelog stays open while this handle lives: apply
                // what it acknowledged before closing, then record how far
                // the standby got, for when it reopens.
                self.drain(&primary.log);
                if let Err(e) = self.commit() {
                    tracing::warn!(name = self.name, error = %e, "standby could not commit its position");
                }
                drop(primary);
                self.shared.halt(Halt::PrimaryGone);
                return;
            }
            let applied = match self.step(&primary.log) {
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

    /// Applies everything up to the end of the primary's changelog `log`
    /// (which takes no more writes); returns whether it got there. A
    /// failure is logged: promotion catches up again and reports it.
    pub(super) fn drain(&self, log: &Log) -> bool {
        loop {
            match self.step(log) {
                Ok(true) => {}
                Ok(false) => return true,
                Err(e) => {
                    tracing::warn!(name = self.name, error = %e, "standby could not apply the closing primary's last records");
                    return false;
                }
            }
        }
    }

    /// Reads the next records from the primary's changelog `log` and
    /// applies them; returns whether anything new was read.
    pub(super) fn step(&self, log: &Log) -> Result<bool> {
        let position = self.shared.position.load(Ordering::Acquire);
        let end = log.next_offset();
        check_replica_position(position, bounds(log))?;
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
        check_offsets_in_range(log, &records)?;
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

/// Refuses records copied from `log` whose offsets lie beyond the
/// sequence-number range: `Corruption` naming the primary's segment and
/// the batch's byte (the standby's memtable could not hold them).
fn check_offsets_in_range(log: &Log, records: &[StoredRecord]) -> Result<()> {
    let Some(bad) = records.iter().find(|r| seqno_of_offset(r.offset).is_none()) else {
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

/// The records at and after `position` (about [`POLL_BYTES`] of them) and
/// the offset after the last one the read looked at.
fn fetch(log: &Log, position: u64) -> Result<(Vec<StoredRecord>, u64)> {
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

/// Splits `records` into groups small enough for one changelog batch.
pub(super) fn groups(records: &[StoredRecord]) -> impl Iterator<Item = &[StoredRecord]> {
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
