//! Sources of changelog records to restore from: the seam between a
//! restore (or a standby) and wherever the records live — a local
//! [`Log`], a copy of one, or a Kafka topic-partition (the `kafka` bridge).

use std::ops::Deref;

use crate::Error;
use crate::batch::Batch;
use crate::error::Result;
use crate::log::Log;
use crate::reader::decode_records;
use crate::record::{RecordRef, StoredRecord};
use crate::segment::Segment;

/// The offsets a source holds right now, as a Kafka partition's log start
/// offset and high watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceBounds {
    /// The first offset the source still holds (records below it are gone:
    /// deleted by retention or never there).
    pub start_offset: u64,
    /// The offset after the last record the source holds now.
    pub end_offset: u64,
}

/// Records in offset order from a changelog, local or remote.
///
/// A restore calls [`bounds`](RecordSource::bounds) once, then
/// [`seek`](RecordSource::seek) to where it starts, then
/// [`poll`](RecordSource::poll) until it reaches the end it took from
/// `bounds`. A standby keeps polling after that. Offsets delivered strictly
/// increase and may have gaps (a compacted changelog).
pub trait RecordSource {
    /// The error a source reports; a restore wraps it and keeps its type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The source's current start and end offsets.
    ///
    /// # Errors
    /// Whatever the source cannot answer (I/O, network, timeout).
    fn bounds(&mut self) -> Result<SourceBounds, Self::Error>;

    /// Makes the next [`poll`](RecordSource::poll) start at the first
    /// record at or after `offset`.
    ///
    /// # Errors
    /// An offset the source cannot serve (below its start, past its end).
    fn seek(&mut self, offset: u64) -> Result<(), Self::Error>;

    /// The next records in offset order, about `max_bytes` of them; an empty
    /// vector when the source holds nothing more right now.
    ///
    /// # Errors
    /// Read failures: damaged data, I/O, network.
    fn poll(&mut self, max_bytes: usize) -> Result<Vec<StoredRecord>, Self::Error>;

    /// Like [`poll`](RecordSource::poll), but hands each record to
    /// `visit`, borrowed from the source's buffers, instead of returning
    /// owned records (a source over local segments then builds no
    /// vector and counts no references; headers are not passed). Returns
    /// how many records were handed to `visit` (0 when the source holds
    /// nothing more right now). When `visit` returns `false` the rest of the
    /// poll's records are not visited, and where the next poll starts is
    /// unspecified until a [`seek`](RecordSource::seek). The default
    /// calls `poll`.
    ///
    /// # Errors
    /// As [`poll`](RecordSource::poll).
    ///
    /// # Examples
    /// ```
    /// use varve_changelog::{Log, LogOptions, LogSource, Record, RecordSource};
    /// # fn main() -> varve_changelog::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let log = Log::open(dir.path(), LogOptions::default())?;
    /// log.append(&[Record::put("a", "1"), Record::tombstone("b")])?;
    /// let mut keys = Vec::new();
    /// let held = LogSource::new(&log).poll_each(1 << 20, &mut |r| {
    ///     keys.push((r.offset, r.key.to_vec(), r.value.is_some()));
    ///     true
    /// })?;
    /// assert_eq!(held, 2);
    /// assert_eq!(keys, [(0, b"a".to_vec(), true), (1, b"b".to_vec(), false)]);
    /// # Ok(()) }
    /// ```
    fn poll_each(
        &mut self,
        max_bytes: usize,
        visit: &mut dyn FnMut(RecordRef<'_>) -> bool,
    ) -> Result<usize, Self::Error> {
        let records = self.poll(max_bytes)?;
        let mut handed = 0;
        for stored in &records {
            handed += 1;
            if !visit(stored.as_ref()) {
                break;
            }
        }
        Ok(handed)
    }
}

/// A [`RecordSource`] over a local [`Log`] (for example a store's
/// changelog, or a copy of one opened on its own).
///
/// # Examples
/// ```
/// use varve_changelog::{Log, LogOptions, LogSource, Record, RecordSource};
/// # fn main() -> varve_changelog::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path(), LogOptions::default())?;
/// log.append(&[Record::put("a", "1"), Record::put("b", "2")])?;
/// let mut source = LogSource::new(&log);
/// assert_eq!(source.bounds()?.end_offset, 2);
/// source.seek(1)?;
/// let records = source.poll(1 << 20)?;
/// assert_eq!(records.len(), 1);
/// assert_eq!(&records[0].record.key[..], b"b");
/// assert!(source.poll(1 << 20)?.is_empty());
/// # Ok(()) }
/// ```
///
/// `L` is anything that derefs to the log: `&Log` for a source that
/// borrows it, `Arc<Log>` for one that can move to another thread.
#[derive(Debug)]
pub struct LogSource<L: Deref<Target = Log>> {
    log: L,
    position: u64,
}

impl<L: Deref<Target = Log>> LogSource<L> {
    /// A source reading `log` from its start offset.
    pub fn new(log: L) -> LogSource<L> {
        let position = log.log_start_offset();
        LogSource { log, position }
    }

    /// The offset the next poll starts at.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// One poll's reading, shared by [`poll`](RecordSource::poll) and
    /// [`poll_each`](RecordSource::poll_each): one read of about
    /// `max_bytes` of whole batches from the position, each batch that was
    /// published by the time of the range check handed to `take` with the
    /// segment, its position in it and the offset to start from; the
    /// position then moves past it. Stops early when `take` returns false.
    fn take_batches(
        &mut self,
        max_bytes: usize,
        mut take: impl FnMut(&Segment, u64, &Batch, u64) -> Result<bool>,
    ) -> Result<()> {
        let (_, end) = self.log.check_range(self.position)?;
        let Some((segment, position)) = self.log.inner.locate(self.position)? else {
            return Ok(());
        };
        let (batches, _) = segment.read_batches(position, max_bytes)?;
        for (at, batch) in batches {
            if batch.header().next_offset() > end {
                break;
            }
            let more = take(&segment, at, &batch, self.position)?;
            self.position = self.position.max(batch.header().next_offset());
            if !more {
                break;
            }
        }
        Ok(())
    }
}

impl<L: Deref<Target = Log>> RecordSource for LogSource<L> {
    type Error = crate::Error;

    fn bounds(&mut self) -> Result<SourceBounds> {
        Ok(SourceBounds {
            start_offset: self.log.log_start_offset(),
            end_offset: self.log.next_offset(),
        })
    }

    fn seek(&mut self, offset: u64) -> Result<()> {
        self.log.reader(offset)?;
        self.position = offset;
        Ok(())
    }

    /// One read of about `max_bytes` of whole batches from where the last
    /// poll ended (each byte read and CRC-checked once: no reader state
    /// to rebuild, no batch read again by the next poll), and every record
    /// of them at or past the position.
    fn poll(&mut self, max_bytes: usize) -> Result<Vec<StoredRecord>> {
        let mut out = Vec::new();
        self.take_batches(max_bytes, |segment, at, batch, from| {
            out.extend(decode_records(segment, at, batch, from)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Reads and visits the same batches as [`poll`](Self::poll), each
    /// record decoded in place in the segment's read buffer.
    fn poll_each(
        &mut self,
        max_bytes: usize,
        visit: &mut dyn FnMut(RecordRef<'_>) -> bool,
    ) -> Result<usize> {
        let mut held = 0usize;
        self.take_batches(max_bytes, |segment, at, batch, from| {
            let mut counted = |r: RecordRef<'_>| {
                held += 1;
                visit(r)
            };
            batch
                .records()
                .visit(from, &mut counted)
                .map_err(|e| Error::corruption(&segment.path, at, format!("{e:?}")))
        })?;
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{LogOptions, Record};

    #[test]
    fn polls_in_order_across_gaps_and_respects_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let at = |offset, key: &str| StoredRecord {
            offset,
            record: Record::put(key.to_owned(), vec![0u8; 100]),
        };
        log.append_at(&[at(2, "a"), at(5, "b"), at(6, "c")])
            .unwrap();
        log.append_at(&[at(9, "d")]).unwrap();
        let mut source = LogSource::new(&log);
        assert_eq!(
            source.bounds().unwrap(),
            SourceBounds {
                start_offset: 0,
                end_offset: 10
            }
        );
        source.seek(3).unwrap();
        let first = source.poll(150).unwrap();
        assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), [5, 6]);
        let rest = source.poll(1 << 20).unwrap();
        assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), [9]);
        assert!(source.poll(1 << 20).unwrap().is_empty());
        assert_eq!(source.position(), 10);
        assert!(source.seek(11).is_err());
    }

    /// Everything `poll_each` hands over, poll by poll, as owned records
    /// (headers left out, as it passes none).
    fn each_poll(source: &mut LogSource<&Log>, max_bytes: usize) -> Vec<Vec<StoredRecord>> {
        let mut polls = Vec::new();
        loop {
            let mut got = Vec::new();
            let held = source
                .poll_each(max_bytes, &mut |r| {
                    got.push(StoredRecord {
                        offset: r.offset,
                        record: Record {
                            key: r.key.to_vec().into(),
                            value: r.value.map(|v| v.to_vec().into()),
                            timestamp_ms: r.timestamp_ms,
                            headers: Vec::new(),
                        },
                    });
                    true
                })
                .unwrap();
            assert_eq!(held, got.len());
            if held == 0 {
                return polls;
            }
            polls.push(got);
        }
    }

    #[test]
    fn poll_each_visits_what_poll_returns_poll_by_poll() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let mut rng = crate::testing::Rng::new(3);
        for batch in 0..40u64 {
            let records: Vec<Record> = (0..1 + rng.below(30))
                .map(|i| {
                    let key_len = rng.size(40);
                    let key = rng.bytes(key_len);
                    let record = if rng.chance(20) {
                        Record::tombstone(key)
                    } else {
                        let value_len = rng.size(3000);
                        Record::put(key, rng.bytes(value_len))
                    };
                    let record = record.with_timestamp_ms((batch * 100 + i) as i64 - 50);
                    if rng.chance(10) {
                        record.with_header("h", "v")
                    } else {
                        record
                    }
                })
                .collect();
            log.append(&records).unwrap();
        }
        for (from, max_bytes) in [(0, 1 << 20), (7, 4096), (123, 1), (300, 50_000)] {
            let mut owned = LogSource::new(&log);
            let mut visited = LogSource::new(&log);
            if from < log.next_offset() {
                owned.seek(from).unwrap();
                visited.seek(from).unwrap();
            }
            let mut want = Vec::new();
            loop {
                let mut poll = owned.poll(max_bytes).unwrap();
                if poll.is_empty() {
                    break;
                }
                for r in &mut poll {
                    r.record.headers.clear();
                }
                want.push(poll);
            }
            assert_eq!(
                each_poll(&mut visited, max_bytes),
                want,
                "from {from}, polls of {max_bytes}"
            );
            assert_eq!(visited.position(), owned.position());
        }
    }

    #[test]
    fn poll_each_stops_when_told_and_reports_damage() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        log.append(&[
            Record::put("a", "1"),
            Record::put("b", "2"),
            Record::put("c", "3"),
        ])
        .unwrap();
        let mut seen = 0;
        let held = LogSource::new(&log)
            .poll_each(1 << 20, &mut |_| {
                seen += 1;
                seen < 2
            })
            .unwrap();
        assert_eq!((held, seen), (2, 2));
        // Flip a byte of the first record's value under the open log: the
        // batch's CRC no longer matches when the poll reads it.
        let segment = dir
            .path()
            .join(crate::filename::segment_file_name(0, ".log"));
        let bytes = std::fs::read(&segment).unwrap();
        let at = bytes.iter().position(|&b| b == b'1').unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[b'1' ^ 0x40], at as u64).unwrap();
        let err = LogSource::new(&log)
            .poll_each(1 << 20, &mut |_| true)
            .unwrap_err();
        assert!(matches!(err, Error::Corruption { .. }), "{err}");
    }
}
