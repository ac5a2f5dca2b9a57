//! [`Snapshot`]: a consistent read view that later writes do not change.

use std::ops::RangeBounds;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::iter::bounds::{bounds_of, prefix_bounds};
use crate::iter::db_iter::Iter;
use crate::key::SeqNo;
use crate::state::DbInner;

/// A consistent, read-only view of the store as of the moment it was
/// taken. Later writes, flushes and compactions do not change what it
/// returns. Released when dropped.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let db = varve_db::Db::open(dir.path(), varve_db::Options::default())?;
/// db.put("k", "old")?;
/// let snap = db.snapshot();
/// db.put("k", "new")?;
/// assert_eq!(snap.get("k")?.as_deref(), Some(&b"old"[..]));
/// assert_eq!(db.get("k")?.as_deref(), Some(&b"new"[..]));
/// # Ok(()) }
/// ```
pub struct Snapshot {
    inner: Arc<DbInner>,
    seqno: SeqNo,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seqno", &self.seqno)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(inner: Arc<DbInner>) -> Snapshot {
        let mut snapshots = inner.snapshots.lock();
        let seqno = inner.visible();
        *snapshots.entry(seqno.0).or_insert(0) += 1;
        drop(snapshots);
        Snapshot { inner, seqno }
    }

    /// The sequence number the snapshot reads at: it sees the writes at
    /// changelog offsets below this number.
    pub fn seqno(&self) -> u64 {
        self.seqno.0
    }

    /// The value of `key` as of the snapshot.
    ///
    /// # Errors
    /// I/O or corruption errors from the tables.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.inner.get_at(key.as_ref(), self.seqno)
    }

    /// The keys in `range`, as of the snapshot.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        let (lower, upper) = bounds_of(&range);
        self.inner
            .iter_at(lower, upper, self.seqno)
            .holding(self.clone_registration())
    }

    /// The keys starting with `prefix`, as of the snapshot.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let (lower, upper) = prefix_bounds(prefix.as_ref());
        self.inner
            .iter_at(lower, upper, self.seqno)
            .holding(self.clone_registration())
    }

    /// Another registration of this snapshot's sequence number, so an
    /// iterator keeps the versions it reads even if the snapshot is
    /// dropped first.
    fn clone_registration(&self) -> Snapshot {
        *self.inner.snapshots.lock().entry(self.seqno.0).or_insert(0) += 1;
        Snapshot {
            inner: Arc::clone(&self.inner),
            seqno: self.seqno,
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut snapshots = self.inner.snapshots.lock();
        if let Some(count) = snapshots.get_mut(&self.seqno.0) {
            *count -= 1;
            if *count == 0 {
                snapshots.remove(&self.seqno.0);
            }
        }
    }
}
