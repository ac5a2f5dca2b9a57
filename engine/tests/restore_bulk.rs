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
            let fs = MemFs::new();
            let db = restored(
                &fs,
                &log,
                RestoreOptions::default()
                    .memtable_size_bytes(run_size)
                    .poll_size_bytes(4 << 10),
            );
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
    // 4,000 records of 112 key and value bytes, counted at 240 bytes each
    // with their entry, sort order and framing: about 960 KB.
    let records = descending(4000);
    let log = source_of(&records);
    // A budget of 16 MiB + 256 KiB leaves two runs of 128 KiB: at least
    // seven tables.
    let fs = MemFs::new();
    let db = restored(
        &fs,
        &log,
        RestoreOptions::default().memory_budget_bytes((16 << 20) + (256 << 10)),
    );
    let tables = table_count(&fs, "/r");
    assert!((7..=9).contains(&tables), "{tables} tables");
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
    // Runs of 64 KiB: 2,000 records of 240 counted bytes are 480 KB.
    let tables = table_count(&fs, "/r");
    assert!((7..=9).contains(&tables), "{tables} tables");
    assert_eq!(contents(&db), model_of(&records));
}

#[test]
fn keys_in_order_are_written_in_runs_of_an_eighth_of_the_size() {
    let records: Vec<Record> = (0..4000)
        .map(|i| Record::put(format!("key-{i:08}"), "v".repeat(100)))
        .collect();
    let log = source_of(&records);
    let fs = MemFs::new();
    // Runs of 1 MiB: the whole load fits one, but keys in order are handed
    // over at 128 KiB (the spare room of a run's last chunk of entries
    // counted), so the writer works while the next is gathered.
    let db = restored(
        &fs,
        &log,
        RestoreOptions::default().memtable_size_bytes(1 << 20),
    );
    let tables = table_count(&fs, "/r");
    assert!((7..=16).contains(&tables), "{tables} tables");
    assert_eq!(contents(&db), model_of(&records));
}
