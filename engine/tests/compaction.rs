//! Leveled compaction: shape, space amplification, snapshots, tombstones,
//! write stalls, and crash safety at every file-system call of a flush and
//! a compaction.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use varve_db::testing::{CrashMode, MemFs, files_ending_with, small_options};
use varve_db::varve_changelog::fs::StdFs;
use varve_db::{CompactionOptions, Compression, Db, Options, WriteBatch, WriteOptions};

fn small(auto: bool) -> Options {
    small_options().block_size_bytes(1024).compaction(
        CompactionOptions::default()
            .level0_compaction_trigger(2)
            .level0_slowdown_trigger(6)
            .level0_stop_trigger(10)
            .level_base_size_bytes(128 << 10)
            .level_size_multiplier(4)
            .target_table_size_bytes(64 << 10)
            .auto(auto),
    )
}

fn key(i: u64) -> String {
    format!("key{i:08}")
}

fn all(db: &Db) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn overwrites_compact_to_low_space_amplification() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().memtable_size_bytes(4 << 20).compaction(
        CompactionOptions::default()
            .level_base_size_bytes(4 << 20)
            .target_table_size_bytes(2 << 20),
    );
    let db = Db::open(dir.path(), opts).unwrap();
    let keys = 100_000u64;
    for round in 0..10u64 {
        for start in (0..keys).step_by(1000) {
            let mut batch = WriteBatch::new();
            for i in start..start + 1000 {
                batch.put(key(i), format!("{round:02}-{i:097}"));
            }
            db.write(batch, WriteOptions::default()).unwrap();
        }
    }
    db.compact_range::<&[u8], _>(..).unwrap();
    let stats = db.stats().unwrap();
    println!("{stats}");
    assert_eq!(stats.live_data_bytes, keys * (11 + 100));
    assert!(stats.space_amp >= 1.0, "{stats}");
    assert!(
        stats.space_amp <= 1.15,
        "space amplification {}",
        stats.space_amp
    );
    assert!(stats.compactions >= 1 && stats.flushes >= 10, "{stats}");
    assert!(stats.write_amp >= 1.0, "{stats}");
    // Everything is in the last level after a full manual compaction.
    let last = stats.levels.last().unwrap();
    assert_eq!(
        stats.levels.iter().map(|l| l.tables).sum::<usize>(),
        last.tables
    );
    assert_eq!(
        db.get(key(4242)).unwrap().unwrap(),
        format!("09-{:097}", 4242)
    );
    assert_eq!(db.iter().count() as u64, keys);
}

/// A compacting store in a temporary directory holding keys `0..n`, each
/// with `value`.
fn store_of(n: u64, value: &'static str) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small(true)).unwrap();
    for i in 0..n {
        db.put(key(i), value).unwrap();
    }
    (dir, db)
}

#[test]
fn deletes_vanish_at_the_last_level() {
    let (_dir, db) = store_of(5000, "value");
    db.flush().unwrap();
    for i in 0..5000 {
        db.delete(key(i)).unwrap();
    }
    db.compact_range::<&[u8], _>(..).unwrap();
    let stats = db.stats().unwrap();
    assert_eq!(stats.table_bytes, 0, "{stats}");
    assert_eq!(stats.live_data_bytes, 0);
    assert_eq!(stats.space_amp, 0.0);
    assert!(all(&db).is_empty());
}

#[test]
fn snapshots_keep_the_versions_they_see() {
    let (_dir, db) = store_of(2000, "old");
    let snapshot = db.snapshot();
    let iter = db.range(key(0)..key(100));
    for i in 0..2000 {
        if i % 2 == 0 {
            db.put(key(i), "new").unwrap();
        } else {
            db.delete(key(i)).unwrap();
        }
    }
    db.compact_range::<&[u8], _>(..).unwrap();
    for i in [0, 1, 998, 1999] {
        assert_eq!(snapshot.get(key(i)).unwrap().unwrap(), "old");
    }
    assert_eq!(snapshot.range::<&[u8], _>(..).count(), 2000);
    // An iterator opened before the overwrites reads as of its start.
    assert_eq!(iter.count(), 100);
    assert_eq!(db.get(key(0)).unwrap().unwrap(), "new");
    assert!(db.get(key(1)).unwrap().is_none());
    drop(snapshot);
    db.compact_range::<&[u8], _>(..).unwrap();
    assert_eq!(all(&db).len(), 1000);
}

#[test]
fn background_compaction_bounds_level0_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small(true)).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..60_000u64 {
        let k = key((i * 7919) % 20_000);
        let v = format!("{i:060}");
        db.put(k.clone(), v.clone()).unwrap();
        model.insert(k.into_bytes(), v.into_bytes());
    }
    db.flush().unwrap();
    // Compaction converges: L0 below its trigger and every level above
    // the last below its target.
    let settled = |stats: &varve_db::Stats| {
        stats.levels[0].tables < 2
            && stats.levels[1..6]
                .iter()
                .all(|l| l.target_bytes == 0 || l.size_bytes < l.target_bytes)
    };
    wait_until("levels within their targets", || {
        settled(&db.stats().unwrap())
    });
    let stats = db.stats().unwrap();
    println!("{stats}");
    assert!(stats.compactions >= 3, "{stats}");
    let tables: usize = stats.levels.iter().map(|l| l.tables).sum();
    assert!(tables >= 2, "data spread over tables: {stats}");
    let want: Vec<_> = model.into_iter().collect();
    assert_eq!(all(&db), want);
    drop(db);
    let db = Db::open(dir.path(), small(true)).unwrap();
    assert_eq!(all(&db), want);
}

#[test]
fn lz4_tables_are_smaller_and_read_back() {
    let plain = tempfile::tempdir().unwrap();
    let packed = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for (dir, compression) in [(&plain, Compression::None), (&packed, Compression::Lz4)] {
        let opts = small(true).compression(compression);
        let db = Db::open(dir.path(), opts).unwrap();
        for i in 0..5000 {
            db.put(
                key(i),
                format!("order {i} state NEW customer {} NEW NEW", i % 10),
            )
            .unwrap();
        }
        db.compact_range::<&[u8], _>(..).unwrap();
        sizes.push(db.stats().unwrap().table_bytes);
        assert_eq!(
            db.get(key(1234)).unwrap().unwrap(),
            "order 1234 state NEW customer 4 NEW NEW"
        );
        assert_eq!(db.iter().count(), 5000);
    }
    assert!(
        sizes[1] * 10 < sizes[0] * 8,
        "lz4 {} vs none {}",
        sizes[1],
        sizes[0]
    );
}

#[test]
fn writers_stall_instead_of_growing_level0() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small(true);
    opts.memtable_size_bytes = 8 << 10;
    opts.compaction.level0_compaction_trigger = 1;
    opts.compaction.level0_slowdown_trigger = 2;
    opts.compaction.level0_stop_trigger = 3;
    let db = Arc::new(Db::open(dir.path(), opts).unwrap());
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    db.put(key(w * 1_000_000 + i), format!("{i:040}")).unwrap();
                }
            })
        })
        .collect();
    let mut l0_max = 0;
    while !writers.iter().all(std::thread::JoinHandle::is_finished) {
        l0_max = l0_max.max(db.stats().unwrap().levels[0].tables);
        std::thread::sleep(Duration::from_millis(5));
    }
    for w in writers {
        w.join().unwrap();
    }
    let stats = db.stats().unwrap();
    assert!(stats.slowdowns + stats.stops > 0, "{stats}");
    assert!(stats.stall_micros > 0, "{stats}");
    // The stop trigger plus what was already being flushed.
    assert!(l0_max <= 3 + 2, "L0 reached {l0_max}");
    assert_eq!(db.iter().count(), 40_000);
}

#[test]
fn options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = Options::default();
    bad.compaction.level0_stop_trigger = 1;
    assert!(matches!(
        Db::open(dir.path(), bad),
        Err(varve_db::Error::InvalidArgument(_))
    ));
    let bad = Options::default().compaction_threads(0);
    assert!(matches!(
        Db::open(dir.path(), bad),
        Err(varve_db::Error::InvalidArgument(_))
    ));
    let bad = Options::default().max_open_tables(1);
    assert!(matches!(
        Db::open(dir.path(), bad),
        Err(varve_db::Error::InvalidArgument(_))
    ));
}

// ---------------------------------------------------------------------------
// Crash safety: a power loss at every file-system call of a flush followed
// by a full compaction leaves a store that reopens with the same contents.

const DIR: &str = "/db";

fn crash_opts() -> Options {
    Options::default()
        .memtable_size_bytes(16 << 10)
        .block_size_bytes(512)
        .compaction(
            CompactionOptions::default()
                .level0_compaction_trigger(2)
                .level_base_size_bytes(8 << 10)
                .level_size_multiplier(2)
                .target_table_size_bytes(8 << 10)
                .auto(false),
        )
}

/// Writes a few flushed rounds of overwrites and deletes, then sync writes
/// left in the memtable. Returns the expected contents.
fn prepare(fs: &MemFs) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = Db::open(DIR, crash_opts().fs(Arc::new(fs.clone()))).unwrap();
    for round in 0..3u64 {
        let mut batch = WriteBatch::new();
        for i in 0..300u64 {
            if (i + round) % 5 == 0 {
                batch.delete(key(i));
            } else {
                batch.put(key(i), format!("r{round}-{i:030}"));
            }
        }
        db.write(batch, WriteOptions::default().sync(true)).unwrap();
        db.flush().unwrap();
    }
    let mut batch = WriteBatch::new();
    for i in 250..400u64 {
        batch.put(key(i), format!("tail-{i}"));
    }
    db.write(batch, WriteOptions::default().sync(true)).unwrap();
    let want = all(&db);
    db.close().unwrap();
    want
}

#[test]
fn crash_at_every_call_of_flush_and_compaction() {
    let base = MemFs::new();
    let want = prepare(&base);
    // Count the calls of the scripted step once.
    let counting = base.clone();
    let db = Db::open(DIR, crash_opts().fs(Arc::new(counting.clone()))).unwrap();
    let before = counting.op_count();
    db.compact_range::<&[u8], _>(..).unwrap();
    let calls = counting.op_count() - before;
    drop(db);
    assert!(calls > 20, "the step made {calls} calls");
    let mut checked = 0;
    for n in 0..calls + 2 {
        for mode in [CrashMode::DropAll, CrashMode::KeepAll, CrashMode::Random] {
            let fs = MemFs::new();
            let want_here = prepare(&fs);
            assert_eq!(want_here, want);
            let db = Db::open(DIR, crash_opts().fs(Arc::new(fs.clone()))).unwrap();
            fs.crash_at(n);
            let _ = db.compact_range::<&[u8], _>(..);
            drop(db);
            fs.crash(mode, n);
            fs.clear_faults();
            let db = Db::open(DIR, crash_opts().fs(Arc::new(fs.clone())))
                .unwrap_or_else(|e| panic!("reopen after crash at call {n} ({mode:?}): {e}"));
            assert_eq!(all(&db), want, "crash at call {n} ({mode:?})");
            // The reopened store compacts and still holds the same data.
            db.compact_range::<&[u8], _>(..).unwrap();
            assert_eq!(
                all(&db),
                want,
                "compaction after crash at call {n} ({mode:?})"
            );
            checked += 1;
        }
    }
    assert!(checked >= 60);
}

/// Regression: a bounded manual compaction must not move a newer L0 table
/// below an older, overlapping one that lies outside the range.
#[test]
fn bounded_manual_compaction_keeps_newer_versions_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small(false)).unwrap();
    db.put("a", "old").unwrap();
    db.put("d", "old").unwrap();
    db.flush().unwrap();
    db.put("d", "new").unwrap();
    db.put("z", "new").unwrap();
    db.flush().unwrap();
    db.compact_range("e".."z").unwrap();
    assert_eq!(db.get("d").unwrap().unwrap(), "new");
    db.delete("d").unwrap();
    db.flush().unwrap();
    db.compact_range("e"..="z").unwrap();
    assert!(
        db.get("d").unwrap().is_none(),
        "a dropped tombstone must not resurrect"
    );
    assert_eq!(all(&db).len(), 2);
}

/// Regression: the tables a compaction replaced were kept on disk until
/// the next compaction or reopen (the task's own version still listed
/// them when it deleted obsolete files), inflating space amplification.
#[test]
fn compaction_deletes_its_inputs_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small(false)).unwrap();
    for round in 0..3u64 {
        for i in 0..2_000u64 {
            db.put(key(i), format!("value-{round}-{i:0>60}")).unwrap();
        }
        db.flush().unwrap();
    }
    db.compact_range::<&[u8], _>(..).unwrap();
    let stats = db.stats().unwrap();
    let live_tables: usize = stats.levels.iter().map(|l| l.tables).sum();
    let files_on_disk = files_ending_with(&StdFs, dir.path(), ".sst").unwrap().len();
    assert_eq!(files_on_disk, live_tables, "{stats}");
    db.close().unwrap();
}
