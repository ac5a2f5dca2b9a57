//! [`Upstream`]: what the follower reads from. A record source as the
//! follower sees it, with the hooks that a source holding a consumer
//! position upstream fills in (the in-process primary: registration,
//! position commits, a closing primary drained to its end).
//!
//! Two implementations: [`super::source::Polled`] over any
//! [`RecordSource`](varve_changelog::RecordSource), and
//! [`super::primary::PrimarySource`] over an in-process primary [`Db`](crate::Db).

use std::time::Duration;

use varve_changelog::StoredRecord;

use crate::error::Result;

/// What one fetch gave.
pub(super) enum Fetched {
    /// Records at or after the position asked for, in offset order, and
    /// the offset the next fetch starts at: every offset below `next`
    /// without a record here is a gap (a compacted source). No records
    /// and `next` at the position asked for: nothing new yet.
    Records {
        records: Vec<StoredRecord>,
        next: u64,
    },
    /// The source closed and has nothing more: the follower stops without
    /// a failure (promotion is what comes next).
    Closed,
}

/// How the standby's handle learns the source's end offset (for `lag`)
/// while the source itself lives on the follower thread.
pub(super) type EndProbe = Box<dyn Fn() -> Result<u64> + Send + Sync>;

/// A source the follower applies records from.
pub(super) trait Upstream: Send {
    /// The next records at or after `position` (about
    /// [`POLL_BYTES`](super::follower::POLL_BYTES) of them).
    ///
    /// # Errors
    /// `Stale` when the source no longer holds `position`; the source's
    /// read errors; `Corruption` (or a source error) for a record beyond
    /// the sequence-number range.
    fn fetch(&mut self, position: u64) -> Result<Fetched>;

    /// Waits up to `timeout` for records at or after `position`.
    fn wait(&mut self, position: u64, timeout: Duration) {
        let _ = position;
        std::thread::sleep(timeout);
    }

    /// Tells the source that the standby made every record below
    /// `durable` durable (a consumer position commit). An error is the
    /// source's problem: the follower logs it and commits again later.
    ///
    /// # Errors
    /// Whatever the source could not record.
    fn commit(&mut self, durable: u64) -> Result<()> {
        let _ = durable;
        Ok(())
    }

    /// Lets go of anything that keeps the upstream open (a closing
    /// primary held until drained). The source may be fetched again later.
    fn release(&mut self) {}

    /// The end promotion catches up to: the source's end offset now.
    ///
    /// # Errors
    /// The source cannot tell (unreachable, or a closed primary's
    /// changelog cannot be opened).
    fn end_offset(&mut self) -> Result<u64>;

    /// The standby was promoted: forget its consumer position upstream and
    /// let go of the source.
    ///
    /// # Errors
    /// Errors closing what the source opened for the promotion.
    fn promoted(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The first record in `records` whose offset lies beyond the
/// sequence-number range (the standby's memtable could not hold it).
pub(super) fn beyond_seqno_range(records: &[StoredRecord]) -> Option<&StoredRecord> {
    records
        .iter()
        .find(|r| crate::memtable::seqno_of_offset(r.offset).is_none())
}
