//! Concurrency stress: writers, snapshot readers, flushes, background and
//! manual compactions, changelog retention and a changelog tailer, all at
//! once on the real file system with tiny memtables, tables and levels.
//!
//! Every snapshot a reader takes is checked against the writers' histories
//! (each writer owns its keys and records what it writes before writing
//! it), so a torn batch, a lost or resurrected version, or a snapshot that
//! moves is caught. The tailer follows the store's changelog as a named
//! consumer (retention must keep what it has not read) and rebuilds the
//! store from the records; at the end that rebuild must equal the store.
//!
//! Runs `VARVE_STRESS_SECS` seconds (default 8) so CI stays short; set it
//! higher for long runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use varve_db::testing::env_u64;
use varve_db::{
    ChangelogRetention, CompactionOptions, Compression, Db, Options, Snapshot, WriteBatch,
    WriteOptions,
};

const WRITERS: usize = 3;
const READERS: usize = 2;
const KEYS_PER_WRITER: usize = 300;
const TAILER: &str = "stress-tailer";

fn options() -> Options {
    Options::default()
        .memtable_size_bytes(32 << 10)
        .block_size_bytes(512)
        .cache_size_bytes(256 << 10)
        .max_open_tables(16)
        .compression(Compression::Lz4)
        .compaction_threads(2)
        .changelog_segment_size_bytes(64 << 10)
        .changelog_retention(ChangelogRetention::UntilShipped)
        .compaction(
            CompactionOptions::default()
                .level0_compaction_trigger(2)
                .level0_slowdown_trigger(8)
                .level0_stop_trigger(16)
                .level_base_size_bytes(96 << 10)
                .level_size_multiplier(4)
                .target_table_size_bytes(32 << 10),
        )
}

fn run_for() -> Duration {
    let secs = env_u64("VARVE_STRESS_SECS").unwrap_or(8);
    Duration::from_secs(secs)
}

fn key(w: usize, j: usize) -> String {
    format!("w{w}/k{j:04}")
}

fn seq_key(w: usize) -> String {
    format!("w{w}/seq")
}

/// What writer `w` wrote to key `j` in batch `i`; padded so memtables fill.
fn value(w: usize, i: u64, j: usize) -> Bytes {
    Bytes::from(format!("{w}:{i}:{j}:{}", "v".repeat(40 + j % 30)))
}

/// Per writer, per key: `(batch, value or tombstone)` in batch order,
/// recorded before the batch is written.
type History = Vec<Vec<(u64, Option<Bytes>)>>;

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Writer `w`'s batch `i`: its sequence key plus a few puts and deletes of
/// its own keys, noted in `history` first.
fn next_batch(w: usize, i: u64, history: &Mutex<History>, rng: &mut u64) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(seq_key(w), i.to_string());
    let mut h = history.lock();
    for _ in 0..1 + xorshift(rng) % 4 {
        let j = (xorshift(rng) % KEYS_PER_WRITER as u64) as usize;
        if h[j].last().is_some_and(|(b, _)| *b == i) {
            continue;
        }
        if xorshift(rng).is_multiple_of(5) {
            batch.delete(key(w, j));
            h[j].push((i, None));
        } else {
            let v = value(w, i, j);
            batch.put(key(w, j), v.clone());
            h[j].push((i, Some(v)));
        }
    }
    batch
}

/// The value of writer `w`'s key `j` as of its batch `upto`.
fn expected(history: &[(u64, Option<Bytes>)], upto: u64) -> Option<Bytes> {
    history
        .iter()
        .take_while(|(b, _)| *b <= upto)
        .last()
        .and_then(|(_, v)| v.clone())
}

/// Checks one snapshot against every writer's history; returns the number
/// of keys checked.
fn check_snapshot(snap: &Snapshot, histories: &[Arc<Mutex<History>>], rng: &mut u64) -> usize {
    let entries: BTreeMap<Bytes, Bytes> =
        snap.range::<&[u8], _>(..).map(|kv| kv.unwrap()).collect();
    let mut checked = 0;
    for (w, history) in histories.iter().enumerate() {
        let upto = entries.get(seq_key(w).as_bytes()).map_or(0, |v| {
            std::str::from_utf8(v).unwrap().parse::<u64>().unwrap()
        });
        let h = history.lock();
        for j in 0..KEYS_PER_WRITER {
            let want = expected(&h[j], upto);
            let got = entries.get(key(w, j).as_bytes()).cloned();
            assert_eq!(
                got,
                want,
                "snapshot at seqno {} shows writer {w} at batch {upto}, key {j}",
                snap.seqno()
            );
            checked += 1;
        }
        // Point reads on the same snapshot agree with its scan.
        let j = (xorshift(rng) % KEYS_PER_WRITER as u64) as usize;
        assert_eq!(
            snap.get(key(w, j)).unwrap(),
            entries.get(key(w, j).as_bytes()).cloned()
        );
    }
    checked
}

/// Follows the changelog from offset 0 as a named consumer, checking that
/// offsets are dense, and applies the records to a model.
fn tail(db: &Db, stop: &AtomicBool, model: &mut BTreeMap<Bytes, Bytes>) -> u64 {
    let log = db.changelog();
    let mut next = 0u64;
    let mut records = 0u64;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if let Some(reader) = log.tail(next, Duration::from_millis(20)).unwrap() {
            for r in reader {
                let r = r.unwrap();
                assert_eq!(r.offset, next, "the changelog skipped an offset");
                match r.record.value {
                    Some(v) => model.insert(r.record.key, v),
                    None => model.remove(&r.record.key),
                };
                next += 1;
                records += 1;
            }
            log.commit_position(TAILER, next).unwrap();
        }
        if stopping && next == log.next_offset() {
            return records;
        }
    }
}

#[test]
fn writers_readers_flushes_compactions_and_a_tailer_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), options()).unwrap());
    db.changelog().commit_position(TAILER, 0).unwrap();
    let histories: Vec<Arc<Mutex<History>>> = (0..WRITERS)
        .map(|_| Arc::new(Mutex::new(vec![Vec::new(); KEYS_PER_WRITER])))
        .collect();
    let stop_writers = Arc::new(AtomicBool::new(false));
    let stop_tailer = Arc::new(AtomicBool::new(false));
    let batches = Arc::new(AtomicU64::new(0));
    let snapshots = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + run_for();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (db, history, stop, batches) = (
                db.clone(),
                histories[w].clone(),
                stop_writers.clone(),
                batches.clone(),
            );
            thread::spawn(move || {
                let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1);
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    i += 1;
                    let batch = next_batch(w, i, &history, &mut rng);
                    let sync = i.is_multiple_of(50);
                    db.write(batch, WriteOptions::default().sync(sync)).unwrap();
                    batches.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (db, histories, stop, snapshots) = (
                db.clone(),
                histories.clone(),
                stop_writers.clone(),
                snapshots.clone(),
            );
            thread::spawn(move || {
                let mut rng = 0xD1B5_4A32_D192_ED03 ^ (r as u64 + 1);
                while !stop.load(Ordering::Acquire) {
                    let snap = db.snapshot();
                    check_snapshot(&snap, &histories, &mut rng);
                    // The same snapshot again, after more writes, flushes
                    // and compactions: it must not have moved.
                    thread::sleep(Duration::from_millis(1));
                    check_snapshot(&snap, &histories, &mut rng);
                    snapshots.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let maintenance = {
        let (db, stop) = (db.clone(), stop_writers.clone());
        thread::spawn(move || {
            let mut rng = 7u64;
            while !stop.load(Ordering::Acquire) {
                match xorshift(&mut rng) % 3 {
                    0 => db.flush().unwrap(),
                    1 => {
                        let w = (xorshift(&mut rng) % WRITERS as u64) as usize;
                        let a = (xorshift(&mut rng) % KEYS_PER_WRITER as u64) as usize;
                        let b = a.saturating_add(50).min(KEYS_PER_WRITER - 1);
                        db.compact_range(key(w, a)..=key(w, b)).unwrap();
                    }
                    _ => db.compact_range::<&[u8], _>(..).unwrap(),
                }
                thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let tailer = {
        let (db, stop) = (db.clone(), stop_tailer.clone());
        thread::spawn(move || {
            let mut model = BTreeMap::new();
            let records = tail(&db, &stop, &mut model);
            (model, records)
        })
    };

    while Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    stop_writers.store(true, Ordering::Release);
    for t in writers.into_iter().chain(readers).chain([maintenance]) {
        t.join().unwrap();
    }
    stop_tailer.store(true, Ordering::Release);
    let (model, records) = tailer.join().unwrap();

    // The tailer's rebuild from the changelog equals the store, and the
    // store equals the writers' histories.
    let store: BTreeMap<Bytes, Bytes> = db.iter().map(|kv| kv.unwrap()).collect();
    assert_eq!(model.len(), store.len());
    assert!(
        model == store,
        "the changelog's rebuild differs from the store"
    );
    let mut rng = 1;
    check_snapshot(&db.snapshot(), &histories, &mut rng);

    let stats = db.stats().unwrap();
    let batches = batches.load(Ordering::Relaxed);
    let snapshots = snapshots.load(Ordering::Relaxed);
    eprintln!(
        "stress: {batches} batches, {snapshots} snapshots checked twice, {records} records tailed, \
         {} flushes, {} compactions, log start {}",
        stats.flushes, stats.compactions, stats.changelog.log_start_offset
    );
    assert!(batches > 100 && snapshots > 5, "too little work was done");
    assert!(stats.flushes > 2 && stats.compactions > 0);
    assert!(
        stats.changelog.log_start_offset > 0,
        "retention never ran past the tailer"
    );

    // And it all survives a reopen.
    drop(Arc::try_unwrap(db).ok().unwrap());
    let db = Db::open(dir.path(), options()).unwrap();
    let reopened: BTreeMap<Bytes, Bytes> = db.iter().map(|kv| kv.unwrap()).collect();
    assert!(reopened == store);
    db.close().unwrap();
}
