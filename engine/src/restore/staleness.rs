//! The staleness rule shared by restores and standbys: a store whose next
//! offset lies below the source's start offset cannot catch up by
//! replaying, because the records in between are gone.

use varve_changelog::SourceBounds;

use crate::error::{Error, Result};

/// Checks whether a store at changelog `position` (the next offset it would
/// apply: its flushed offset, or a checkpoint's offset) can catch up from a
/// source with `bounds` by replaying records at offsets `>= position`.
///
/// # Examples
/// ```
/// use varve_db::restore::check_position;
/// use varve_db::varve_changelog::SourceBounds;
/// let bounds = SourceBounds { start_offset: 100, end_offset: 500 };
/// assert!(check_position(100, bounds).is_ok());
/// assert!(check_position(600, bounds).is_ok()); // ahead: nothing to replay
/// assert!(matches!(check_position(99, bounds), Err(varve_db::Error::Stale { .. })));
/// ```
///
/// # Errors
/// [`Error::Stale`] if `position < bounds.start_offset`: the store must be
/// rebuilt by a full restore.
pub fn check_position(position: u64, bounds: SourceBounds) -> Result<()> {
    if position < bounds.start_offset {
        return Err(Error::Stale {
            position,
            log_start_offset: bounds.start_offset,
            reason: format!(
                "records {position}..{} are no longer in the source",
                bounds.start_offset
            ),
        });
    }
    Ok(())
}
