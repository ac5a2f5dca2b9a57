//! The bulk load of a restore: runs gathered on one thread and written on
//! another, bounded by the memory budget, give exactly the source's state
//! for keys written in order and in random order, with overwrites and
//! tombstones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use varve_db::varve_changelog::fs::{FileSystem, MemFs};
use varve_db::varve_changelog::{Log, LogOptions, LogSource, Record};
use varve_db::{Db, Options, RestoreOptions};

type State = BTreeMap<Bytes, Bytes>;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// `n` writes over `keys` keys: in key order (each key once, then a tail
/// of overwrites and deletes of earlier keys) or in random order (keys
/// drawn at random, so overwritten and deleted anywhere); about one write
/// in six is a delete.
fn writes(n: u64, keys: u64, random: bool, seed: u64) -> Vec<Record> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|i| {
            let k = if random || i >= keys {
                rng.below(keys)
            } else {
                i
            };
            let key = format!("key-{k:08}");
            if rng.below(6) == 0 {
                Record::tombstone(key)
            } else {
                let len = 1 + rng.below(120) as usize;
                Record::put(key, format!("{i}-{}", "v".repeat(len)))
            }
        })
        .collect()
}

fn model_of(records: &[Record]) -> State {
    let mut state = State::new();
    for r in records {
        match &r.value {
            Some(v) => state.insert(r.key.clone(), v.clone()),
            None => state.remove(&r.key),
        };
    }
    state
}

/// A changelog on its own in-memory file system holding `records`.
fn source_of(records: &[Record]) -> Log {
    let fs: Arc<dyn FileSystem> = Arc::new(MemFs::new());
    let log = Log::open("/src", LogOptions::default().fs(fs)).unwrap();
    for chunk in records.chunks(100) {
        log.append(chunk).unwrap();
    }
    log
}

fn restored(fs: &MemFs, log: &Log, opts: RestoreOptions) -> Db {
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let opts = opts.store_options(Options::default().fs(dynfs.clone()));
    let report = varve_db::restore("/r", &mut LogSource::new(log), opts).unwrap();
    assert_eq!(report.end_offset, log.next_offset());
    Db::open("/r", Options::default().create_if_missing(false).fs(dynfs)).unwrap()
}

/// Restores `log` in runs of `run_bytes`, polling `poll_bytes` at a time;
/// returns the store's file system and the opened store.
fn restored_in_runs(log: &Log, run_bytes: usize, poll_bytes: usize) -> (MemFs, Db) {
    let fs = MemFs::new();
    let opts = RestoreOptions::default()
        .memtable_size_bytes(run_bytes)
        .poll_size_bytes(poll_bytes);
    let db = restored(&fs, log, opts);
    (fs, db)
}

fn contents(db: &Db) -> State {
    db.iter().map(|kv| kv.unwrap()).collect()
}

fn table_count(fs: &MemFs, dir: &str) -> usize {
    fs.list_dir(Path::new(dir))
        .unwrap()
        .iter()
        .filter(|name| name.ends_with(".sst"))
        .count()
}

#[test]
fn a_restore_equals_the_model_key_by_key_for_both_key_orders() {
    for random in [false, true] {
        for (seed, run_size) in [(1, 64 << 10), (7, 256 << 10), (42, 256 << 20)] {
            let records = writes(8000, 3000, random, seed);
            let model = model_of(&records);
            let log = source_of(&records);
            let (_fs, db) = restored_in_runs(&log, run_size, 4 << 10);
            assert_eq!(
                contents(&db),
                model,
                "random order {random}, seed {seed}, runs of {run_size} bytes"
            );
            assert_eq!(db.latest_seqno(), 8000);
            for key in ["key-00000000", "key-00002999", "key-00003000"] {
                assert_eq!(
                    db.get(key).unwrap(),
                    model.get(key.as_bytes()).cloned(),
                    "{key}"
                );
            }
        }
    }
}

/// Keys in descending order with no deletes: runs are full-sized (their
/// keys do not increase), yet every run's table overlaps no other and
/// goes to the last level as it is, so the restored store holds one table
/// per run written.
fn descending(n: u64) -> Vec<Record> {
    (0..n)
        .map(|i| Record::put(format!("key-{:08}", n - 1 - i), "v".repeat(100)))
        .collect()
}

#[test]
fn the_memory_budget_caps_each_run() {
    // 4,000 records of 112 key and value bytes, counted at 160 bytes each
    // with their header and place in the sort order (more while the sort
    // order has spare room): about 640 KB.
    let records = descending(4000);
    let log = source_of(&records);
    // A budget of 16 MiB + 256 KiB leaves two runs of 128 KiB: at least
    // five tables.
    let fs = MemFs::new();
    let db = restored(
        &fs,
        &log,
        RestoreOptions::default().memory_budget_bytes((16 << 20) + (256 << 10)),
    );
    let tables = table_count(&fs, "/r");
    assert!((5..=7).contains(&tables), "{tables} tables");
    assert_eq!(contents(&db), model_of(&records));
    // With the default budget and run size the whole load is one run.
    let fs = MemFs::new();
    let db = restored(&fs, &log, RestoreOptions::default());
    assert_eq!(table_count(&fs, "/r"), 1);
    assert_eq!(contents(&db), model_of(&records));
}

#[test]
fn a_budget_too_small_for_two_runs_still_restores_with_the_smallest_runs() {
    let records = descending(2000);
    let log = source_of(&records);
    let fs = MemFs::new();
    let db = restored(&fs, &log, RestoreOptions::default().memory_budget_bytes(0));
    // Runs of 64 KiB: 2,000 records of 160 counted bytes are 320 KB.
    let tables = table_count(&fs, "/r");
    assert!((5..=7).contains(&tables), "{tables} tables");
    assert_eq!(contents(&db), model_of(&records));
}

#[test]
fn keys_in_order_stream_into_tables_of_the_run_size() {
    let records: Vec<Record> = (0..4000)
        .map(|i| Record::put(format!("key-{i:08}"), "v".repeat(100)))
        .collect();
    let log = source_of(&records);
    let fs = MemFs::new();
    // Runs of 128 KiB: keys in order are handed over at 16 KiB and added
    // to one open table until it holds 128 KiB, so the 4,000 records
    // (about 460 KB of table) make four tables, each a checkpoint.
    let db = restored(
        &fs,
        &log,
        RestoreOptions::default().memtable_size_bytes(128 << 10),
    );
    let tables = table_count(&fs, "/r");
    assert!((3..=5).contains(&tables), "{tables} tables");
    assert_eq!(contents(&db), model_of(&records));
}

/// Restores `records` with tables of `table_bytes` and runs of
/// `run_bytes`; returns the store's file system and the opened store.
fn restored_in_tables(records: &[Record], table_bytes: u64, run_bytes: usize) -> (MemFs, Db) {
    let log = source_of(records);
    let fs = MemFs::new();
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let store = Options::default()
        .compaction(varve_db::CompactionOptions::default().target_table_size_bytes(table_bytes))
        .fs(dynfs.clone());
    let opts = RestoreOptions::default()
        .store_options(store)
        .memtable_size_bytes(run_bytes);
    varve_db::restore("/r", &mut LogSource::new(&log), opts).unwrap();
    let db = Db::open("/r", Options::default().create_if_missing(false).fs(dynfs)).unwrap();
    (fs, db)
}

#[test]
fn a_run_larger_than_a_table_is_written_as_disjoint_tables_on_two_threads() {
    // 4,000 records of 136 arena bytes each (header, key, value): about
    // 544 KB, one run, cut into tables of about 64 KiB. Descending keys
    // make the run unsorted, so the cut happens after the sort; the
    // tables overlap nothing and go to the last level as they are.
    let records = descending(4000);
    let (fs, db) = restored_in_tables(&records, 64 << 10, 256 << 20);
    let tables = table_count(&fs, "/r");
    assert!((8..=9).contains(&tables), "{tables} tables");
    assert_eq!(contents(&db), model_of(&records));
    // Random writes with overwrites and deletes, cut the same way: every
    // version of a key stays in one table, and the store equals the model.
    let records = writes(20_000, 3000, true, 9);
    // Runs of 1 MiB are cut at the first one's keys, and each stretch's
    // tables merge into the last level on their own.
    let (_, db) = restored_in_tables(&records, 16 << 10, 1 << 20);
    assert_eq!(contents(&db), model_of(&records));
    assert_eq!(db.latest_seqno(), 20_000);
    let levels = db.stats().unwrap().levels;
    let (last, above) = levels.split_last().unwrap();
    assert!(last.tables > 1, "{levels:?}");
    assert!(above.iter().all(|l| l.tables == 0), "{levels:?}");
}

/// Keys in order, but now and then the key before written again (an
/// overwrite, or a delete): inside a run handed over in key order, which
/// it then makes unsorted, or as the first key of the next run, which
/// then starts at the open table's last key instead of above it. With
/// values of 8-12 KB and runs of 64 KiB (the smallest; handed over in key
/// order at 8 KiB) every record is a run of its own, so every repeat
/// starts a run at the open table's last key; with small values repeats
/// land inside runs. Every table and the final state stay exact, and the store ends
/// compacted.
#[test]
fn keys_in_order_with_repeats_at_and_between_run_boundaries() {
    let mut rng = Rng(77);
    let mut small = Vec::new();
    let mut large = Vec::new();
    for i in 0..3000u64 {
        let key = format!("key-{i:08}");
        let small_len = if rng.below(200) == 0 {
            20_000 + rng.below(40_000) as usize
        } else {
            rng.below(150) as usize
        };
        let large_len = (8 << 10) + rng.below(4 << 10) as usize;
        small.push(Record::put(key.clone(), "s".repeat(small_len)));
        large.push(Record::put(key.clone(), "l".repeat(large_len)));
        for records in [&mut small, &mut large] {
            match rng.below(60) {
                0..3 => records.push(Record::put(key.clone(), format!("again-{i}"))),
                3..6 => records.push(Record::tombstone(key.clone())),
                _ => {}
            }
        }
    }
    for (records, run_sizes) in [
        (&large, &[64 << 10][..]),
        (&small, &[64 << 10, 1 << 20][..]),
    ] {
        let log = source_of(records);
        for &run_bytes in run_sizes {
            let fs = MemFs::new();
            let db = restored(
                &fs,
                &log,
                RestoreOptions::default().memtable_size_bytes(run_bytes),
            );
            assert_eq!(contents(&db), model_of(records), "runs of {run_bytes}");
            assert_eq!(db.latest_seqno(), records.len() as u64);
            let levels = db.stats().unwrap().levels;
            assert!(
                levels.first().is_none_or(|l0| l0.tables == 0),
                "runs of {run_bytes}: level 0 is empty after the final compaction: {levels:?}"
            );
        }
    }
}

/// Changelogs that switch between phases: keys rising from a random
/// start (continuing the last phase's keys or falling below them),
/// random keys, and a hot key written again and again, with values from
/// empty to 200 KB and deletes. Runs in key order then continue the open
/// table, start a new one below or overlapping the last, or turn into
/// sorted runs part way; the restored store equals the model key by key
/// for every run size, reopens, and ends compacted.
#[test]
fn changelogs_mixing_phases_of_key_order_restore_exactly() {
    for seed in 1..=12u64 {
        let mut rng = Rng((seed * 0x9e37_79b9) | 1);
        let mut records = Vec::new();
        let mut next = 0u64;
        while records.len() < 4000 {
            let phase = rng.below(4);
            let len = 20 + rng.below(600);
            if rng.below(3) == 0 {
                next = rng.below(50_000);
            }
            for _ in 0..len {
                let k = match phase {
                    0 | 1 => {
                        next += 1 + rng.below(3);
                        next
                    }
                    2 => rng.below(50_000),
                    _ => 7,
                };
                let key = format!("key-{k:08}");
                let value_len = match rng.below(100) {
                    0 => 50_000 + rng.below(150_000) as usize,
                    1..10 => 0,
                    _ => rng.below(300) as usize,
                };
                records.push(if rng.below(12) == 0 {
                    Record::tombstone(key)
                } else {
                    Record::put(key, "v".repeat(value_len))
                });
            }
        }
        let model = model_of(&records);
        let log = source_of(&records);
        let run_size = [64 << 10, 128 << 10, 1 << 20, 256 << 20][(seed % 4) as usize];
        let (fs, db) = restored_in_runs(&log, run_size, 8 << 10);
        let what = format!("seed {seed}, runs of {run_size}");
        assert_eq!(contents(&db), model, "{what}");
        assert_eq!(db.latest_seqno(), records.len() as u64, "{what}");
        let levels = db.stats().unwrap().levels;
        assert!(
            levels.first().is_none_or(|l0| l0.tables == 0),
            "{what}: level 0 is empty: {levels:?}"
        );
        drop(db);
        let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
        let reopened =
            Db::open("/r", Options::default().create_if_missing(false).fs(dynfs)).unwrap();
        assert_eq!(contents(&reopened), model, "{what}, reopened");
    }
}
