//! `ReadOnlyDb`: reads what `Db::open` would, changes no file (bytes,
//! sizes, modification times and directory entries are compared before
//! and after), leaves a torn tail on disk, applies the recorded TTL, and
//! refuses a store that is open elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use varve_db::{Db, Error, ManualClock, Options, PartitionedStore, ReadOnlyDb};

/// Every file under `dir` (recursively) with its bytes and modification
/// time, and every directory.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(path.clone(), (Vec::new(), meta.modified().unwrap()));
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path, (bytes, meta.modified().unwrap()));
            }
        }
    }
    out
}

fn last_segment(dir: &Path) -> PathBuf {
    let log = dir.join(varve_db::CHANGELOG_DIR);
    let mut segs: Vec<_> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// A store with tables, an unflushed tail, and a torn batch at the end of
/// its changelog.
fn store_with_torn_tail(dir: &Path) {
    let db = Db::open(dir, Options::default()).unwrap();
    for i in 0..50 {
        db.put(format!("k{i:02}"), format!("table {i}")).unwrap();
    }
    db.flush().unwrap();
    db.put("k00", "tail").unwrap();
    db.delete("k01").unwrap();
    db.close().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(last_segment(dir))
        .unwrap();
    f.write_all(&[0x5a; 97]).unwrap();
}

#[test]
fn read_only_open_changes_no_file_and_leaves_a_torn_tail_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    store_with_torn_tail(dir.path());
    let before = snapshot(dir.path());
    std::thread::sleep(Duration::from_millis(20));
    {
        let ro = ReadOnlyDb::open(dir.path(), Options::default()).unwrap();
        assert_eq!(ro.get("k00").unwrap().as_deref(), Some(&b"tail"[..]));
        assert_eq!(ro.get("k01").unwrap(), None);
        assert_eq!(ro.get("k02").unwrap().as_deref(), Some(&b"table 2"[..]));
        assert_eq!(ro.iter().count(), 49);
        assert_eq!(ro.iter().next_back().unwrap().unwrap().0, "k49");
        let torn = ro.changelog_end().torn_tail.clone().unwrap();
        assert_eq!(torn.2, 97, "the torn tail is reported: {torn:?}");
        assert_eq!(ro.latest_seqno(), 52);
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a read-only open changed files"
    );
    // Opening for writing cuts the tail and sees the same data.
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("k00").unwrap().as_deref(), Some(&b"tail"[..]));
    assert_eq!(db.iter().count(), 49);
}

#[test]
fn read_only_open_refuses_a_store_open_elsewhere_and_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.put("k", "v").unwrap();
    let err = ReadOnlyDb::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    db.close().unwrap();
    let ro = Db::open_read_only(dir.path(), Options::default()).unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(ro);
    Db::open(dir.path(), Options::default()).unwrap();
}

#[test]
fn read_only_open_applies_the_recorded_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let opts = Options::default()
        .ttl(Some(Duration::from_secs(60)))
        .clock(clock.clone());
    let db = Db::open(dir.path(), opts).unwrap();
    db.put("old", "in a table").unwrap();
    db.flush().unwrap();
    clock.advance(Duration::from_secs(50));
    db.put("new", "in the changelog").unwrap();
    db.close().unwrap();
    let read = |ms_later: u64| {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000 + ms_later));
        let opts = Options::default().clock(clock);
        let ro = ReadOnlyDb::open(dir.path(), opts).unwrap();
        let all: Vec<_> = ro.iter().map(|kv| kv.unwrap()).collect();
        (ro.get("old").unwrap(), ro.get("new").unwrap(), all.len())
    };
    let recorded = Options::default().recorded(dir.path()).unwrap();
    assert_eq!(recorded.ttl, Some(Duration::from_secs(60)));
    let (old, new, n) = read(55_000);
    assert_eq!(
        old.as_deref(),
        Some(&b"in a table"[..]),
        "no write-time prefix"
    );
    assert_eq!(new.as_deref(), Some(&b"in the changelog"[..]));
    assert_eq!(n, 2);
    let (old, new, n) = read(70_000);
    assert_eq!((old, n), (None, 1), "the expired value is hidden");
    assert!(new.is_some());
    let plain = tempfile::tempdir().unwrap();
    Db::open(plain.path(), Options::default()).unwrap();
    let ttl = Options::default().ttl(Some(Duration::from_secs(1)));
    let err = ReadOnlyDb::open(plain.path(), ttl).unwrap_err();
    assert!(matches!(err, Error::IncompatibleOptions { .. }), "{err}");
}

#[test]
fn read_only_open_refuses_damaged_durable_data_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for i in 0..20 {
        db.put(format!("k{i}"), "v").unwrap();
    }
    db.close().unwrap();
    let seg = last_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[60] ^= 0xff; // inside the first batch, below the recovery point
    std::fs::write(&seg, bytes).unwrap();
    let before = snapshot(dir.path());
    let err = ReadOnlyDb::open(dir.path(), Options::default()).unwrap_err();
    assert!(
        matches!(err, Error::Changelog(_) | Error::Corruption { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(".log"), "names the segment: {err}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn read_only_open_creates_nothing_and_names_a_partitioned_root() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("missing");
    let err = ReadOnlyDb::open(&missing, Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert!(!missing.exists());
    let root = parent.path().join("root");
    PartitionedStore::open(&root, 3, Options::default())
        .unwrap()
        .close()
        .unwrap();
    let err = ReadOnlyDb::open(&root, Options::default()).unwrap_err();
    assert!(
        err.to_string().contains("partitioned store (3 partitions)"),
        "{err}"
    );
    let part = varve_db::partition_dir(&root, 1);
    assert_eq!(
        ReadOnlyDb::open(&part, Options::default())
            .unwrap()
            .iter()
            .count(),
        0
    );
}
