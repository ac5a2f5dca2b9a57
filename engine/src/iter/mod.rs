//! Iterators over internal entries, shared by memtables, tables and merges.

pub(crate) mod bounds;
pub(crate) mod db_iter;
pub(crate) mod level;
pub(crate) mod merge;

use bytes::Bytes;

use crate::error::Result;
use crate::key::InternalKeyRef;

/// A positioned, bidirectional cursor over internal entries in internal-key
/// order (user key ascending, sequence number descending).
///
/// The shape follows LevelDB's iterator: position with a `seek*`, then
/// check [`valid`](InternalIterator::valid) before reading. I/O or
/// corruption errors make the iterator invalid and are reported by
/// [`status`](InternalIterator::status).
pub trait InternalIterator: Send {
    /// Whether the iterator is positioned at an entry.
    fn valid(&self) -> bool;
    /// Positions at the first entry.
    fn seek_to_first(&mut self);
    /// Positions at the last entry.
    fn seek_to_last(&mut self);
    /// Positions at the first entry whose internal key is `>= target`.
    fn seek(&mut self, target: &InternalKeyRef<'_>);
    /// Positions at the last entry whose internal key is `<= target`.
    fn seek_for_prev(&mut self, target: &InternalKeyRef<'_>);
    /// Moves to the next entry. Requires `valid()`.
    fn next(&mut self);
    /// Moves to the previous entry. Requires `valid()`.
    fn prev(&mut self);
    /// The current entry's key. Requires `valid()`.
    fn key(&self) -> InternalKeyRef<'_>;
    /// The current entry's value (empty for a delete). Requires `valid()`.
    fn value(&self) -> &[u8];
    /// The current value as shared bytes; implementations that can avoid a
    /// copy override this.
    fn value_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.value())
    }
    /// The first error the iterator met, if any.
    ///
    /// # Errors
    /// The I/O or corruption error that stopped the iterator.
    fn status(&self) -> Result<()>;
}
