//! The public API of `Db`, end to end on the real file system.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use varve_db::{Db, Error, Options, WriteBatch, WriteOptions};

fn small() -> Options {
    Options::default().memtable_size_bytes(16 << 10)
}

fn keys(iter: varve_db::Iter) -> Vec<String> {
    iter.map(|kv| String::from_utf8(kv.unwrap().0.to_vec()).unwrap())
        .collect()
}

#[test]
fn put_get_delete_contains_get_all() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.put("a", "1").unwrap();
    db.put("b", "2").unwrap();
    db.delete("a").unwrap();
    assert_eq!(db.get("a").unwrap(), None);
    assert_eq!(db.get("b").unwrap(), Some(Bytes::from("2")));
    assert!(db.contains("b").unwrap());
    assert!(!db.contains("zzz").unwrap());
    let got = db.get_all(&["a", "b", "c"]).unwrap();
    assert_eq!(got, vec![None, Some(Bytes::from("2")), None]);
    db.put("", "empty key").unwrap();
    assert_eq!(db.get("").unwrap(), Some(Bytes::from("empty key")));
}

#[test]
fn batch_is_atomic_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut batch = WriteBatch::new();
    batch.put("k", "1").put("k", "2").delete("x").put("y", "3");
    db.write(batch, WriteOptions::default().sync(true)).unwrap();
    assert_eq!(
        db.get("k").unwrap(),
        Some(Bytes::from("2")),
        "later op in a batch wins"
    );
    assert_eq!(
        db.changelog().next_offset(),
        4,
        "one changelog record per operation"
    );
    assert!(db.changelog().synced_offset() >= 4, "sync write is durable");
}

#[test]
fn ranges_forward_reverse_prefix_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for i in 0..500u32 {
        db.put(format!("k{i:04}"), format!("v{i}")).unwrap();
        if i % 100 == 50 {
            db.flush().unwrap();
        }
    }
    for i in (0..500u32).step_by(3) {
        db.delete(format!("k{i:04}")).unwrap();
    }
    let all = keys(db.iter());
    let want: Vec<String> = (0..500u32)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("k{i:04}"))
        .collect();
    assert_eq!(all, want);
    let rev: Vec<String> = db
        .iter()
        .rev()
        .map(|kv| String::from_utf8(kv.unwrap().0.to_vec()).unwrap())
        .collect();
    assert_eq!(rev, want.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(
        keys(db.range("k0010".."k0014")),
        vec!["k0010", "k0011", "k0013"]
    );
    assert_eq!(
        keys(db.range("k0010"..="k0014")),
        vec!["k0010", "k0011", "k0013", "k0014"]
    );
    assert_eq!(keys(db.range(.."k0002")), vec!["k0001"]);
    assert_eq!(keys(db.prefix("k049")).len(), 7);
    let mut both = db.range("k0100".."k0110");
    let first = both.next().unwrap().unwrap().0;
    let last = both.next_back().unwrap().unwrap().0;
    assert_eq!((&first[..], &last[..]), (&b"k0100"[..], &b"k0109"[..]));
    let middle: Vec<_> = both.map(|kv| kv.unwrap().0).collect();
    assert_eq!(middle.len(), 5, "front and back meet without overlap");
}

#[test]
fn prefix_of_ff_bytes_is_unbounded_above() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.put(vec![0xffu8, 0xff, 1], "x").unwrap();
    db.put(vec![0xffu8], "y").unwrap();
    db.put(vec![0xfeu8], "z").unwrap();
    assert_eq!(db.prefix([0xffu8]).count(), 2);
}

#[test]
fn iterators_see_a_fixed_view_and_do_not_block_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for i in 0..100u32 {
        db.put(format!("k{i:03}"), "old").unwrap();
    }
    let mut iter = db.iter();
    let first = iter.next().unwrap().unwrap();
    for i in 0..100u32 {
        db.put(format!("k{i:03}"), "new").unwrap();
    }
    db.put("k999", "added").unwrap();
    db.flush().unwrap();
    let rest: Vec<_> = iter.map(|kv| kv.unwrap()).collect();
    assert_eq!(first.1, Bytes::from("old"));
    assert_eq!(rest.len(), 99);
    assert!(rest.iter().all(|(_, v)| v == &Bytes::from("old")));
}

#[test]
fn snapshots_survive_flush_and_reads_through_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    db.put("k", "v1").unwrap();
    db.put("gone", "here").unwrap();
    let snap = db.snapshot();
    db.put("k", "v2").unwrap();
    db.delete("gone").unwrap();
    db.flush().unwrap();
    assert_eq!(snap.get("k").unwrap(), Some(Bytes::from("v1")));
    assert_eq!(snap.get("gone").unwrap(), Some(Bytes::from("here")));
    assert_eq!(snap.range::<&str, _>(..).count(), 2);
    assert_eq!(snap.prefix("go").count(), 1);
    assert_eq!(db.get("k").unwrap(), Some(Bytes::from("v2")));
    assert_eq!(db.get("gone").unwrap(), None);
}

#[test]
fn reopen_recovers_flushed_and_unflushed_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), small()).unwrap();
        for i in 0..2_000u32 {
            db.put(format!("k{i:05}"), format!("v{i}")).unwrap();
        }
        db.flush().unwrap();
        for i in 0..100u32 {
            db.put(format!("k{i:05}"), "after flush").unwrap();
        }
        db.delete("k01999").unwrap();
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), small()).unwrap();
    assert_eq!(db.get("k00000").unwrap(), Some(Bytes::from("after flush")));
    assert_eq!(db.get("k01500").unwrap(), Some(Bytes::from("v1500")));
    assert_eq!(db.get("k01999").unwrap(), None);
    assert_eq!(db.iter().count(), 1_999);
    db.put("new", "write").unwrap();
    assert_eq!(
        db.latest_seqno(),
        2_102,
        "sequence numbers continue from the changelog (offset + 1)"
    );
}

#[test]
fn flush_trims_the_changelog_until_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small().changelog_segment_size_bytes(64 << 10);
    let db = Db::open(dir.path(), opts).unwrap();
    for i in 0..5_000u32 {
        db.put(format!("k{i:05}"), vec![b'x'; 100]).unwrap();
    }
    db.flush().unwrap();
    assert!(
        db.changelog().log_start_offset() > 0,
        "segments below the flushed offset were deleted"
    );
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _db = Db::open(dir.path(), Options::default()).unwrap();
    assert!(matches!(
        Db::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn foreign_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("photo.jpg"), "not a store").unwrap();
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing written"
    );
    let missing = dir.path().join("missing");
    let no_create = Options::default().create_if_missing(false);
    assert!(matches!(
        Db::open(&missing, no_create),
        Err(Error::NotAStore { .. })
    ));
}

#[test]
fn limits_and_bad_options_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let big_key = vec![0u8; varve_db::MAX_KEY_SIZE_BYTES + 1];
    assert!(matches!(
        db.put(big_key.clone(), "v"),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(db.get(&big_key), Err(Error::KeyTooLarge { .. })));
    let big_value = vec![0u8; varve_db::MAX_VALUE_SIZE_BYTES + 1];
    assert!(matches!(
        db.put("k", big_value),
        Err(Error::ValueTooLarge { .. })
    ));
    assert_eq!(db.changelog().next_offset(), 0, "nothing was written");
    let bad = Options::default().memtable_size_bytes(1);
    assert!(matches!(
        Db::open(dir.path().join("x"), bad),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn closed_store_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        db.put("k", "v").unwrap();
        // Dropped without close: still synced on drop.
    }
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("k").unwrap(), Some(Bytes::from("v")));
}
