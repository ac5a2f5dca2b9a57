//! Reading a log's records without opening it: no lock, no recovery cut,
//! no file written, created, renamed or deleted.
//!
//! [`Log::open`](crate::Log::open) recovers the directory it opens: it may
//! cut a torn tail, remove segments after it, delete leftovers and rewrite
//! `log.meta`. A reader that must leave the files as they are (a read-only
//! store, an inspection tool) uses [`read_records`] instead. It applies
//! the same rules as recovery in strict mode, in memory: a torn tail at the
//! end of the last segment is left out (and reported), and damage that
//! recovery would refuse (below the recovery point, in a segment followed
//! by another, or followed by a batch proving it was synced) is the same
//! [`Error::Corruption`].

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::filename::{FileKind, META_FILE, parse_file_name};
use crate::fs::FileSystem;
use crate::meta::LogMeta;
use crate::options::LogOptions;
use crate::record::StoredRecord;
use crate::recovery::durable_damage;
use crate::segment::{ScanStop, Segment};

/// Bytes of batches read from a segment at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// How far [`read_records`] read, and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOnlyEnd {
    /// The log start offset (as recovery would set it).
    pub log_start_offset: u64,
    /// The offset after the last valid record: the log's next offset.
    pub next_offset: u64,
    /// A torn tail left out (opening the log would cut it): the segment,
    /// the byte it starts at, its non-zero bytes and what is wrong there.
    pub torn_tail: Option<(PathBuf, u64, u64, String)>,
}

/// Calls `f` with every record at or above offset `from` of the log in
/// `dir`, in offset order, reading the files only.
///
/// # Examples
/// ```
/// # fn main() -> varve_changelog::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use varve_changelog::{Log, LogOptions, Record, fs::StdFs};
/// let log = Log::open(dir.path(), LogOptions::default())?;
/// log.append(&[Record::put("k", "v"), Record::put("k2", "v2")])?;
/// log.sync()?;
/// drop(log);
/// let mut keys = Vec::new();
/// let end = varve_changelog::read_only::read_records(&StdFs, dir.path(), 1, |r| {
///     keys.push(r.record.key);
///     Ok(())
/// })?;
/// assert_eq!((keys.len(), end.next_offset), (1, 2));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Corruption`] naming the file and byte for damage that opening
/// the log would refuse, or a missing `log.meta`; I/O errors; what `f`
/// returns.
pub fn read_records(
    fs: &dyn FileSystem,
    dir: &Path,
    from: u64,
    mut f: impl FnMut(StoredRecord) -> Result<()>,
) -> Result<ReadOnlyEnd> {
    let meta_path = dir.join(META_FILE);
    let meta = LogMeta::read(fs, &meta_path)?;
    let bases = segment_bases(fs, dir)?;
    let mut end = ReadOnlyEnd {
        log_start_offset: meta.log_start_offset,
        next_offset: meta.log_start_offset,
        torn_tail: None,
    };
    if bases.is_empty() && meta.recovery_point > meta.log_start_offset {
        let what = "log.meta records durable data but no segment exists";
        return Err(Error::corruption(&meta_path, 20, what));
    }
    let index_interval_bytes = LogOptions::default().index_interval_bytes;
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let segment = Segment::open(fs, dir, base, false)?;
        if i > 0 && end.next_offset > base {
            let what = format!(
                "segment overlaps the previous one, which ends at offset {}",
                end.next_offset
            );
            return Err(Error::corruption(&segment.path, 0, what));
        }
        let stop = segment.recover(index_interval_bytes)?;
        if let ScanStop::Bad(bad) = stop {
            if let Some(err) = durable_damage(&segment, &bad, meta.recovery_point, is_last) {
                return Err(err);
            }
            end.torn_tail = Some((segment.path.clone(), bad.position, bad.tail_bytes, bad.what));
        }
        end.next_offset = segment.next_offset();
        if i == 0 {
            end.log_start_offset = meta.log_start_offset.max(base);
        }
        if end.next_offset > from {
            read_segment(&segment, from, &mut f)?;
        }
    }
    if end.next_offset < meta.recovery_point && end.torn_tail.is_none() {
        let what = format!(
            "the log ends at offset {} but records up to {} were synced",
            end.next_offset, meta.recovery_point
        );
        return Err(Error::corruption(dir, 0, what));
    }
    end.log_start_offset = end.log_start_offset.min(end.next_offset);
    Ok(end)
}

/// The base offsets of the segment files in `dir`, in order.
fn segment_bases(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u64>> {
    let names = fs
        .list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))?;
    let mut bases: Vec<u64> = names
        .iter()
        .filter_map(|name| match parse_file_name(name) {
            Some(FileKind::Segment(base)) => Some(base),
            _ => None,
        })
        .collect();
    bases.sort_unstable();
    Ok(bases)
}

/// Calls `f` with the records at or above `from` of a scanned segment.
fn read_segment(
    segment: &Segment,
    from: u64,
    f: &mut impl FnMut(StoredRecord) -> Result<()>,
) -> Result<()> {
    let mut position = 0u64;
    while position < segment.size_bytes() {
        let (batches, next) = segment.read_batches(position, READ_CHUNK_BYTES)?;
        if next <= position {
            break;
        }
        for (at, batch) in batches {
            if batch.header().next_offset() <= from {
                continue;
            }
            for item in batch.records() {
                let (offset, record) =
                    item.map_err(|e| Error::corruption(&segment.path, at, format!("{e:?}")))?;
                if offset >= from {
                    f(StoredRecord { offset, record })?;
                }
            }
        }
        position = next;
    }
    Ok(())
}
