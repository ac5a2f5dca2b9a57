//! Retention: advancing the log start offset and deleting old segments.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::filename::POSITIONS_FILE;
use crate::log::Log;
use crate::positions::{self, MAX_CONSUMERS, MAX_NAME_BYTES};
use crate::record::now_ms;
use crate::segment::Segment;

/// What a retention pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes of segment data deleted.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: u64,
}

impl Log {
    /// Advances the log start offset to `offset` (as Kafka's delete-records)
    /// and deletes every segment that lies wholly below it. The active
    /// segment is never deleted. The new start offset is durable when this
    /// returns. Offsets at or below the current start are a no-op.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] past the log end, I/O errors.
    pub fn truncate_before(&self, offset: u64) -> Result<RetentionReport> {
        let end = self.next_offset();
        if offset > end {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                log_start_offset: self.log_start_offset(),
                next_offset: end,
            });
        }
        let _m = self.inner.maintenance.lock();
        self.advance_start(offset)
    }

    /// Applies the retention options (`retention_bytes`, `retention_ms`,
    /// `retain_for_consumers`) using the current time, and deletes whole
    /// segments accordingly.
    ///
    /// # Errors
    /// I/O errors.
    pub fn apply_retention(&self) -> Result<RetentionReport> {
        self.apply_retention_at(now_ms(), u64::MAX)
    }

    /// Applies retention as of `now_ms`, never deleting records at or above
    /// `keep_from` (the engine passes its flushed offset here).
    ///
    /// # Errors
    /// I/O errors.
    pub fn apply_retention_at(&self, now_ms: i64, keep_from: u64) -> Result<RetentionReport> {
        let _m = self.inner.maintenance.lock();
        let opts = &self.inner.opts;
        let mut limit = keep_from;
        if opts.retain_for_consumers
            && let Some(min) = self.inner.positions.lock().values().min()
        {
            limit = limit.min(*min);
        }
        let segments = self.inner.segments_snapshot();
        let closed = &segments[..segments.len().saturating_sub(1)];
        let mut total: u64 = segments.iter().map(|s| s.size_bytes()).sum();
        let mut new_start = self.log_start_offset();
        for (i, segment) in closed.iter().enumerate() {
            let seg_end = segments[i + 1].base_offset;
            let by_size = opts.retention_bytes.is_some_and(|max| total > max);
            let by_age = opts.retention_ms.is_some_and(|ms| {
                segment
                    .max_timestamp_ms()
                    .is_none_or(|t| now_ms.saturating_sub(t) > ms as i64)
            });
            let requested = keep_from != u64::MAX && seg_end <= keep_from;
            if !(by_size || by_age || requested) || seg_end > limit {
                break;
            }
            total -= segment.size_bytes();
            new_start = new_start.max(seg_end);
        }
        self.advance_start(new_start)
    }

    /// Sets the start offset (durably) and deletes segments below it.
    fn advance_start(&self, offset: u64) -> Result<RetentionReport> {
        let inner = &self.inner;
        let mut report = RetentionReport {
            log_start_offset: self.log_start_offset(),
            ..Default::default()
        };
        if offset <= report.log_start_offset {
            return Ok(report);
        }
        // The recovery point follows the start offset, so everything below
        // it must be durable first.
        inner.sync_to(offset)?;
        inner.log_start_offset.store(offset, Ordering::Release);
        inner.write_meta(None)?;
        report.log_start_offset = offset;
        let doomed: Vec<Arc<Segment>> = {
            let mut segs = inner.segments.write();
            let list = segs.as_ref();
            let keep_from = list
                .iter()
                .enumerate()
                .skip(1)
                .take_while(|(_, s)| s.base_offset <= offset)
                .map(|(i, _)| i)
                .last()
                .unwrap_or(0);
            let (doomed, kept) = list.split_at(keep_from);
            let doomed = doomed.to_vec();
            *segs = Arc::new(kept.to_vec());
            doomed
        };
        for segment in &doomed {
            report.segments_deleted += 1;
            report.bytes_deleted += segment.size_bytes();
            segment.delete_files(inner.fs.as_ref())?;
        }
        if !doomed.is_empty() {
            inner
                .fs
                .sync_dir(&inner.dir)
                .map_err(|e| Error::io("sync directory", &inner.dir, e))?;
        }
        Ok(report)
    }

    /// Durably records that consumer `name` has processed everything below
    /// `offset` (its next offset to read), as a Kafka consumer group commit.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad name or an offset past the log
    /// end, I/O errors (the previous positions then stay in force).
    pub fn commit_position(&self, name: &str, offset: u64) -> Result<()> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(Error::InvalidArgument(format!(
                "consumer name must be 1..={MAX_NAME_BYTES} bytes"
            )));
        }
        if offset > self.next_offset() {
            return Err(Error::InvalidArgument(format!(
                "position {offset} is past the log end {}",
                self.next_offset()
            )));
        }
        let mut map = self.inner.positions.lock();
        if !map.contains_key(name) && map.len() >= MAX_CONSUMERS {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_CONSUMERS} consumers"
            )));
        }
        let mut next = map.clone();
        next.insert(name.to_owned(), offset);
        self.replace_positions(&mut map, next)
    }

    /// Writes `next` durably, then makes it the positions in force; on an
    /// error the previous positions stay.
    fn replace_positions(
        &self,
        map: &mut std::collections::BTreeMap<String, u64>,
        next: std::collections::BTreeMap<String, u64>,
    ) -> Result<()> {
        positions::write(
            self.inner.fs.as_ref(),
            &self.inner.dir.join(POSITIONS_FILE),
            &next,
        )?;
        *map = next;
        Ok(())
    }

    /// The committed position of consumer `name`, if it has one.
    pub fn position(&self, name: &str) -> Option<u64> {
        self.inner.positions.lock().get(name).copied()
    }

    /// All committed consumer positions.
    pub fn positions(&self) -> std::collections::BTreeMap<String, u64> {
        self.inner.positions.lock().clone()
    }

    /// Forgets consumer `name` (durably).
    ///
    /// # Errors
    /// I/O errors.
    pub fn remove_position(&self, name: &str) -> Result<()> {
        let mut map = self.inner.positions.lock();
        let mut next = map.clone();
        if next.remove(name).is_none() {
            return Ok(());
        }
        self.replace_positions(&mut map, next)
    }
}
