//! Partitioned stores: routing by Kafka's default partitioner, reopening,
//! a fixed partition count, a damaged `PARTITIONS` file and merged ranges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use varve_db::testing::small_options;
use varve_db::varve_changelog::partitioner::partition_for_key;
use varve_db::{
    Error, Options, PARTITIONS_FILE, PartitionedStore, WriteBatch, WriteOptions, partition_dir,
};

fn small() -> Options {
    small_options().cache_size_bytes(0)
}

#[test]
fn keys_land_in_the_partition_kafka_picks() {
    let dir = tempfile::tempdir().unwrap();
    let store = PartitionedStore::open(dir.path(), 7, small()).unwrap();
    for i in 0..200 {
        let key = format!("key-{i}");
        store.put(key.clone(), format!("v{i}")).unwrap();
        let p = partition_for_key(key.as_bytes(), 7);
        assert_eq!(store.partition_for(&key), p);
        for q in 0..7 {
            let found = store.partition(q).get(&key).unwrap();
            assert_eq!(found.is_some(), q == p, "key {key} in partition {q}");
        }
    }
    assert!(partition_dir(dir.path(), 6).join("CURRENT").exists());
}

#[test]
fn reopen_keeps_data_and_wrong_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = PartitionedStore::open(dir.path(), 3, small()).unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..50 {
        batch.put(format!("k{i:02}"), format!("v{i}"));
    }
    store
        .write(batch, WriteOptions::default().sync(true))
        .unwrap();
    store.close().unwrap();

    match PartitionedStore::open(dir.path(), 4, small()) {
        Err(Error::IncompatibleOptions {
            option,
            stored,
            given,
            ..
        }) => {
            assert_eq!(
                (option, stored.as_str(), given.as_str()),
                ("partitions", "3", "4")
            );
        }
        other => panic!("expected IncompatibleOptions, got {other:?}"),
    }
    // Nothing was created by the refused open.
    assert!(!partition_dir(dir.path(), 3).exists());

    let store = PartitionedStore::open(dir.path(), 3, small()).unwrap();
    for i in 0..50 {
        let key = format!("k{i:02}");
        assert_eq!(store.get(&key).unwrap(), Some(Bytes::from(format!("v{i}"))));
    }
    assert_eq!(store.iter().count(), 50);
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _store = PartitionedStore::open(dir.path(), 2, small()).unwrap();
    let again = PartitionedStore::open(dir.path(), 2, small());
    assert!(matches!(again, Err(Error::Locked { .. })), "{again:?}");
}

fn damaged(edit: impl FnOnce(&mut Vec<u8>)) -> Error {
    let dir = tempfile::tempdir().unwrap();
    PartitionedStore::open(dir.path(), 2, small())
        .unwrap()
        .close()
        .unwrap();
    let path = dir.path().join(PARTITIONS_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    PartitionedStore::open(dir.path(), 2, small()).unwrap_err()
}

fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32fast::hash(&bytes[0..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn flipped_count_is_corruption() {
    let e = damaged(|b| b[12] ^= 1);
    assert!(matches!(e, Error::Corruption { offset: 16, .. }), "{e}");
}

#[test]
fn truncated_file_is_corruption() {
    let e = damaged(|b| b.truncate(10));
    assert!(matches!(e, Error::Corruption { offset: 0, .. }), "{e}");
}

#[test]
fn bad_magic_is_corruption() {
    let e = damaged(|b| {
        b[0] = b'X';
        fix_crc(b);
    });
    assert!(matches!(e, Error::Corruption { offset: 0, .. }), "{e}");
}

#[test]
fn zero_count_is_corruption() {
    let e = damaged(|b| {
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        fix_crc(b);
    });
    assert!(matches!(e, Error::Corruption { offset: 12, .. }), "{e}");
}

#[test]
fn newer_version_is_unsupported() {
    let e = damaged(|b| {
        b[8] = 2;
        fix_crc(b);
    });
    assert!(
        matches!(e, Error::UnsupportedVersion { found: 2, .. }),
        "{e}"
    );
}

#[test]
fn missing_file_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    PartitionedStore::open(dir.path(), 2, small())
        .unwrap()
        .close()
        .unwrap();
    std::fs::remove_file(dir.path().join(PARTITIONS_FILE)).unwrap();
    let e = PartitionedStore::open(dir.path(), 2, small()).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e}");
}

#[test]
fn zero_partitions_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let e = PartitionedStore::open(dir.path(), 0, small()).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        any::<u8>().prop_map(Op::Delete),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn merged_ranges_match_a_btreemap(ops in proptest::collection::vec(op(), 1..120),
                                      lo in any::<u8>(), hi in any::<u8>(), flush_at in 0usize..120) {
        let dir = tempfile::tempdir().unwrap();
        let store = PartitionedStore::open(dir.path(), 4, small()).unwrap();
        let mut model = BTreeMap::new();
        let key = |k: u8| Bytes::from(format!("key{k:03}"));
        for (i, op) in ops.iter().enumerate() {
            if i == flush_at {
                store.flush().unwrap();
            }
            match *op {
                Op::Put(k, v) => {
                    store.put(key(k), vec![v]).unwrap();
                    model.insert(key(k), Bytes::from(vec![v]));
                }
                Op::Delete(k) => {
                    store.delete(key(k)).unwrap();
                    model.remove(&key(k));
                }
            }
        }
        let (lo, hi) = (key(lo.min(hi)), key(lo.max(hi)));
        let got: Vec<_> = store.range(lo.clone()..hi.clone()).map(Result::unwrap).collect();
        let want: Vec<_> = model.range(lo..hi).map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(got, want);
        let all: Vec<_> = store.iter().map(Result::unwrap).collect();
        let want_all: Vec<_> = model.into_iter().collect();
        prop_assert_eq!(all, want_all);
    }
}

#[test]
fn partitions_share_the_ttl_and_the_clock() {
    use std::sync::Arc;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(varve_db::ManualClock::new(1_000_000));
    let opts = small()
        .ttl(Some(Duration::from_secs(1)))
        .clock(clock.clone());
    let store = PartitionedStore::open(dir.path(), 3, opts.clone()).unwrap();
    for i in 0..30 {
        store.put(format!("k{i}"), "v").unwrap();
    }
    assert_eq!(store.iter().count(), 30);
    let puts: u64 = store.metrics().iter().map(|m| m.puts.count).sum();
    assert_eq!(puts, 30);
    clock.advance(Duration::from_millis(1_001));
    assert_eq!(store.iter().count(), 0);
    assert_eq!(store.get("k1").unwrap(), None);
    store.close().unwrap();
    // Every partition recorded the TTL.
    let e = PartitionedStore::open(dir.path(), 3, small()).unwrap_err();
    assert!(
        matches!(e, Error::IncompatibleOptions { option: "ttl", .. }),
        "{e}"
    );
}

#[test]
fn a_missing_partition_is_refused_without_create_if_missing() {
    let dir = tempfile::tempdir().unwrap();
    PartitionedStore::open(dir.path(), 2, small())
        .unwrap()
        .close()
        .unwrap();
    std::fs::remove_dir_all(partition_dir(dir.path(), 1)).unwrap();
    let strict = small().create_if_missing(false);
    let e = PartitionedStore::open(dir.path(), 2, strict).unwrap_err();
    assert!(matches!(e, Error::NotAStore { .. }), "{e}");
    // With create_if_missing (the default) the partition is recreated.
    PartitionedStore::open(dir.path(), 2, small()).unwrap();
    assert!(partition_dir(dir.path(), 1).exists());
}
