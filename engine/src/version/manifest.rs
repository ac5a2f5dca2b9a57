//! The manifest file (a sequence of checksummed records, each holding one
//! encoded [`VersionEdit`]) and the `CURRENT` file that names it.
//!
//! ```text
//! manifest := record*
//! record   := length:u32le crc:u32le payload[length]
//! crc      := crc32(length bytes ++ payload)
//! ```
//!
//! How a reader tells a torn tail from corruption (see
//! `docs/format/manifest.md`): records are read in order. A record that is
//! complete but fails its checksum or does not decode is corruption. A
//! record cut short by the end of the file is a torn tail (an append that
//! was never acknowledged, since every append is synced before it counts),
//! unless a valid record starts anywhere after it: then the length field
//! itself is damaged and the file is corrupt.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use varve_changelog::fs::{File, FileSystem, OpenMode, read_file, write_file_atomic};

use crate::error::{Error, Result};

use super::filename::CURRENT_FILE_NAME;
use super::{FileKind, FileNumber, VersionEdit, manifest_file_name, parse_file_name};

/// Size of a record header: length (u32 LE) then CRC (u32 LE).
pub const RECORD_HEADER_SIZE: usize = 8;

/// The bytes at the end of a manifest that do not form a whole record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Byte offset where the incomplete record starts.
    pub offset: u64,
    /// Number of bytes from there to the end of the file.
    pub len_bytes: u64,
}

/// Everything a manifest holds, as read by [`scan_manifest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestScan {
    /// Every complete record: its byte offset and its edit, in file order.
    pub edits: Vec<(u64, VersionEdit)>,
    /// Length of the prefix made of complete records.
    pub valid_len_bytes: u64,
    /// The incomplete final record, if the file ends with one.
    pub torn_tail: Option<TornTail>,
}

/// Reads a manifest: every complete record with its byte offset. A torn
/// final record is skipped (use [`scan_manifest`] to learn about it).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Corruption`] naming
/// the file and the record's offset if a record is damaged.
pub fn read_manifest(fs: &dyn FileSystem, path: &Path) -> Result<Vec<(u64, VersionEdit)>> {
    Ok(scan_manifest(fs, path)?.edits)
}

/// Reads a manifest, reporting a torn final record.
///
/// # Errors
/// As [`read_manifest`].
pub fn scan_manifest(fs: &dyn FileSystem, path: &Path) -> Result<ManifestScan> {
    let bytes = read_file(fs, path).map_err(|e| Error::io("read", path, e))?;
    parse_manifest(&bytes, path)
}

/// What the bytes at a position hold.
enum Frame<'a> {
    /// A record whose checksum matches; `end` is where the next one starts.
    Record { payload: &'a [u8], end: usize },
    /// The file ends before the record does.
    Incomplete,
    /// A complete record whose checksum does not match.
    BadChecksum { stored: u32, computed: u32 },
}

fn parse_manifest(bytes: &[u8], path: &Path) -> Result<ManifestScan> {
    let mut scan = ManifestScan {
        edits: Vec::new(),
        valid_len_bytes: 0,
        torn_tail: None,
    };
    let mut pos = 0;
    while pos < bytes.len() {
        let offset = pos as u64;
        match frame_at(bytes, pos) {
            Frame::Record { payload, end } => {
                let edit = VersionEdit::decode(payload).map_err(|what| {
                    Error::corruption(path, offset, format!("record does not decode: {what}"))
                })?;
                scan.edits.push((offset, edit));
                pos = end;
                scan.valid_len_bytes = end as u64;
            }
            Frame::BadChecksum { stored, computed } => {
                let what = format!(
                    "record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                );
                return Err(Error::corruption(path, offset, what));
            }
            Frame::Incomplete => {
                match next_valid_record(bytes, pos + 1) {
                    Search::Nothing => {}
                    Search::Found(next) => {
                        let what = format!(
                            "record length runs past the end of the file, but a valid record starts at byte {next}"
                        );
                        return Err(Error::corruption(path, offset, what));
                    }
                    Search::Exhausted(at) => {
                        let what = format!(
                            "record length runs past the end of the file, and the search for a valid record after it gave up at byte {at} (too many candidate records to check)"
                        );
                        return Err(Error::corruption(path, offset, what));
                    }
                }
                let len_bytes = (bytes.len() - pos) as u64;
                scan.torn_tail = Some(TornTail { offset, len_bytes });
                break;
            }
        }
    }
    Ok(scan)
}

fn frame_at(bytes: &[u8], pos: usize) -> Frame<'_> {
    let rest = &bytes[pos..];
    let Some((header, body)) = rest.split_first_chunk::<RECORD_HEADER_SIZE>() else {
        return Frame::Incomplete;
    };
    let (len_raw, crc_raw) = header.split_at(4);
    let len = u32::from_le_bytes([len_raw[0], len_raw[1], len_raw[2], len_raw[3]]);
    let stored = u32::from_le_bytes([crc_raw[0], crc_raw[1], crc_raw[2], crc_raw[3]]);
    let Some(payload) = usize::try_from(len).ok().and_then(|len| body.get(..len)) else {
        return Frame::Incomplete;
    };
    let computed = record_crc(len_raw, payload);
    if computed != stored {
        return Frame::BadChecksum { stored, computed };
    }
    let end = pos + RECORD_HEADER_SIZE + payload.len();
    Frame::Record { payload, end }
}

/// How many bytes the search after an incomplete record may checksum, per
/// byte of the manifest (plus [`SEARCH_BUDGET_BASE_BYTES`]). Every candidate
/// position costs its header plus the payload its length field claims, so
/// a crafted file whose every position claims a long payload would cost the
/// square of its size without a bound.
const SEARCH_BUDGET_PER_FILE_BYTE: u64 = 8;

/// The part of the search budget that does not depend on the file's size.
const SEARCH_BUDGET_BASE_BYTES: u64 = 1 << 20;

/// What the search after an incomplete record found.
#[derive(Debug, PartialEq, Eq)]
enum Search {
    /// No checksum-valid record starts after it: a torn tail.
    Nothing,
    /// A checksum-valid record starts at this byte.
    Found(usize),
    /// The budget ran out at this byte before every position was tried.
    Exhausted(usize),
}

/// Looks for a checksum-valid record starting at or after `from`, hashing
/// at most `SEARCH_BUDGET_PER_FILE_BYTE` times the file's size (plus a
/// constant): the work is linear in the bytes that exist.
fn next_valid_record(bytes: &[u8], from: usize) -> Search {
    let Some(last) = bytes.len().checked_sub(RECORD_HEADER_SIZE) else {
        return Search::Nothing;
    };
    let file_len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut budget_bytes = file_len
        .saturating_mul(SEARCH_BUDGET_PER_FILE_BYTE)
        .saturating_add(SEARCH_BUDGET_BASE_BYTES);
    for pos in from..=last {
        let cost = RECORD_HEADER_SIZE as u64 + claimed_payload_len(bytes, pos);
        let Some(left) = budget_bytes.checked_sub(cost) else {
            return Search::Exhausted(pos);
        };
        budget_bytes = left;
        if matches!(frame_at(bytes, pos), Frame::Record { .. }) {
            return Search::Found(pos);
        }
    }
    Search::Nothing
}

/// The payload length the header at `pos` claims if the payload fits in
/// the file (what checking it costs), else 0 (nothing is hashed).
fn claimed_payload_len(bytes: &[u8], pos: usize) -> u64 {
    let Some(header) = bytes.get(pos..).and_then(|r| r.first_chunk::<4>()) else {
        return 0;
    };
    let len = u64::from(u32::from_le_bytes(*header));
    let room = (bytes.len() - pos).saturating_sub(RECORD_HEADER_SIZE) as u64;
    if len <= room { len } else { 0 }
}

fn record_crc(len_bytes: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Frames an encoded edit as a record.
fn frame_record(payload: &[u8], path: &Path) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        let size = payload.len();
        Error::InvalidArgument(format!(
            "manifest record of {size} bytes for {}",
            path.display()
        ))
    })?;
    let len_raw = len.to_le_bytes();
    let mut record = Vec::with_capacity(RECORD_HEADER_SIZE + payload.len());
    record.extend_from_slice(&len_raw);
    record.extend_from_slice(&record_crc(&len_raw, payload).to_le_bytes());
    record.extend_from_slice(payload);
    Ok(record)
}

/// Why an append failed, and whether the manifest can still be used.
#[derive(Debug)]
pub(crate) struct AppendFailure {
    /// The error to report.
    pub error: Error,
    /// Whether the file's durable contents are now unknown (a failed sync,
    /// or a failed write that could not be cut back off).
    pub fatal: bool,
}

/// Appends records to a manifest, syncing after each.
#[derive(Debug)]
pub(crate) struct ManifestWriter {
    file: Arc<dyn File>,
    path: PathBuf,
    len_bytes: u64,
}

impl ManifestWriter {
    /// Creates a new, empty manifest. A file already at `path` can only be
    /// a leftover of a manifest switch interrupted before `CURRENT` named it
    /// (numbers are never reused otherwise), so it is replaced.
    pub fn create(fs: &dyn FileSystem, path: &Path) -> Result<Self> {
        match fs.remove_file(path) {
            Ok(()) => tracing::warn!(path = %path.display(), "removed unreferenced manifest"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", path, e)),
        }
        let file = fs
            .open_file(path, OpenMode::CreateNew)
            .map_err(|e| Error::io("create", path, e))?;
        Ok(ManifestWriter {
            file,
            path: path.to_path_buf(),
            len_bytes: 0,
        })
    }

    /// Opens an existing manifest to append after its first `len_bytes`
    /// bytes, which must all be complete records. Anything after them (a
    /// torn final record) is cut off and the cut synced first, so a new
    /// record never follows a torn one.
    pub fn open_append(fs: &dyn FileSystem, path: &Path, len_bytes: u64) -> Result<Self> {
        let file = fs
            .open_file(path, OpenMode::ReadWrite)
            .map_err(|e| Error::io("open", path, e))?;
        let actual = file.len().map_err(|e| Error::io("stat", path, e))?;
        if actual < len_bytes {
            let what = format!("file shrank to {actual} bytes while being opened");
            return Err(Error::corruption(path, actual, what));
        }
        if actual > len_bytes {
            file.set_len(len_bytes)
                .map_err(|e| Error::io("truncate", path, e))?;
            file.sync_data().map_err(|e| Error::sync(path, e))?;
        }
        Ok(ManifestWriter {
            file,
            path: path.to_path_buf(),
            len_bytes,
        })
    }

    /// The manifest's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Appends `edit` as one record and syncs it. On failure the record is
    /// not part of the manifest unless [`AppendFailure::fatal`] is set.
    pub fn append(&mut self, edit: &VersionEdit) -> Result<(), AppendFailure> {
        let not_fatal = |error| AppendFailure {
            error,
            fatal: false,
        };
        let record = frame_record(&edit.encode(), &self.path).map_err(not_fatal)?;
        if let Err(e) = self.file.write_all_at(&record, self.len_bytes) {
            let fatal = self.file.set_len(self.len_bytes).is_err();
            let error = Error::io("write", &self.path, e);
            return Err(AppendFailure { error, fatal });
        }
        if let Err(e) = self.file.sync_data() {
            let error = Error::sync(&self.path, e);
            return Err(AppendFailure { error, fatal: true });
        }
        self.len_bytes += record.len() as u64;
        Ok(())
    }
}

/// The path of `CURRENT` in `dir`.
pub(crate) fn current_path(dir: &Path) -> PathBuf {
    dir.join(CURRENT_FILE_NAME)
}

/// Reads `CURRENT`: the number of the manifest in use.
///
/// # Errors
/// [`Error::NotAStore`] if `CURRENT` is missing; [`Error::Corruption`] if
/// it does not hold exactly one manifest name and a newline.
pub(crate) fn read_current(fs: &dyn FileSystem, dir: &Path) -> Result<FileNumber> {
    let path = current_path(dir);
    let bytes = match read_file(fs, &path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let reason = format!("it has no {CURRENT_FILE_NAME} file");
            return Err(Error::NotAStore {
                path: dir.to_path_buf(),
                reason,
            });
        }
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let name = bytes
        .strip_suffix(b"\n")
        .and_then(|name| std::str::from_utf8(name).ok());
    match name.and_then(parse_file_name) {
        Some(FileKind::Manifest(number)) => Ok(number),
        _ => {
            let shown: String = bytes.iter().take(64).copied().map(char::from).collect();
            let what = format!("expected a manifest name and a newline, found {shown:?}");
            Err(Error::corruption(&path, 0, what))
        }
    }
}

/// Points `CURRENT` at manifest `number`, atomically and durably.
pub(crate) fn write_current(fs: &dyn FileSystem, dir: &Path, number: FileNumber) -> Result<()> {
    let path = current_path(dir);
    let contents = format!("{}\n", manifest_file_name(number));
    write_file_atomic(fs, &path, contents.as_bytes()).map_err(|e| Error::io("write", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::SeqNo;

    fn edit(seqno: u64) -> VersionEdit {
        VersionEdit {
            last_seqno: Some(SeqNo(seqno)),
            ..VersionEdit::default()
        }
    }

    fn manifest(edits: &[VersionEdit]) -> Vec<u8> {
        let path = Path::new("M");
        edits
            .iter()
            .flat_map(|e| frame_record(&e.encode(), path).unwrap())
            .collect()
    }

    #[test]
    fn parse_clean_and_torn() {
        let path = Path::new("M");
        let bytes = manifest(&[edit(1), edit(2), edit(3)]);
        let scan = parse_manifest(&bytes, path).unwrap();
        assert_eq!(scan.edits.len(), 3);
        assert_eq!(scan.valid_len_bytes, bytes.len() as u64);
        assert_eq!(scan.torn_tail, None);
        let last_start = scan.edits[2].0 as usize;
        for cut in last_start + 1..bytes.len() {
            let scan = parse_manifest(&bytes[..cut], path).unwrap();
            assert_eq!(scan.edits.len(), 2, "cut at {cut}");
            let tail = TornTail {
                offset: last_start as u64,
                len_bytes: (cut - last_start) as u64,
            };
            assert_eq!(scan.torn_tail, Some(tail));
        }
    }

    #[test]
    fn damaged_length_in_middle_is_corruption() {
        let path = Path::new("M");
        let mut bytes = manifest(&[edit(1), edit(2), edit(3)]);
        bytes[3] = 0x40; // first record now claims ~1 GiB
        let err = parse_manifest(&bytes, path).unwrap_err();
        assert!(matches!(err, Error::Corruption { offset: 0, .. }), "{err}");
        assert!(err.to_string().contains("valid record starts"), "{err}");
    }

    /// A first record whose length runs past the end, followed by bytes
    /// whose every fourth position claims a 1 MiB payload that fits: the
    /// unbounded search checksummed about 1 MiB at each of them.
    fn crafted_search_bomb(len_bytes: usize) -> Vec<u8> {
        let mut bytes = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        while bytes.len() < len_bytes {
            bytes.extend_from_slice(&(1u32 << 20).to_le_bytes());
        }
        bytes
    }

    #[test]
    fn search_after_bad_length_is_linear() {
        let bytes = crafted_search_bomb(4 << 20);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let result = parse_manifest(&bytes, Path::new("M"));
            let _ = done_tx.send((result, started.elapsed()));
        });
        let (result, elapsed) = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a 4 MiB manifest decodes in well under 10 s");
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Corruption { offset: 0, .. }), "{err}");
        assert!(err.to_string().contains("gave up"), "{err}");
        assert!(elapsed < std::time::Duration::from_secs(1), "{elapsed:?}");
    }

    #[test]
    fn search_budget_still_finds_a_valid_record_and_a_torn_tail() {
        // A valid record after a damaged length is still found.
        let mut bytes = manifest(&[edit(1), edit(2), edit(3)]);
        bytes[3] = 0x40;
        assert!(matches!(next_valid_record(&bytes, 1), Search::Found(_)));
        // A real torn tail (a cut final record) costs little.
        let whole = manifest(&[edit(1), edit(2)]);
        let cut = &whole[..whole.len() - 1];
        let second = manifest(&[edit(1)]).len();
        assert_eq!(next_valid_record(cut, second + 1), Search::Nothing);
    }

    #[test]
    fn empty_file_has_no_records() {
        let scan = parse_manifest(&[], Path::new("M")).unwrap();
        assert!(scan.edits.is_empty() && scan.torn_tail.is_none());
    }
}
