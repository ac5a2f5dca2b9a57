//! [`WriteBufferManager`]: the memtable bytes of many stores, counted
//! against one budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Counts the memory of every memtable (active and immutable) of the
/// stores sharing it, against one budget, like RocksDB's
/// `WriteBufferManager`.
///
/// A memtable charges its entries' bytes as they are inserted and
/// releases them when it is dropped (after its flush). Stores consult the
/// counts before each write group: once the active memtables pass
/// [`SWITCH_NUMERATOR`]/[`SWITCH_DENOMINATOR`] (1/4) of the budget, the
/// store with the largest active memtable switches it (and so flushes
/// it); once the total reaches the budget, writers wait until flushes
/// bring it below (they are never failed and nothing is dropped). The
/// count is of entry bytes ([`MemTable::approximate_size_bytes`]), not of
/// the arena's unused chunk tails.
///
/// [`MemTable::approximate_size_bytes`]: crate::internals::memtable::MemTable::approximate_size_bytes
///
/// # Examples
/// ```
/// let budget = varve_db::WriteBufferManager::new(1 << 20);
/// assert_eq!((budget.capacity_bytes(), budget.usage_bytes()), (1 << 20, 0));
/// assert!(!budget.is_full());
/// ```
#[derive(Debug)]
pub struct WriteBufferManager {
    capacity_bytes: usize,
    usage_bytes: AtomicUsize,
    /// Of `usage_bytes`, the bytes of immutable memtables.
    immutable_bytes: AtomicUsize,
    peak_bytes: AtomicUsize,
    /// Writers waiting for the usage to fall below the budget.
    waiters: Mutex<()>,
    released: Condvar,
}

/// The active memtables may use this share of the budget (with
/// [`SWITCH_DENOMINATOR`]) before the largest is switched. RocksDB lets
/// them take 7/8; a quarter keeps the memtables being written about as
/// large together as one store's (whose default budget is one active and
/// two immutable memtables), so many stores sharing a budget insert into
/// as much memory as one store does, and the other three quarters hold
/// switched memtables while they flush. With 32 stores, 7/8 made
/// fillrandom about a quarter slower than one store, since inserts walked
/// seven times the memory, and doubled the peak RSS.
pub const SWITCH_NUMERATOR: usize = 1;
/// See [`SWITCH_NUMERATOR`].
pub const SWITCH_DENOMINATOR: usize = 4;

impl WriteBufferManager {
    /// A budget of `capacity_bytes` for all memtables together.
    #[must_use]
    pub fn new(capacity_bytes: usize) -> WriteBufferManager {
        WriteBufferManager {
            capacity_bytes,
            usage_bytes: AtomicUsize::new(0),
            immutable_bytes: AtomicUsize::new(0),
            peak_bytes: AtomicUsize::new(0),
            waiters: Mutex::new(()),
            released: Condvar::new(),
        }
    }

    /// The budget, in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_bytes
    }

    /// Bytes of all memtables now (active and immutable).
    pub fn usage_bytes(&self) -> usize {
        self.usage_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of the immutable memtables now (waiting for or in a flush).
    pub fn immutable_bytes(&self) -> usize {
        self.immutable_bytes.load(Ordering::Relaxed)
    }

    /// The highest [`usage_bytes`](Self::usage_bytes) seen since creation.
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes.load(Ordering::Relaxed)
    }

    /// Whether the total has reached the budget (writers wait).
    pub fn is_full(&self) -> bool {
        self.usage_bytes() >= self.capacity_bytes
    }

    /// Whether the active memtables passed a quarter of the budget (the largest
    /// should be switched).
    pub fn should_switch(&self) -> bool {
        let mutable = self.usage_bytes().saturating_sub(self.immutable_bytes());
        mutable >= self.capacity_bytes / SWITCH_DENOMINATOR * SWITCH_NUMERATOR
    }

    /// Counts `bytes` more (an insert).
    pub(crate) fn charge(&self, bytes: usize) {
        let now = self.usage_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if now > self.peak_bytes.load(Ordering::Relaxed) {
            self.peak_bytes.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Moves `bytes` of the usage to the immutable share (a switch).
    pub(crate) fn mark_immutable(&self, bytes: usize) {
        self.immutable_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Releases `bytes` (a dropped memtable, `immutable` if it had been
    /// switched) and wakes waiting writers.
    pub(crate) fn release(&self, bytes: usize, immutable: bool) {
        if immutable {
            self.immutable_bytes.fetch_sub(bytes, Ordering::Relaxed);
        }
        self.usage_bytes.fetch_sub(bytes, Ordering::Relaxed);
        let _g = self.waiters.lock();
        self.released.notify_all();
    }

    /// Waits at most `timeout` for a release (a writer held by a full
    /// budget; it checks again after).
    pub(crate) fn wait_for_release(&self, timeout: Duration) {
        let mut g = self.waiters.lock();
        if self.is_full() {
            self.released.wait_for(&mut g, timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_charges_switches_and_releases() {
        let budget = WriteBufferManager::new(800);
        budget.charge(199);
        assert!(!budget.should_switch() && !budget.is_full());
        budget.charge(1);
        assert!(budget.should_switch(), "200 of 800 is a quarter");
        budget.mark_immutable(200);
        assert!(
            !budget.should_switch(),
            "immutable bytes are not switched again"
        );
        budget.charge(500);
        assert!(budget.should_switch() && !budget.is_full());
        budget.mark_immutable(500);
        assert!(
            !budget.should_switch(),
            "immutable bytes are not switched again"
        );
        budget.charge(100);
        assert!(budget.is_full());
        budget.release(700, true);
        assert_eq!((budget.usage_bytes(), budget.immutable_bytes()), (100, 0));
        assert_eq!(budget.peak_bytes(), 800);
        assert!(!budget.is_full());
    }
}
