//! Registering a standby on its primary, after checking that it can catch
//! up and holds the primary's history.

use varve_changelog::{Log, SourceBounds, StoredRecord};

use crate::error::{Error, Result};
use crate::replicate::check_replica_position;

/// Registers consumer `name` at `position` (the standby's changelog end)
/// on the primary's changelog, after checking that the standby can catch
/// up from there and holds the primary's history; checks the position
/// again after registering, as retention may have moved meanwhile.
pub(super) fn register(log: &Log, standby: &Log, name: &str) -> Result<u64> {
    let position = standby.next_offset();
    check_replica_position(position, bounds(log))?;
    check_same_history(standby, log)?;
    log.commit_position(name, position)?;
    check_replica_position(position, bounds(log))?;
    Ok(position)
}

/// Compares the standby's last record with the primary's record at the
/// same offset: a standby whose primary lost an unsynced tail in a crash
/// and then wrote new records at the same offsets (or that follows another
/// store) holds a different history at the same position. Where the
/// primary no longer has that offset (cleaned or deleted) there is nothing
/// to compare.
fn check_same_history(standby: &Log, primary: &Log) -> Result<()> {
    let Some(ours) = last_record(standby)? else {
        return Ok(());
    };
    if ours.offset < primary.log_start_offset() || ours.offset >= primary.next_offset() {
        return Ok(());
    }
    let theirs = primary.reader(ours.offset)?.next().transpose()?;
    match theirs {
        Some(theirs) if theirs.offset == ours.offset && theirs.record != ours.record => {
            Err(Error::Stale {
                position: standby.next_offset(),
                log_start_offset: primary.log_start_offset(),
                reason: format!(
                    "the standby's record at offset {} differs from the primary's: the histories diverged (the primary lost an unsynced tail and wrote new records there, or it is another store)",
                    ours.offset
                ),
            })
        }
        _ => Ok(()),
    }
}

/// The last record `log` still holds, scanning back from its newest
/// segment (at most one non-empty segment is read).
fn last_record(log: &Log) -> Result<Option<StoredRecord>> {
    let start = log.log_start_offset();
    for base in log.segment_base_offsets().into_iter().rev() {
        let from = base.max(start);
        if from >= log.next_offset() {
            continue;
        }
        let mut last = None;
        for record in log.reader(from)? {
            last = Some(record?);
        }
        if last.is_some() {
            return Ok(last);
        }
        if base <= start {
            break;
        }
    }
    Ok(None)
}

pub(super) fn bounds(log: &Log) -> SourceBounds {
    SourceBounds {
        start_offset: log.log_start_offset(),
        end_offset: log.next_offset(),
    }
}
