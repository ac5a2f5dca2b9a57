//! [`VersionSet`]: the current [`Version`], and the manifest that makes each
//! change durable before it takes effect.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use varve_changelog::fs::PathKind;

use varve_changelog::fs::FileSystem;

use crate::error::{Error, Result};

use super::manifest::{AppendFailure, ManifestWriter, current_path, read_current, write_current};
use super::{
    ENGINE_FORMAT, FileNumber, Level, ManifestScan, TornTail, Version, VersionEdit,
    manifest_file_name, scan_manifest,
};

/// Tuning for a [`VersionSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionSetOptions {
    /// Size past which the manifest is replaced by a new one holding a
    /// snapshot of the current state. The threshold is raised to twice the
    /// size of the last snapshot, so a large state does not rotate on every
    /// edit.
    pub manifest_rotate_size_bytes: u64,
    /// For [`VersionSet::create`]: make a TTL store with this TTL in
    /// milliseconds. A store's TTL is recorded when it is created, so
    /// [`VersionSet::open`] ignores this. Default `None`.
    pub ttl_ms: Option<u64>,
}

impl Default for VersionSetOptions {
    fn default() -> Self {
        VersionSetOptions {
            manifest_rotate_size_bytes: 4 << 20,
            ttl_ms: None,
        }
    }
}

/// The files a store still needs, for obsolete-file cleanup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveFiles {
    /// Tables of the current version and of every older version still held
    /// by a reader, ascending. Tables being written (not yet in any
    /// version) are not included: the caller must protect them.
    pub tables: Vec<FileNumber>,
    /// The manifest in use.
    pub manifest: FileNumber,
}

/// The current [`Version`] of a store and its manifest.
///
/// Every change goes through [`log_and_apply`](Self::log_and_apply): the edit
/// is checked, appended to the manifest and synced, and only then installed.
/// After a failed sync (of the manifest in use or of a new one), a failed
/// write that could not be cut back off, or a failed switch of `CURRENT`,
/// the manifest's durable contents are unknown: the set refuses further
/// edits with [`Error::ReadOnly`]; the current version stays readable.
#[derive(Debug)]
pub struct VersionSet {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    options: VersionSetOptions,
    current: Arc<Version>,
    /// Older versions that readers may still hold (pruned on install).
    older: Vec<Weak<Version>>,
    manifest: ManifestWriter,
    manifest_number: FileNumber,
    /// Size of the snapshot record that starts the manifest.
    snapshot_len_bytes: u64,
    next_file_number: FileNumber,
    failed: Option<Arc<Error>>,
    torn_tail: Option<TornTail>,
}

impl VersionSet {
    /// Whether `dir` holds a store (has a `CURRENT` file).
    ///
    /// # Errors
    /// [`Error::Io`] if the file system cannot tell.
    pub fn exists(fs: &dyn FileSystem, dir: &Path) -> Result<bool> {
        let path = current_path(dir);
        let kind = fs.kind(&path).map_err(|e| Error::io("stat", &path, e))?;
        Ok(kind.is_some())
    }

    /// Creates the manifest of a new, empty store in `dir` (created if
    /// missing) and points `CURRENT` at it. With `options.ttl_ms` the
    /// store is a TTL store: the manifest's first record carries the TTL,
    /// so the store is never seen without it.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// use std::sync::Arc;
    /// use varve_db::internals::version::{VersionSet, VersionSetOptions};
    /// use varve_db::varve_changelog::fs::MemFs;
    /// let fs = Arc::new(MemFs::new());
    /// let dir = std::path::Path::new("/store");
    /// let ttl = VersionSetOptions { ttl_ms: Some(60_000), ..VersionSetOptions::default() };
    /// VersionSet::create(fs.clone(), dir, ttl)?;
    /// let reopened = VersionSet::open(fs, dir, VersionSetOptions::default())?;
    /// assert_eq!(reopened.current().ttl_ms(), Some(60_000));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `dir` already holds a store or for a
    /// TTL of 0 ms; [`Error::Io`] if a file cannot be written.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: VersionSetOptions,
    ) -> Result<VersionSet> {
        let ttl_ms = options.ttl_ms;
        fs.create_dir_all(dir)
            .map_err(|e| Error::io("create", dir, e))?;
        if Self::exists(fs.as_ref(), dir)? {
            let shown = dir.display();
            return Err(Error::InvalidArgument(format!(
                "{shown} already holds a store"
            )));
        }
        let manifest_number = FileNumber(1);
        let version = Version::empty().apply(&VersionEdit {
            next_file_number: Some(FileNumber(2)),
            ttl_ms,
            ..VersionEdit::default()
        })?;
        let (manifest, snapshot_len_bytes) =
            write_snapshot_manifest(fs.as_ref(), dir, &version, manifest_number)
                .map_err(|failure| failure.error)?;
        write_current(fs.as_ref(), dir, manifest_number)?;
        Ok(VersionSet {
            fs,
            dir: dir.to_path_buf(),
            options,
            next_file_number: version.next_file_number(),
            current: Arc::new(version),
            older: Vec::new(),
            manifest,
            manifest_number,
            snapshot_len_bytes,
            failed: None,
            torn_tail: None,
        })
    }

    /// Opens the store in `dir`: reads `CURRENT`,
    /// replays the manifest it names into a [`Version`], and prepares to
    /// append. A torn final record is dropped: it is reported by
    /// [`torn_tail_on_open`](Self::torn_tail_on_open) and cut off the file
    /// before anything is appended, so no record ever follows it.
    ///
    /// # Errors
    /// [`Error::NotAStore`] if `dir` has no `CURRENT` file;
    /// [`Error::Corruption`] if `CURRENT` is malformed or names a missing
    /// manifest, or a manifest record is damaged or breaks an invariant;
    /// [`Error::UnsupportedVersion`] if the manifest was written by a newer
    /// engine format; [`Error::Io`] if a file cannot be read or written.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: VersionSetOptions,
    ) -> Result<VersionSet> {
        let manifest_number = read_current(fs.as_ref(), dir)?;
        let after_manifest = number_after_manifest(manifest_number, dir)?;
        let path = dir.join(manifest_file_name(manifest_number));
        match fs.kind(&path).map_err(|e| Error::io("stat", &path, e))? {
            Some(PathKind::File) => {}
            _ => {
                let what = format!("names {}, which is missing or not a file", path.display());
                return Err(Error::corruption(current_path(dir), 0, what));
            }
        }
        let scan = scan_manifest(fs.as_ref(), &path)?;
        let version = replay(&scan, &path)?;
        if let Some(tail) = scan.torn_tail {
            tracing::warn!(
                path = %path.display(), offset = tail.offset, len_bytes = tail.len_bytes,
                "manifest ends with an incomplete record (an unacknowledged edit); ignoring it"
            );
        }
        let snapshot_len_bytes = scan.edits.get(1).map_or(scan.valid_len_bytes, |e| e.0);
        let mut set = VersionSet {
            manifest: ManifestWriter::open_append(fs.as_ref(), &path, scan.valid_len_bytes)?,
            next_file_number: version.next_file_number().max(after_manifest),
            fs,
            dir: dir.to_path_buf(),
            options,
            current: Arc::new(version),
            older: Vec::new(),
            manifest_number,
            snapshot_len_bytes,
            failed: None,
            torn_tail: scan.torn_tail,
        };
        if set.rotation_due() {
            set.log_and_apply(VersionEdit::default())?;
        }
        Ok(set)
    }

    /// The current version.
    #[must_use]
    pub fn current(&self) -> Arc<Version> {
        Arc::clone(&self.current)
    }

    /// The number of the manifest in use.
    #[must_use]
    pub fn manifest_file_number(&self) -> FileNumber {
        self.manifest_number
    }

    /// Whether an earlier failure left the manifest's durable contents
    /// unknown, so edits are refused with [`Error::ReadOnly`]. The edit that
    /// failed then may still be durable: the tables it added must be kept
    /// (the next open removes them if the manifest does not list them).
    #[must_use]
    pub fn edits_refused(&self) -> bool {
        self.failed.is_some()
    }

    /// The torn final record found (and dropped) when the store was opened.
    #[must_use]
    pub fn torn_tail_on_open(&self) -> Option<TornTail> {
        self.torn_tail
    }

    /// Hands out an unused file number for a new table. The number becomes
    /// durable with the next [`log_and_apply`](Self::log_and_apply).
    ///
    /// The counter starts at most at [`FileNumber::MAX`] (a manifest
    /// recording more is refused as corrupt), so it cannot wrap; past
    /// [`FileNumber::MAX`] the next edit is refused.
    pub fn new_file_number(&mut self) -> FileNumber {
        let number = self.next_file_number;
        self.next_file_number = FileNumber(number.0.saturating_add(1));
        number
    }

    /// The files still needed: tables of every version that is current or
    /// still held, and the manifest in use.
    #[must_use]
    pub fn live_files(&self) -> LiveFiles {
        let mut tables = self.current.all_table_numbers();
        for version in self.older.iter().filter_map(Weak::upgrade) {
            tables.extend(version.all_table_numbers());
        }
        tables.sort_unstable();
        tables.dedup();
        LiveFiles {
            tables,
            manifest: self.manifest_number,
        }
    }

    /// Checks `edit` against the current version, makes it durable in the
    /// manifest, and installs the resulting version. The edit's
    /// `next_file_number` is raised to cover every number handed out by
    /// [`new_file_number`](Self::new_file_number).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] after an earlier fatal failure;
    /// [`Error::InvalidArgument`] if the edit does not apply (nothing is
    /// written); [`Error::Io`] if the manifest cannot be written or synced.
    /// On any error the current version is unchanged.
    pub fn log_and_apply(&mut self, mut edit: VersionEdit) -> Result<Arc<Version>> {
        if let Some(cause) = &self.failed {
            return Err(Error::ReadOnly {
                cause: cause.clone(),
            });
        }
        let new_manifest = self.rotation_due().then(|| self.new_file_number());
        let next = edit
            .next_file_number
            .map_or(self.next_file_number, |n| n.max(self.next_file_number));
        edit.next_file_number = Some(next);
        let version = self.current.apply(&edit)?;
        match new_manifest {
            Some(number) => self.switch_manifest(&version, number)?,
            None => {
                let appended = self.manifest.append(&edit);
                appended.map_err(|failure| self.note_failure(failure))?;
            }
        }
        self.next_file_number = next;
        Ok(self.install(version))
    }

    /// Refuses later edits if `failure` is fatal; returns its error.
    fn note_failure(&mut self, failure: AppendFailure) -> Error {
        if failure.fatal {
            self.failed = Some(Arc::new(failure.error.clone()));
        }
        failure.error
    }

    fn rotation_due(&self) -> bool {
        let threshold = self
            .options
            .manifest_rotate_size_bytes
            .max(self.snapshot_len_bytes.saturating_mul(2));
        self.manifest.len_bytes() >= threshold
    }

    /// Writes `version` into new manifest `number`, points `CURRENT` at it
    /// and removes the old manifest.
    fn switch_manifest(&mut self, version: &Version, number: FileNumber) -> Result<()> {
        let fs = Arc::clone(&self.fs);
        let fs = fs.as_ref();
        let (manifest, snapshot_len_bytes) =
            write_snapshot_manifest(fs, &self.dir, version, number)
                .map_err(|failure| self.note_failure(failure))?;
        if let Err(error) = write_current(fs, &self.dir, number) {
            self.failed = Some(Arc::new(error.clone()));
            return Err(error);
        }
        let old = std::mem::replace(&mut self.manifest, manifest);
        self.manifest_number = number;
        self.snapshot_len_bytes = snapshot_len_bytes;
        if let Err(e) = fs.remove_file(old.path()) {
            let path = old.path().display();
            tracing::warn!(path = %path, error = %e, "could not remove the old manifest");
        }
        Ok(())
    }

    fn install(&mut self, version: Version) -> Arc<Version> {
        let old = std::mem::replace(&mut self.current, Arc::new(version));
        self.older.retain(|v| v.strong_count() > 0);
        if Arc::strong_count(&old) > 1 {
            self.older.push(Arc::downgrade(&old));
        }
        Arc::clone(&self.current)
    }
}

/// Writes a manifest holding `version` into `dir`, a new store's directory
/// (its tables already in place), then points `CURRENT` at it: `CURRENT`
/// is written last, so a crash midway leaves no store. Used by checkpoints
/// and restores.
pub(crate) fn write_store_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
    version: &Version,
) -> Result<()> {
    let number = version.next_file_number();
    let next = number
        .0
        .checked_add(1)
        .ok_or_else(|| Error::InvalidArgument(format!("no file number left after {}", number.0)))?;
    let version = version.apply(&VersionEdit {
        next_file_number: Some(FileNumber(next)),
        ..VersionEdit::default()
    })?;
    let (writer, _) =
        write_snapshot_manifest(fs, dir, &version, number).map_err(|failure| failure.error)?;
    drop(writer);
    write_current(fs, dir, number)
}

/// The current version of the store in `dir`, read without writing
/// anything (a torn final manifest record is ignored).
pub(crate) fn read_version(fs: &dyn FileSystem, dir: &Path) -> Result<Version> {
    let number = read_current(fs, dir)?;
    number_after_manifest(number, dir)?;
    let path = dir.join(manifest_file_name(number));
    let scan = scan_manifest(fs, &path)?;
    replay(&scan, &path)
}

/// The file number after manifest `number` (the least the counter may
/// hold); `Corruption` in `CURRENT` if `number` leaves none below
/// [`FileNumber::MAX`].
fn number_after_manifest(number: FileNumber, dir: &Path) -> Result<FileNumber> {
    match number.0.checked_add(1) {
        Some(next) if next <= FileNumber::MAX.0 => Ok(FileNumber(next)),
        _ => {
            let what = format!(
                "names manifest {}, above the largest file number {}",
                number.0,
                FileNumber::MAX.0
            );
            Err(Error::corruption(current_path(dir), 0, what))
        }
    }
}

/// Replays a manifest's edits into a version, checking the engine format.
fn replay(scan: &ManifestScan, path: &Path) -> Result<Version> {
    let Some((first_offset, first)) = scan.edits.first() else {
        return Err(Error::corruption(
            path,
            0,
            "manifest holds no complete record",
        ));
    };
    let format = match first.engine_format {
        Some(found) if found > ENGINE_FORMAT => {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                supported: ENGINE_FORMAT,
            });
        }
        Some(found) if found > 0 => found,
        _ => {
            let what = "first record does not carry a valid engine format";
            return Err(Error::corruption(path, *first_offset, what));
        }
    };
    let mut version = Version::empty();
    for (offset, edit) in &scan.edits {
        if let Some(found) = edit.engine_format
            && found != format
        {
            let what = format!("engine format changes from {format} to {found}");
            return Err(Error::corruption(path, *offset, what));
        }
        version = version.apply_edit(edit).map_err(|what| {
            Error::corruption(path, *offset, format!("edit does not apply: {what}"))
        })?;
    }
    Ok(version)
}

/// The edit that recreates `version` from an empty one.
fn snapshot_edit(version: &Version) -> VersionEdit {
    let mut added = Vec::new();
    for level in Level::all() {
        added.extend(version.tables(level).iter().map(|t| (level, (**t).clone())));
    }
    VersionEdit {
        engine_format: Some(ENGINE_FORMAT),
        flushed_offset: Some(version.flushed_offset()),
        next_file_number: Some(version.next_file_number()),
        last_seqno: Some(version.last_seqno()),
        deleted: Vec::new(),
        added,
        ttl_ms: version.ttl_ms(),
    }
}

/// Creates manifest `number` holding one snapshot record of `version`,
/// synced; returns its writer and the snapshot's size. On failure the new
/// file is removed (it is not named by `CURRENT`, so nothing depends on it);
/// a failed sync is still reported as fatal.
fn write_snapshot_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
    version: &Version,
    number: FileNumber,
) -> Result<(ManifestWriter, u64), AppendFailure> {
    assert!(
        number < version.next_file_number(),
        "manifest number not allocated"
    );
    let path = dir.join(manifest_file_name(number));
    let mut writer = ManifestWriter::create(fs, &path).map_err(|error| AppendFailure {
        error,
        fatal: false,
    })?;
    if let Err(failure) = writer.append(&snapshot_edit(version)) {
        let _ = fs.remove_file(&path);
        return Err(failure);
    }
    let len_bytes = writer.len_bytes();
    Ok((writer, len_bytes))
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::atomic::{AtomicBool, Ordering};

    use varve_changelog::fs::{DirLock, File, OpenMode, StdFs};

    use super::*;
    use crate::key::SeqNo;
    use crate::version::test_util::table;

    /// `StdFs`, but writes or syncs fail while the matching flag is set.
    #[derive(Debug, Default)]
    struct FlakyFs {
        fail_write: Arc<AtomicBool>,
        fail_sync: Arc<AtomicBool>,
    }

    #[derive(Debug)]
    struct FlakyFile {
        inner: Arc<dyn File>,
        fail_write: Arc<AtomicBool>,
        fail_sync: Arc<AtomicBool>,
    }

    fn injected() -> io::Error {
        io::Error::other("injected failure")
    }

    impl File for FlakyFile {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.inner.read_at(buf, offset)
        }
        fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            if self.fail_write.load(Ordering::SeqCst) {
                // Write half, as a real failure may, then report it.
                self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
                return Err(injected());
            }
            self.inner.write_all_at(buf, offset)
        }
        fn sync_data(&self) -> io::Result<()> {
            if self.fail_sync.load(Ordering::SeqCst) {
                return Err(injected());
            }
            self.inner.sync_data()
        }
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn set_len(&self, len_bytes: u64) -> io::Result<()> {
            self.inner.set_len(len_bytes)
        }
    }

    impl FileSystem for FlakyFs {
        fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
            Ok(Arc::new(FlakyFile {
                inner: StdFs.open_file(path, mode)?,
                fail_write: Arc::clone(&self.fail_write),
                fail_sync: Arc::clone(&self.fail_sync),
            }))
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            StdFs.create_dir_all(path)
        }
        fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            StdFs.list_dir(path)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            StdFs.remove_file(path)
        }
        fn remove_dir(&self, path: &Path) -> io::Result<()> {
            StdFs.remove_dir(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            StdFs.rename(from, to)
        }
        fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
            StdFs.hard_link(from, to)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            StdFs.sync_dir(path)
        }
        fn kind(&self, path: &Path) -> io::Result<Option<PathKind>> {
            StdFs.kind(path)
        }
        fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
            StdFs.lock(path)
        }
    }

    fn std_fs() -> Arc<dyn FileSystem> {
        Arc::new(StdFs)
    }

    /// An edit adding one L0 table with seqnos `seqno..=seqno`.
    fn flush(set: &mut VersionSet, seqno: u64) -> VersionEdit {
        let number = set.new_file_number();
        VersionEdit {
            flushed_offset: Some(seqno + 1),
            last_seqno: Some(SeqNo(seqno)),
            added: vec![(Level(0), table(number.0, b"a", b"z", seqno, seqno))],
            ..VersionEdit::default()
        }
    }

    #[test]
    fn create_apply_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut set =
            VersionSet::create(std_fs(), dir.path(), VersionSetOptions::default()).unwrap();
        assert_eq!(set.manifest_file_number(), FileNumber(1));
        assert!(VersionSet::create(std_fs(), dir.path(), VersionSetOptions::default()).is_err());
        for seqno in 1..=3 {
            let edit = flush(&mut set, seqno * 10);
            set.log_and_apply(edit).unwrap();
        }
        let before = set.current();
        assert_eq!(before.tables(Level(0)).len(), 3);
        assert_eq!(before.flushed_offset(), 31);
        assert_eq!(before.next_file_number(), FileNumber(5));
        drop(set);
        let reopened =
            VersionSet::open(std_fs(), dir.path(), VersionSetOptions::default()).unwrap();
        assert_eq!(*reopened.current(), *before);
        assert_eq!(reopened.torn_tail_on_open(), None);
        let live = reopened.live_files();
        assert_eq!(live.tables, [FileNumber(2), FileNumber(3), FileNumber(4)]);
        assert_eq!(live.manifest, FileNumber(1));
    }

    #[test]
    fn missing_current_is_not_a_store() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!VersionSet::exists(&StdFs, dir.path()).unwrap());
        let err = VersionSet::open(std_fs(), dir.path(), VersionSetOptions::default()).unwrap_err();
        assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    }

    #[test]
    fn bad_edit_is_rejected_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut set =
            VersionSet::create(std_fs(), dir.path(), VersionSetOptions::default()).unwrap();
        let len = set.manifest.len_bytes();
        let edit = VersionEdit {
            deleted: vec![(Level(1), FileNumber(9))],
            ..VersionEdit::default()
        };
        assert!(matches!(
            set.log_and_apply(edit),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(set.manifest.len_bytes(), len);
        let edit = flush(&mut set, 5);
        set.log_and_apply(edit).unwrap();
    }

    #[test]
    fn rotation_writes_snapshot_and_removes_old_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let options = VersionSetOptions {
            manifest_rotate_size_bytes: 200,
            ..VersionSetOptions::default()
        };
        let mut set = VersionSet::create(std_fs(), dir.path(), options).unwrap();
        let mut manifests = vec![set.manifest_file_number()];
        for seqno in 1..=40 {
            let mut edit = flush(&mut set, seqno);
            if seqno > 2 {
                // Keep the state small: replace the oldest L0 table.
                let oldest = set.current().tables(Level(0)).last().unwrap().number;
                edit.deleted.push((Level(0), oldest));
            }
            set.log_and_apply(edit).unwrap();
            if manifests.last() != Some(&set.manifest_file_number()) {
                manifests.push(set.manifest_file_number());
            }
        }
        assert!(manifests.len() > 3, "{manifests:?}");
        let names = StdFs.list_dir(dir.path()).unwrap();
        let current = manifest_file_name(set.manifest_file_number());
        assert_eq!(names, ["CURRENT".to_string(), current]);
        let state = set.current();
        drop(set);
        let reopened = VersionSet::open(std_fs(), dir.path(), options).unwrap();
        assert_eq!(*reopened.current(), *state);
    }

    #[test]
    fn live_files_include_versions_held_by_readers() {
        let dir = tempfile::tempdir().unwrap();
        let mut set =
            VersionSet::create(std_fs(), dir.path(), VersionSetOptions::default()).unwrap();
        let edit = flush(&mut set, 1);
        set.log_and_apply(edit).unwrap();
        let reader = set.current();
        let edit = VersionEdit {
            deleted: vec![(Level(0), FileNumber(2))],
            ..VersionEdit::default()
        };
        set.log_and_apply(edit).unwrap();
        assert_eq!(set.live_files().tables, [FileNumber(2)]);
        drop(reader);
        assert!(set.live_files().tables.is_empty());
    }

    #[test]
    fn failed_sync_leaves_version_unchanged_and_refuses_edits() {
        let (_dir, fs, mut set) = flaky_set(VersionSetOptions::default());
        let edit = flush(&mut set, 1);
        set.log_and_apply(edit).unwrap();
        let before = set.current();
        sync_fails_then_edits_are_refused(&mut set, &fs, &before);
    }

    /// A new version set in a temporary directory, on a file system whose
    /// writes and syncs can be made to fail.
    fn flaky_set(options: VersionSetOptions) -> (tempfile::TempDir, Arc<FlakyFs>, VersionSet) {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(FlakyFs::default());
        let set = VersionSet::create(fs.clone(), dir.path(), options).unwrap();
        (dir, fs, set)
    }

    /// A failed manifest sync is an [`Error::Sync`]; every later edit is
    /// refused with [`Error::ReadOnly`], and the version stays `before`.
    fn sync_fails_then_edits_are_refused(set: &mut VersionSet, fs: &FlakyFs, before: &Version) {
        fs.fail_sync.store(true, Ordering::SeqCst);
        let edit = flush(set, 2);
        assert!(matches!(set.log_and_apply(edit), Err(Error::Sync { .. })));
        assert_eq!(*set.current(), *before);
        fs.fail_sync.store(false, Ordering::SeqCst);
        let edit = flush(set, 3);
        assert!(matches!(
            set.log_and_apply(edit),
            Err(Error::ReadOnly { .. })
        ));
        assert_eq!(*set.current(), *before);
    }

    /// A failed manifest write is an I/O error and leaves the version
    /// `before`.
    fn write_fails(set: &mut VersionSet, fs: &FlakyFs, seqno: u64, before: &Version) {
        fs.fail_write.store(true, Ordering::SeqCst);
        let edit = flush(set, seqno);
        assert!(matches!(
            set.log_and_apply(edit),
            Err(Error::Io { op: "write", .. })
        ));
        assert_eq!(*set.current(), *before);
        fs.fail_write.store(false, Ordering::SeqCst);
    }

    #[test]
    fn failed_write_is_cut_off_and_later_edits_succeed() {
        let (dir, fs, mut set) = flaky_set(VersionSetOptions::default());
        let before = set.current();
        write_fails(&mut set, &fs, 1, &before);
        let edit = flush(&mut set, 2);
        let after = set.log_and_apply(edit).unwrap();
        drop(set);
        let reopened =
            VersionSet::open(std_fs(), dir.path(), VersionSetOptions::default()).unwrap();
        assert_eq!(*reopened.current(), *after);
        assert_eq!(reopened.torn_tail_on_open(), None);
    }

    #[test]
    fn failed_rotation_keeps_old_manifest_or_refuses_edits() {
        let (dir, fs, mut set) = flaky_set(VersionSetOptions {
            manifest_rotate_size_bytes: 1,
            ..VersionSetOptions::default()
        });
        while !set.rotation_due() {
            let seqno = set.current().last_seqno().0 + 1;
            let edit = flush(&mut set, seqno);
            set.log_and_apply(edit).unwrap();
        }
        let first = set.manifest_file_number();
        let before = set.current();
        // A failed write of the new manifest: the old one stays in use.
        write_fails(&mut set, &fs, 10, &before);
        assert_eq!(set.manifest_file_number(), first);
        assert_eq!(StdFs.list_dir(dir.path()).unwrap().len(), 2);
        // A failed sync of the new manifest: edits are refused.
        sync_fails_then_edits_are_refused(&mut set, &fs, &before);
        drop(set);
        let reopened =
            VersionSet::open(std_fs(), dir.path(), VersionSetOptions::default()).unwrap();
        assert_eq!(*reopened.current(), *before);
    }
}
