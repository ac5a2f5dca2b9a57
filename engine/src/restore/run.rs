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
use crate::ttl::{ValueFormat, encode_timestamped};
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
        let mut entries = std::mem::take(&mut self.entries);
        self.size_bytes = 0;
        // Sequence numbers are unique, so the order is total and an
        // unstable sort gives one answer.
        entries.sort_unstable_by(|a, b| a.key.cmp(&b.key).then_with(|| b.seqno.cmp(&a.seqno)));
        let mut builder = inner.create_table(number)?;
        let mut stored = Vec::new();
        let mut previous: Option<&[u8]> = None;
        for entry in &entries {
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
            match (&entry.value, format) {
                (Some(v), ValueFormat::Plain) => builder.add(key, v)?,
                (Some(v), ValueFormat::Timestamped) => {
                    // A negative timestamp (before 1970) counts as written at 0.
                    let write_time_ms = u64::try_from(entry.timestamp_ms).unwrap_or(0);
                    encode_timestamped(write_time_ms, v, &mut stored);
                    builder.add(key, &stored)?;
                }
                (None, _) => builder.add(key, &[])?,
            }
        }
        drop(entries);
        let info = builder.finish()?;
        inner
            .fs
            .sync_dir(&inner.path)
            .map_err(|e| crate::error::Error::sync(&inner.path, e))?;
        Ok(TableMeta::from_info(number, &info))
    }
}
