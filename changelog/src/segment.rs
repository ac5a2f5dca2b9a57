//! One segment: a data file of consecutive batches and its indexes.
//!
//! Appends are serialized by the [`Log`](crate::Log); readers run
//! concurrently and see the data up to the published end position.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::batch::{self, BATCH_HEADER_SIZE, Batch, BatchHeader, DecodeError};
use crate::durability::{self, TailVerdict};
use crate::error::{Error, Result};
use crate::filename::{INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_path};
use crate::fs::{self, File, FileSystem, OpenMode};
use crate::index::SegmentIndex;

/// Chunk size for sequential scans during recovery.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// The mutable part of a segment.
#[derive(Clone, Debug)]
pub(crate) struct SegmentState {
    /// End of the valid data: the next batch is written here.
    pub(crate) size_bytes: u64,
    /// Offset after the last batch in this segment.
    pub(crate) next_offset: u64,
    /// First and largest record timestamps, if the segment has records.
    pub(crate) first_timestamp_ms: Option<i64>,
    pub(crate) max_timestamp_ms: Option<i64>,
    pub(crate) index: SegmentIndex,
    bytes_since_index: u64,
    /// Where the file was last grown to ahead of `size_bytes` (reserved
    /// or zero-filled), or asked to be: appends below it ask for no
    /// preallocation.
    pub(crate) preallocated_bytes: u64,
}

impl SegmentState {
    fn empty(base_offset: u64) -> Self {
        SegmentState {
            size_bytes: 0,
            next_offset: base_offset,
            first_timestamp_ms: None,
            max_timestamp_ms: None,
            index: SegmentIndex::default(),
            bytes_since_index: 0,
            preallocated_bytes: 0,
        }
    }

    /// Accounts for a batch written at `size_bytes`.
    fn record_batch(&mut self, base_offset: u64, h: &BatchHeader, index_interval_bytes: u64) {
        if self.size_bytes > 0 && self.bytes_since_index >= index_interval_bytes {
            let rel = (h.base_offset - base_offset) as u32;
            self.index
                .push(rel, self.size_bytes as u32, self.max_timestamp_ms);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += u64::from(h.length);
        self.size_bytes += u64::from(h.length);
        self.next_offset = h.next_offset();
        self.first_timestamp_ms.get_or_insert(h.first_timestamp_ms);
        self.max_timestamp_ms = Some(
            self.max_timestamp_ms
                .map_or(h.max_timestamp_ms, |m| m.max(h.max_timestamp_ms)),
        );
    }
}

/// Where a scan of a segment stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ScanStop {
    /// At the end of the file (or of zero-filled preallocation).
    Clean,
    /// At a batch that is incomplete, damaged, or out of order.
    Bad(BadBatch),
}

/// Where a segment scan stopped early, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadBatch {
    /// Byte position of the bad batch.
    pub(crate) position: u64,
    /// Bytes from there to the end of the non-zero data.
    pub(crate) tail_bytes: u64,
    /// What was wrong.
    pub(crate) what: String,
    /// Why the bad batch cannot be a torn write, if something after it
    /// proves it was synced.
    pub(crate) proof: Option<String>,
}

/// A segment of the log.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    pub(crate) path: PathBuf,
    dir: PathBuf,
    file: Arc<dyn File>,
    state: RwLock<SegmentState>,
}

impl Segment {
    /// Creates a new, empty segment file (the caller syncs the directory).
    pub(crate) fn create(fs: &dyn FileSystem, dir: &Path, base_offset: u64) -> Result<Segment> {
        Segment::with_mode(fs, dir, base_offset, OpenMode::CreateNew, "create segment")
    }

    /// Opens a segment file without reading it yet.
    pub(crate) fn open(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: u64,
        writable: bool,
    ) -> Result<Segment> {
        let mode = if writable {
            OpenMode::ReadWrite
        } else {
            OpenMode::Read
        };
        Segment::with_mode(fs, dir, base_offset, mode, "open segment")
    }

    fn with_mode(
        fs: &dyn FileSystem,
        dir: &Path,
        base_offset: u64,
        mode: OpenMode,
        op: &'static str,
    ) -> Result<Segment> {
        let path = segment_path(dir, base_offset, LOG_SUFFIX);
        let file = fs
            .open_file(&path, mode)
            .map_err(|e| Error::io(op, &path, e))?;
        Ok(Segment {
            base_offset,
            path,
            dir: dir.to_owned(),
            file,
            state: RwLock::new(SegmentState::empty(base_offset)),
        })
    }

    /// Where to start scanning for the first record at or after
    /// `timestamp_ms` (a relative offset, from the time index).
    pub(crate) fn lookup_time(&self, timestamp_ms: i64) -> u32 {
        self.state.read().index.lookup_time(timestamp_ms)
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.state.read().size_bytes
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.state.read().next_offset
    }

    pub(crate) fn max_timestamp_ms(&self) -> Option<i64> {
        self.state.read().max_timestamp_ms
    }

    pub(crate) fn first_timestamp_ms(&self) -> Option<i64> {
        self.state.read().first_timestamp_ms
    }

    /// Scans the whole file, validating every batch and rebuilding the
    /// indexes; installs the valid prefix as the segment's state.
    pub(crate) fn recover(&self, index_interval_bytes: u64) -> Result<ScanStop> {
        let file_len = self
            .file
            .len()
            .map_err(|e| Error::io("stat segment", &self.path, e))?;
        let mut st = SegmentState::empty(self.base_offset);
        let mut buf = Vec::new();
        let mut buf_start = 0u64;
        loop {
            let pos = st.size_bytes;
            let rel = (pos - buf_start) as usize;
            let avail = &buf[rel.min(buf.len())..];
            let outcome = match batch::check_batch(avail) {
                Ok(h) if h.base_offset < st.next_offset => Err(DecodeError::Invalid(format!(
                    "batch base offset {} is below the expected offset {}",
                    h.base_offset, st.next_offset
                ))),
                other => other,
            };
            match outcome {
                Ok(h) => st.record_batch(self.base_offset, &h, index_interval_bytes),
                Err(DecodeError::Incomplete { needed_bytes })
                    if avail.len() < needed_bytes.max(BATCH_HEADER_SIZE)
                        && pos + (needed_bytes.max(BATCH_HEADER_SIZE) as u64) <= file_len =>
                {
                    // The buffer ends inside the batch, whose bytes are in
                    // the file: read on from `pos`. The new buffer holds at
                    // least the bytes needed, so a batch is refilled at most
                    // twice (for its header, then for its length).
                    let needed = needed_bytes.max(BATCH_HEADER_SIZE);
                    let want = needed.max(SCAN_CHUNK_BYTES);
                    buf = self.read_range(pos, want.min((file_len - pos) as usize))?;
                    buf_start = pos;
                    if buf.len() < needed {
                        return Err(Error::corruption(
                            &self.path,
                            pos,
                            "segment file shrank while it was scanned",
                        ));
                    }
                }
                Err(e) => {
                    let stop = self.classify_stop(pos, file_len, st.next_offset, e)?;
                    *self.state.write() = st;
                    return Ok(stop);
                }
            }
        }
    }

    /// Decides whether a scan that failed at `pos` (where a batch starting
    /// at `expected_offset` should be) reached the end of the data (only
    /// zeros follow) or a bad batch, and whether a later valid batch
    /// proves the bad one was synced (see [`crate::durability`]).
    fn classify_stop(
        &self,
        pos: u64,
        file_len: u64,
        expected_offset: u64,
        err: DecodeError,
    ) -> Result<ScanStop> {
        let last_nonzero = self.last_nonzero_byte(pos, file_len)?;
        let Some(last) = last_nonzero else {
            return Ok(ScanStop::Clean);
        };
        let what = match err {
            DecodeError::Incomplete { .. } => "incomplete batch at end of segment".to_owned(),
            DecodeError::Invalid(what) => what,
        };
        let tail_bytes = last + 1 - pos;
        // To the end of the file, not of the non-zero bytes: a batch may
        // end in zero bytes. Read a window at a time.
        let searched = usize::try_from(file_len - pos).unwrap_or(usize::MAX);
        let read = |at: usize, len: usize| self.read_range(pos + at as u64, len);
        let proof = match durability::judge_bad_batch_from(read, searched, expected_offset)? {
            TailVerdict::Torn => None,
            TailVerdict::Durable {
                proof_position,
                why,
            } => Some(format!("{why} (byte {})", pos + proof_position as u64)),
        };
        Ok(ScanStop::Bad(BadBatch {
            position: pos,
            tail_bytes,
            what,
            proof,
        }))
    }

    /// The position of the last non-zero byte in `[from, to)`.
    fn last_nonzero_byte(&self, from: u64, to: u64) -> Result<Option<u64>> {
        let mut end = to;
        while end > from {
            let start = end.saturating_sub(SCAN_CHUNK_BYTES as u64).max(from);
            let chunk = self.read_range(start, (end - start) as usize)?;
            if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
                return Ok(Some(start + i as u64));
            }
            end = start;
        }
        Ok(None)
    }

    /// Loads a closed segment: its indexes from disk if they are sane, else
    /// rebuilt by a scan. `next_base` is the base offset of the following
    /// segment. Damage found by a scan is returned as corruption.
    pub(crate) fn load_closed(
        &self,
        fs: &dyn FileSystem,
        index_interval_bytes: u64,
    ) -> Result<ScanStop> {
        let size = self
            .file
            .len()
            .map_err(|e| Error::io("stat segment", &self.path, e))?;
        if let Some(index) = self.read_index_files(fs, size)
            && let Some(state) = self.state_from_index(index, size)?
        {
            *self.state.write() = state;
            return Ok(ScanStop::Clean);
        }
        let stop = self.recover(index_interval_bytes)?;
        if stop == ScanStop::Clean {
            // Best effort: a missing or damaged index is rewritten.
            if let Err(e) = self.write_index_files(fs) {
                tracing::warn!(segment = %self.path.display(), error = %e, "could not rewrite index");
            }
        }
        Ok(stop)
    }

    fn read_index_files(&self, fs: &dyn FileSystem, size: u64) -> Option<SegmentIndex> {
        let offsets =
            fs::read_file(fs, &segment_path(&self.dir, self.base_offset, INDEX_SUFFIX)).ok()?;
        let times = fs::read_file(
            fs,
            &segment_path(&self.dir, self.base_offset, TIME_INDEX_SUFFIX),
        )
        .ok()?;
        SegmentIndex::decode(&offsets, &times, size, u64::from(u32::MAX))
    }

    /// Builds a closed segment's state from its index and a scan of the
    /// batches after the last index entry. `None` if that scan fails (the
    /// index is then distrusted and the segment rescanned).
    fn state_from_index(&self, index: SegmentIndex, size: u64) -> Result<Option<SegmentState>> {
        let mut st = SegmentState::empty(self.base_offset);
        let (start_pos, start_rel) = index
            .offsets
            .last()
            .map_or((0, 0), |e| (u64::from(e.position), e.relative_offset));
        let tail = self.read_range(start_pos, (size - start_pos) as usize)?;
        let mut pos = 0usize;
        let mut first = true;
        while pos < tail.len() {
            let Ok(h) = batch::check_batch(&tail[pos..]) else {
                return Ok(None);
            };
            if first && h.base_offset != self.base_offset + u64::from(start_rel) {
                return Ok(None);
            }
            first = false;
            st.next_offset = h.next_offset();
            st.max_timestamp_ms = Some(
                st.max_timestamp_ms
                    .map_or(h.max_timestamp_ms, |m| m.max(h.max_timestamp_ms)),
            );
            pos += h.length as usize;
        }
        if size > 0 && first {
            return Ok(None);
        }
        if let Some(t) = index.times.last() {
            st.max_timestamp_ms = Some(
                st.max_timestamp_ms
                    .map_or(t.timestamp_ms, |m| m.max(t.timestamp_ms)),
            );
        }
        if size > 0 {
            let head = self.read_range(0, BATCH_HEADER_SIZE)?;
            st.first_timestamp_ms = batch::parse_header(&head)
                .ok()
                .map(|h| h.first_timestamp_ms);
        }
        st.size_bytes = size;
        st.index = index;
        Ok(Some(st))
    }

    /// Writes the indexes to their files atomically.
    pub(crate) fn write_index_files(&self, fs: &dyn FileSystem) -> Result<()> {
        let index = self.state.read().index.clone();
        for (suffix, data) in [
            (INDEX_SUFFIX, index.encode_offsets()),
            (TIME_INDEX_SUFFIX, index.encode_times()),
        ] {
            let path = segment_path(&self.dir, self.base_offset, suffix);
            fs::write_file_atomic(fs, &path, &data)
                .map_err(|e| Error::io("write index", &path, e))?;
        }
        Ok(())
    }

    /// Cuts the file at `position` (dropping a torn or damaged tail).
    pub(crate) fn truncate_file(&self, position: u64) -> Result<()> {
        self.file
            .set_len(position)
            .map_err(|e| Error::io("truncate segment", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync segment", &self.path, e))?;
        let mut st = self.state.write();
        st.preallocated_bytes = position;
        Ok(())
    }

    /// Writes an encoded batch at the end of the segment and publishes it.
    /// With `preallocate_bytes > 0`, the file is grown ahead of the data in
    /// chunks of that size so that a later `fdatasync` need not also commit
    /// a new length: by reserving the space ([`File::allocate`]) where the
    /// file system can, else (with `zeros_if_unreserved`) by writing zeros.
    /// A reservation that fails (for want of space, say) is skipped: the
    /// batch is still written, and fails only if its own bytes do not fit.
    ///
    /// [`File::allocate`]: crate::fs::File::allocate
    pub(crate) fn append(
        &self,
        bytes: &[u8],
        header: &BatchHeader,
        index_interval_bytes: u64,
        preallocate_bytes: u64,
        zeros_if_unreserved: bool,
    ) -> Result<()> {
        let (pos, prealloc) = {
            let st = self.state.read();
            (st.size_bytes, st.preallocated_bytes)
        };
        let end = pos + bytes.len() as u64;
        let mut new_prealloc = prealloc;
        if preallocate_bytes > 0 && end > prealloc {
            new_prealloc = self.preallocate(pos, end, preallocate_bytes, zeros_if_unreserved)?;
        }
        self.file
            .write_all_at(bytes, pos)
            .map_err(|e| Error::io("append to segment", &self.path, e))?;
        let mut st = self.state.write();
        st.preallocated_bytes = new_prealloc.max(end);
        st.record_batch(self.base_offset, header, index_interval_bytes);
        Ok(())
    }

    /// Grows the file ahead of a batch written at `pos..end`, to the next
    /// multiple `t` of `chunk_bytes`, and returns `t`: appends below it ask
    /// no more, whether the file grew or the reservation was refused (so
    /// a file system that cannot reserve, or is full, is asked once a
    /// chunk, not once an append).
    fn preallocate(&self, pos: u64, end: u64, chunk_bytes: u64, zeros: bool) -> Result<u64> {
        let target = end.div_ceil(chunk_bytes).saturating_mul(chunk_bytes);
        match self.file.allocate(pos, target - pos) {
            Ok(false) if zeros => {}
            Ok(_) => return Ok(target),
            Err(e) => {
                tracing::debug!(segment = %self.path.display(), error = %e, "preallocation skipped");
                return Ok(target);
            }
        }
        let zeros = vec![0u8; (target - end) as usize];
        self.file
            .write_all_at(&zeros, end)
            .map_err(|e| Error::io("preallocate segment", &self.path, e))?;
        Ok(target)
    }

    /// `fdatasync` of the data file.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync segment", &self.path, e))
    }

    /// Cuts the file back to the end of its data, dropping what was grown
    /// ahead of it (for a seal or a clean close; the caller syncs).
    pub(crate) fn trim_preallocation(&self) -> Result<()> {
        let size = self.size_bytes();
        let len = self
            .file
            .len()
            .map_err(|e| Error::io("stat segment", &self.path, e))?;
        if len != size {
            self.file
                .set_len(size)
                .map_err(|e| Error::io("trim segment", &self.path, e))?;
        }
        self.state.write().preallocated_bytes = size;
        Ok(())
    }

    /// Seals a segment that stops being active: trims preallocation, syncs,
    /// writes the indexes.
    pub(crate) fn seal(&self, fs: &dyn FileSystem) -> Result<()> {
        self.trim_preallocation()?;
        self.sync()?;
        self.write_index_files(fs)
    }

    /// Reads `len` bytes at `position`.
    pub(crate) fn read_range(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let n = self
                .file
                .read_at(&mut buf[filled..], position + filled as u64)
                .map_err(|e| Error::io("read segment", &self.path, e))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Reads exactly `len` bytes at `position`, bytes the segment's state
    /// says exist: a shorter file (cut by something else) is corruption,
    /// not a reason to read again.
    fn read_exact_range(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let buf = self.read_range(position, len)?;
        if buf.len() < len {
            return Err(Error::corruption(
                &self.path,
                position + buf.len() as u64,
                format!(
                    "segment file ends at byte {} but holds data up to byte {}",
                    position + buf.len() as u64,
                    position + len as u64
                ),
            ));
        }
        Ok(buf)
    }

    /// Finds the byte position of the batch containing `offset` (or the first
    /// batch after it, if the cleaner removed it). Returns `None` if the
    /// segment holds nothing at or past `offset`.
    pub(crate) fn locate(&self, offset: u64) -> Result<Option<u64>> {
        let (entry, size) = {
            let st = self.state.read();
            if offset >= st.next_offset {
                return Ok(None);
            }
            let rel = offset
                .saturating_sub(self.base_offset)
                .min(u64::from(u32::MAX)) as u32;
            (st.index.lookup_entry(rel), st.size_bytes)
        };
        if let Some(e) = entry {
            // An index entry is a hint: use it only if the batch it points
            // at really starts at the offset it claims.
            let expected = self.base_offset + u64::from(e.relative_offset);
            if let Ok(found) =
                self.scan_headers(u64::from(e.position), size, offset, Some(expected))
            {
                return Ok(found);
            }
            tracing::warn!(segment = %self.path.display(), "index entry does not match the segment; scanning");
        }
        self.scan_headers(0, size, offset, None)
    }

    fn scan_headers(
        &self,
        mut pos: u64,
        size: u64,
        offset: u64,
        first_base: Option<u64>,
    ) -> Result<Option<u64>> {
        let mut first = true;
        while pos < size {
            let head = self.read_range(pos, BATCH_HEADER_SIZE)?;
            let h = batch::parse_header(&head).map_err(|e| self.corruption(pos, e))?;
            if first && first_base.is_some_and(|b| b != h.base_offset) {
                return Err(self.corruption(
                    pos,
                    DecodeError::Invalid("index entry names the wrong batch".into()),
                ));
            }
            first = false;
            if h.next_offset() > offset {
                return Ok(Some(pos));
            }
            pos += u64::from(h.length);
        }
        Ok(None)
    }

    /// Reads whole, CRC-checked batches starting at `position`: as many as
    /// fit in `max_bytes`, but always at least one. Returns each batch with
    /// its byte position, and the position after the last one. The batches
    /// share one buffer and are checked once, here.
    pub(crate) fn read_batches(
        &self,
        position: u64,
        max_bytes: usize,
    ) -> Result<(Vec<(u64, Batch)>, u64)> {
        let size = self.size_bytes();
        if position >= size {
            return Ok((Vec::new(), position));
        }
        let avail = (size - position) as usize;
        let mut buf =
            self.read_exact_range(position, max_bytes.max(BATCH_HEADER_SIZE).min(avail))?;
        let mut pos = 0usize;
        let mut headers = Vec::new();
        loop {
            match batch::check_batch(&buf[pos..]) {
                Ok(h) => {
                    headers.push((pos, h));
                    pos += h.length as usize;
                }
                Err(DecodeError::Incomplete { needed_bytes })
                    if pos == 0 && needed_bytes > buf.len() && needed_bytes <= avail =>
                {
                    buf = self.read_exact_range(position, needed_bytes)?;
                }
                Err(DecodeError::Incomplete { .. }) if pos > 0 => break,
                Err(DecodeError::Incomplete { .. }) => {
                    return Err(self.corruption(
                        position,
                        DecodeError::Invalid("batch runs past the end of the segment".into()),
                    ));
                }
                Err(e) => return Err(self.corruption(position + pos as u64, e)),
            }
            if pos == buf.len() {
                break;
            }
        }
        buf.truncate(pos);
        let bytes = Bytes::from(buf);
        let batches = headers
            .into_iter()
            .map(|(at, h)| {
                (
                    position + at as u64,
                    Batch::from_checked(h, bytes.slice(at..at + h.length as usize)),
                )
            })
            .collect();
        Ok((batches, position + pos as u64))
    }

    fn corruption(&self, position: u64, e: DecodeError) -> Error {
        let what = match e {
            DecodeError::Incomplete { .. } => "truncated batch".to_owned(),
            DecodeError::Invalid(w) => w,
        };
        Error::corruption(&self.path, position, what)
    }

    /// Removes the segment's files (open handles stay readable).
    pub(crate) fn delete_files(&self, fs: &dyn FileSystem) -> Result<()> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = segment_path(&self.dir, self.base_offset, suffix);
            match fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove segment file", &path, e)),
            }
        }
        Ok(())
    }
}
