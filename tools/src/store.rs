//! Read-only access to the files of a store: the directory checks, the lock,
//! `CURRENT`, the manifest replayed into a [`Version`], and opening tables.
//!
//! Nothing here writes to the store: the lock file is opened read-only, the
//! manifest is read and replayed in memory, tables are opened for reading.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use varve_changelog::fs::{FileSystem, OpenMode, StdFs};
use varve_db::internals::sst::Table;
use varve_db::internals::version::{
    ENGINE_FORMAT, FileKind, FileNumber, ManifestScan, Version, parse_file_name, scan_manifest,
    table_file_name,
};

use crate::error::{Problem, Result, ToolError};

/// The name of the file that names the manifest in use.
pub const CURRENT: &str = "CURRENT";

/// Checks that `dir` exists, is a directory and holds a `CURRENT` file.
///
/// # Errors
/// [`ToolError::Missing`] or [`ToolError::NotAStore`].
pub fn check_store_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Err(ToolError::Missing(dir.to_owned()));
    }
    if !dir.is_dir() {
        return Err(not_a_store(dir, "it is not a directory"));
    }
    if !dir.join(CURRENT).is_file() && dir.join(varve_db::PARTITIONS_FILE).is_file() {
        let reason = "it is the root of a partitioned store: run this command on one of its \
                      partition-NNNNN directories (get, scan, info and verify also take the root)";
        return Err(not_a_store(dir, reason));
    }
    if !dir.join(CURRENT).is_file() {
        let reason = "it has no CURRENT file (for a changelog directory, use `varve log dump`)";
        return Err(not_a_store(dir, reason));
    }
    Ok(())
}

fn not_a_store(dir: &Path, reason: &str) -> ToolError {
    ToolError::NotAStore {
        path: dir.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Whether another process has the store open.
#[derive(Debug)]
pub enum LockState {
    /// Nobody holds the lock; this process holds it until the value is
    /// dropped, so no other process can open the store meanwhile.
    Held(#[allow(dead_code, reason = "kept open to hold the lock")] std::fs::File),
    /// There is no lock file, so no process has the store open.
    NoLockFile,
    /// Another process holds the lock.
    InUse(PathBuf),
}

impl LockState {
    /// Tries to take the store's lock without creating or writing anything.
    ///
    /// # Errors
    /// [`ToolError::Io`] if the lock file cannot be opened or locked.
    pub fn probe(dir: &Path) -> Result<LockState> {
        let path = dir.join(varve_db::LOCK_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LockState::NoLockFile);
            }
            Err(e) => return Err(ToolError::io("open", path, e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(LockState::Held(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(LockState::InUse(path)),
            Err(std::fs::TryLockError::Error(e)) => Err(ToolError::io("lock", path, e)),
        }
    }

    /// Takes the lock for a read that must not race a writer.
    ///
    /// # Errors
    /// [`ToolError::Locked`] if another process has the store open.
    pub fn take(dir: &Path) -> Result<LockState> {
        match LockState::probe(dir)? {
            LockState::InUse(lock) => Err(ToolError::Locked { lock }),
            other => Ok(other),
        }
    }

    /// Warns on stderr, for commands that read a live store's files
    /// directly, that what they show may be changing.
    pub fn warn_if_live(&self) {
        if let LockState::InUse(lock) = self {
            eprintln!(
                "warning: the store is open in another process ({} is locked); \
                 this is a view of files that may be changing",
                lock.display()
            );
        }
    }
}

/// The path of the manifest `CURRENT` names.
///
/// # Errors
/// [`ToolError::Io`] if `CURRENT` cannot be read; a [`Problem`] as
/// [`ToolError::Invalid`] if it is malformed.
pub fn current_manifest(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(CURRENT);
    let bytes = std::fs::read(&path).map_err(|e| ToolError::io("read", &path, e))?;
    let malformed = || {
        let what = "CURRENT does not hold exactly one manifest name and a newline";
        ToolError::Invalid(Problem::at(&path, 0, what).to_string())
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed())?;
    let name = text.strip_suffix('\n').ok_or_else(malformed)?;
    match parse_file_name(name) {
        Some(FileKind::Manifest(_)) => Ok(dir.join(name)),
        _ => Err(malformed()),
    }
}

/// A manifest read and replayed without touching the store.
#[derive(Debug)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its records.
    pub scan: ManifestScan,
    /// The engine format of its first record.
    pub engine_format: u32,
    /// The state its records build.
    pub version: Version,
    /// The offset of the record that added each table of `version`.
    pub added_at: HashMap<FileNumber, u64>,
}

impl Manifest {
    /// Reads the manifest `CURRENT` names and replays it.
    ///
    /// # Errors
    /// [`ToolError::Engine`] with the corruption (file and offset) if a
    /// record is damaged or does not apply.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = current_manifest(dir)?;
        Manifest::load_file(&path)
    }

    /// Reads and replays the manifest at `path`.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_file(path: &Path) -> Result<Manifest> {
        let scan = scan_manifest(&StdFs, path)?;
        let corrupt = |offset: u64, what: String| varve_db::Error::corruption(path, offset, what);
        let first = scan.edits.first();
        let engine_format = match first.and_then(|(_, edit)| edit.engine_format) {
            Some(found) if found > ENGINE_FORMAT => {
                return Err(ToolError::Engine(varve_db::Error::UnsupportedVersion {
                    path: path.to_owned(),
                    found,
                    supported: ENGINE_FORMAT,
                }));
            }
            Some(found) if found > 0 => found,
            _ => {
                let what = "the first record carries no valid engine format".to_owned();
                return Err(corrupt(0, what).into());
            }
        };
        let mut version = Version::empty();
        let mut added_at = HashMap::new();
        for (offset, edit) in &scan.edits {
            version = version
                .apply(edit)
                .map_err(|e| corrupt(*offset, format!("the record does not apply: {e}")))?;
            for (_, table) in &edit.added {
                added_at.insert(table.number, *offset);
            }
        }
        Ok(Manifest {
            path: path.to_owned(),
            scan,
            engine_format,
            version,
            added_at,
        })
    }

    /// Every table of the version with its level, L0 first.
    pub fn tables(&self) -> Vec<(u8, Arc<varve_db::internals::version::TableMeta>)> {
        varve_db::internals::version::Level::all()
            .flat_map(|level| {
                self.version
                    .tables(level)
                    .iter()
                    .map(move |t| (level.0, Arc::clone(t)))
            })
            .collect()
    }
}

/// The path of table `number` in `dir`.
pub fn table_path(dir: &Path, number: FileNumber) -> PathBuf {
    dir.join(table_file_name(number))
}

/// Opens the table at `path` for reading; its number comes from its name
/// (0 if the name is not a table name).
///
/// # Errors
/// [`ToolError::Engine`] with the corruption, or the I/O error.
pub fn open_table(path: &Path) -> Result<Arc<Table>> {
    let number = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_file_name)
        .map_or(0, |kind| match kind {
            FileKind::Table(n) => n.0,
            _ => 0,
        });
    let file = StdFs
        .open_file(path, OpenMode::Read)
        .map_err(|e| ToolError::io("open", path, e))?;
    Ok(Arc::new(Table::open(file, path.to_owned(), number)?))
}

/// The names in `dir`, sorted.
///
/// # Errors
/// [`ToolError::Io`] if the directory cannot be listed.
pub fn list_dir(dir: &Path) -> Result<Vec<String>> {
    StdFs
        .list_dir(dir)
        .map_err(|e| ToolError::io("list", dir, e))
}

/// The size of the file at `path`.
///
/// # Errors
/// [`ToolError::Io`] if it cannot be read.
pub fn file_size(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| ToolError::io("stat", path, e))
}
