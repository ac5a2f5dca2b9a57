//! The replica write path: records copied from another store's changelog,
//! applied with the offsets the source gave them.
//!
//! A standby replica ([`crate::Standby`]) appends what it copies with
//! [`Log::append_at`](varve_changelog::Log::append_at), so its own changelog
//! holds the source's offsets (gaps included, for a compacted source) and
//! its sequence numbers equal the source's. Its position in the source is
//! then simply its own `next_offset`, and it survives a reopen like any
//! store: recovery replays its own changelog.

use std::sync::atomic::Ordering;

use varve_changelog::{SourceBounds, StoredRecord};

use crate::error::{Error, Result};
use crate::lifecycle::Writer;
use crate::state::DbInner;
use crate::stats::Counters;
use crate::write::insert_all;

impl DbInner {
    /// Applies `records` copied from a source changelog, keeping their
    /// offsets: under the write leadership, waits out a write stall, makes
    /// room in the memtable, appends them to this store's changelog with
    /// [`append_at`](varve_changelog::Log::append_at), inserts each with the
    /// sequence number `offset + 1`, and publishes the last one. Offsets
    /// must strictly increase and start at or past this store's
    /// changelog end; gaps are allowed.
    ///
    /// Works on a store in replica mode (which refuses user writes).
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::ReadOnly`] after a failed sync, the
    /// changelog's [`InvalidArgument`](varve_changelog::Error::InvalidArgument)
    /// for offsets that do not follow the log end, I/O errors.
    pub(crate) fn apply_replicated(&self, records: &[StoredRecord]) -> Result<()> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        self.with_write_leadership(|| {
            self.lifecycle.admit(Writer::Replicated)?;
            self.stall_writes(Writer::Replicated)?;
            self.make_room(Writer::Replicated)?;
            self.log
                .append_at(records)
                .map_err(|e| self.write_error(e.into()))?;
            let sv = self.super_version();
            for r in records {
                insert_all(
                    &sv.mem,
                    std::slice::from_ref(&r.record),
                    r.offset,
                    self.opts.value_format(),
                );
            }
            let bytes: usize = records
                .iter()
                .map(|r| r.record.key.len() + r.record.value.as_ref().map_or(0, |v| v.len()))
                .sum();
            Counters::add(&self.counters.user_bytes_written, bytes as u64);
            self.metrics.written_bytes.increment(bytes as u64);
            self.visible_seqno.store(last.offset + 1, Ordering::Release);
            Ok(())
        })
    }
}

/// Whether a replica at `position` (the next source offset it would
/// apply) can catch up from a source holding `bounds`.
///
/// The rule: below the source's start offset, records the replica never
/// applied are gone, so it must be rebuilt; past the source's end, the
/// replica holds records the source does not (the source lost an unsynced
/// tail, or it is another store), so it has diverged and must be rebuilt
/// too. Anything in between catches up by replaying (gaps are fine: a
/// compacted source).
pub(crate) fn check_replica_position(position: u64, bounds: SourceBounds) -> Result<()> {
    crate::restore::check_position(position, bounds)?;
    if position > bounds.end_offset {
        return Err(Error::Stale {
            position,
            log_start_offset: bounds.start_offset,
            reason: format!(
                "this replica is ahead of the source, which ends at offset {}: the source lost records this replica applied (an unsynced tail), or it is another store",
                bounds.end_offset
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_rule() {
        let bounds = SourceBounds {
            start_offset: 10,
            end_offset: 20,
        };
        for ok in [10, 15, 20] {
            assert!(check_replica_position(ok, bounds).is_ok(), "{ok}");
        }
        for stale in [0, 9, 21] {
            assert!(
                matches!(check_replica_position(stale, bounds), Err(Error::Stale { position, .. }) if position == stale),
                "{stale}"
            );
        }
    }
}
