//! Background compaction threads, manual compaction, write stalls and the
//! deletion of tables no version needs any more.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::lifecycle::Writer;
use crate::shared::Step;
use crate::state::{CompactionState, DbInner, STALL_NONE, STALL_SLOWDOWN, STALL_STOP};
use crate::stats::Counters;
use crate::version::{FileKind, Level, NUM_LEVELS, Version, parse_file_name, table_file_name};

use super::picker::{Task, estimated_pending_bytes, manual_task, next_level, pick, shape};

/// How long a compaction thread waits after a failed compaction before
/// trying again.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// The delay of one write group during a slowdown.
const SLOWDOWN_DELAY: Duration = Duration::from_millis(1);

impl DbInner {
    /// A compaction thread: runs due tasks until the store closes or fails.
    pub(crate) fn compaction_loop(self: &Arc<Self>) {
        while let Some(task) = self.next_task() {
            match self.run_background_task(&task) {
                Step::Progress => {}
                Step::Stop => return,
                Step::Idle => {
                    let mut state = self.compaction.state.lock();
                    if !self.stopping() {
                        self.compaction.cv.wait_for(&mut state, RETRY_DELAY);
                    }
                }
            }
        }
    }

    /// One step of compaction, as a shared pool runs it: the next due
    /// task if there is one. A failed compaction says idle (it is tried
    /// again when the next version is installed).
    pub(crate) fn compaction_step(self: &Arc<Self>) -> Step {
        let task = {
            let mut state = self.compaction.state.lock();
            if self.stopping() {
                return Step::Stop;
            }
            match self.claim_due_task(&mut state) {
                Some(task) => task,
                None => return Step::Idle,
            }
        };
        self.run_background_task(&task)
    }

    /// Runs a claimed background `task`: progress if it succeeded; on
    /// failure, idle if it is to be retried later (the error is kept for
    /// writers held by a stop), stop if the store failed.
    fn run_background_task(&self, task: &Task) -> Step {
        let result = self.run_task(task);
        self.finish_task(task);
        match result {
            Ok(()) => {
                self.compaction.state.lock().last_failure = None;
                Step::Progress
            }
            Err(e) => {
                if !self.compaction_error(&e) {
                    return Step::Stop;
                }
                let mut state = self.compaction.state.lock();
                state.last_failure = Some(e);
                self.compaction.cv.notify_all();
                Step::Idle
            }
        }
    }

    fn stopping(&self) -> bool {
        self.lifecycle.is_closing() || self.lifecycle.has_failed()
    }

    /// Waits for a due task and marks it busy; `None` when stopping.
    fn next_task(&self) -> Option<Task> {
        let mut state = self.compaction.state.lock();
        loop {
            if self.stopping() {
                return None;
            }
            if let Some(task) = self.claim_due_task(&mut state) {
                return Some(task);
            }
            self.compaction.cv.wait(&mut state);
        }
    }

    /// The due task, if any, marked busy in `state`.
    fn claim_due_task(&self, state: &mut CompactionState) -> Option<Task> {
        if !self.opts.compaction.auto {
            return None;
        }
        let version = self.versions.lock().current();
        let task = pick(&version, &self.opts.compaction, &state.busy)?;
        state.busy.add(&task);
        Some(task)
    }

    fn finish_task(&self, task: &Task) {
        let mut state = self.compaction.state.lock();
        state.busy.remove(task);
        self.compaction.cv.notify_all();
    }

    /// Handles a failed compaction: a failed sync (of an output, the
    /// directory or the manifest) makes the store read-only (returns false:
    /// stop); anything else is counted, logged and retried later (returns
    /// true).
    fn compaction_error(&self, e: &Error) -> bool {
        match e {
            Error::Closed => false,
            Error::ReadOnly { .. } => {
                self.fail(e);
                false
            }
            _ if e.is_failed_sync() => {
                self.fail(e);
                false
            }
            _ => {
                Counters::add(&self.counters.compaction_errors, 1);
                tracing::error!(error = %e, "compaction failed; will retry");
                true
            }
        }
    }

    /// Recomputes the write stall from `version` (called on every install).
    pub(crate) fn update_stall(&self, version: &Version) {
        let c = &self.opts.compaction;
        let stall = if !c.auto {
            STALL_NONE
        } else {
            let l0 = version.tables(Level(0)).len();
            let pending = estimated_pending_bytes(version, c);
            if l0 >= c.level0_stop_trigger || pending >= c.pending_compaction_stop_bytes {
                STALL_STOP
            } else if l0 >= c.level0_slowdown_trigger
                || pending >= c.pending_compaction_slowdown_bytes
            {
                STALL_SLOWDOWN
            } else {
                STALL_NONE
            }
        };
        let before = self.compaction.stall.swap(stall, Ordering::AcqRel);
        if before != stall {
            tracing::info!(stall, "write stall changed");
        }
    }

    /// Called by the write leader before each group: delays it during a
    /// slowdown, holds it during a stop, and counts the time. A group held
    /// by a stop while the last background compaction failed gets that
    /// compaction's error (nothing of it is written): the stop lasts until
    /// a compaction succeeds, which a full disk may prevent for ever.
    /// `writer` is checked for admission while it is held (a standby's
    /// replicated groups are let in).
    pub(crate) fn stall_writes(&self, writer: Writer) -> Result<()> {
        let stall = self.compaction.stall.load(Ordering::Acquire);
        if stall == STALL_NONE {
            return Ok(());
        }
        let started = Instant::now();
        if stall == STALL_SLOWDOWN {
            Counters::add(&self.counters.slowdowns, 1);
            std::thread::sleep(SLOWDOWN_DELAY);
        } else {
            Counters::add(&self.counters.stops, 1);
            let mut state = self.compaction.state.lock();
            while self.compaction.stall.load(Ordering::Acquire) == STALL_STOP {
                self.lifecycle.admit(writer)?;
                if let Some(e) = &state.last_failure {
                    return Err(e.clone());
                }
                self.compaction
                    .cv
                    .wait_for(&mut state, Duration::from_millis(100));
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Counters::add(&self.counters.stall_micros, micros);
        self.lifecycle.admit(writer)
    }

    /// Compacts every table meeting `[small, large]` (all tables if
    /// `None`) down the levels into the last level, in the calling thread.
    pub(crate) fn compact_range(&self, range: Option<(&[u8], &[u8])>) -> Result<()> {
        // A TTL store also rewrites the last level into itself, so values
        // that expired there are dropped.
        let levels = if self.opts.ttl.is_some() {
            NUM_LEVELS
        } else {
            NUM_LEVELS - 1
        };
        for level in 0..levels {
            self.check_writable()?;
            // One manual task takes every table of the level in range.
            if let Some(task) = self.claim_manual_task(Level(level as u8), range)? {
                let result = self.run_task(&task);
                self.finish_task(&task);
                if let Err(e) = result {
                    self.compaction_error(&e);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The manual task for `level`, registered as busy once no running
    /// compaction conflicts with it.
    fn claim_manual_task(
        &self,
        level: Level,
        range: Option<(&[u8], &[u8])>,
    ) -> Result<Option<Task>> {
        let mut state = self.compaction.state.lock();
        loop {
            let version = self.versions.lock().current();
            let shape = shape(&version, &self.opts.compaction);
            if level.0 > 0 && level < shape.base_level {
                return Ok(None);
            }
            let output = if level.index() + 1 == NUM_LEVELS {
                level
            } else {
                next_level(level, &shape)
            };
            let Some(task) = manual_task(&version, level, output, range) else {
                return Ok(None);
            };
            if !state.busy.conflicts(&task) {
                state.busy.add(&task);
                return Ok(Some(task));
            }
            if self.stopping() {
                return Err(Error::Closed);
            }
            self.compaction
                .cv
                .wait_for(&mut state, Duration::from_millis(100));
        }
    }

    /// Deletes table files that no version (current or held by a reader)
    /// references and that no flush or compaction is writing.
    pub(crate) fn delete_obsolete_tables(&self) {
        // List first, then take the live and pending sets together: a file
        // in the listing had its number made pending before it was created,
        // and it leaves the pending set only after a version holds it.
        let names = match self.fs.list_dir(&self.path) {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the store directory");
                return;
            }
        };
        let (live, pending) = {
            let state = self.compaction.state.lock();
            let live = self.versions.lock().live_files();
            (live, state.pending_outputs.clone())
        };
        for name in names {
            let Some(FileKind::Table(number)) = parse_file_name(&name) else {
                continue;
            };
            if live.tables.binary_search(&number).is_ok() || pending.contains(&number) {
                continue;
            }
            let path = self.path.join(table_file_name(number));
            self.tables.remove(number);
            if let Some(cache) = &self.block_cache {
                cache.remove_table(number.0);
            }
            match self.fs.remove_file(&path) {
                Ok(()) => tracing::debug!(file = %path.display(), "deleted obsolete table"),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "could not delete obsolete table")
                }
            }
        }
    }
}
