//! The cleaner: log compaction that keeps the latest record of every key.
//!
//! Closed segments are rewritten one for one, keeping offsets (gaps
//! remain). A key's latest tombstone is dropped once it is older than
//! `tombstone_retention_ms`. The swap is crash-safe: the cleaned data is
//! written to `{base}.log.cleaned` and synced, the old indexes are removed,
//! and the cleaned file is renamed over the segment; a crash leaves either
//! the old or the new segment, and a leftover `.cleaned` file is deleted on
//! open. Readers that hold the old segment keep reading it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{BatchEncoder, BatchHeader, RecordParts};
use crate::error::{Error, Result};
use crate::filename::{
    CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_file_name, segment_path,
};
use crate::fs::OpenMode;
use crate::log::Log;
use crate::record::{Record, now_ms};
use crate::segment::{ScanStop, Segment};

/// What a cleaning pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: u64,
    /// Bytes before and after, over the rewritten segments.
    pub bytes_before: u64,
    /// Bytes after cleaning.
    pub bytes_after: u64,
}

impl Log {
    /// Compacts the closed segments (every segment but the active one):
    /// keeps only the latest record of each key, and drops tombstones older
    /// than `tombstone_retention_ms`.
    ///
    /// # Errors
    /// I/O or corruption errors; the log is unchanged for any segment whose
    /// swap did not complete.
    pub fn clean(&self) -> Result<CleanReport> {
        self.clean_at(now_ms())
    }

    /// [`Log::clean`] as of the wall-clock time `now_ms`.
    ///
    /// # Errors
    /// As [`Log::clean`].
    pub fn clean_at(&self, now_ms: i64) -> Result<CleanReport> {
        let _m = self.inner.maintenance.lock();
        let segments = self.inner.segments_snapshot();
        let closed: Vec<Arc<Segment>> = segments[..segments.len().saturating_sub(1)].to_vec();
        let start = self.log_start_offset();
        let latest = self.latest_offsets(&closed)?;
        let mut report = CleanReport::default();
        for segment in &closed {
            if segment.next_offset() <= start {
                continue;
            }
            self.clean_segment(segment, &latest, now_ms, &mut report)?;
        }
        Ok(report)
    }

    /// The offset of the latest record of every key in `segments`.
    fn latest_offsets(&self, segments: &[Arc<Segment>]) -> Result<HashMap<Bytes, u64>> {
        let mut latest = HashMap::new();
        for segment in segments {
            for_each_batch(segment, |_, records| {
                for (offset, record) in records {
                    latest.insert(record.key.clone(), *offset);
                }
                Ok(())
            })?;
        }
        Ok(latest)
    }

    fn clean_segment(
        &self,
        segment: &Arc<Segment>,
        latest: &HashMap<Bytes, u64>,
        now_ms: i64,
        report: &mut CleanReport,
    ) -> Result<()> {
        let retention = self.inner.opts.tombstone_retention_ms as i64;
        let mut out = Vec::new();
        let mut removed = 0u64;
        for_each_batch(segment, |header, records| {
            let keep: Vec<&(u64, Record)> = records
                .iter()
                .filter(|(offset, r)| {
                    latest.get(&r.key) == Some(offset)
                        && (r.value.is_some() || now_ms.saturating_sub(r.timestamp_ms) < retention)
                })
                .collect();
            removed += (records.len() - keep.len()) as u64;
            if keep.is_empty() {
                return Ok(());
            }
            let mut enc = BatchEncoder::new(&mut out);
            for (offset, record) in keep {
                enc.push(
                    (offset - header.base_offset) as u32,
                    &RecordParts::from(record),
                );
            }
            enc.set_durable_offset(header.durable_offset);
            enc.finish(header.base_offset, header.last_offset_delta);
            Ok(())
        })?;
        if removed == 0 {
            return Ok(());
        }
        report.segments_cleaned += 1;
        report.records_removed += removed;
        report.bytes_before += segment.size_bytes();
        report.bytes_after += out.len() as u64;
        self.swap_in(segment, &out)
    }

    /// Replaces `old` by a segment holding `data`, crash-safely.
    fn swap_in(&self, old: &Arc<Segment>, data: &[u8]) -> Result<()> {
        let inner = &self.inner;
        let fs = inner.fs.as_ref();
        let dir = &inner.dir;
        let base = old.base_offset;
        let mut cleaned_name = segment_file_name(base, LOG_SUFFIX);
        cleaned_name.push_str(CLEANED_SUFFIX);
        let cleaned = dir.join(cleaned_name);
        let file = fs
            .open_file(&cleaned, OpenMode::CreateNew)
            .map_err(|e| Error::io("create cleaned segment", &cleaned, e))?;
        file.write_all_at(data, 0)
            .map_err(|e| Error::io("write cleaned segment", &cleaned, e))?;
        file.sync_data()
            .map_err(|e| Error::io("sync cleaned segment", &cleaned, e))?;
        drop(file);
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = segment_path(dir, base, suffix);
            match fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove index", &path, e)),
            }
        }
        let target = segment_path(dir, base, LOG_SUFFIX);
        fs.rename(&cleaned, &target)
            .map_err(|e| Error::io("swap cleaned segment", &target, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("sync directory", dir, e))?;
        let fresh = Segment::open(fs, dir, base, false)?;
        if let ScanStop::Bad(bad) = fresh.recover(inner.opts.index_interval_bytes)? {
            return Err(Error::corruption(
                &fresh.path,
                bad.position,
                format!("cleaned segment unreadable: {}", bad.what),
            ));
        }
        fresh.write_index_files(fs)?;
        let fresh = Arc::new(fresh);
        let mut segs = inner.segments.write();
        let list: Vec<Arc<Segment>> = segs
            .iter()
            .map(|s| {
                if Arc::ptr_eq(s, old) {
                    fresh.clone()
                } else {
                    s.clone()
                }
            })
            .collect();
        *segs = Arc::new(list);
        Ok(())
    }
}

/// Calls `f` with each batch of a closed segment and its decoded records.
fn for_each_batch(
    segment: &Segment,
    mut f: impl FnMut(&BatchHeader, &[(u64, Record)]) -> Result<()>,
) -> Result<()> {
    let size = segment.size_bytes();
    let mut position = 0;
    let mut records = Vec::new();
    while position < size {
        let (batches, next) = segment.read_batches(position, 1 << 20)?;
        for (at, batch) in batches {
            records.clear();
            for item in batch.records() {
                records.push(
                    item.map_err(|e| Error::corruption(&segment.path, at, format!("{e:?}")))?,
                );
            }
            f(batch.header(), &records)?;
        }
        position = next;
    }
    Ok(())
}
