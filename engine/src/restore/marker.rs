//! The `RESTORING` marker: present (and durable) from before a restore
//! writes anything until after it has finished, so a store left by a
//! crashed or cancelled restore is never opened as if it were complete.
//!
//! The file is empty: only its presence matters (`docs/STATE.md`).

use std::io;
use std::path::Path;

use varve_changelog::fs::{FileSystem, OpenMode};

use crate::error::{Error, Result};

/// The marker's file name in the store directory. While it exists,
/// [`Db::open`](crate::Db::open) refuses the store with
/// [`Error::RestoreIncomplete`].
///
/// # Examples
/// ```
/// # fn main() -> std::io::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// std::fs::write(tmp.path().join(varve::restore::MARKER_FILE), b"")?;
/// let err = varve::Db::open(tmp.path(), varve::Options::default()).unwrap_err();
/// assert!(matches!(err, varve::Error::RestoreIncomplete { .. }));
/// # Ok(()) }
/// ```
pub const MARKER_FILE: &str = "RESTORING";

/// Whether `dir` holds a restore marker.
///
/// # Errors
/// [`Error::Io`] if the file system cannot tell.
pub(crate) fn is_restoring(fs: &dyn FileSystem, dir: &Path) -> Result<bool> {
    let path = dir.join(MARKER_FILE);
    let kind = fs.kind(&path).map_err(|e| Error::io("stat", &path, e))?;
    Ok(kind.is_some())
}

/// Creates the marker (if missing) and makes it durable: the file, its
/// directory entry, and `dir`'s own entry in its parent.
pub(crate) fn create(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    fs.create_dir_all(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let path = dir.join(MARKER_FILE);
    let file = fs
        .open_file(&path, OpenMode::CreateOrOpen)
        .map_err(|e| Error::io("create", &path, e))?;
    file.sync_data().map_err(|e| Error::io("sync", &path, e))?;
    drop(file);
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))?;
    crate::checkpoint::sync_parent(fs, dir)
}

/// Removes the marker and syncs the directory: the last step of a restore.
pub(crate) fn remove(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let path = dir.join(MARKER_FILE);
    match fs.remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &path, e)),
    }
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))
}
