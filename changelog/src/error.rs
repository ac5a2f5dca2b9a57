//! The changelog's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A `Result` with the changelog's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the changelog.
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
    /// Bytes on disk are damaged.
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte position in the file where the damage was found.
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
    /// The caller passed an argument the log cannot accept.
    InvalidArgument(String),
    /// The directory holds files that are not part of a changelog; it was
    /// left untouched.
    NotALog {
        /// The directory or the offending file.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// Another handle (in this or another process) has the log open.
    Locked {
        /// The log's directory.
        path: PathBuf,
    },
    /// A record batch is larger than the configured maximum.
    BatchTooLarge {
        /// The encoded size.
        size_bytes: usize,
        /// The maximum.
        max_bytes: usize,
    },
    /// A read asked for an offset outside `[log_start_offset, next_offset]`.
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// The first offset still in the log.
        log_start_offset: u64,
        /// The offset the next append will get.
        next_offset: u64,
    },
    /// A sync failed earlier: the log refuses writes but serves reads.
    ReadOnly {
        /// The failure that stopped writes.
        cause: String,
    },
    /// The log was closed.
    Closed,
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
        matches!(self, Error::Corruption { .. })
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
            Error::NotALog { path, reason } => {
                write!(f, "{} is not a changelog: {reason}", path.display())
            }
            Error::Locked { path } => write!(
                f,
                "changelog {} is already open (locked by another handle or process)",
                path.display()
            ),
            Error::BatchTooLarge {
                size_bytes,
                max_bytes,
            } => write!(
                f,
                "record batch of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes"
            ),
            Error::OffsetOutOfRange {
                requested,
                log_start_offset,
                next_offset,
            } => write!(
                f,
                "offset {requested} is out of range: the log holds [{log_start_offset}, {next_offset})"
            ),
            Error::ReadOnly { cause } => {
                write!(f, "changelog is read-only after a failed sync: {cause}")
            }
            Error::Closed => write!(f, "changelog is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}
