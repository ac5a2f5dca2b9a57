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

/// The most records in a chunk of a run's entries: the entries live in
/// chunks, so a run grows without moving what it holds and has at most
/// one chunk's spare capacity, an eighth of the run's size or less.
const MAX_CHUNK_ENTRIES: usize = 1 << 16;

/// The memory a record of a run takes besides its key and value bytes:
/// its entry, its place in the sort order, and about what the record's
/// framing costs in the source's read buffers its bytes point into.
pub(super) const RECORD_OVERHEAD_BYTES: usize =
    std::mem::size_of::<RunEntry>() + std::mem::size_of::<(u128, u32)>() + 16;

/// Records gathered for one table.
pub(super) struct SortedRun {
    chunks: Vec<Vec<RunEntry>>,
    /// Each chunk holds `1 << chunk_shift` entries.
    chunk_shift: u32,
    /// Whether each key pushed is greater than the one before (then the
    /// run is already in order, with one version per key).
    ascending: bool,
    len: usize,
    size_bytes: usize,
}

impl SortedRun {
    /// An empty run that will be written once it holds about
    /// `run_size_bytes` (which sizes its chunks).
    pub(super) fn new(run_size_bytes: usize) -> Self {
        let entries =
            (run_size_bytes / 8 / std::mem::size_of::<RunEntry>()).clamp(64, MAX_CHUNK_ENTRIES);
        SortedRun {
            chunks: Vec::new(),
            chunk_shift: entries.ilog2(),
            ascending: true,
            len: 0,
            size_bytes: 0,
        }
    }

    fn chunk_entries(&self) -> usize {
        1 << self.chunk_shift
    }

    /// Adds `stored` as the write of sequence number `offset + 1` (as
    /// [`insert_all`](crate::write::insert_all) numbers them).
    pub(super) fn push(&mut self, stored: StoredRecord) {
        debug_assert!(
            self.chunks
                .last()
                .and_then(|c| c.last())
                .is_none_or(|e| e.seqno.0 <= stored.offset)
        );
        let record = stored.record;
        let value_len = record.value.as_ref().map_or(0, Bytes::len);
        self.size_bytes += record.key.len() + value_len + RECORD_OVERHEAD_BYTES;
        if self.ascending
            && let Some(last) = self.chunks.last().and_then(|c| c.last())
        {
            self.ascending = last.key < record.key;
        }
        let chunk_entries = self.chunk_entries();
        if self.chunks.last().is_none_or(|c| c.len() == chunk_entries) {
            // A new chunk's spare capacity is counted until it fills.
            self.chunks.push(Vec::with_capacity(chunk_entries));
        }
        let entry = RunEntry {
            key: record.key,
            value: record.value,
            seqno: SeqNo(stored.offset + 1),
            timestamp_ms: record.timestamp_ms,
        };
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(entry);
        }
        self.len += 1;
    }

    /// About how many bytes of memory the run takes: its records' key
    /// and value bytes, [`RECORD_OVERHEAD_BYTES`] for each, and the spare
    /// capacity of its last chunk of entries.
    pub(super) fn size_bytes(&self) -> usize {
        let spare = self.chunks.last().map_or(0, |c| {
            (c.capacity() - c.len()) * std::mem::size_of::<RunEntry>()
        });
        self.size_bytes + spare
    }

    /// Whether the run holds as many records as its index can number.
    pub(super) fn is_full(&self) -> bool {
        self.len >= u32::MAX as usize
    }

    /// Whether the run's keys were pushed in increasing order: its table
    /// then overlaps no earlier run's unless their key ranges meet, and it
    /// needs no sort.
    pub(super) fn is_ascending(&self) -> bool {
        self.ascending
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The run's `i`-th record, in the order they were pushed.
    fn entry(&self, i: u32) -> &RunEntry {
        let i = i as usize;
        &self.chunks[i >> self.chunk_shift][i & (self.chunk_entries() - 1)]
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
        let run = std::mem::replace(self, SortedRun::new(0));
        let order = sorted_order(&run);
        let mut builder = inner.create_table(number)?;
        let mut stored = Vec::new();
        let mut previous: Option<&[u8]> = None;
        for &(_, i) in &order {
            let entry = run.entry(i);
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
        drop(run);
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
fn sorted_order(run: &SortedRun) -> Vec<(u128, u32)> {
    if run.ascending {
        // Already in order, one version per key: the prefixes are unused.
        return (0..run.len as u32).map(|i| (0, i)).collect();
    }
    let mut order: Vec<(u128, u32)> = Vec::with_capacity(run.len);
    order.extend(
        run.chunks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, e)| (key_prefix(&e.key), i as u32)),
    );
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            let (x, y) = (run.entry(a.1), run.entry(b.1));
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

    fn record(key: &[u8], offset: u64) -> StoredRecord {
        StoredRecord {
            offset,
            record: varve_changelog::Record {
                key: Bytes::copy_from_slice(key),
                value: None,
                timestamp_ms: 0,
                headers: Vec::new(),
            },
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
        let mut run = SortedRun::new(0);
        for (offset, key) in (0..).zip(keys) {
            run.push(record(key, offset));
        }
        let got: Vec<(&[u8], u32)> = sorted_order(&run)
            .iter()
            .map(|&(_, i)| (keys[i as usize], i))
            .collect();
        let mut want: Vec<(&[u8], u32)> = keys.iter().copied().zip(0..).collect();
        want.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)));
        assert_eq!(got, want);
    }

    #[test]
    fn a_run_pushed_in_key_order_is_ascending_and_keeps_its_order() {
        let mut run = SortedRun::new(0);
        for (offset, key) in (0..).zip([&b"a"[..], b"a\0", b"b", b"ba"]) {
            run.push(record(key, offset));
        }
        assert!(run.is_ascending());
        let order: Vec<u32> = sorted_order(&run).iter().map(|&(_, i)| i).collect();
        assert_eq!(order, [0, 1, 2, 3]);
        // A repeated key (an overwrite) is not ascending: the sort then
        // puts its newest version first.
        run.push(record(b"ba", 4));
        assert!(!run.is_ascending());
        let order: Vec<u32> = sorted_order(&run).iter().map(|&(_, i)| i).collect();
        assert_eq!(order, [0, 1, 2, 4, 3]);
    }
}
