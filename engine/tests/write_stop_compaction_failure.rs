//! Writers held by a write stop while compaction keeps failing get the
//! compaction's error instead of waiting for ever (found by the `tmpfs`
//! ENOSPC test: on a full disk every compaction failed, L0 reached the
//! stop trigger, and a `sync: true` writer hung).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use varve::varve_changelog::fs::{DirLock, File, FileSystem, MemFs, OpenMode};
use varve::{CompactionOptions, Db, Options};

/// A file system whose table reads fail while `fail` is set: flushes
/// (which only write tables) work, compactions (which read them) fail.
#[derive(Debug, Clone)]
struct FailingTableReads {
    inner: MemFs,
    fail: Arc<AtomicBool>,
}

#[derive(Debug)]
struct TableFile {
    inner: Arc<dyn File>,
    table: bool,
    fail: Arc<AtomicBool>,
}

impl File for TableFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.table && self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected table read failure"));
        }
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.inner.set_len(len_bytes)
    }
}

impl FileSystem for FailingTableReads {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn File>> {
        Ok(Arc::new(TableFile {
            inner: self.inner.open_file(path, mode)?,
            table: path.extension().is_some_and(|e| e == "sst"),
            fail: self.fail.clone(),
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

#[test]
fn a_write_stop_with_failing_compactions_returns_an_error_not_a_hang() {
    let fs = FailingTableReads {
        inner: MemFs::new(),
        fail: Arc::default(),
    };
    let opts = Options::default()
        .memtable_size_bytes(4096)
        .max_immutable_memtables(1)
        .compaction(
            CompactionOptions::default()
                .level0_compaction_trigger(2)
                .level0_slowdown_trigger(2)
                .level0_stop_trigger(3),
        );
    let db = Arc::new(Db::open("/db", opts.fs(Arc::new(fs.clone()))).unwrap());
    fs.fail.store(true, Ordering::SeqCst);
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..2_000u32 {
                let value = vec![b'v'; 200];
                if let Err(e) = db.put(format!("key-{:03}", i % 50), value) {
                    return Some(e);
                }
            }
            None
        })
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(writer.join().unwrap()));
    let error = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the writer hung in a write stop while compaction kept failing")
        .expect("2,000 writes succeeded although no compaction could run");
    assert!(
        error.to_string().contains("injected table read failure"),
        "{error}"
    );
    // Compactions work again: so do writes.
    fs.fail.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match db.put("after", "ok") {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("still refused: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("writes never resumed: {e}"),
        }
    }
    assert_eq!(db.get("after").unwrap().as_deref(), Some(&b"ok"[..]));
}
