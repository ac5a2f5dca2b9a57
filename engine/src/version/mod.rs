//! Versions and the manifest: which tables make up the store.
//!
//! A [`Version`] is an immutable snapshot of the level structure: the tables
//! of every level, plus the changelog offset below which every write is in a
//! table (the *flushed offset*), the last sequence number and the next file
//! number. Readers hold an `Arc<Version>` for as long as they need its
//! tables; the [`VersionSet`] installs a new `Version` for every change.
//!
//! Every change is a [`VersionEdit`] (tables added and deleted, counters
//! moved) appended durably to the *manifest* before it takes effect. The
//! manifest is a sequence of checksummed records; the file `CURRENT` names
//! the manifest in use. Opening a store replays the manifest into a
//! `Version`. The byte format is in `docs/format/manifest.md`.
//!
//! Module map: [`filename`] names files, `edit` encodes edits, `manifest`
//! frames records and handles `CURRENT`, `levels` holds [`Version`], and
//! `set` holds [`VersionSet`].

mod edit;
pub mod filename;
mod levels;
mod manifest;
mod set;

use std::cmp::Ordering;
use std::fmt;

use crate::key::{SeqNo, TRAILER_SIZE, cmp_encoded};

pub use edit::{ENGINE_FORMAT, VersionEdit};
pub use filename::{FileKind, manifest_file_name, parse_file_name, table_file_name};
pub use levels::Version;
pub use manifest::{ManifestScan, TornTail, read_manifest, scan_manifest};
pub use set::{LiveFiles, VersionSet, VersionSetOptions};
pub(crate) use set::{read_version, write_store_manifest};

/// The largest table size the manifest may record (2^40 bytes, 1 TiB).
/// It keeps sums of table sizes (per level, per store) far from
/// overflowing, whatever a manifest holds; a real table is thousands of
/// times smaller.
pub const TABLE_SIZE_BYTES_MAX: u64 = 1 << 40;

/// Number of levels: L0 (overlapping flush outputs) and L1..L6.
pub const NUM_LEVELS: usize = 7;

/// The number of a table or manifest file. One counter serves both kinds,
/// so a number is never reused within a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileNumber(pub u64);

impl FileNumber {
    /// The largest next file number a manifest may record (2^63 − 1). A
    /// manifest or `CURRENT` naming a number at or above it is corrupt: the
    /// bound leaves 2^63 numbers of headroom, so handing out numbers can
    /// never wrap the 64-bit counter.
    pub const MAX: FileNumber = FileNumber(u64::MAX >> 1);
}

impl fmt::Display for FileNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// A level of the tree: 0 holds flushed memtables (which may overlap), 1 to
/// `NUM_LEVELS - 1` hold sorted runs of non-overlapping tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Level(pub u8);

impl Level {
    /// The level's index into per-level arrays.
    #[must_use]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// Every level, from L0 down.
    pub fn all() -> impl Iterator<Item = Level> {
        const _: () = assert!(NUM_LEVELS <= u8::MAX as usize);
        (0..NUM_LEVELS as u8).map(Level)
    }

    /// Whether the level exists (is below [`NUM_LEVELS`]).
    #[must_use]
    pub fn is_valid(self) -> bool {
        self.index() < NUM_LEVELS
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}", self.0)
    }
}

/// What the manifest records about one table file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableMeta {
    /// The table's file number (file name `{number:06}.sst`).
    pub number: FileNumber,
    /// The file's size.
    pub size_bytes: u64,
    /// The table's smallest entry, as an encoded internal key.
    pub smallest: Vec<u8>,
    /// The table's largest entry, as an encoded internal key.
    pub largest: Vec<u8>,
    /// The smallest sequence number of any entry.
    pub min_seqno: SeqNo,
    /// The largest sequence number of any entry.
    pub max_seqno: SeqNo,
    /// Number of entries (puts and tombstones).
    pub entry_count: u64,
    /// Number of tombstones among the entries.
    pub tombstone_count: u64,
}

impl TableMeta {
    /// The user key of [`smallest`](Self::smallest) (empty if the key is too
    /// short to hold a trailer; [`check`](Self::check) rejects that).
    #[must_use]
    pub fn smallest_user_key(&self) -> &[u8] {
        user_key_of(&self.smallest)
    }

    /// The user key of [`largest`](Self::largest).
    #[must_use]
    pub fn largest_user_key(&self) -> &[u8] {
        user_key_of(&self.largest)
    }

    /// Whether `user_key` lies within the table's user-key range.
    #[must_use]
    pub fn contains_user_key(&self, user_key: &[u8]) -> bool {
        self.smallest_user_key() <= user_key && user_key <= self.largest_user_key()
    }

    /// Checks the table's own invariants: both bounds decode as internal
    /// keys, `smallest <= largest`, `min_seqno <= max_seqno <= SeqNo::MAX`,
    /// `tombstone_count <= entry_count <= size_bytes <=`
    /// [`TABLE_SIZE_BYTES_MAX`], and the number is below
    /// [`FileNumber::MAX`].
    ///
    /// # Errors
    /// A description of the first violated invariant.
    pub fn check(&self) -> Result<(), String> {
        let n = self.number;
        for (name, key) in [("smallest", &self.smallest), ("largest", &self.largest)] {
            if crate::key::InternalKeyRef::decode(key).is_none() {
                return Err(format!("table {n}: {name} key is not an internal key"));
            }
        }
        if cmp_encoded(&self.smallest, &self.largest) == Ordering::Greater {
            return Err(format!("table {n}: smallest key sorts after largest key"));
        }
        if self.min_seqno > self.max_seqno || self.max_seqno > SeqNo::MAX {
            return Err(format!(
                "table {n}: bad seqno range {}..={}",
                self.min_seqno.0, self.max_seqno.0
            ));
        }
        if self.tombstone_count > self.entry_count {
            return Err(format!(
                "table {n}: {} tombstones among {} entries",
                self.tombstone_count, self.entry_count
            ));
        }
        if self.size_bytes > TABLE_SIZE_BYTES_MAX {
            return Err(format!(
                "table {n}: size of {} bytes exceeds the maximum {TABLE_SIZE_BYTES_MAX}",
                self.size_bytes
            ));
        }
        // Every entry takes at least its 8-byte trailer in the file.
        if self.entry_count > self.size_bytes {
            return Err(format!(
                "table {n}: {} entries cannot fit in {} bytes",
                self.entry_count, self.size_bytes
            ));
        }
        if self.number >= FileNumber::MAX {
            return Err(format!("table {n}: number exceeds the maximum"));
        }
        Ok(())
    }
}

fn user_key_of(encoded: &[u8]) -> &[u8] {
    let len = encoded.len().saturating_sub(TRAILER_SIZE);
    &encoded[..len]
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Builders shared by this module's unit tests.

    use super::{FileNumber, TableMeta};
    use crate::key::{SeqNo, ValueKind, encoded_key};

    /// An encoded internal key.
    pub fn ikey(user_key: &[u8], seqno: u64) -> Vec<u8> {
        encoded_key(user_key, seqno, ValueKind::Put)
    }

    /// A table covering `lo..=hi` with seqnos `seq_lo..=seq_hi`.
    pub fn table(number: u64, lo: &[u8], hi: &[u8], seq_lo: u64, seq_hi: u64) -> TableMeta {
        TableMeta {
            number: FileNumber(number),
            size_bytes: 1000 + number,
            smallest: ikey(lo, seq_hi),
            largest: ikey(hi, seq_lo),
            min_seqno: SeqNo(seq_lo),
            max_seqno: SeqNo(seq_hi),
            entry_count: 10,
            tombstone_count: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::table;
    use super::*;

    #[test]
    fn table_meta_check() {
        let good = table(1, b"a", b"c", 1, 5);
        assert!(good.check().is_ok());
        assert_eq!(good.smallest_user_key(), b"a");
        assert_eq!(good.largest_user_key(), b"c");
        assert!(good.contains_user_key(b"b"));
        assert!(!good.contains_user_key(b"d"));

        let mut reversed = good.clone();
        std::mem::swap(&mut reversed.smallest, &mut reversed.largest);
        assert!(reversed.check().is_err());

        let mut short = good.clone();
        short.largest = b"x".to_vec();
        assert!(short.check().is_err());

        let mut seqnos = good.clone();
        seqnos.min_seqno = SeqNo(9);
        assert!(seqnos.check().is_err());

        let mut counts = good;
        counts.tombstone_count = 11;
        assert!(counts.check().is_err());
    }
}
