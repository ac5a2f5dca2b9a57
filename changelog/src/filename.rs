//! Names of the files in a changelog directory.
//!
//! Segment files are named by their base offset, zero-padded to 20 digits so
//! that `ls` sorts them numerically: `00000000000000001234.log` with its
//! `.index` and `.timeindex` beside it.

use std::path::{Path, PathBuf};

/// Suffix of segment data files.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of sparse offset index files.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Suffix of a cleaned segment that is not yet swapped in.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a temporary file written before an atomic rename.
pub const TMP_SUFFIX: &str = ".tmp";
/// The log's metadata file (log start offset, recovery point).
pub const META_FILE: &str = "log.meta";
/// The consumer positions file.
pub const POSITIONS_FILE: &str = "positions";
/// The lock file.
pub const LOCK_FILE: &str = "LOCK";

/// What a file in a changelog directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A segment's data file, by base offset.
    Segment(u64),
    /// A segment's offset index.
    OffsetIndex(u64),
    /// A segment's time index.
    TimeIndex(u64),
    /// Left over from an interrupted clean or atomic write: deleted on open.
    Leftover,
    /// `log.meta`.
    Meta,
    /// `positions`.
    Positions,
    /// `LOCK`.
    Lock,
}

/// `{base_offset:020}{suffix}`.
pub fn segment_file_name(base_offset: u64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The path of a segment file in `dir`.
pub fn segment_path(dir: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    dir.join(segment_file_name(base_offset, suffix))
}

/// Classifies a file name; `None` if it does not belong in a changelog.
pub fn parse_file_name(name: &str) -> Option<FileKind> {
    match name {
        META_FILE => return Some(FileKind::Meta),
        POSITIONS_FILE => return Some(FileKind::Positions),
        LOCK_FILE => return Some(FileKind::Lock),
        _ => {}
    }
    if name.ends_with(TMP_SUFFIX) || name.ends_with(CLEANED_SUFFIX) {
        let stem = name.split('.').next().unwrap_or("");
        return (parse_base(stem).is_some()
            || name.starts_with(META_FILE)
            || name.starts_with(POSITIONS_FILE))
        .then_some(FileKind::Leftover);
    }
    let (stem, suffix) = name.split_at(name.find('.')?);
    let base = parse_base(stem)?;
    match suffix {
        LOG_SUFFIX => Some(FileKind::Segment(base)),
        INDEX_SUFFIX => Some(FileKind::OffsetIndex(base)),
        TIME_INDEX_SUFFIX => Some(FileKind::TimeIndex(base)),
        _ => None,
    }
}

fn parse_base(stem: &str) -> Option<u64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let name = segment_file_name(1234, LOG_SUFFIX);
        assert_eq!(name, "00000000000000001234.log");
        assert_eq!(parse_file_name(&name), Some(FileKind::Segment(1234)));
        assert_eq!(
            parse_file_name("00000000000000001234.index"),
            Some(FileKind::OffsetIndex(1234))
        );
        assert_eq!(
            parse_file_name("00000000000000001234.timeindex"),
            Some(FileKind::TimeIndex(1234))
        );
        assert_eq!(
            parse_file_name("00000000000000001234.log.cleaned"),
            Some(FileKind::Leftover)
        );
        assert_eq!(parse_file_name("log.meta.tmp"), Some(FileKind::Leftover));
        assert_eq!(parse_file_name("log.meta"), Some(FileKind::Meta));
        assert_eq!(parse_file_name("1234.log"), None);
        assert_eq!(parse_file_name("notes.txt"), None);
        assert_eq!(parse_file_name("0000000000000000123x.log"), None);
    }
}
