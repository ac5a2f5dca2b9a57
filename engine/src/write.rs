//! Group commit: concurrent writers are gathered by a leader into one
//! changelog append (and one `fdatasync` if any of them asked for sync).
//!
//! Sequence numbers follow the changelog offsets the append assigns (the
//! record at offset `o` has sequence number `o + 1`, so that 0 means "before
//! any write"), so the memtable entries and the log agree by construction,
//! and nothing is written twice. Visibility follows offset order: the leader publishes a
//! group's last sequence number only after the whole group is in the
//! memtable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use varve_changelog::Record;

use crate::batch::{BatchOp, WriteBatch};
use crate::error::{Error, Result};
use crate::key::{SeqNo, ValueKind};
use crate::lifecycle::Writer;
use crate::memtable::MemTable;
use crate::state::{DbInner, SuperVersion};
use crate::ttl::{ValueFormat, stored_value};
use crate::write_queue::{Pending, take_group};

impl DbInner {
    /// Applies `batch` atomically; with `sync`, durably.
    pub(crate) fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        batch.validate()?;
        if batch.is_empty() {
            return if sync { self.sync_log() } else { Ok(()) };
        }
        self.check_writable()?;
        let mut q = self.write.queue.lock();
        let id = q.next_id;
        q.next_id += 1;
        q.pending.push_back(Pending { id, batch, sync });
        loop {
            if let Some(result) = q.results.remove(&id) {
                return result;
            }
            if !q.leader_active && q.pending.iter().any(|p| p.id == id) {
                break;
            }
            self.write.cv.wait(&mut q);
        }
        // Lead groups until the queue is empty (our own write is in the first).
        q.leader_active = true;
        let mut own = None;
        while !q.pending.is_empty() {
            let mut group = take_group(&mut q.pending);
            drop(q);
            let result = self.commit_group(&mut group).map(|_| ());
            q = self.write.queue.lock();
            let mut followers = false;
            for p in &group {
                if p.id == id {
                    own = Some(result.clone());
                } else {
                    q.results.insert(p.id, result.clone());
                    followers = true;
                }
            }
            if followers {
                self.write.cv.notify_all();
            }
        }
        q.leader_active = false;
        self.write.cv.notify_all();
        own.unwrap_or(Err(Error::Closed))
    }

    /// Commits `batch` as a group of its own and returns the sequence
    /// number of its last record (the version its writes carry). Only call
    /// while holding the write leadership
    /// ([`with_write_leadership`](Self::with_write_leadership)), so nothing
    /// else commits between a caller's check and this write.
    pub(crate) fn commit_exclusive(&self, batch: WriteBatch, sync: bool) -> Result<u64> {
        batch.validate()?;
        self.check_writable()?;
        let mut pending = Pending {
            id: u64::MAX,
            batch,
            sync,
        };
        self.commit_group(std::slice::from_mut(&mut pending))
    }

    /// Commits `group` as one changelog batch; returns the sequence number
    /// of its last record. The batches' operations move into the records
    /// (the batches are left empty).
    fn commit_group(&self, group: &mut [Pending]) -> Result<u64> {
        self.check_writable()?;
        self.stall_writes(Writer::User)?;
        self.make_room(Writer::User)?;
        let user_bytes: usize = group.iter().map(|p| p.batch.size_bytes()).sum();
        let records = to_records(group, self.opts.clock.now_ms());
        // Only the write leader appends, so the end cannot move meanwhile.
        let end = self.log.next_offset();
        if end.saturating_add(records.len() as u64) > crate::key::SeqNo::MAX.0 {
            return Err(Error::InvalidArgument(format!(
                "the store has used up its sequence numbers: its changelog ends at offset {end}, \
                 and the engine's sequence numbers end at {}",
                crate::key::SeqNo::MAX.0
            )));
        }
        let info = self
            .log
            .append(&records)
            .map_err(|e| self.write_error(e.into()))?;
        if group.iter().any(|p| p.sync) {
            self.log.sync().map_err(|e| self.write_error(e.into()))?;
        }
        let sv = self.super_version();
        insert_all(
            &sv.mem,
            &records,
            info.base_offset,
            self.opts.value_format(),
        );
        crate::stats::Counters::add(&self.counters.user_bytes_written, user_bytes as u64);
        self.metrics.written_bytes.increment(user_bytes as u64);
        self.visible_seqno
            .store(info.last_offset + 1, Ordering::Release);
        Ok(info.last_offset + 1)
    }

    /// A changelog failure during a write (a user's group or a standby's
    /// replicated one): sync failures make the store read-only; other
    /// errors are returned as they are.
    pub(crate) fn write_error(&self, e: Error) -> Error {
        match &e {
            Error::Changelog(inner)
                if matches!(**inner, varve_changelog::Error::ReadOnly { .. }) =>
            {
                self.fail(&e)
            }
            _ => e,
        }
    }

    pub(crate) fn sync_log(&self) -> Result<()> {
        self.log.sync().map_err(|e| self.write_error(e.into()))
    }

    /// Switches a full memtable to immutable and holds the writer while too
    /// many immutable memtables wait for the flush thread (a write stall);
    /// then keeps the shared write-buffer budget, if the store uses one
    /// (`write_budget.rs`). `writer` is checked for admission while it is
    /// held (a standby's replicated groups are let in).
    pub(crate) fn make_room(&self, writer: Writer) -> Result<()> {
        self.make_room_in_memtable(writer)?;
        self.make_room_in_budget(writer)
    }

    fn make_room_in_memtable(&self, writer: Writer) -> Result<()> {
        loop {
            let sv = self.super_version();
            if sv.mem.approximate_size_bytes() < self.opts.memtable_size_bytes {
                return Ok(());
            }
            if sv.imm.len() < self.opts.max_immutable_memtables {
                self.switch_memtable();
                return Ok(());
            }
            if let Some(shared) = &self.opts.shared {
                shared.schedule_flush(self.store_id);
            }
            let mut g = self.flush.signal.lock();
            self.lifecycle.admit(writer)?;
            if self.super_version().imm.len() >= self.opts.max_immutable_memtables {
                self.flush.cv.notify_all();
                self.flush
                    .cv
                    .wait_for(&mut g, std::time::Duration::from_millis(50));
            }
        }
    }

    /// Makes the active memtable immutable and starts a new one.
    pub(crate) fn switch_memtable(&self) {
        let mut current = self.current.write();
        if current.mem.is_empty() {
            return;
        }
        let id = self.next_memtable_id.fetch_add(1, Ordering::Relaxed);
        current.mem.mark_immutable();
        let mut imm = vec![current.mem.clone()];
        imm.extend(current.imm.iter().cloned());
        *current = Arc::new(SuperVersion {
            mem: Arc::new(self.new_memtable(id)),
            imm,
            version: current.version.clone(),
        });
        drop(current);
        self.roll_changelog_with_memtable();
        self.signal_flush();
    }
}

/// A changelog segment smaller than this is not rolled at a memtable
/// switch (tiny memtables would otherwise make tiny segments).
const ROLL_WITH_MEMTABLE_MIN_BYTES: u64 = 1 << 20;

impl DbInner {
    /// Starts a new changelog segment where the new memtable starts, as
    /// RocksDB starts a new WAL file: once the old memtables are flushed,
    /// retention can delete their whole segments instead of keeping a
    /// large active segment of flushed records. Only called while no group
    /// is being committed. Best effort: a failed roll is logged, and a
    /// failed sync inside it has already made the changelog read-only.
    fn roll_changelog_with_memtable(&self) {
        if self.log.active_segment_size_bytes() < ROLL_WITH_MEMTABLE_MIN_BYTES {
            return;
        }
        if let Err(e) = self.log.roll() {
            tracing::warn!(error = %e, "could not roll the changelog at a memtable switch");
        }
    }
}

/// The group's operations as changelog records, moved out of their
/// batches: cloning a `Bytes` made from a `Vec` allocates (it becomes
/// shared), moving it does not.
fn to_records(group: &mut [Pending], now_ms: u64) -> Vec<Record> {
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    let mut records = Vec::with_capacity(group.iter().map(|p| p.batch.len()).sum());
    for p in group {
        for op in p.batch.ops.drain(..) {
            let record = match op {
                BatchOp::Put(k, v) => Record {
                    key: k,
                    value: Some(v),
                    timestamp_ms: now,
                    headers: Vec::new(),
                },
                BatchOp::Delete(k) => Record {
                    key: k,
                    value: None,
                    timestamp_ms: now,
                    headers: Vec::new(),
                },
            };
            records.push(record);
        }
    }
    records
}

/// Inserts changelog records into a memtable; record `i` (at offset
/// `base_offset + i`) gets sequence number `base_offset + i + 1`. In a TTL
/// store (`format` [`ValueFormat::Timestamped`]) each value is stored
/// behind its record's timestamp (`docs/TTL.md`); this is the one place
/// where values enter the store, from writes, recovery and restores alike.
pub(crate) fn insert_all(
    mem: &MemTable,
    records: &[Record],
    base_offset: u64,
    format: ValueFormat,
) {
    let mut stored = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let seqno = SeqNo(base_offset + i as u64 + 1);
        match &r.value {
            Some(v) => {
                let value = stored_value(v, r.timestamp_ms, format, &mut stored);
                mem.insert(&r.key, seqno, ValueKind::Put, value);
            }
            None => mem.insert(&r.key, seqno, ValueKind::Delete, &[]),
        }
    }
}

impl DbInner {
    /// Runs `f` while holding the write leadership if no one holds it
    /// now; `None` (and `f` not run) otherwise. For background jobs,
    /// which must not wait for a write leader (it may be waiting for them).
    pub(crate) fn try_with_write_leadership<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        let q = self.write.queue.lock();
        if q.leader_active {
            return None;
        }
        Some(self.lead(q, f))
    }

    /// Runs `f` while holding the write leadership, so no group is being
    /// committed meanwhile (used to switch memtables from outside writes).
    pub(crate) fn with_write_leadership<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut q = self.write.queue.lock();
        while q.leader_active {
            self.write.cv.wait(&mut q);
        }
        self.lead(q, f)
    }

    /// Takes the write leadership (free under the queue lock `q`), runs
    /// `f`, and gives it back.
    fn lead<T>(
        &self,
        mut q: parking_lot::MutexGuard<'_, crate::write_queue::WriteQueue>,
        f: impl FnOnce() -> T,
    ) -> T {
        q.leader_active = true;
        drop(q);
        let out = f();
        let mut q = self.write.queue.lock();
        q.leader_active = false;
        // Writers that queued meanwhile need a leader: wake them.
        self.write.cv.notify_all();
        drop(q);
        out
    }
}
