//! `Options::manifest_rotate_size_bytes` (issue 15, item 5): the manifest
//! rotates at the size given, a rotated store reopens with every table,
//! and 0 is refused. Power loss during rotation is covered by the
//! exhaustive and power-loss workloads, whose options rotate at 64 bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use varve_db::varve_changelog::fs::{CrashMode, FileSystem, MemFs};
use varve_db::{Db, Error, Options};

fn manifests(fs: &MemFs) -> Vec<String> {
    fs.list_dir(Path::new("/db"))
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("MANIFEST-"))
        .collect()
}

fn flush_many(db: &Db, n: usize) {
    for i in 0..n {
        db.put(format!("key-{i:04}"), format!("value-{i}")).unwrap();
        db.flush().unwrap();
    }
}

#[test]
fn a_small_rotation_size_rotates_and_the_store_reopens_after_power_loss() {
    let fs = MemFs::new();
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let opts = Options::default()
        .manifest_rotate_size_bytes(512)
        .compaction(varve_db::CompactionOptions::default().auto(false));
    let db = Db::open("/db", opts.clone().fs(dynfs.clone())).unwrap();
    flush_many(&db, 40);
    drop(db);
    let names = manifests(&fs);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_ne!(names[0], "MANIFEST-000001", "the manifest never rotated");
    fs.crash(CrashMode::DropAll, 0);
    let db = Db::open("/db", opts.fs(dynfs)).unwrap();
    for i in 0..40 {
        let got = db.get(format!("key-{i:04}")).unwrap();
        assert_eq!(got.as_deref(), Some(format!("value-{i}").as_bytes()));
    }
}

#[test]
fn the_default_does_not_rotate_a_small_manifest() {
    let fs = MemFs::new();
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    assert_eq!(Options::default().manifest_rotate_size_bytes, 4 << 20);
    let db = Db::open("/db", Options::default().fs(dynfs)).unwrap();
    flush_many(&db, 40);
    drop(db);
    assert_eq!(manifests(&fs), ["MANIFEST-000001"]);
}

#[test]
fn a_zero_rotation_size_is_refused() {
    let fs: Arc<dyn FileSystem> = Arc::new(MemFs::new());
    let opts = Options::default().manifest_rotate_size_bytes(0);
    let err = Db::open("/db", opts.fs(fs)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("manifest_rotate_size_bytes")),
        "{err}"
    );
}
