//! Checkpoints: a consistent, openable copy of a store, taken while writes
//! continue (`docs/STATE.md`).
//!
//! A checkpoint is a store directory like any other: hard links to (or
//! copies of) the tables of one version V, a fresh manifest holding V, and
//! an empty changelog that starts at V's flushed offset F. It holds exactly
//! the writes at changelog offsets below F. `CURRENT` is written last, so a
//! crash midway leaves a directory that does not open as a store.

use std::path::{Component, Path, PathBuf};
use varve_changelog::fs::PathKind;

use varve_changelog::fs::{FileSystem, OpenMode};
use varve_changelog::{Log, LogOptions};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::open::CHANGELOG_DIR;
use crate::version::{Level, Version, table_file_name, write_store_manifest};

/// Bytes copied per read when a table cannot be hard-linked.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Where a checkpoint was written and what it holds.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let db = varve_db::Db::open(tmp.path().join("store"), varve_db::Options::default())?;
/// db.put("k", "v")?;
/// let info: varve_db::CheckpointInfo = db.checkpoint(tmp.path().join("cp"))?;
/// assert_eq!((info.path, info.offset), (tmp.path().join("cp"), 1));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The checkpoint's directory.
    pub path: PathBuf,
    /// The changelog offset it covers: it holds exactly the writes at
    /// offsets below this one, and its changelog starts here.
    pub offset: u64,
}

impl Db {
    /// Writes a consistent copy of the store into `dir` (missing or empty)
    /// while writes continue: the memtable is flushed, the tables of the
    /// resulting version are hard-linked (copied where linking fails, e.g.
    /// across devices), and a manifest and an empty changelog starting at
    /// the version's flushed offset are written. [`Db::open`] on `dir`
    /// yields exactly the writes below [`CheckpointInfo::offset`] and
    /// accepts new writes from that offset on.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let (store, copy) = (tmp.path().join("store"), tmp.path().join("copy"));
    /// let db = varve_db::Db::open(&store, varve_db::Options::default())?;
    /// db.put("a", "1")?;
    /// let info = db.checkpoint(&copy)?;
    /// assert_eq!(info.offset, 1);
    /// db.put("b", "2")?; // not in the checkpoint
    /// let copy = varve_db::Db::open(&copy, varve_db::Options::default())?;
    /// assert_eq!(copy.get("a")?.as_deref(), Some(&b"1"[..]));
    /// assert_eq!(copy.get("b")?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::TargetInsideSource`] if `dir` lies inside the store's own
    /// directory tree once links are resolved, and
    /// [`Error::InvalidArgument`] if `dir` exists and is not an empty
    /// directory (nothing is written in either case); [`Error::ReadOnly`] after a failed
    /// sync; I/O errors. A failed checkpoint leaves a directory without
    /// `CURRENT`, which never opens as a store: delete it.
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<CheckpointInfo> {
        let dir = dir.as_ref();
        let inner = self.inner();
        let fs = inner.fs.as_ref();
        check_outside_store(fs, &inner.path, dir)?;
        check_empty_target(fs, dir)?;
        self.flush()?;
        // Holding the version keeps its tables out of obsolete-file
        // deletion until they are linked.
        let version = inner.versions.lock().current();
        let offset = version.flushed_offset();
        // Durably: the checkpoint directory's own entry survives power loss.
        varve_changelog::fs::create_dir_all_durably(fs, dir)
            .map_err(|e| Error::io("create directory", dir, e))?;
        link_tables(fs, &inner.path, dir, &version)?;
        create_changelog_at(&inner.fs, dir, offset)?;
        write_store_manifest(fs, dir, &version)?;
        tracing::info!(checkpoint = %dir.display(), offset, "checkpoint written");
        Ok(CheckpointInfo {
            path: dir.to_owned(),
            offset,
        })
    }
}

/// Refuses a `target` inside the directory tree of the store in `store`,
/// comparing paths with every link resolved: the longest existing
/// ancestor of `target` is resolved and the rest of `target` (which does
/// not exist yet, so holds no link) is appended. A checkpoint or a
/// repaired store written there would change the store it copies.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use varve_db::varve_changelog::fs::StdFs;
/// let store = tmp.path().join("store");
/// std::fs::create_dir(&store).unwrap();
/// varve_db::check_outside_store(&StdFs, &store, &tmp.path().join("copy"))?;
/// let inside = varve_db::check_outside_store(&StdFs, &store, &store.join("changelog/cp"));
/// assert!(matches!(inside, Err(varve_db::Error::TargetInsideSource { .. })));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::TargetInsideSource`] for a target inside the store (the store
/// itself included); [`Error::Io`] if a path cannot be resolved.
pub fn check_outside_store(fs: &dyn FileSystem, store: &Path, target: &Path) -> Result<()> {
    let store_real = fs
        .resolve_links(store)
        .map_err(|e| Error::io("resolve", store, e))?;
    let target_real = resolve_as_far_as_exists(fs, target)?;
    if target_real.starts_with(&store_real) {
        return Err(Error::TargetInsideSource {
            target: target.to_owned(),
            store: store.to_owned(),
        });
    }
    Ok(())
}

/// `path` with its longest existing ancestor resolved and the missing
/// rest appended lexically (`.` dropped, `..` taking a component off).
fn resolve_as_far_as_exists(fs: &dyn FileSystem, path: &Path) -> Result<PathBuf> {
    let components: Vec<Component<'_>> = path.components().collect();
    let mut resolved = PathBuf::new();
    let mut rest: &[Component<'_>] = &components;
    for n in (0..=components.len()).rev() {
        let prefix: PathBuf = components[..n].iter().collect();
        let probe = if n == 0 { Path::new(".") } else { &prefix };
        let kind = fs
            .entry_kind(probe)
            .map_err(|e| Error::io("stat", probe, e))?;
        if kind.is_some() {
            resolved = fs
                .resolve_links(probe)
                .map_err(|e| Error::io("resolve", probe, e))?;
            rest = &components[n..];
            break;
        }
    }
    for component in rest {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            other => resolved.push(other.as_os_str()),
        }
    }
    Ok(resolved)
}

/// Refuses a target that exists and is not an empty directory.
pub(crate) fn check_empty_target(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    match fs.kind(dir).map_err(|e| Error::io("stat", dir, e))? {
        None => Ok(()),
        Some(PathKind::File) => Err(Error::InvalidArgument(format!(
            "{} is a file, not an empty directory",
            dir.display()
        ))),
        Some(PathKind::Dir) => {
            let names = fs
                .list_dir(dir)
                .map_err(|e| Error::io("list directory", dir, e))?;
            if names.is_empty() {
                Ok(())
            } else {
                Err(Error::InvalidArgument(format!(
                    "{} is not empty ({} entries)",
                    dir.display(),
                    names.len()
                )))
            }
        }
    }
}

/// Hard-links (or copies) every table of `version` from `from` into `to`,
/// then syncs `to`.
pub(crate) fn link_tables(
    fs: &dyn FileSystem,
    from: &Path,
    to: &Path,
    version: &Version,
) -> Result<()> {
    for level in Level::all() {
        for table in version.tables(level) {
            let name = table_file_name(table.number);
            link_or_copy(fs, &from.join(&name), &to.join(&name))?;
        }
    }
    fs.sync_dir(to).map_err(|e| Error::sync(to, e))
}

/// Hard-links `from` to `to`, or copies it (synced) where linking fails.
pub(crate) fn link_or_copy(fs: &dyn FileSystem, from: &Path, to: &Path) -> Result<()> {
    match fs.hard_link(from, to) {
        Ok(()) => return Ok(()),
        Err(e) => {
            tracing::debug!(from = %from.display(), error = %e, "hard link failed; copying");
        }
    }
    let src = fs
        .open_file(from, OpenMode::Read)
        .map_err(|e| Error::io("open", from, e))?;
    let dst = fs
        .open_file(to, OpenMode::CreateNew)
        .map_err(|e| Error::io("create", to, e))?;
    let len = src.len().map_err(|e| Error::io("stat", from, e))?;
    let mut buf = vec![0u8; COPY_CHUNK_BYTES];
    let mut at = 0u64;
    while at < len {
        let want = usize::try_from(len - at).map_or(buf.len(), |n| n.min(buf.len()));
        src.read_exact_at(&mut buf[..want], at)
            .map_err(|e| Error::io("read", from, e))?;
        dst.write_all_at(&buf[..want], at)
            .map_err(|e| Error::io("write", to, e))?;
        at += want as u64;
    }
    dst.sync_data().map_err(|e| Error::sync(to, e))
}

/// Creates `dir`'s changelog, empty and starting at `offset`, durably.
pub(crate) fn create_changelog_at(
    fs: &std::sync::Arc<dyn FileSystem>,
    dir: &Path,
    offset: u64,
) -> Result<()> {
    let log_dir = dir.join(CHANGELOG_DIR);
    let opts = LogOptions::default().preallocate_bytes(None);
    let log = Log::open(&log_dir, opts.fs(fs.clone()))?;
    log.truncate_fully_and_start_at(offset)?;
    log.close()?;
    fs.sync_dir(&log_dir)
        .map_err(|e| Error::sync(&log_dir, e))?;
    fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))
}
