//! A sorted run: the records of one stretch of a restore, gathered in a
//! plain vector (no skiplist: nothing reads them before they are in a
//! table), sorted by key with the newest version of each key first, and
//! written as one table holding only that newest version.
//!
//! Keeping only the newest version is what a flush through the drop rules
//! does when no snapshot is older than the run, and no snapshot exists
//! during a restore. Tombstones are kept: a table written earlier (by this
//! restore, a resumed one, or a checkpoint) may hold their keys.

use bytes::Bytes;
use varve_changelog::StoredRecord;

use crate::error::Result;
use crate::key::{InternalKeyRef, SeqNo, ValueKind};
use crate::state::DbInner;
use crate::ttl::{ValueFormat, stored_value};
use crate::version::{FileNumber, TableMeta};

/// One record of a run.
struct RunEntry {
    key: Bytes,
    /// `None` for a tombstone.
    value: Option<Bytes>,
    seqno: SeqNo,
    timestamp_ms: i64,
}

/// Records gathered for one table.
pub(super) struct SortedRun {
    entries: Vec<RunEntry>,
    size_bytes: usize,
}

impl SortedRun {
    pub(super) fn new() -> Self {
        SortedRun {
            entries: Vec::new(),
            size_bytes: 0,
        }
    }

    /// Adds `stored` as the write of sequence number `offset + 1` (as
    /// [`insert_all`](crate::write::insert_all) numbers them).
    pub(super) fn push(&mut self, stored: StoredRecord) {
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|e| e.seqno.0 <= stored.offset)
        );
        let record = stored.record;
        let value_len = record.value.as_ref().map_or(0, Bytes::len);
        self.size_bytes += record.key.len() + value_len + std::mem::size_of::<RunEntry>();
        self.entries.push(RunEntry {
            key: record.key,
            value: record.value,
            seqno: SeqNo(stored.offset + 1),
            timestamp_ms: record.timestamp_ms,
        });
    }

    /// About how many bytes of memory the run's records take (their key
    /// and value bytes and the entry each has in the vector).
    pub(super) fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// Whether the run holds as many records as its index can number.
    pub(super) fn is_full(&self) -> bool {
        self.entries.len() >= u32::MAX as usize
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sorts the run and writes the newest version of each key to new
    /// table `number`, values stored in `format`; syncs the table and the
    /// store's directory. The run is left empty.
    ///
    /// # Errors
    /// Table write and sync errors (the caller removes the table).
    pub(super) fn write_table(
        &mut self,
        inner: &DbInner,
        number: FileNumber,
        format: ValueFormat,
    ) -> Result<TableMeta> {
        let entries = std::mem::take(&mut self.entries);
        self.size_bytes = 0;
        let order = sorted_order(&entries);
        let mut builder = inner.create_table(number)?;
        let mut stored = Vec::new();
        let mut previous: Option<&[u8]> = None;
        for &(_, i) in &order {
            let entry = &entries[i as usize];
            if previous == Some(&entry.key[..]) {
                continue;
            }
            previous = Some(&entry.key[..]);
            let kind = match entry.value {
                Some(_) => ValueKind::Put,
                None => ValueKind::Delete,
            };
            let key = InternalKeyRef {
                user_key: &entry.key,
                seqno: entry.seqno,
                kind,
            };
            match &entry.value {
                Some(v) => builder.add(
                    key,
                    stored_value(v, entry.timestamp_ms, format, &mut stored),
                )?,
                None => builder.add(key, &[])?,
            }
        }
        drop(order);
        drop(entries);
        let info = builder.finish()?;
        inner
            .fs
            .sync_dir(&inner.path)
            .map_err(|e| crate::error::Error::sync(&inner.path, e))?;
        Ok(TableMeta::from_info(number, &info))
    }
}

/// The indexes of `entries` in internal-key order: key ascending, then
/// newest first. Each comes with the key's first 16 bytes as a big-endian
/// number, zero-padded, so most comparisons are of two integers and the
/// sort moves 32-byte pairs, not entries. Zero padding keeps the order:
/// where two padded prefixes differ, the keys differ there the same way or
/// one is a prefix of the other; where they are equal the keys themselves
/// decide. Entries were pushed in offset order, so a later index is a newer
/// version.
fn sorted_order(entries: &[RunEntry]) -> Vec<(u128, u32)> {
    let mut order: Vec<(u128, u32)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (key_prefix(&e.key), i as u32))
        .collect();
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let (x, y) = (&entries[a.1 as usize], &entries[b.1 as usize]);
            x.key.cmp(&y.key).then_with(|| b.1.cmp(&a.1))
        })
    });
    order
}

fn key_prefix(key: &[u8]) -> u128 {
    let mut raw = [0u8; 16];
    let n = key.len().min(16);
    raw[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8]) -> RunEntry {
        RunEntry {
            key: Bytes::copy_from_slice(key),
            value: None,
            seqno: SeqNo(0),
            timestamp_ms: 0,
        }
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_entry_takes_the_80_bytes_docs_state_md_counts() {
        assert_eq!(std::mem::size_of::<RunEntry>(), 80);
    }

    #[test]
    fn the_order_is_by_key_then_newest_first_whatever_the_key_lengths() {
        let keys: [&[u8]; 9] = [
            b"b",
            b"a\0",
            b"a",
            b"",
            b"a",
            b"0123456789abcdefZ",
            b"0123456789abcdef",
            b"0123456789abcdefA",
            b"a\0\0",
        ];
        let entries: Vec<RunEntry> = keys.iter().map(|k| entry(k)).collect();
        let got: Vec<(&[u8], u32)> = sorted_order(&entries)
            .iter()
            .map(|&(_, i)| (keys[i as usize], i))
            .collect();
        let mut want: Vec<(&[u8], u32)> = keys.iter().copied().zip(0..).collect();
        want.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
        assert_eq!(got, want);
    }
}
