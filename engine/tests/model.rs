//! Model test: random operation sequences against a `BTreeMap`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use varve_db::{CompactionOptions, Compression, Db, Options, WriteBatch, WriteOptions};

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Batch(Vec<(u8, Option<u16>)>),
    Get(u8),
    Range(u8, u8, bool),
    Prefix(u8),
    Snapshot,
    CheckSnapshots,
    Flush,
    CompactRange(u8, u8),
    CompactAll,
    Reopen,
}

fn key(k: u8) -> Vec<u8> {
    format!("k{:02}", k % 40).into_bytes()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => any::<u8>().prop_map(Op::Delete),
        3 => prop::collection::vec((any::<u8>(), prop::option::of(any::<u16>())), 1..8).prop_map(Op::Batch),
        3 => any::<u8>().prop_map(Op::Get),
        2 => (any::<u8>(), any::<u8>(), any::<bool>()).prop_map(|(a, b, r)| Op::Range(a, b, r)),
        1 => any::<u8>().prop_map(Op::Prefix),
        1 => Just(Op::Snapshot),
        1 => Just(Op::CheckSnapshots),
        2 => Just(Op::Flush),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::CompactRange(a, b)),
        1 => Just(Op::CompactAll),
        1 => Just(Op::Reopen),
    ]
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn contents(iter: varve_db::Iter) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter.map(|kv| {
        let (k, v) = kv.unwrap();
        (k.to_vec(), v.to_vec())
    })
    .collect()
}

/// Tiny memtables, tables, levels and triggers, so that flushes, every
/// kind of compaction (L0, level size, trivial move, manual) and output
/// splitting all happen within a short run; LZ4 and a small block cache
/// are on to cover those paths too.
fn opts() -> Options {
    Options::default()
        .memtable_size_bytes(4096)
        .block_size_bytes(256)
        .cache_size_bytes(64 << 10)
        .max_open_tables(16)
        .compression(Compression::Lz4)
        .compaction_threads(2)
        .compaction(
            CompactionOptions::default()
                .level0_compaction_trigger(2)
                .level0_slowdown_trigger(4)
                .level0_stop_trigger(8)
                .level_base_size_bytes(4096)
                .level_size_multiplier(2)
                .target_table_size_bytes(4096),
        )
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Some(Db::open(dir.path(), opts()).unwrap());
    let mut model = Model::new();
    let mut snapshots: Vec<(varve_db::Snapshot, Model)> = Vec::new();
    for op in ops {
        let d = db.as_ref().unwrap();
        match op {
            Op::Put(k, v) => {
                d.put(key(k), v.to_string()).unwrap();
                model.insert(key(k), v.to_string().into_bytes());
            }
            Op::Delete(k) => {
                d.delete(key(k)).unwrap();
                model.remove(&key(k));
            }
            Op::Batch(ops) => {
                let mut batch = WriteBatch::new();
                for (k, v) in ops {
                    match v {
                        Some(v) => {
                            batch.put(key(k), v.to_string());
                            model.insert(key(k), v.to_string().into_bytes());
                        }
                        None => {
                            batch.delete(key(k));
                            model.remove(&key(k));
                        }
                    }
                }
                d.write(batch, WriteOptions::default().sync(false)).unwrap();
            }
            Op::Get(k) => {
                assert_eq!(
                    d.get(key(k)).unwrap().map(|b| b.to_vec()),
                    model.get(&key(k)).cloned()
                );
            }
            Op::Range(a, b, reverse) => {
                let (lo, hi) = {
                    let (x, y) = (key(a), key(b));
                    if x <= y { (x, y) } else { (y, x) }
                };
                let want: Vec<_> = model
                    .range::<Vec<u8>, _>((Bound::Included(lo.clone()), Bound::Excluded(hi.clone())))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if reverse {
                    let got: Vec<_> = d
                        .range(lo..hi)
                        .rev()
                        .map(|kv| kv.unwrap())
                        .map(|(k, v)| (k.to_vec(), v.to_vec()))
                        .collect();
                    assert_eq!(got, want.into_iter().rev().collect::<Vec<_>>());
                } else {
                    assert_eq!(contents(d.range(lo..hi)), want);
                }
            }
            Op::Prefix(p) => {
                let prefix = format!("k{}", p % 4).into_bytes();
                let want: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(contents(d.prefix(&prefix)), want);
            }
            Op::Snapshot => snapshots.push((d.snapshot(), model.clone())),
            Op::CheckSnapshots => {
                for (snap, frozen) in &snapshots {
                    let got = contents(snap.range::<&[u8], _>(..));
                    let want: Vec<_> = frozen.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    assert_eq!(got, want, "snapshot at {}", snap.seqno());
                }
            }
            Op::Flush => d.flush().unwrap(),
            Op::CompactRange(a, b) => {
                let (lo, hi) = (key(a.min(b)), key(a.max(b)));
                d.compact_range(lo..=hi).unwrap();
            }
            Op::CompactAll => d.compact_range::<&[u8], _>(..).unwrap(),
            Op::Reopen => {
                snapshots.clear();
                drop(db.take());
                db = Some(Db::open(dir.path(), opts()).unwrap());
            }
        }
    }
    let d = db.as_ref().unwrap();
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(contents(d.iter()), want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn db_matches_btreemap(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
