//! Reading the log: Kafka-style fetches of whole batches, and a record
//! cursor across segments.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::batch::{Batch, BatchHeader, RecordIter};
use crate::error::{Error, Result};
use crate::log::{Inner, Log};
use crate::record::StoredRecord;
use crate::segment::Segment;

/// Bytes a [`LogReader`] fetches per read.
const READER_FETCH_BYTES: usize = 1 << 20;

/// The answer to a [`Log::read`]: whole batches.
#[derive(Clone, Debug)]
pub struct FetchResult {
    /// The batches, in offset order. The first may start before the
    /// requested offset (it is the batch that contains it).
    pub batches: Vec<Batch>,
    /// The offset after the last returned batch (where to fetch next).
    pub next_fetch_offset: u64,
    /// The log end offset when the fetch was served.
    pub log_end_offset: u64,
    /// The log start offset when the fetch was served.
    pub log_start_offset: u64,
}

impl Log {
    /// Fetches whole, CRC-checked batches starting with the one that holds
    /// `from`: as many as fit in `max_bytes`, but at least one (as Kafka's
    /// fetch does). Reading at the log end returns no batches.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] below the log start or past the end,
    /// [`Error::Corruption`] for a damaged batch, I/O errors.
    pub fn read(&self, from: u64, max_bytes: usize) -> Result<FetchResult> {
        let inner = &self.inner;
        let (start, end) = self.check_range(from)?;
        let mut result = FetchResult {
            batches: Vec::new(),
            next_fetch_offset: from,
            log_end_offset: end,
            log_start_offset: start,
        };
        let Some((segment, position)) = inner.locate(from)? else {
            return Ok(result);
        };
        let (batches, _) = segment.read_batches(position, max_bytes)?;
        // Only batches published by the time of the range check: one
        // written since may not have moved the log end yet.
        result.batches = batches
            .into_iter()
            .map(|(_, batch)| batch)
            .take_while(|batch| batch.header().next_offset() <= end)
            .collect();
        if let Some(last) = result.batches.last() {
            result.next_fetch_offset = last.header().next_offset();
        }
        Ok(result)
    }

    /// A cursor over the records at offsets `>= from`, in offset order,
    /// across segments. It ends at the log end as of each call to `next`
    /// (never past it: a batch being appended is returned once its append
    /// has moved the end); use [`Log::wait_for`] to tail.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `from` is outside the log.
    pub fn reader(&self, from: u64) -> Result<LogReader<'_>> {
        self.check_range(from)?;
        Ok(LogReader {
            buffer: None,
            log: self,
            from,
            next_offset: from,
            cursor: None,
            records: None,
            failed: false,
        })
    }

    /// The first offset whose record timestamp is `>= timestamp_ms`, or
    /// `None` if every record is older.
    ///
    /// # Errors
    /// Corruption or I/O errors while scanning.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<u64>> {
        let start = self.log_start_offset();
        for segment in self.inner.segments_snapshot().iter() {
            if segment.next_offset() <= start
                || segment.max_timestamp_ms().is_none_or(|m| m < timestamp_ms)
            {
                continue;
            }
            let rel = segment.lookup_time(timestamp_ms);
            let from = (segment.base_offset + u64::from(rel)).max(start);
            let reader = self.reader(from)?;
            for rec in reader {
                let rec = rec?;
                if rec.record.timestamp_ms >= timestamp_ms {
                    return Ok(Some(rec.offset));
                }
            }
        }
        Ok(None)
    }

    /// The log's start and end, or [`Error::OffsetOutOfRange`] if `from`
    /// lies outside them.
    pub(crate) fn check_range(&self, from: u64) -> Result<(u64, u64)> {
        let start = self.log_start_offset();
        let end = self.next_offset();
        if from < start || from > end {
            return Err(Error::OffsetOutOfRange {
                requested: from,
                log_start_offset: start,
                next_offset: end,
            });
        }
        Ok((start, end))
    }

    /// Waits up to `timeout` for records at `offset` and returns a reader
    /// from there (for followers). Returns `None` on timeout.
    ///
    /// # Errors
    /// As [`Log::reader`].
    pub fn tail(&self, offset: u64, timeout: Duration) -> Result<Option<LogReader<'_>>> {
        if self.wait_for(offset, timeout) {
            self.reader(offset).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Log {
    /// The segment file and byte position of the batch holding `offset`
    /// (or of the first batch after it), for errors that must name where
    /// a record lies. `None` if no batch holds it.
    ///
    /// # Errors
    /// I/O errors while reading the segment's index.
    pub fn batch_location(&self, offset: u64) -> Result<Option<(PathBuf, u64)>> {
        let found = self.inner.locate(offset)?;
        Ok(found.map(|(segment, position)| (segment.path.clone(), position)))
    }
}

impl Inner {
    /// The segment and byte position of the batch holding `offset` (or the
    /// first batch after it).
    pub(crate) fn locate(&self, offset: u64) -> Result<Option<(Arc<Segment>, u64)>> {
        let segments = self.segments_snapshot();
        let first = segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        for segment in &segments[first..] {
            if let Some(position) = segment.locate(offset)? {
                return Ok(Some((segment.clone(), position)));
            }
        }
        Ok(None)
    }
}

/// Batches fetched by one read and not yet handed out.
#[derive(Debug)]
struct Buffered {
    segment: Arc<Segment>,
    /// Checked batches with their byte positions.
    batches: VecDeque<(u64, Batch)>,
}

/// A cursor over a log's records; see [`Log::reader`].
#[derive(Debug)]
pub struct LogReader<'a> {
    buffer: Option<Buffered>,
    log: &'a Log,
    from: u64,
    next_offset: u64,
    cursor: Option<(Arc<Segment>, u64)>,
    /// Records of the batch being handed out by the iterator.
    records: Option<(Arc<Segment>, u64, RecordIter)>,
    failed: bool,
}

impl LogReader<'_> {
    /// The offset of the next record this reader will return (or the log
    /// end it will wait at).
    pub fn position(&self) -> u64 {
        self.next_offset
    }

    /// The segment file and byte position of the batch whose records the
    /// iterator is handing out (that of the record it returned last), for
    /// errors that must name where a record lies.
    pub fn batch_location(&self) -> Option<(&Path, u64)> {
        self.records
            .as_ref()
            .map(|(segment, position, _)| (segment.path.as_path(), *position))
    }

    /// Reads the next whole batch, header and records, skipping records
    /// below the reader's start. `None` at the log end.
    ///
    /// # Errors
    /// Corruption or I/O errors.
    pub fn next_batch(&mut self) -> Result<Option<(BatchHeader, Vec<StoredRecord>)>> {
        let Some((segment, position, batch)) = self.next_checked_batch()? else {
            return Ok(None);
        };
        let records = decode_records(&segment, position, &batch, self.from)?;
        Ok(Some((*batch.header(), records)))
    }

    /// The next checked batch with its segment and byte position. One read
    /// fetches (and CRC-checks) many batches; they are handed out one at a
    /// time from the buffer.
    fn next_checked_batch(&mut self) -> Result<Option<(Arc<Segment>, u64, Batch)>> {
        loop {
            if let Some(buf) = self.buffer.as_mut() {
                if let Some((position, batch)) = buf.batches.pop_front() {
                    // A batch already in the segment but not yet published
                    // (its append has not moved the log end) waits for a
                    // later call: a reader never runs ahead of the end.
                    if batch.header().next_offset() > self.log.next_offset() {
                        buf.batches.push_front((position, batch));
                        return Ok(None);
                    }
                    self.next_offset = self.next_offset.max(batch.header().next_offset());
                    return Ok(Some((buf.segment.clone(), position, batch)));
                }
                self.buffer = None;
            }
            let Some((segment, position)) = self.cursor_or_locate()? else {
                return Ok(None);
            };
            if position >= segment.size_bytes() {
                if !self.advance_segment(&segment)? {
                    return Ok(None);
                }
                continue;
            }
            let (batches, end) = segment.read_batches(position, READER_FETCH_BYTES)?;
            self.buffer = Some(Buffered {
                segment: segment.clone(),
                batches: batches.into(),
            });
            self.cursor = Some((segment, end));
        }
    }

    fn cursor_or_locate(&mut self) -> Result<Option<(Arc<Segment>, u64)>> {
        if let Some(c) = &self.cursor {
            return Ok(Some(c.clone()));
        }
        let found = self.log.inner.locate(self.next_offset)?;
        self.cursor.clone_from(&found);
        Ok(found)
    }

    /// Moves the cursor to the segment after `current`; false if none.
    fn advance_segment(&mut self, current: &Arc<Segment>) -> Result<bool> {
        let segments = self.log.inner.segments_snapshot();
        let next = segments
            .iter()
            .find(|s| s.base_offset > current.base_offset)
            .cloned();
        match next {
            Some(seg) => {
                self.cursor = Some((seg, 0));
                Ok(true)
            }
            None => {
                // Still the active segment: the cursor stays to pick up appends.
                Ok(false)
            }
        }
    }
}

/// The records of checked `batch` (at byte `position` of `segment`) at
/// offsets `>= from`.
pub(crate) fn decode_records(
    segment: &Segment,
    position: u64,
    batch: &Batch,
    from: u64,
) -> Result<Vec<StoredRecord>> {
    // The record count comes from the file: reserve no more than the
    // batch's bytes could hold (a record decodes to a `StoredRecord` far
    // larger than its few encoded bytes), and let the vector grow with
    // the records that really decode.
    let held_max = batch.bytes().len() / std::mem::size_of::<StoredRecord>();
    let count = usize::try_from(batch.header().record_count).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(count.min(held_max));
    for item in batch.records() {
        let (offset, record) =
            item.map_err(|e| Error::corruption(&segment.path, position, format!("{e:?}")))?;
        if offset >= from {
            out.push(StoredRecord { offset, record });
        }
    }
    Ok(out)
}

impl Iterator for LogReader<'_> {
    type Item = Result<StoredRecord>;

    /// Decodes records straight from the current batch (no per-batch
    /// vector), fetching the next batch when it is used up.
    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            if let Some((segment, position, records)) = self.records.as_mut() {
                match records.next() {
                    Some(Ok((offset, _))) if offset < self.from => continue,
                    Some(Ok((offset, record))) => return Some(Ok(StoredRecord { offset, record })),
                    Some(Err(e)) => {
                        self.failed = true;
                        return Some(Err(Error::corruption(
                            &segment.path,
                            *position,
                            format!("{e:?}"),
                        )));
                    }
                    None => self.records = None,
                }
            }
            match self.next_checked_batch() {
                Ok(Some((segment, position, batch))) => {
                    self.records = Some((segment, position, batch.records()))
                }
                Ok(None) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}
