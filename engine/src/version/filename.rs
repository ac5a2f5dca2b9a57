//! Names of the files in a store directory.
//!
//! | kind | name | example |
//! |---|---|---|
//! | table | `{number:06}.sst` | `000012.sst` |
//! | manifest | `MANIFEST-{number:06}` | `MANIFEST-000003` |
//! | current-manifest pointer | `CURRENT` | |
//! | directory lock | `LOCK` | |
//! | temporary (atomic writes) | `*.tmp` | `CURRENT.tmp` |
//!
//! Numbers are zero-padded to six digits and grow wider past 999999, so a
//! number has exactly one spelling; [`parse_file_name`] accepts only that
//! spelling, so two names never map to the same number.

use super::FileNumber;

/// Name of the file that names the manifest in use.
pub const CURRENT_FILE_NAME: &str = "CURRENT";

/// Name of the directory lock file.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Suffix of temporary files (written, then renamed into place).
pub const TEMP_FILE_SUFFIX: &str = ".tmp";

const TABLE_SUFFIX: &str = ".sst";
const MANIFEST_PREFIX: &str = "MANIFEST-";

/// What a file in a store directory is, judged by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A table (`000012.sst`).
    Table(FileNumber),
    /// A manifest (`MANIFEST-000003`).
    Manifest(FileNumber),
    /// The `CURRENT` file.
    Current,
    /// The `LOCK` file.
    Lock,
    /// A temporary file (`*.tmp`), left over if a write was interrupted.
    Temp,
}

/// The file name of table `number`.
#[must_use]
pub fn table_file_name(number: FileNumber) -> String {
    format!("{number}{TABLE_SUFFIX}")
}

/// The file name of manifest `number`.
#[must_use]
pub fn manifest_file_name(number: FileNumber) -> String {
    format!("{MANIFEST_PREFIX}{number}")
}

/// Classifies a file name; `None` for names Varve does not write here.
#[must_use]
pub fn parse_file_name(name: &str) -> Option<FileKind> {
    if name == CURRENT_FILE_NAME {
        return Some(FileKind::Current);
    }
    if name == LOCK_FILE_NAME {
        return Some(FileKind::Lock);
    }
    if name.len() > TEMP_FILE_SUFFIX.len() && name.ends_with(TEMP_FILE_SUFFIX) {
        return Some(FileKind::Temp);
    }
    if let Some(digits) = name.strip_prefix(MANIFEST_PREFIX) {
        return parse_number(digits).map(FileKind::Manifest);
    }
    if let Some(digits) = name.strip_suffix(TABLE_SUFFIX) {
        return parse_number(digits).map(FileKind::Table);
    }
    None
}

/// Parses a number spelled exactly as [`FileNumber`]'s `Display` spells it.
fn parse_number(digits: &str) -> Option<FileNumber> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = FileNumber(digits.parse().ok()?);
    (number.to_string() == digits).then_some(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for n in [0, 1, 42, 999_999, 1_000_000, u64::MAX] {
            let n = FileNumber(n);
            assert_eq!(
                parse_file_name(&table_file_name(n)),
                Some(FileKind::Table(n))
            );
            let manifest = manifest_file_name(n);
            assert_eq!(parse_file_name(&manifest), Some(FileKind::Manifest(n)));
        }
        assert_eq!(table_file_name(FileNumber(12)), "000012.sst");
        assert_eq!(manifest_file_name(FileNumber(3)), "MANIFEST-000003");
    }

    #[test]
    fn special_and_foreign_names() {
        assert_eq!(parse_file_name("CURRENT"), Some(FileKind::Current));
        assert_eq!(parse_file_name("LOCK"), Some(FileKind::Lock));
        assert_eq!(parse_file_name("CURRENT.tmp"), Some(FileKind::Temp));
        for foreign in [
            "",
            ".tmp",
            "x.sst",
            ".sst",
            "0000012.sst",
            "12.sst",
            "-00001.sst",
            "MANIFEST-",
            "MANIFEST-12",
            "MANIFEST-00000a",
            "current",
            "000001.log",
            "99999999999999999999999.sst",
        ] {
            assert_eq!(parse_file_name(foreign), None, "{foreign:?}");
        }
    }
}
