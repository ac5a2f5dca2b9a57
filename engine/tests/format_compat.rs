//! Stores written by an earlier table format still open, read and
//! compact. `tests/golden/store-v1/` is a whole store (manifest,
//! changelog and several tables in more than one level) written by the
//! last release whose tables were format version 1, by
//! [`write_golden_store`] below; it is committed and never rewritten.
//! Opening it must give exactly [`model`], and compacting it must turn
//! every table into the current version without changing a value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use varve_db::internals::sst::Table;
use varve_db::internals::sst::format::FORMAT_VERSION;
use varve_db::varve_changelog::fs::{FileSystem, OpenMode, StdFs};
use varve_db::{Db, Options, WriteBatch};

/// The golden store of format version 1 tables.
fn golden_store() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/store-v1")
}

/// Options the golden store was written with: small memtables, tables
/// and levels, so that its 2,000 keys fill several tables over more than
/// one level.
fn options() -> Options {
    let opts = Options::default()
        .memtable_size_bytes(32 << 10)
        .block_size_bytes(1024)
        .changelog_segment_size_bytes(64 << 10);
    let compaction = opts
        .compaction
        .level0_compaction_trigger(2)
        .target_table_size_bytes(32 << 10)
        .level_base_size_bytes(128 << 10);
    opts.compaction(compaction)
}

/// The writes, in order: batches of puts with values from empty to 600 bytes,
/// and deletes of earlier keys, so tables hold tombstones and versions.
fn writes() -> Vec<WriteBatch> {
    let mut batches = Vec::new();
    for round in 0..ROUNDS {
        let mut batch = WriteBatch::new();
        for i in 0..100u32 {
            let n = (i * 37 + round * 101) % 2000;
            batch.put(key(n), value(n, round));
        }
        if round % 3 == 2 {
            for i in 0..20u32 {
                batch.delete(key((round * 97 + i * 13) % 2000));
            }
        }
        batches.push(batch);
    }
    batches
}

/// Write batches: the last two are written after the others have been
/// flushed and compacted, one then flushed into level 0, the other left
/// in the changelog only.
const ROUNDS: u32 = 22;

fn key(n: u32) -> String {
    format!("key-{n:05}")
}

/// A value of 0 to 599 bytes that depends on the key and the round.
fn value(n: u32, round: u32) -> Vec<u8> {
    let len = ((n * 7919 + round * 104_729) % 600) as usize;
    let text = format!("{n}.{round};");
    text.bytes().cycle().take(len).collect()
}

/// What the store holds after [`writes`].
fn model() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for round in 0..ROUNDS {
        for i in 0..100u32 {
            let n = (i * 37 + round * 101) % 2000;
            model.insert(key(n).into_bytes(), value(n, round));
        }
        if round % 3 == 2 {
            for i in 0..20u32 {
                model.remove(key((round * 97 + i * 13) % 2000).as_bytes());
            }
        }
    }
    model
}

/// Writes the golden store into `$VARVE_WRITE_GOLDEN_STORE` (run on the
/// release whose format the golden is to hold; ignored otherwise).
#[test]
#[ignore = "writes a golden store; run by hand on the release it captures"]
fn write_golden_store() {
    let dir = PathBuf::from(std::env::var_os("VARVE_WRITE_GOLDEN_STORE").expect("target dir"));
    let db = Db::open(&dir, options()).unwrap();
    let mut batches = writes().into_iter();
    for batch in batches.by_ref().take(ROUNDS as usize - 2) {
        db.write(batch, Default::default()).unwrap();
    }
    db.flush().unwrap();
    while db.stats().unwrap().levels[0].tables > 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for (last, batch) in batches.enumerate() {
        db.write(batch, Default::default()).unwrap();
        if last == 0 {
            db.flush().unwrap();
        }
    }
    db.close().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn contents(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// The format version of every table in `dir`.
fn table_versions(dir: &Path) -> Vec<u32> {
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sst") {
            let file = StdFs.open_file(&path, OpenMode::Read).unwrap();
            let table = Table::open(file, path.clone(), 0).unwrap();
            table.verify().unwrap();
            versions.push(table.footer().version);
        }
    }
    versions
}

/// Every key of the model, and keys it does not hold, read by point
/// lookups (which consult each table's filter).
fn check_point_reads(db: &Db, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    for n in 0..2100 {
        let k = key(n);
        let got = db.get(&k).unwrap();
        assert_eq!(
            got.as_deref(),
            model.get(k.as_bytes()).map(Vec::as_slice),
            "{k}"
        );
    }
}

#[test]
fn a_store_of_version_1_tables_opens_reads_and_compacts_to_the_current_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    copy_dir(&golden_store(), &dir);
    let versions = table_versions(&dir);
    assert!(versions.len() >= 3, "golden holds {versions:?}");
    assert!(versions.iter().all(|&v| v == 1), "{versions:?}");
    let model = model();

    let db = Db::open(&dir, options().fs(Arc::new(StdFs))).unwrap();
    assert_eq!(contents(&db), model);
    check_point_reads(&db, &model);
    let levels = db.stats().unwrap().levels;
    assert!(
        levels.iter().filter(|l| l.tables > 0).count() >= 2,
        "{levels:?}"
    );

    // New writes go to current-version tables beside the old ones.
    let mut model = model;
    db.put("key-99999", "new").unwrap();
    model.insert(b"key-99999".to_vec(), b"new".to_vec());
    db.flush().unwrap();
    assert_eq!(contents(&db), model);
    check_point_reads(&db, &model);

    db.compact_range::<&[u8], _>(..).unwrap();
    assert_eq!(contents(&db), model);
    check_point_reads(&db, &model);
    db.close().unwrap();

    let versions = table_versions(&dir);
    assert!(!versions.is_empty());
    assert!(
        versions.iter().all(|&v| v == FORMAT_VERSION),
        "{versions:?}"
    );
    let db = Db::open(&dir, options()).unwrap();
    assert_eq!(contents(&db), model);
    check_point_reads(&db, &model);
}
