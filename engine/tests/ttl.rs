//! TTL stores: values expire for every kind of read, survive until then and
//! across restarts, compaction removes them without resurrecting older
//! versions, and a store cannot be opened with the wrong TTL setting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use varve_db::{CompactionOptions, Db, Error, ManualClock, Options};

const TTL_MS: u64 = 10_000;
const T0: u64 = 1_700_000_000_000;

fn ttl_opts(clock: &Arc<ManualClock>) -> Options {
    Options::default()
        .ttl(Some(Duration::from_millis(TTL_MS)))
        .clock(clock.clone())
        .compaction(CompactionOptions::default().auto(false))
}

fn open_at(dir: &std::path::Path, now_ms: u64) -> (Arc<ManualClock>, Db) {
    let clock = Arc::new(ManualClock::new(now_ms));
    let db = Db::open(dir, ttl_opts(&clock)).unwrap();
    (clock, db)
}

fn keys(db: &Db) -> Vec<Bytes> {
    db.iter().map(|kv| kv.unwrap().0).collect()
}

/// The value of `key` in `db` as text, if it is there.
fn text(db: &Db, key: &str) -> Option<String> {
    let found = db.get(key).unwrap()?;
    Some(String::from_utf8(found.to_vec()).unwrap())
}

#[test]
fn values_expire_for_get_range_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, db) = open_at(dir.path(), T0);
    db.put("a", "1").unwrap();
    clock.advance(Duration::from_millis(5_000));
    db.put("b", "2").unwrap();
    let snap = db.snapshot();

    // Both alive until the TTL has passed; values come back without the
    // write-time prefix.
    clock.set_ms(T0 + TTL_MS);
    assert_eq!(text(&db, "a").as_deref(), Some("1"));
    assert_eq!(
        db.iter().map(Result::unwrap).collect::<Vec<_>>(),
        vec![
            (Bytes::from("a"), Bytes::from("1")),
            (Bytes::from("b"), Bytes::from("2"))
        ]
    );

    // "a" expires first: get, forward and reverse ranges, prefix, snapshot.
    clock.set_ms(T0 + TTL_MS + 1);
    assert_eq!(db.get("a").unwrap(), None);
    assert!(!db.contains("a").unwrap());
    assert_eq!(keys(&db), vec![Bytes::from("b")]);
    assert_eq!(db.iter().rev().count(), 1);
    assert_eq!(db.prefix("a").count(), 0);
    assert_eq!(snap.get("a").unwrap(), None);
    assert_eq!(snap.get("b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(snap.range::<&[u8], _>(..).count(), 1);
    assert_eq!(
        db.get_all(&["a", "b"]).unwrap(),
        vec![None, Some(Bytes::from("2"))]
    );

    // Flushed to a table: the same.
    db.flush().unwrap();
    assert_eq!(db.get("a").unwrap(), None);
    assert_eq!(text(&db, "b").as_deref(), Some("2"));

    clock.set_ms(T0 + 5_000 + TTL_MS + 1);
    assert_eq!(db.get("b").unwrap(), None);
    assert_eq!(keys(&db), Vec::<Bytes>::new());
    // A rewrite brings a key back with a fresh write time.
    db.put("a", "again").unwrap();
    assert_eq!(text(&db, "a").as_deref(), Some("again"));
}

#[test]
fn store_api_treats_expired_keys_as_absent() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, db) = open_at(dir.path(), T0);
    db.put("k", "old").unwrap();
    let v1 = db.get_versioned("k").unwrap().unwrap();
    assert_eq!(v1.value, "old");
    clock.advance(Duration::from_millis(TTL_MS + 1));
    assert!(db.get_versioned("k").unwrap().is_none());
    assert_eq!(db.remove("k").unwrap(), None);
    assert_eq!(db.put_if_absent("k", "new").unwrap(), None);
    assert_eq!(text(&db, "k").as_deref(), Some("new"));
    let version = db.get_versioned("k").unwrap().unwrap().version;
    clock.advance(Duration::from_millis(TTL_MS + 1));
    assert!(matches!(
        db.compare_and_put("k", Some(version), "x"),
        Err(Error::Conflict { actual: None, .. })
    ));
    db.compare_and_put("k", None, "fresh").unwrap();
    assert_eq!(text(&db, "k").as_deref(), Some("fresh"));
}

#[test]
fn the_changelog_keeps_plain_values_with_write_times() {
    let dir = tempfile::tempdir().unwrap();
    let (_clock, db) = open_at(dir.path(), T0);
    db.put("k", "value").unwrap();
    let records: Vec<_> = db
        .changelog()
        .reader(0)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record.value.as_deref(), Some(&b"value"[..]));
    assert_eq!(records[0].record.timestamp_ms, T0 as i64);
}

#[test]
fn expiry_times_survive_a_restart() {
    for flush in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (_clock, db) = open_at(dir.path(), T0);
        db.put("k", "v").unwrap();
        if flush {
            db.flush().unwrap();
        }
        db.close().unwrap();

        // Reopened later (replaying the changelog, or reading the table):
        // the write time is the record's, not the reopen's.
        let (clock, db) = open_at(dir.path(), T0 + TTL_MS);
        assert_eq!(
            db.get("k").unwrap().as_deref(),
            Some(&b"v"[..]),
            "flush {flush}"
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(db.get("k").unwrap(), None, "flush {flush}");
    }
}

#[test]
fn compaction_removes_expired_data() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, db) = open_at(dir.path(), T0);
    let value = vec![7u8; 1000];
    for i in 0..500 {
        db.put(format!("key{i:04}"), value.clone()).unwrap();
    }
    clock.advance(Duration::from_millis(TTL_MS / 2));
    for i in 0..10 {
        db.put(format!("live{i:02}"), "stays").unwrap();
    }
    db.compact_range::<&[u8], _>(..).unwrap();
    let before = db.stats().unwrap();
    assert_eq!(db.approximate_num_entries(), 510);

    clock.advance(Duration::from_millis(TTL_MS / 2 + 1));
    assert_eq!(db.iter().count(), 10);
    db.compact_range::<&[u8], _>(..).unwrap();
    let after = db.stats().unwrap();
    assert!(
        after.table_bytes * 10 < before.table_bytes,
        "tables shrink: {} -> {}",
        before.table_bytes,
        after.table_bytes
    );
    assert_eq!(db.approximate_num_entries(), 10);
    assert_eq!(db.metrics().expired_entries_compacted, 500);
    assert_eq!(db.iter().count(), 10);
    assert_eq!(text(&db, "live03").as_deref(), Some("stays"));
}

/// The newer version of a key expires while an older one does not (the
/// clock went back between the writes): the key must stay absent, and
/// compacting both together must not bring the older one back.
#[test]
fn an_expired_newer_version_never_resurrects_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, db) = open_at(dir.path(), T0 + 100_000);
    db.put("k", "older").unwrap();
    db.compact_range::<&[u8], _>(..).unwrap(); // to the last level
    clock.set_ms(T0); // the clock steps back
    db.put("k", "newer").unwrap();
    db.flush().unwrap(); // L0
    clock.set_ms(T0 + TTL_MS + 1); // "newer" expired, "older" not
    assert_eq!(db.get("k").unwrap(), None);
    db.compact_range::<&[u8], _>(..).unwrap();
    assert_eq!(db.get("k").unwrap(), None);
    assert_eq!(db.iter().count(), 0);
    db.close().unwrap();
    let (_clock, db) = open_at(dir.path(), T0 + TTL_MS + 1);
    assert_eq!(db.get("k").unwrap(), None);
}

#[test]
fn a_snapshot_keeps_expired_versions_as_tombstones_not_older_values() {
    let dir = tempfile::tempdir().unwrap();
    let (clock, db) = open_at(dir.path(), T0 + 100_000);
    db.put("k", "older").unwrap();
    db.flush().unwrap();
    clock.set_ms(T0);
    db.put("k", "newer").unwrap();
    let snap = db.snapshot();
    db.put("other", "x").unwrap();
    db.flush().unwrap();
    clock.set_ms(T0 + TTL_MS + 1);
    db.compact_range::<&[u8], _>(..).unwrap();
    assert_eq!(snap.get("k").unwrap(), None);
    assert_eq!(db.get("k").unwrap(), None);
}

#[test]
fn ttl_setting_mismatch_is_refused() {
    // A TTL store opened without a TTL.
    let dir = tempfile::tempdir().unwrap();
    let (_clock, db) = open_at(dir.path(), T0);
    db.put("k", "v").unwrap();
    db.close().unwrap();
    let e = Db::open(dir.path(), Options::default()).unwrap_err();
    assert!(
        matches!(&e, Error::IncompatibleOptions { option: "ttl", stored, given, .. }
            if stored == "10000 ms" && given == "none"),
        "{e}"
    );
    // A changed duration is accepted and recorded.
    let clock = Arc::new(ManualClock::new(T0 + 15_000));
    let longer = ttl_opts(&clock).ttl(Some(Duration::from_secs(20)));
    let db = Db::open(dir.path(), longer.clone()).unwrap();
    assert_eq!(text(&db, "k").as_deref(), Some("v"));
    db.close().unwrap();
    let db = Db::open(dir.path(), longer).unwrap();
    drop(db);

    // A plain store opened with a TTL.
    let plain = tempfile::tempdir().unwrap();
    Db::open(plain.path(), Options::default())
        .unwrap()
        .close()
        .unwrap();
    let e = Db::open(plain.path(), ttl_opts(&clock)).unwrap_err();
    assert!(
        matches!(&e, Error::IncompatibleOptions { option: "ttl", stored, .. } if stored == "none"),
        "{e}"
    );
    // Refused opens changed nothing: the plain store still opens plain.
    Db::open(plain.path(), Options::default()).unwrap();
}

#[test]
fn zero_ttl_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().ttl(Some(Duration::ZERO));
    assert!(matches!(
        Db::open(dir.path(), opts),
        Err(Error::InvalidArgument(_))
    ));
}

mod model {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use proptest::prelude::*;
    use varve_db::{Clock as _, CompactionOptions, Db, ManualClock, Options};

    const TTL_MS: u64 = 100;

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        Advance(u64),
        Flush,
        Compact,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..16, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => (0u8..16).prop_map(Op::Delete),
            4 => (0u64..60).prop_map(Op::Advance),
            1 => Just(Op::Flush),
            1 => Just(Op::Compact),
            1 => Just(Op::Reopen),
        ]
    }

    fn opts(clock: &Arc<ManualClock>) -> Options {
        Options::default()
            .ttl(Some(Duration::from_millis(TTL_MS)))
            .clock(clock.clone())
            .compaction(CompactionOptions::default().auto(false))
    }

    fn key(k: u8) -> Bytes {
        Bytes::from(format!("key{k:02}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// Reads of a TTL store match a model of (value, write time) under
        /// flushes, compactions and reopens with a clock moving forward.
        #[test]
        fn reads_match_a_model_with_expiry(ops in proptest::collection::vec(op(), 1..80)) {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(ManualClock::new(1_000_000));
            let mut db = Some(Db::open(dir.path(), opts(&clock)).unwrap());
            let mut model: BTreeMap<Bytes, (Bytes, u64)> = BTreeMap::new();
            for op in ops {
                let d = db.as_ref().unwrap();
                match op {
                    Op::Put(k, v) => {
                        d.put(key(k), vec![v]).unwrap();
                        model.insert(key(k), (Bytes::from(vec![v]), clock.now_ms()));
                    }
                    Op::Delete(k) => {
                        d.delete(key(k)).unwrap();
                        model.remove(&key(k));
                    }
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                    Op::Flush => d.flush().unwrap(),
                    Op::Compact => d.compact_range::<&[u8], _>(..).unwrap(),
                    Op::Reopen => {
                        db.take().unwrap().close().unwrap();
                        db = Some(Db::open(dir.path(), opts(&clock)).unwrap());
                    }
                }
                let d = db.as_ref().unwrap();
                let now = clock.now_ms();
                let live: Vec<(Bytes, Bytes)> = model
                    .iter()
                    .filter(|(_, (_, w))| now - w <= TTL_MS)
                    .map(|(k, (v, _))| (k.clone(), v.clone()))
                    .collect();
                let got: Vec<_> = d.iter().map(Result::unwrap).collect();
                prop_assert_eq!(&got, &live);
                for k in 0..16 {
                    let want = live.iter().find(|(lk, _)| *lk == key(k)).map(|(_, v)| v.clone());
                    prop_assert_eq!(d.get(key(k)).unwrap(), want);
                }
            }
        }
    }
}
