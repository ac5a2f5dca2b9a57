//! Read-only scanning of changelog segment files, batch by batch.
//!
//! `Log::open` recovers a log (it may cut a torn tail and rewrite
//! `log.meta`), so the tool reads segment files itself: every batch's header
//! and CRC are checked with the changelog's own decoders
//! ([`varve_changelog::batch`]), offsets must increase, and the end of the
//! data is told from damage the way recovery tells it (only zero bytes
//! follow the last batch).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use varve_changelog::batch::{BATCH_HEADER_SIZE, Batch, BatchHeader, DecodeError, parse_header};
use varve_changelog::durability::{TailVerdict, judge_bad_batch};
use varve_changelog::filename::{FileKind, LOG_SUFFIX, META_FILE, parse_file_name, segment_path};
use varve_changelog::meta::LogMeta;

use crate::error::{Result, ToolError};

/// One segment file of a changelog directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentFile {
    /// The base offset in its name.
    pub base_offset: u64,
    /// The file.
    pub path: PathBuf,
}

/// The segment files of the changelog in `dir`, by base offset.
///
/// # Errors
/// [`ToolError::Io`] if the directory cannot be listed.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>> {
    let mut out: Vec<SegmentFile> = crate::store::list_dir(dir)?
        .iter()
        .filter_map(|name| match parse_file_name(name) {
            Some(FileKind::Segment(base_offset)) => Some(SegmentFile {
                base_offset,
                path: segment_path(dir, base_offset, LOG_SUFFIX),
            }),
            _ => None,
        })
        .collect();
    out.sort_by_key(|s| s.base_offset);
    Ok(out)
}

/// The changelog directory a path means: a store's `changelog/`, or a
/// changelog directory itself.
///
/// # Errors
/// [`ToolError::Missing`] or [`ToolError::NotAStore`].
pub fn changelog_dir(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        return Err(ToolError::Missing(path.to_owned()));
    }
    let inner = path.join(varve_db::CHANGELOG_DIR);
    if inner.join(META_FILE).is_file() {
        return Ok(inner);
    }
    if path.join(META_FILE).is_file() {
        return Ok(path.to_owned());
    }
    Err(ToolError::NotAStore {
        path: path.to_owned(),
        reason: "it is neither a store nor a changelog directory (no log.meta)".into(),
    })
}

/// Reads `log.meta` of the changelog in `dir`.
///
/// # Errors
/// [`ToolError::Changelog`] naming the damage.
pub fn read_meta(dir: &Path) -> Result<LogMeta> {
    Ok(LogMeta::read(
        &varve_changelog::fs::StdFs,
        &dir.join(META_FILE),
    )?)
}

/// A batch that passed its checks.
#[derive(Clone, Debug)]
pub struct GoodBatch {
    /// Byte position in the segment.
    pub position: u64,
    /// The checked batch.
    pub batch: Batch,
}

/// A spot where the scan could not read a valid batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadBatch {
    /// Byte position in the segment.
    pub position: u64,
    /// The header, if it parsed (then [`SegmentScanner::skip_bad`] can step
    /// over the batch).
    pub header: Option<BatchHeader>,
    /// What was wrong.
    pub what: String,
    /// Bytes from `position` up to and including the last non-zero byte of
    /// the file.
    pub tail_bytes: u64,
}

/// What the scanner found next.
#[derive(Clone, Debug)]
pub enum Step {
    /// A valid batch.
    Batch(GoodBatch),
    /// Damage (or a torn tail): the data stops being valid here.
    Bad(BadBatch),
    /// The end of the data: the end of the file, or only zeros follow.
    End {
        /// Where the data ends.
        position: u64,
        /// Zero bytes after it (preallocation).
        zero_bytes: u64,
    },
}

/// Walks the batches of one segment file from byte 0.
#[derive(Debug)]
pub struct SegmentScanner {
    file: File,
    path: PathBuf,
    len_bytes: u64,
    position: u64,
    /// The smallest base offset the next batch may have.
    next_offset: u64,
}

impl SegmentScanner {
    /// Opens `segment` for scanning.
    ///
    /// # Errors
    /// [`ToolError::Io`] if it cannot be opened.
    pub fn open(segment: &SegmentFile) -> Result<SegmentScanner> {
        let path = segment.path.clone();
        let file = File::open(&path).map_err(|e| ToolError::io("open", &path, e))?;
        let len_bytes = file
            .metadata()
            .map_err(|e| ToolError::io("stat", &path, e))?
            .len();
        Ok(SegmentScanner {
            file,
            path,
            len_bytes,
            position: 0,
            next_offset: segment.base_offset,
        })
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The offset after the last valid batch so far (the segment's base
    /// offset before the first).
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The next batch, the damage that stops the scan, or the end.
    ///
    /// # Errors
    /// [`ToolError::Io`] if a read fails.
    pub fn step(&mut self) -> Result<Step> {
        let position = self.position;
        let available = self.len_bytes - position.min(self.len_bytes);
        let mut head = vec![0u8; (BATCH_HEADER_SIZE as u64).min(available) as usize];
        self.read_at(&mut head, position)?;
        let header = match parse_header(&head) {
            Ok(header) => header,
            Err(e) => return self.stop(position, None, describe(e)),
        };
        if u64::from(header.length) > available {
            let what = "incomplete batch at end of segment".to_owned();
            return self.stop(position, Some(header), what);
        }
        let mut bytes = vec![0u8; header.length as usize];
        self.read_at(&mut bytes, position)?;
        let batch = match Batch::from_bytes(Bytes::from(bytes)) {
            Ok(batch) => batch,
            Err(e) => return self.stop(position, Some(header), describe(e)),
        };
        if header.base_offset < self.next_offset {
            let what = format!(
                "batch base offset {} is below the expected offset {}",
                header.base_offset, self.next_offset
            );
            return self.stop(position, Some(header), what);
        }
        self.position += u64::from(header.length);
        self.next_offset = header.next_offset();
        Ok(Step::Batch(GoodBatch { position, batch }))
    }

    /// Steps over a bad batch whose header parsed and fits in the file, so
    /// that a dump or check can go on past it; false if it cannot.
    pub fn skip_bad(&mut self, bad: &BadBatch) -> bool {
        let Some(header) = bad.header else {
            return false;
        };
        let end = bad.position + u64::from(header.length);
        if end > self.len_bytes {
            return false;
        }
        self.position = end;
        self.next_offset = self.next_offset.max(header.next_offset());
        true
    }

    fn stop(&self, position: u64, header: Option<BatchHeader>, what: String) -> Result<Step> {
        match self.last_nonzero_byte(position)? {
            None => Ok(Step::End {
                position,
                zero_bytes: self.len_bytes.saturating_sub(position),
            }),
            Some(last) => Ok(Step::Bad(BadBatch {
                position,
                header,
                what,
                tail_bytes: last + 1 - position,
            })),
        }
    }

    /// Moves past a bad batch whose extent is unknown to the next byte
    /// position after it where a valid batch starts (header and CRC check,
    /// offsets not going backwards); false if there is none. The CRC work
    /// is bounded (four times the bytes searched plus 64 MiB), so a crafted
    /// file cannot make it quadratic.
    ///
    /// # Errors
    /// [`ToolError::Io`] if a read fails.
    pub fn resync(&mut self, bad: &BadBatch) -> Result<bool> {
        let len = usize::try_from(self.len_bytes.saturating_sub(bad.position)).unwrap_or(0);
        let mut after = vec![0u8; len];
        self.read_at(&mut after, bad.position)?;
        let mut budget = len.saturating_mul(4).saturating_add(64 << 20);
        for pos in 1..len.saturating_sub(BATCH_HEADER_SIZE - 1) {
            let Ok(h) = parse_header(&after[pos..]) else {
                continue;
            };
            if h.base_offset < self.next_offset || h.length as usize > len - pos {
                continue;
            }
            if budget < h.length as usize {
                return Ok(false);
            }
            budget -= h.length as usize;
            if varve_changelog::batch::check_batch(&after[pos..]).is_ok() {
                self.position = bad.position + pos as u64;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether the bad batch `bad` must be damaged durable data (a later
    /// batch proves it was synced), and why; `None` if a torn write may
    /// explain it. The same rule as the changelog's recovery.
    ///
    /// # Errors
    /// [`ToolError::Io`] if a read fails.
    pub fn durable_damage_proof(&self, bad: &BadBatch) -> Result<Option<String>> {
        let len = usize::try_from(self.len_bytes.saturating_sub(bad.position)).unwrap_or(0);
        let mut after = vec![0u8; len];
        self.read_at(&mut after, bad.position)?;
        Ok(match judge_bad_batch(&after, self.next_offset) {
            TailVerdict::Torn => None,
            TailVerdict::Durable {
                proof_position,
                why,
            } => Some(format!(
                "{why} (byte {})",
                bad.position + proof_position as u64
            )),
        })
    }

    fn last_nonzero_byte(&self, from: u64) -> Result<Option<u64>> {
        const CHUNK: u64 = 1 << 20;
        let mut end = self.len_bytes;
        while end > from {
            let start = end.saturating_sub(CHUNK).max(from);
            let mut chunk = vec![0u8; (end - start) as usize];
            self.read_at(&mut chunk, start)?;
            if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
                return Ok(Some(start + i as u64));
            }
            end = start;
        }
        Ok(None)
    }

    fn read_at(&self, buf: &mut [u8], position: u64) -> Result<()> {
        self.file
            .read_exact_at(buf, position)
            .map_err(|e| ToolError::io("read", &self.path, e))
    }
}

fn describe(e: DecodeError) -> String {
    match e {
        DecodeError::Incomplete { .. } => "incomplete batch at end of segment".to_owned(),
        DecodeError::Invalid(what) => what,
    }
}
