//! The follower: one loop that fetches from the standby's [`Upstream`],
//! applies what it fetched in groups with the source's offsets, and every
//! so often syncs the standby's changelog and commits its position
//! upstream. It runs on a thread of its own while the standby follows,
//! and on the promoting thread for a promotion's catch-up.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use varve_changelog::StoredRecord;

use super::shared::{Halt, Shared};
use super::upstream::{Fetched, Upstream};
use crate::error::{Error, Result};
use crate::state::DbInner;

/// Bytes of keys and values the follower reads from its source at once.
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
const IDLE_WAIT: Duration = Duration::from_millis(20);
/// How often the follower syncs its changelog and commits its position
/// upstream (when it applied something since the last time).
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// What one step of the follower did.
enum Step {
    /// It applied records or moved over a gap.
    Moved,
    /// The source had nothing new.
    Idle,
    /// The source closed and is drained.
    Closed,
}

/// The follower's state: the source, the store it applies to, and the
/// position it last committed upstream.
pub(super) struct Worker {
    pub(super) upstream: Box<dyn Upstream>,
    standby: Arc<DbInner>,
    shared: Arc<Shared>,
    committed: u64,
}

impl Worker {
    /// A follower of `upstream` applying to `standby` from the position in
    /// `shared`, which is committed upstream already.
    pub(super) fn new(
        upstream: Box<dyn Upstream>,
        standby: Arc<DbInner>,
        shared: Arc<Shared>,
    ) -> Worker {
        let committed = shared.position();
        Worker {
            upstream,
            standby,
            shared,
            committed,
        }
    }

    /// The follower thread's loop, until told to stop or halted; gives
    /// itself back for a promotion.
    pub(super) fn run(mut self) -> Worker {
        let mut last_commit = Instant::now();
        while !self.shared.stop.load(Ordering::Acquire) {
            match self.step() {
                Ok(Step::Moved) => {}
                Ok(Step::Idle) => self.upstream.wait(self.shared.position(), IDLE_WAIT),
                Ok(Step::Closed) => {
                    // Record how far the standby got, for when it reopens.
                    self.commit_or_warn();
                    self.upstream.release();
                    self.shared.halt(Halt::SourceClosed);
                    return self;
                }
                Err(e) => return self.fail(e),
            }
            // At most one sync and position commit per interval, busy or
            // idle (a no-op when nothing new was applied).
            if last_commit.elapsed() >= COMMIT_INTERVAL {
                if let Err(e) = self.commit() {
                    return self.fail(e);
                }
                last_commit = Instant::now();
            }
        }
        // A clean stop: let the source's retention go as far as possible.
        self.commit_or_warn();
        self.upstream.release();
        self
    }

    fn fail(mut self, e: Error) -> Worker {
        self.upstream.release();
        self.shared.halt(Halt::Failed(e));
        self
    }

    /// Applies everything up to the source's end offset as of now, or
    /// until the source has nothing more (a compacted tail, a closed
    /// source).
    ///
    /// # Errors
    /// The source's and the standby's errors.
    pub(super) fn catch_up(&mut self) -> Result<()> {
        let target = self.upstream.end_offset()?;
        while self.shared.position() < target {
            match self.step()? {
                Step::Moved => {}
                Step::Idle | Step::Closed => break,
            }
        }
        Ok(())
    }

    /// Fetches the next records and applies them.
    fn step(&mut self) -> Result<Step> {
        let position = self.shared.position();
        let (records, next) = match self.upstream.fetch(position)? {
            Fetched::Records { records, next } => (records, next),
            Fetched::Closed => return Ok(Step::Closed),
        };
        for group in groups(&records) {
            self.standby.apply_replicated(group)?;
            if let Some(last) = group.last() {
                self.shared.advance(last.offset + 1);
            }
        }
        if next > self.shared.position() {
            self.shared.advance(next);
        }
        Ok(if records.is_empty() && next <= position {
            Step::Idle
        } else {
            Step::Moved
        })
    }

    /// Makes the standby's changelog durable, then tells the source how
    /// far it got: the source's retention may then delete below it.
    fn commit(&mut self) -> Result<()> {
        let durable = self.standby.log.next_offset();
        if durable == self.committed {
            return Ok(());
        }
        self.standby.sync_log()?;
        match self.upstream.commit(durable) {
            Ok(()) => self.committed = durable,
            // The source's problem, not the standby's: retry next time.
            Err(e) => tracing::warn!(error = %e, "standby could not commit its position"),
        }
        Ok(())
    }

    fn commit_or_warn(&mut self) {
        if let Err(e) = self.commit() {
            tracing::warn!(error = %e, "standby could not commit its position on stopping");
        }
    }
}

/// The handle on the follower thread; stops it when dropped.
pub(super) struct Follower {
    pub(super) shared: Arc<Shared>,
    thread: Option<JoinHandle<Worker>>,
}

impl Follower {
    /// Starts `worker` on a thread named `thread_name`.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub(super) fn spawn(worker: Worker, thread_name: String) -> std::io::Result<Follower> {
        let shared = worker.shared.clone();
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || worker.run())?;
        Ok(Follower {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the thread to stop, waits for it, and takes back its state
    /// (`None` if it panicked, which halts the standby).
    pub(super) fn stop(&mut self) -> Option<Worker> {
        self.shared.stop.store(true, Ordering::Release);
        let worker = self.thread.take()?.join();
        if worker.is_err() {
            self.shared.halt(Halt::Failed(Error::InvalidArgument(
                "the standby's follower thread panicked".into(),
            )));
        }
        worker.ok()
    }

    /// Whether the thread is still applying records.
    pub(super) fn is_following(&self) -> bool {
        self.shared.halted().is_none() && self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop();
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

#[cfg(test)]
mod tests {
    use super::*;
    use varve_changelog::Record;

    fn records(n: usize, value_bytes: usize) -> Vec<StoredRecord> {
        (0..n as u64)
            .map(|offset| StoredRecord {
                offset,
                record: Record::put(format!("k{offset}"), vec![0u8; value_bytes]),
            })
            .collect()
    }

    fn sizes(records: &[StoredRecord]) -> Vec<usize> {
        groups(records).map(<[StoredRecord]>::len).collect()
    }

    #[test]
    fn groups_are_bounded_by_records_and_bytes() {
        assert!(sizes(&[]).is_empty());
        assert_eq!(sizes(&records(3, 10)), [3]);
        let n = GROUP_RECORDS_MAX + 5;
        assert_eq!(sizes(&records(n, 0)), [GROUP_RECORDS_MAX, 5]);
        // 256 KiB values: the group closes once it reaches the byte bound.
        assert_eq!(sizes(&records(9, 256 << 10)), [4, 4, 1]);
        // A record larger than the bound is a group of its own.
        assert_eq!(sizes(&records(2, GROUP_BYTES_MAX * 2)), [1, 1]);
        let all: usize = sizes(&records(n, 100)).iter().sum();
        assert_eq!(all, n);
    }
}
