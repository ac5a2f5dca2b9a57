//! A restore's target directory: what it holds, and what the restore may
//! remove from it. A restore removes only what its marker proves it wrote;
//! anything else (a foreign file, a marker it cannot read, a link, a
//! subdirectory) is refused with [`Error::NotOwned`] before anything is
//! touched, and links are never followed.

use std::path::Path;
use varve_changelog::fs::PathKind;

use varve_changelog::fs::{EntryKind, FileSystem};

use super::marker::{self, MARKER_FILE, MARKER_TEMP_FILE, Marker};
use crate::error::{Error, Result};
use crate::open::{CHANGELOG_DIR, LOCK_FILE};
use crate::version::{
    FileNumber, Level, Version, VersionSet, manifest_file_name, parse_file_name, table_file_name,
};

/// What a restore finds in its target directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// Missing or empty: start a new restore.
    Fresh,
    /// An interrupted restore of the same source that never wrote
    /// `CURRENT`: remove what its marker lists and start again.
    Wipe(Marker),
    /// An interrupted restore of the same source with a store: continue.
    Resume,
}

/// Looks at `dir` without modifying it.
///
/// # Errors
/// [`Error::InvalidArgument`] for a file or a non-empty directory without
/// a marker; [`Error::NotOwned`] for a marker this build did not write, a
/// marker of another source, or an entry the restore did not write.
pub(super) fn inspect(fs: &dyn FileSystem, dir: &Path, source: &str) -> Result<Target> {
    match fs.kind(dir).map_err(|e| Error::io("stat", dir, e))? {
        None => return Ok(Target::Fresh),
        Some(PathKind::File) => {
            return Err(Error::InvalidArgument(format!(
                "{} is a file, not a directory to restore into",
                dir.display()
            )));
        }
        Some(PathKind::Dir) => {}
    }
    if !marker::is_restoring(fs, dir)? {
        return fresh(fs, dir);
    }
    let found = marker::read(fs, dir)?;
    if found.source != source {
        return Err(Error::NotOwned {
            path: dir.join(MARKER_FILE),
            reason: format!(
                "the interrupted restore there is from source {:?}, not {source:?}; \
                 resume it with that source, or delete the directory",
                found.source
            ),
        });
    }
    if VersionSet::exists(fs, dir)? {
        check_store_entries(fs, dir)?;
        Ok(Target::Resume)
    } else {
        check_listed(fs, dir, &found)?;
        Ok(Target::Wipe(found))
    }
}

/// An unmarked directory: empty, or holding only the marker's temporary
/// file (a crash while the first marker was written).
fn fresh(fs: &dyn FileSystem, dir: &Path) -> Result<Target> {
    let names = list(fs, dir)?;
    if names.iter().all(|n| n == MARKER_TEMP_FILE) {
        for name in &names {
            expect_kind(fs, &dir.join(name), EntryKind::File)?;
        }
        return Ok(Target::Fresh);
    }
    crate::checkpoint::check_empty_target(fs, dir)?;
    Ok(Target::Fresh)
}

/// The names of the files a restore makes before its store exists
/// (`CURRENT` written): with a checkpoint, its tables and the manifest
/// that lists them; without, the new store's lock and first manifest.
pub(super) fn names_before_store(checkpoint: Option<&Version>) -> Vec<String> {
    let mut names = Vec::new();
    match checkpoint {
        Some(version) => {
            for level in Level::all() {
                for table in version.tables(level) {
                    names.push(table_file_name(table.number));
                }
            }
            names.push(manifest_file_name(version.next_file_number()));
        }
        None => {
            names.push(LOCK_FILE.to_owned());
            // `VersionSet::create` numbers a new store's
            // first manifest 1.
            names.push(manifest_file_name(FileNumber(1)));
        }
    }
    names.push("CURRENT.tmp".to_owned());
    names.push("CURRENT".to_owned());
    names
}

/// Removes the files `found` lists (those present; [`check_listed`] has
/// seen each is a regular file), then syncs `dir`.
pub(super) fn remove_listed(fs: &dyn FileSystem, dir: &Path, found: &Marker) -> Result<()> {
    for name in &found.names {
        super::marker::remove_if_present(fs, &dir.join(name))?;
    }
    fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))
}

/// Every entry of `dir` is the marker, its temporary file, or a regular
/// file the marker lists.
fn check_listed(fs: &dyn FileSystem, dir: &Path, found: &Marker) -> Result<()> {
    for name in list(fs, dir)? {
        let path = dir.join(&name);
        let ours = name == MARKER_FILE || name == MARKER_TEMP_FILE || found.names.contains(&name);
        if !ours {
            return Err(foreign(fs, &path, "the restore marker does not list it")?);
        }
        expect_kind(fs, &path, EntryKind::File)?;
    }
    Ok(())
}

/// Every entry of a restored store's `dir` is one a store writes: the
/// marker, a regular file named like a store file, or a real `changelog`
/// directory holding only regular files.
fn check_store_entries(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    for name in list(fs, dir)? {
        let path = dir.join(&name);
        if name == CHANGELOG_DIR {
            expect_kind(fs, &path, EntryKind::Dir)?;
            for inner in list(fs, &path)? {
                expect_kind(fs, &path.join(inner), EntryKind::File)?;
            }
        } else if name == MARKER_FILE
            || name == MARKER_TEMP_FILE
            || parse_file_name(&name).is_some()
        {
            expect_kind(fs, &path, EntryKind::File)?;
        } else {
            return Err(foreign(fs, &path, "a store does not write such a name")?);
        }
    }
    Ok(())
}

/// Refuses `path` unless it is (without following links) of kind `want`.
fn expect_kind(fs: &dyn FileSystem, path: &Path, want: EntryKind) -> Result<()> {
    let found = fs
        .entry_kind(path)
        .map_err(|e| Error::io("stat", path, e))?;
    if found == Some(want) {
        return Ok(());
    }
    let want = match want {
        EntryKind::Dir => "a directory",
        _ => "a regular file",
    };
    Err(foreign(
        fs,
        path,
        &format!("the restore expects {want} there"),
    )?)
}

/// The refusal of `path`, saying what it is.
fn foreign(fs: &dyn FileSystem, path: &Path, why: &str) -> Result<Error> {
    let kind = fs
        .entry_kind(path)
        .map_err(|e| Error::io("stat", path, e))?;
    let what = match kind {
        Some(EntryKind::File) => "a file",
        Some(EntryKind::Dir) => "a directory",
        Some(EntryKind::Symlink) => "a symbolic link (never followed)",
        Some(EntryKind::Other) => "a special file",
        None => "an entry that vanished",
    };
    Ok(Error::NotOwned {
        path: path.to_owned(),
        reason: format!("it is {what} in the restore's target, and {why}"),
    })
}

fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<String>> {
    fs.list_dir(dir)
        .map_err(|e| Error::io("list directory", dir, e))
}
