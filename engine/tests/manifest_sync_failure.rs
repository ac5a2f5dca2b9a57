//! A failed sync of the manifest while installing a flush or a compaction
//! leaves the edit's durability unknown: it may be on disk. The tables it
//! added must then be kept, so a reopen without power loss (which reads
//! the edit back) finds them, and every write is still served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use varve_db::testing::{InterceptFs, MemFs, OpKind, manual_compaction};
use varve_db::{Db, WriteBatch, WriteOptions};

/// `MemFs`, but syncs of a manifest fail while `fail_manifest_sync` is set
/// (after the data is written, as a real failed `fdatasync` may be).
struct ManifestSyncFs {
    fs: InterceptFs,
    fail_manifest_sync: Arc<AtomicBool>,
}

impl Default for ManifestSyncFs {
    fn default() -> Self {
        let fail_manifest_sync = Arc::new(AtomicBool::new(false));
        let fail = fail_manifest_sync.clone();
        let fs = InterceptFs::new(Arc::new(MemFs::new()), move |op| {
            if op.kind == OpKind::SyncData
                && op.name_starts_with("MANIFEST-")
                && fail.load(Ordering::SeqCst)
            {
                return Err(io::Error::other("injected manifest sync failure"));
            }
            Ok(())
        });
        ManifestSyncFs {
            fs,
            fail_manifest_sync,
        }
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

/// A store on `fs` holding one flushed table of round 1 and round 2 in
/// its changelog (and, with `flush_twice`, in a second table).
fn store(fs: &ManifestSyncFs, flush_twice: bool) -> Db {
    let db = Db::open("/db", manual_compaction().fs(Arc::new(fs.fs.clone()))).unwrap();
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
    let db = Db::open("/db", manual_compaction().fs(Arc::new(fs.fs.clone())))
        .expect("the store reopens");
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
