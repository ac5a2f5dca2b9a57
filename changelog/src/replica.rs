//! Follower-side writes: appending records that keep offsets assigned
//! elsewhere, and restarting an empty log at a later offset.
//!
//! A Kafka follower copies its leader's batches with the leader's offsets,
//! and a follower that fell behind the leader's log start offset truncates
//! its log fully and starts again at that offset. Varve's standby replicas
//! and restores do the same, so a replica's offsets (and therefore its
//! sequence numbers) equal the source's, and its position in the source is
//! simply its own [`Log::next_offset`].

use std::sync::atomic::Ordering;

use crate::batch::{self, BatchEncoder, RecordParts};
use crate::error::{Error, Result};
use crate::log::{AppendInfo, Log};
use crate::record::StoredRecord;

impl Log {
    /// Appends `records` as one batch, keeping their offsets, as a follower
    /// copies its leader's records. Offsets must strictly increase, the
    /// first must be at or past [`next_offset`](Log::next_offset), and they
    /// may have gaps (a compacted source); the log's next offset becomes
    /// the last offset plus one. Under [`SyncPolicy::Always`](crate::SyncPolicy::Always) the batch is
    /// durable when this returns.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty slice, offsets that do not
    /// increase, start below the log end or span more than `u32::MAX`;
    /// [`Error::BatchTooLarge`]; [`Error::ReadOnly`] after a failed sync;
    /// [`Error::Closed`]; I/O errors.
    ///
    /// # Examples
    /// ```
    /// use varve_changelog::{Log, LogOptions, Record, StoredRecord};
    /// # fn main() -> varve_changelog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), LogOptions::default())?;
    /// let copied = [
    ///     StoredRecord { offset: 3, record: Record::put("a", "1") },
    ///     StoredRecord { offset: 7, record: Record::put("b", "2") },
    /// ];
    /// let info = log.append_at(&copied)?;
    /// assert_eq!((info.base_offset, info.last_offset), (3, 7));
    /// assert_eq!(log.next_offset(), 8);
    /// let offsets: Vec<u64> = log.reader(0)?.map(|r| r.map(|r| r.offset)).collect::<Result<_, _>>()?;
    /// assert_eq!(offsets, [3, 7]);
    /// # Ok(()) }
    /// ```
    pub fn append_at(&self, records: &[StoredRecord]) -> Result<AppendInfo> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Err(Error::InvalidArgument(
                "append_at needs at least one record".into(),
            ));
        };
        if records.windows(2).any(|w| w[1].offset <= w[0].offset) {
            return Err(Error::InvalidArgument(
                "append_at needs strictly increasing offsets".into(),
            ));
        }
        let span = last.offset - first.offset;
        if span >= u64::from(u32::MAX) {
            return Err(Error::InvalidArgument(format!(
                "offsets {}..={} span too much for one batch",
                first.offset, last.offset
            )));
        }
        let estimate: usize = batch::BATCH_HEADER_SIZE
            + records
                .iter()
                .map(|r| batch::encoded_size(std::slice::from_ref(&r.record)))
                .sum::<usize>();
        self.append_encoded(estimate, |buf, slot| {
            let next_offset = slot.base_offset;
            if first.offset < next_offset {
                return Err(Error::InvalidArgument(format!(
                    "append_at offset {} is below the log end {next_offset}",
                    first.offset
                )));
            }
            let mut enc = BatchEncoder::new(buf);
            for r in records {
                enc.push(
                    (r.offset - first.offset) as u32,
                    &RecordParts::from(&r.record),
                );
            }
            enc.set_durable_offset(slot.durable_offset);
            Ok(enc.finish(first.offset, span as u32))
        })
    }

    /// Empties the log and starts it again at `offset`, as a Kafka follower
    /// does when its leader's log starts past its end: a new segment begins
    /// at `offset`, which becomes the log start offset, and every older
    /// segment is deleted. Used by restores and standbys whose state up to
    /// `offset` is already in tables. The change is durable when this
    /// returns; a crash midway leaves either the old log or the new start.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `offset` is below the log end (that
    /// would discard records), [`Error::ReadOnly`], [`Error::Closed`], I/O
    /// errors.
    ///
    /// # Examples
    /// ```
    /// use varve_changelog::{Log, LogOptions, Record};
    /// # fn main() -> varve_changelog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), LogOptions::default())?;
    /// log.truncate_fully_and_start_at(1_000)?;
    /// assert_eq!((log.log_start_offset(), log.next_offset()), (1_000, 1_000));
    /// assert_eq!(log.append(&[Record::put("k", "v")])?.base_offset, 1_000);
    /// # Ok(()) }
    /// ```
    pub fn truncate_fully_and_start_at(&self, offset: u64) -> Result<()> {
        let inner = &self.inner;
        inner.check_writable()?;
        {
            let mut st = inner.append.lock();
            if offset < st.next_offset {
                return Err(Error::InvalidArgument(format!(
                    "cannot restart the log at {offset}: it already ends at {}",
                    st.next_offset
                )));
            }
            if offset == st.next_offset && st.active.base_offset == offset {
                drop(st);
                return self.truncate_before(offset).map(|_| ());
            }
            st.next_offset = offset;
            inner.roll(&mut st)?;
            inner.next_offset.store(offset, Ordering::Release);
        }
        inner.notify_appended();
        self.truncate_before(offset).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{LogOptions, Record};

    fn stored(offset: u64, key: &str) -> StoredRecord {
        StoredRecord {
            offset,
            record: Record::put(key.to_owned(), format!("v{offset}")),
        }
    }

    fn offsets(log: &Log, from: u64) -> Vec<u64> {
        log.reader(from)
            .unwrap()
            .map(|r| r.unwrap().offset)
            .collect()
    }

    #[test]
    fn append_at_keeps_offsets_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        log.append_at(&[stored(0, "a"), stored(2, "b")]).unwrap();
        log.append_at(&[stored(10, "c")]).unwrap();
        let info = log.append(&[Record::put("d", "x")]).unwrap();
        assert_eq!(info.base_offset, 11);
        assert_eq!(offsets(&log, 0), [0, 2, 10, 11]);
        assert_eq!(offsets(&log, 3), [10, 11]);
        log.close().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        assert_eq!(offsets(&log, 0), [0, 2, 10, 11]);
        assert_eq!(log.next_offset(), 12);
    }

    #[test]
    fn append_at_rejects_bad_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        log.append_at(&[stored(5, "a")]).unwrap();
        for bad in [
            vec![],
            vec![stored(4, "a")],
            vec![stored(8, "a"), stored(8, "b")],
            vec![stored(9, "a"), stored(7, "b")],
            vec![stored(9, "a"), stored(9 + u64::from(u32::MAX), "b")],
        ] {
            assert!(
                matches!(log.append_at(&bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        assert_eq!(offsets(&log, 0), [5]);
    }

    #[test]
    fn truncate_fully_moves_the_start_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        log.append(&[Record::put("a", "1"), Record::put("b", "2")])
            .unwrap();
        assert!(matches!(
            log.truncate_fully_and_start_at(1),
            Err(Error::InvalidArgument(_))
        ));
        log.truncate_fully_and_start_at(100).unwrap();
        assert_eq!(log.log_start_offset(), 100);
        assert_eq!(log.next_offset(), 100);
        assert!(offsets(&log, 100).is_empty());
        log.append(&[Record::put("c", "3")]).unwrap();
        log.close().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        assert_eq!((log.log_start_offset(), log.next_offset()), (100, 101));
        assert_eq!(log.segment_base_offsets(), [100]);
        assert_eq!(offsets(&log, 100), [100]);
        // Again at the current end: a no-op that keeps the record.
        log.truncate_fully_and_start_at(101).unwrap();
        assert_eq!(log.next_offset(), 101);
    }
}
