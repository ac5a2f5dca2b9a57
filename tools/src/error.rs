//! The tool's error type and its exit codes.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code when a check found problems, or `get` found no value.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code when the command could not do its job (bad input, unreadable
/// store, store in use).
pub const EXIT_FAILED: u8 = 2;

/// A `Result` with the tool's [`ToolError`].
pub type Result<T, E = ToolError> = std::result::Result<T, E>;

/// Everything that stops a subcommand.
#[derive(Debug)]
#[non_exhaustive]
pub enum ToolError {
    /// An error from the engine.
    Engine(varve_db::Error),
    /// An error from the changelog.
    Changelog(varve_changelog::Error),
    /// An I/O call of the tool itself failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Writing the output failed (the reader went away: not an error worth
    /// reporting when it is a broken pipe).
    Output(io::Error),
    /// The path does not exist.
    Missing(PathBuf),
    /// The directory is not a Varve store (or changelog).
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process holds the store's lock.
    Locked {
        /// The lock file.
        lock: PathBuf,
    },
    /// An argument or input line the tool cannot use.
    Invalid(String),
    /// A check found this many problems (already printed).
    Problems(usize),
    /// `get` found no value for the key.
    NotFound,
    /// The command works on one store, and the path is the root of a
    /// partitioned store.
    PartitionedRoot {
        /// The root (the directory with the `PARTITIONS` file).
        root: PathBuf,
        /// Its number of partitions.
        partitions: u32,
        /// The command, as typed (`log dump`, `put` …).
        command: &'static str,
    },
}

impl ToolError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ToolError::Problems(_) | ToolError::NotFound => EXIT_PROBLEMS,
            ToolError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
            _ => EXIT_FAILED,
        }
    }

    /// Builds a [`ToolError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ToolError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Engine(varve_db::Error::Locked { path }) => write!(
                f,
                "store {} is in use: another process holds its lock file {}",
                path.display(),
                path.join(varve_db::LOCK_FILE).display()
            ),
            ToolError::Engine(e) => write!(f, "{e}"),
            ToolError::Changelog(e) => write!(f, "changelog: {e}"),
            ToolError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            ToolError::Output(e) => write!(f, "cannot write the output: {e}"),
            ToolError::Missing(path) => write!(f, "{} does not exist", path.display()),
            ToolError::NotAStore { path, reason } => {
                write!(f, "{} is not a Varve store: {reason}", path.display())
            }
            ToolError::Locked { lock } => write!(
                f,
                "the store is in use: another process holds its lock file {} \
                 (close it first; the dump and verify commands can read a live store)",
                lock.display()
            ),
            ToolError::Invalid(what) => write!(f, "{what}"),
            ToolError::Problems(n) => write!(f, "{n} problem(s) found"),
            ToolError::NotFound => write!(f, "key not found"),
            ToolError::PartitionedRoot {
                root,
                partitions,
                command,
            } => {
                let last = partitions.saturating_sub(1);
                write!(
                    f,
                    "{} is the root of a partitioned store ({partitions} partitions, \
                     partition-00000 … partition-{last:05}); `varve {command}` works on one \
                     partition: add --partition N (0 to {last}), or run it on a partition \
                     directory, e.g. `varve {command} {}` (get, scan, info and verify take \
                     the root)",
                    root.display(),
                    varve_db::partition_dir(root, 0).display()
                )
            }
        }
    }
}

impl std::error::Error for ToolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ToolError::Engine(e) => Some(e),
            ToolError::Changelog(e) => Some(e),
            ToolError::Io { source, .. } | ToolError::Output(source) => Some(source),
            _ => None,
        }
    }
}

impl From<varve_db::Error> for ToolError {
    fn from(e: varve_db::Error) -> Self {
        match e {
            varve_db::Error::NotAStore { path, reason } => ToolError::NotAStore { path, reason },
            other => ToolError::Engine(other),
        }
    }
}

impl From<varve_changelog::Error> for ToolError {
    fn from(e: varve_changelog::Error) -> Self {
        ToolError::Changelog(e)
    }
}

/// A damaged spot in a file, as `verify`, `repair` and the dumps report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// Byte offset in the file, when known.
    pub offset: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl Problem {
    /// A problem at `offset` of `path`.
    pub fn at(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            offset: Some(offset),
            what: what.into(),
        }
    }

    /// A problem with a whole file.
    pub fn file(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            offset: None,
            what: what.into(),
        }
    }

    /// The problem an engine error describes, falling back to `path`.
    pub fn from_engine(path: impl Into<PathBuf>, e: &varve_db::Error) -> Self {
        match e {
            varve_db::Error::Corruption { path, offset, what } => Problem::at(path, *offset, what),
            varve_db::Error::Changelog(e) => Problem::from_changelog(path, e),
            other => Problem::file(path, other.to_string()),
        }
    }

    /// The problem a changelog error describes, falling back to `path`.
    pub fn from_changelog(path: impl Into<PathBuf>, e: &varve_changelog::Error) -> Self {
        match e {
            varve_changelog::Error::Corruption { path, offset, what } => {
                Problem::at(path, *offset, what)
            }
            other => Problem::file(path, other.to_string()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{}:{offset}: {}", self.path.display(), self.what),
            None => write!(f, "{}: {}", self.path.display(), self.what),
        }
    }
}
