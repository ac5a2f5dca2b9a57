//! Keeping a shared write-buffer budget
//! ([`WriteBufferManager`](crate::WriteBufferManager)): before each write
//! group, a store using one switches the largest active memtable of all
//! the stores once they pass a quarter of the budget, and holds the group while
//! all memtables together fill the budget.
//!
//! Only a store's write leader may switch its memtable. The leader of the
//! store being written switches its own; another store is asked
//! ([`DbInner::request_switch`]) and switches at its next write group or
//! in its flush job, whichever first holds its write leadership (a flush
//! job only tries: that leader may itself be waiting for the budget, and
//! then serves the request while it waits).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::lifecycle::Writer;
use crate::shared::SharedResources;
use crate::state::DbInner;
use crate::stats::Counters;

/// How long a writer held by a full budget waits before looking again
/// (a release wakes it sooner).
const BUDGET_WAIT: Duration = Duration::from_millis(50);

impl DbInner {
    /// Keeps the shared write-buffer budget, if the store uses one: see
    /// the module documentation. Never fails a write for the budget: it
    /// only waits (and is refused only if the store stops admitting
    /// `writer`, e.g. because it is closing).
    pub(crate) fn make_room_in_budget(&self, writer: Writer) -> Result<()> {
        let Some(shared) = &self.opts.shared else {
            return Ok(());
        };
        let budget = shared.write_buffer();
        self.serve_switch_request_as_leader();
        if budget.should_switch() {
            self.switch_largest(shared);
        }
        if !budget.is_full() {
            return Ok(());
        }
        let started = Instant::now();
        Counters::add(&self.counters.stops, 1);
        while budget.is_full() {
            self.lifecycle.admit(writer)?;
            self.serve_switch_request_as_leader();
            // The immutable bytes may all be a failed store's, which no
            // flush will free: switch the largest healthy memtable on
            // every look (a no-op for a store whose flushes are behind).
            self.switch_largest(shared);
            budget.wait_for_release(BUDGET_WAIT);
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        Counters::add(&self.counters.stall_micros, micros);
        self.lifecycle.admit(writer)
    }

    /// Switches (or asks to switch) the largest active memtable among the
    /// stores of `shared`. Only called by this store's write leader.
    fn switch_largest(&self, shared: &SharedResources) {
        match shared.largest_active_store() {
            Some(store) if store.store_id != self.store_id => store.request_switch(),
            _ => self.switch_for_budget(),
        }
    }

    /// Asks this store to switch its memtable for the budget.
    pub(crate) fn request_switch(&self) {
        self.switch_requested.store(true, Ordering::Release);
        self.signal_flush();
    }

    /// Serves a pending switch request; only called by the write leader.
    fn serve_switch_request_as_leader(&self) {
        if self.switch_requested.swap(false, Ordering::AcqRel) {
            self.switch_for_budget();
        }
    }

    /// Serves a pending switch request if the write leadership is free
    /// (a flush job's part; it never waits for a leader).
    pub(crate) fn serve_switch_request(&self) {
        if self.switch_requested.load(Ordering::Acquire) {
            self.try_with_write_leadership(|| self.serve_switch_request_as_leader());
        }
    }

    /// Switches the active memtable for the budget if it holds anything
    /// and another immutable memtable is allowed; otherwise makes sure
    /// the flush job runs. Only called by the write leader.
    fn switch_for_budget(&self) {
        let sv = self.super_version();
        if sv.imm.len() >= self.opts.max_immutable_memtables {
            self.signal_flush();
        } else if !sv.mem.is_empty() {
            self.switch_memtable();
        }
    }
}
