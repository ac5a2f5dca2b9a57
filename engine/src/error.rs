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
    /// A sync (`fsync`/`fdatasync` of a file or directory) failed: the
    /// file's durable contents are unknown, since the kernel may have
    /// dropped its dirty pages. A store that sees this stops writing
    /// ([`Error::ReadOnly`]).
    Sync {
        /// The file or directory being synced.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// A sync failed earlier; the store refuses writes but serves reads.
    ReadOnly {
        /// The failure that stopped writes (its
        /// [`source`](std::error::Error::source) too).
        cause: Arc<Error>,
    },
    /// The store was closed.
    Closed,
    /// The store is an unpromoted standby replica: it refuses writes,
    /// manual flushes and compactions until
    /// [`Standby::promote`](crate::Standby::promote).
    Replica,
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
    /// The record source a restore or standby reads from failed (its own
    /// error is kept as the source, e.g. a Kafka bridge error).
    Source(Arc<dyn std::error::Error + Send + Sync>),
    /// A store's position in its changelog is too old to catch up by
    /// replaying: records it has not seen are gone (below the changelog's
    /// log start offset, or tombstones past their retention). The store
    /// must be rebuilt by a full restore.
    Stale {
        /// The next changelog offset the store would apply.
        position: u64,
        /// The changelog's first offset.
        log_start_offset: u64,
        /// Why it cannot catch up.
        reason: String,
    },
    /// The directory holds a restore that did not finish; it is never
    /// opened as if it were complete. Resume the restore or delete it.
    RestoreIncomplete {
        /// The store's directory.
        path: PathBuf,
    },
    /// The operation was cancelled by its caller.
    Cancelled,
    /// The store was created with a setting that cannot change, and was
    /// opened with a different one (a partition count, a TTL); nothing
    /// was read or modified.
    IncompatibleOptions {
        /// The store's directory.
        path: PathBuf,
        /// The setting (`"partitions"`, `"ttl"`).
        option: &'static str,
        /// The value recorded in the store.
        stored: String,
        /// The value given when opening.
        given: String,
    },
    /// A directory entry that the call did not write and may not touch:
    /// a foreign file, a link or a subdirectory in a restore's target, or
    /// a restore marker that is not one this build wrote. Nothing was
    /// modified or deleted.
    NotOwned {
        /// The entry refused.
        path: PathBuf,
        /// What it is and why it is refused.
        reason: String,
    },
    /// A copy's target (a checkpoint, a repaired store) lies inside the
    /// store it copies, once links are resolved: writing it would change
    /// the store. Nothing was written.
    TargetInsideSource {
        /// The target as given.
        target: PathBuf,
        /// The store's directory as given.
        store: PathBuf,
    },
}

impl Error {
    /// Whether this is a failed sync of a file or directory: afterwards the
    /// file's durable contents are unknown (the kernel may have dropped
    /// the dirty pages), so the store must stop writing.
    pub(crate) fn is_failed_sync(&self) -> bool {
        matches!(self, Error::Sync { .. })
    }

    /// Builds an [`Error::Sync`].
    pub fn sync(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Sync {
            path: path.into(),
            source: Arc::new(source),
        }
    }

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
            Error::Sync { path, source } => {
                write!(f, "sync of {} failed: {source}", path.display())
            }
            Error::ReadOnly { cause } => {
                write!(f, "store is read-only after a failed sync: {cause}")
            }
            Error::Closed => write!(f, "store is closed"),
            Error::Replica => write!(
                f,
                "this store is a standby replica: it refuses writes (and manual flushes and compactions) until Standby::promote"
            ),
            Error::Conflict { expected, actual } => write!(
                f,
                "conditional write conflict: expected version {expected:?}, found {actual:?}"
            ),
            Error::Changelog(e) => write!(f, "changelog: {e}"),
            Error::Source(e) => write!(f, "record source: {e}"),
            Error::Stale {
                position,
                log_start_offset,
                reason,
            } => write!(
                f,
                "store is stale at changelog offset {position} (log starts at {log_start_offset}): {reason}; it must be rebuilt by a full restore"
            ),
            Error::RestoreIncomplete { path } => write!(
                f,
                "{} holds an unfinished restore; resume it or delete the directory",
                path.display()
            ),
            Error::Cancelled => write!(f, "cancelled"),
            Error::IncompatibleOptions {
                path,
                option,
                stored,
                given,
            } => write!(
                f,
                "store {} was created with {option} = {stored} and cannot be opened with {option} = {given}",
                path.display()
            ),
            Error::NotOwned { path, reason } => write!(
                f,
                "refusing to touch {}: {reason}; it was not written here, and nothing was modified",
                path.display()
            ),
            Error::TargetInsideSource { target, store } => write!(
                f,
                "{} is inside the store {} (links resolved): writing there would change the store; choose a directory outside it",
                target.display(),
                store.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Sync { source, .. } => Some(source.as_ref()),
            Error::ReadOnly { cause } => Some(cause.as_ref()),
            Error::Changelog(e) => Some(e.as_ref()),
            Error::Source(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl From<varve_changelog::Error> for Error {
    fn from(e: varve_changelog::Error) -> Self {
        Error::Changelog(Arc::new(e))
    }
}
