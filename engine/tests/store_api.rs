//! The state-store API: bulk writes, reverse ranges, entry estimates and
//! atomic conditional writes with versions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use varve_db::{Db, Error, Options};

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    (dir, db)
}

#[test]
fn put_all_delete_all_and_reverse_range() {
    let (_dir, db) = open();
    db.put_all((0..10).map(|i| (format!("k{i}"), format!("v{i}"))))
        .unwrap();
    db.delete_all(["k3", "k5", "absent"]).unwrap();
    let keys: Vec<Bytes> = db
        .reverse_range("k2".."k7")
        .map(|kv| kv.unwrap().0)
        .collect();
    assert_eq!(keys, ["k6", "k4", "k2"].map(Bytes::from));
    assert_eq!(
        db.get_all(&["k3", "k4"]).unwrap(),
        vec![None, Some(Bytes::from("v4"))]
    );
    let latest = db.latest_seqno();
    assert_eq!(latest, 13, "one offset per record: 10 puts and 3 deletes");
}

#[test]
fn approximate_num_entries_tracks_the_store() {
    let (_dir, db) = open();
    assert_eq!(db.approximate_num_entries(), 0);
    db.put_all((0..1000).map(|i| (format!("k{i:04}"), "v")))
        .unwrap();
    assert_eq!(db.approximate_num_entries(), 1000);
    db.flush().unwrap();
    assert_eq!(db.approximate_num_entries(), 1000);
    db.delete_all((0..100).map(|i| format!("k{i:04}"))).unwrap();
    db.compact_range::<&[u8], _>(..).unwrap();
    assert_eq!(db.approximate_num_entries(), 900);
}

#[test]
fn versions_are_sequence_numbers() {
    let (_dir, db) = open();
    assert_eq!(db.get_versioned("a").unwrap(), None);
    db.put("a", "1").unwrap();
    let v = db.get_versioned("a").unwrap().unwrap();
    assert_eq!((v.value, v.version), (Bytes::from("1"), db.latest_seqno()));
    db.flush().unwrap();
    assert_eq!(db.get_versioned("a").unwrap().unwrap().version, v.version);
    db.delete("a").unwrap();
    assert_eq!(db.get_versioned("a").unwrap(), None);
}

#[test]
fn put_if_absent_and_remove() {
    let (_dir, db) = open();
    assert_eq!(db.put_if_absent("k", "first").unwrap(), None);
    assert_eq!(
        db.put_if_absent("k", "second").unwrap(),
        Some(Bytes::from("first"))
    );
    assert_eq!(db.get("k").unwrap(), Some(Bytes::from("first")));
    let before = db.latest_seqno();
    assert_eq!(db.remove("k").unwrap(), Some(Bytes::from("first")));
    assert_eq!(db.get("k").unwrap(), None);
    assert_eq!(db.remove("k").unwrap(), None);
    assert_eq!(
        db.latest_seqno(),
        before + 1,
        "removing an absent key writes nothing"
    );
    assert!(matches!(
        db.put_if_absent(vec![0u8; 70_000], "x"),
        Err(Error::KeyTooLarge { .. })
    ));
}

#[test]
fn compare_and_put_detects_conflicts() {
    let (_dir, db) = open();
    let v1 = db.compare_and_put("c", None, "1").unwrap();
    let err = db.compare_and_put("c", None, "again").unwrap_err();
    assert!(matches!(err, Error::Conflict { expected: None, actual: Some(v) } if v == v1));
    let v2 = db.compare_and_put("c", Some(v1), "2").unwrap();
    assert!(v2 > v1);
    let err = db.compare_and_put("c", Some(v1), "3").unwrap_err();
    assert!(err.to_string().contains("conflict"), "{err}");
    assert_eq!(db.get("c").unwrap(), Some(Bytes::from("2")));
    db.delete("c").unwrap();
    assert!(db.compare_and_put("c", Some(v2), "4").is_err());
    db.compare_and_put("c", None, "5").unwrap();
}

/// Threads increment one counter with compare-and-put retries while other
/// threads write unrelated keys: no increment is lost.
#[test]
fn concurrent_compare_and_put_loses_no_increment() {
    let (_dir, db) = open();
    let db = Arc::new(db);
    let threads = 4;
    let per_thread = 200;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    db.put(format!("noise-{t}-{i}"), "x").unwrap();
                    loop {
                        let current = db.get_versioned("counter").unwrap();
                        let (n, version) = match &current {
                            Some(v) => (
                                std::str::from_utf8(&v.value)
                                    .unwrap()
                                    .parse::<u64>()
                                    .unwrap(),
                                Some(v.version),
                            ),
                            None => (0, None),
                        };
                        match db.compare_and_put("counter", version, (n + 1).to_string()) {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let total = (threads * per_thread).to_string();
    assert_eq!(db.get("counter").unwrap(), Some(Bytes::from(total)));
}

/// The version `compare_and_put` returns is that of the caller's own
/// write, even while other threads write: a writer that chains its
/// updates on the returned version never meets a spurious conflict.
#[test]
fn compare_and_put_returns_its_own_version_under_concurrent_writes() {
    let (_dir, db) = open();
    let db = Arc::new(db);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = (0..3)
        .map(|t| {
            let (db, stop) = (db.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    db.put(format!("noise-{t}-{}", i % 100), "x").unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let mut version = None;
    for n in 0..2000u64 {
        let v = db
            .compare_and_put("mine", version, n.to_string())
            .unwrap_or_else(|e| panic!("update {n} with the version returned before: {e}"));
        assert_eq!(
            db.get_versioned("mine").unwrap().map(|x| x.version),
            Some(v),
            "update {n}: the returned version is not the key's"
        );
        version = Some(v);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in noise {
        t.join().unwrap();
    }
}
