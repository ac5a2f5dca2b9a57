//! A failed sync of the manifest while installing a flush or a compaction
//! leaves the edit's durability unknown: it may be on disk. The tables it
//! added must then be kept, so a reopen without power loss (which reads
//! the edit back) finds them, and every write is still served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use varve::varve_changelog::fs::{DirLock, File, FileSystem, MemFs, OpenMode};
use varve::{CompactionOptions, Db, Options, WriteBatch, WriteOptions};

/// `MemFs`, but syncs of a manifest fail while `fail_manifest_sync` is set
/// (after the data is written, as a real failed `fdatasync` may be).
#[derive(Debug, Clone, Default)]
struct ManifestSyncFs {
    inner: MemFs,
    fail_manifest_sync: Arc<AtomicBool>,
}

#[derive(Debug)]
struct ManifestFile {
    inner: Arc<dyn File>,
    fail: Arc<AtomicBool>,
}

impl File for ManifestFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected manifest sync failure"));
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

impl FileSystem for ManifestSyncFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        let file = self.inner.open_file(path, mode)?;
        let is_manifest = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("MANIFEST-"));
        if !is_manifest {
            return Ok(file);
        }
        Ok(Arc::new(ManifestFile {
            inner: file,
            fail: Arc::clone(&self.fail_manifest_sync),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.hard_link(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<bool>> {
        self.inner.kind(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        self.inner.lock(path)
    }
}

const KEYS: usize = 40;

fn write_keys(db: &Db, round: usize) {
    for i in 0..KEYS {
        let mut batch = WriteBatch::new();
        batch.put(format!("key-{i:03}"), format!("value-{round}"));
        db.write(batch, WriteOptions::default().sync(true)).unwrap();
    }
}

fn assert_keys(db: &Db, round: usize) {
    for i in 0..KEYS {
        let got = db.get(format!("key-{i:03}")).unwrap();
        let want = format!("value-{round}");
        assert_eq!(got.as_deref(), Some(want.as_bytes()), "key {i}");
    }
}

fn options() -> Options {
    Options::default().compaction(CompactionOptions::default().auto(false))
}

/// A store on `fs` holding one flushed table of round 1 and round 2 in
/// its changelog (and, with `flush_twice`, in a second table).
fn store(fs: &ManifestSyncFs, flush_twice: bool) -> Db {
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = Db::open("/db", options().fs(dynfs)).unwrap();
    write_keys(&db, 1);
    db.flush().unwrap();
    write_keys(&db, 2);
    if flush_twice {
        db.flush().unwrap();
    }
    db
}

/// Reopens without power loss (the failed edit is in the manifest as
/// written) and checks every write of round 2.
fn reopen_and_check(fs: &ManifestSyncFs) {
    fs.fail_manifest_sync.store(false, Ordering::SeqCst);
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = Db::open("/db", options().fs(dynfs)).expect("the store reopens");
    assert_keys(&db, 2);
    db.close().unwrap();
}

#[test]
fn a_failed_manifest_sync_during_a_flush_keeps_the_table() {
    let fs = ManifestSyncFs::default();
    let db = store(&fs, false);
    fs.fail_manifest_sync.store(true, Ordering::SeqCst);
    assert!(db.flush().is_err());
    drop(db);
    reopen_and_check(&fs);
}

#[test]
fn a_failed_manifest_sync_during_a_compaction_keeps_its_outputs() {
    let fs = ManifestSyncFs::default();
    let db = store(&fs, true);
    fs.fail_manifest_sync.store(true, Ordering::SeqCst);
    assert!(db.compact_range::<&[u8], _>(..).is_err());
    drop(db);
    reopen_and_check(&fs);
}
