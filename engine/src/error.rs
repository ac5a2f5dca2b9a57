//! The engine's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed.
    Io {
        /// What was being done (`"open"`, `"read"`, `"sync"` …).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// Bytes on disk are damaged or inconsistent.
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in the file where the damage was found.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// A file was written by a format version this build cannot read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The newest version this build supports.
        supported: u32,
    },
    /// The caller passed an argument the engine cannot accept.
    InvalidArgument(String),
    /// A key is longer than the documented maximum.
    KeyTooLarge {
        /// The key's size.
        size_bytes: usize,
        /// The maximum.
        max_bytes: usize,
    },
    /// A value is longer than the documented maximum.
    ValueTooLarge {
        /// The value's size.
        size_bytes: usize,
        /// The maximum.
        max_bytes: usize,
    },
    /// The directory is not a Varve store (and was left untouched).
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// Another handle (in this or another process) has the store open.
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// A sync failed earlier; the store refuses writes but serves reads.
    ReadOnly {
        /// The failure that stopped writes.
        cause: String,
    },
    /// The store was closed.
    Closed,
    /// A conditional write found a different version than it expected
    /// (see [`Db::compare_and_put`](crate::Db::compare_and_put)); nothing
    /// was written.
    Conflict {
        /// The version the caller expected (`None`: the key absent).
        expected: Option<u64>,
        /// The version found (`None`: the key absent).
        actual: Option<u64>,
    },
    /// An error from the changelog.
    Changelog(Arc<varve_changelog::Error>),
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// Builds an [`Error::Corruption`].
    pub fn corruption(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }

    /// Whether this error reports damaged data.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corruption { .. } => true,
            Error::Changelog(e) => e.is_corruption(),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "I/O error during {op} of {}: {source}", path.display())
            }
            Error::Corruption { path, offset, what } => {
                write!(
                    f,
                    "corruption in {} at byte {offset}: {what}",
                    path.display()
                )
            }
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}; this build reads versions up to {supported}",
                path.display()
            ),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::KeyTooLarge {
                size_bytes,
                max_bytes,
            } => write!(
                f,
                "key of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes"
            ),
            Error::ValueTooLarge {
                size_bytes,
                max_bytes,
            } => write!(
                f,
                "value of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes"
            ),
            Error::NotAStore { path, reason } => {
                write!(f, "{} is not a Varve store: {reason}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "store {} is already open (locked by another handle or process)",
                path.display()
            ),
            Error::ReadOnly { cause } => {
                write!(f, "store is read-only after a failed sync: {cause}")
            }
            Error::Closed => write!(f, "store is closed"),
            Error::Conflict { expected, actual } => write!(
                f,
                "conditional write conflict: expected version {expected:?}, found {actual:?}"
            ),
            Error::Changelog(e) => write!(f, "changelog: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source.as_ref()),
            Error::Changelog(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl From<varve_changelog::Error> for Error {
    fn from(e: varve_changelog::Error) -> Self {
        Error::Changelog(Arc::new(e))
    }
}
