//! The cleaner (log compaction) under power loss, and alongside readers.
//!
//! A log with overwrites and tombstones over several closed segments is
//! cleaned with a crash point at every file-system call of the clean; after
//! the crash (every [`CrashMode`]) the reopened log must resolve every key to
//! the same latest value as before the clean, keep the offsets and contents
//! of the records that survive, and keep its end offset.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use varve_changelog::testing::{CrashMode, MemFs, Rng, mem_fs_with_dir};
use varve_changelog::{Log, LogOptions, Record, StoredRecord, SyncPolicy};

const DIR: &str = "/log";

const T0: i64 = 1_700_000_000_000;
const KEYS: u64 = 24;
/// Record-time step between batches.
const STEP_MS: i64 = 1000;
const BATCHES: u64 = 110;
const RETENTION_MS: u64 = 3_600_000;

fn options() -> LogOptions {
    LogOptions::default()
        .segment_size_bytes(4096)
        .index_interval_bytes(256)
        .sync_policy(SyncPolicy::Manual)
        .tombstone_retention_ms(RETENTION_MS)
}

fn open(fs: &MemFs) -> Log {
    Log::open(DIR, options().fs(Arc::new(fs.clone()))).expect("open log")
}

/// The log as written, before any cleaning.
struct Written {
    /// Every record, by offset.
    records: Vec<Record>,
    /// The log start offset after the truncation in the workload.
    start: u64,
    end: u64,
}

impl Written {
    /// Key to latest value (tombstone: `None`) over the records from the
    /// log start, last write wins.
    fn model(&self) -> BTreeMap<Bytes, Option<Bytes>> {
        resolve(
            self.records[self.start as usize..]
                .iter()
                .enumerate()
                .map(|(i, r)| (self.start + i as u64, r)),
        )
    }

    /// The offset of the latest record of every key, from the log start.
    fn latest(&self) -> BTreeMap<Bytes, u64> {
        let mut latest = BTreeMap::new();
        for offset in self.start..self.end {
            latest.insert(self.records[offset as usize].key.clone(), offset);
        }
        latest
    }

    fn tombstone_expired(&self, offset: u64, now: i64) -> bool {
        let r = &self.records[offset as usize];
        r.value.is_none() && now - r.timestamp_ms >= RETENTION_MS as i64
    }
}

fn resolve<'a>(records: impl Iterator<Item = (u64, &'a Record)>) -> BTreeMap<Bytes, Option<Bytes>> {
    let mut map = BTreeMap::new();
    for (_, r) in records {
        map.insert(r.key.clone(), r.value.clone());
    }
    map
}

/// Writes the test log into `fs` (deterministically) and returns it open.
fn build(fs: &MemFs) -> (Log, Written) {
    let log = open(fs);
    let mut rng = Rng::new(0x00C1_EA4E_D5EE_D001);
    let mut records = Vec::new();
    for batch in 0..BATCHES {
        let count = 1 + rng.below(8) as usize;
        let ts = T0 + batch as i64 * STEP_MS;
        let mut batch_records: Vec<Record> = (0..count)
            .map(|i| {
                let key = format!("key-{:02}", rng.below(KEYS));
                if rng.below(5) == 0 {
                    Record::tombstone(key)
                } else {
                    let pad = rng.below(60) as usize;
                    Record::put(key, format!("b{batch}-r{i}-{}", "z".repeat(pad)))
                }
                .with_timestamp_ms(ts)
            })
            .collect();
        // Cold keys: written once, deleted three batches later, never
        // touched again; their tombstones expire at different times.
        match batch % 10 {
            5 => batch_records
                .push(Record::put(format!("cold-{batch}"), "cold").with_timestamp_ms(ts)),
            8 => batch_records
                .push(Record::tombstone(format!("cold-{}", batch - 3)).with_timestamp_ms(ts)),
            _ => {}
        }
        let info = log.append(&batch_records).unwrap();
        assert_eq!(info.base_offset, records.len() as u64);
        records.extend(batch_records);
        if batch == 33 {
            log.roll().unwrap();
        }
    }
    log.sync().unwrap();
    // Drop the first few records (mid-segment) so that the log start is not
    // a segment base.
    let start = 9;
    log.truncate_before(start).unwrap();
    let end = log.next_offset();
    assert_eq!(end, records.len() as u64);
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 5, "too few segments: {bases:?}");
    (
        log,
        Written {
            records,
            start,
            end,
        },
    )
}

/// Reads the whole log from its start.
fn read_all(log: &Log) -> Vec<StoredRecord> {
    log.reader(log.log_start_offset())
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The clean times tested: no tombstone expired, some expired, all expired.
fn clean_times() -> [i64; 3] {
    let last = T0 + (BATCHES as i64 - 1) * STEP_MS;
    [
        last + 1,
        T0 + RETENTION_MS as i64 + (BATCHES as i64 / 2) * STEP_MS,
        last + RETENTION_MS as i64 + 1,
    ]
}

/// Checks a log holding `w` after (some or all of) a clean at `now`.
fn check_log(log: &Log, w: &Written, now: i64, ctx: &str) -> Vec<StoredRecord> {
    assert_eq!(log.next_offset(), w.end, "{ctx}: next_offset changed");
    assert_eq!(log.log_start_offset(), w.start, "{ctx}: log start changed");
    let got = read_all(log);
    let mut prev = None;
    for stored in &got {
        assert!(
            prev.is_none_or(|p| stored.offset > p),
            "{ctx}: offsets not increasing at {}",
            stored.offset
        );
        prev = Some(stored.offset);
        assert!(stored.offset >= w.start && stored.offset < w.end);
        assert_eq!(
            stored.record, w.records[stored.offset as usize],
            "{ctx}: record at offset {} changed",
            stored.offset
        );
    }
    check_resolves_to_model(&got, w, now, ctx);
    got
}

/// The records a reader saw come in offset order, each exactly as written,
/// and resolve to the model.
fn check_read_back(got: &[StoredRecord], w: &Written, now: i64, ctx: &str) {
    let mut prev = None;
    for s in got {
        assert!(prev.is_none_or(|p| s.offset > p), "{ctx}: order");
        prev = Some(s.offset);
        assert_eq!(s.record, w.records[s.offset as usize], "{ctx}: content");
    }
    check_resolves_to_model(got, w, now, ctx);
}

/// The records a reader saw (any superset of the latest records) resolve to
/// the model, and every record a clean must keep is there.
fn check_resolves_to_model(got: &[StoredRecord], w: &Written, now: i64, ctx: &str) {
    let present: BTreeSet<u64> = got.iter().map(|s| s.offset).collect();
    for (key, &offset) in &w.latest() {
        if !w.tombstone_expired(offset, now) {
            assert!(
                present.contains(&offset),
                "{ctx}: latest record of {key:?} (offset {offset}) is gone"
            );
        }
    }
    let resolved = resolve(got.iter().map(|s| (s.offset, &s.record)));
    let live = |m: &BTreeMap<Bytes, Option<Bytes>>| -> BTreeMap<Bytes, Bytes> {
        m.iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    };
    assert_eq!(
        live(&resolved),
        live(&w.model()),
        "{ctx}: live keys differ from the model"
    );
}

/// A fully cleaned log holds, in its closed segments, at most one record per
/// key and no expired tombstone.
fn check_fully_cleaned(log: &Log, got: &[StoredRecord], w: &Written, now: i64, ctx: &str) {
    let active_base = *log.segment_base_offsets().last().unwrap();
    let mut seen = BTreeSet::new();
    for stored in got.iter().filter(|s| s.offset < active_base) {
        assert!(
            seen.insert(stored.record.key.clone()),
            "{ctx}: key {:?} appears twice in closed segments",
            stored.record.key
        );
        assert!(
            !w.tombstone_expired(stored.offset, now),
            "{ctx}: expired tombstone at {} kept",
            stored.offset
        );
    }
    // The active segment is untouched.
    let tail: Vec<u64> = got
        .iter()
        .map(|s| s.offset)
        .filter(|&o| o >= active_base)
        .collect();
    let all: Vec<u64> = (active_base.max(w.start)..w.end).collect();
    assert_eq!(tail, all, "{ctx}: the active segment changed");
}

/// Every offset of the log locates the first surviving record at or after
/// it (the cleaner leaves gaps; readers must step over them).
fn check_reads_across_gaps(log: &Log, got: &[StoredRecord], w: &Written, ctx: &str) {
    let offsets: Vec<u64> = got.iter().map(|s| s.offset).collect();
    for from in w.start..w.end {
        let expect = offsets.iter().copied().find(|&o| o >= from);
        let first = log.reader(from).unwrap().next().transpose().unwrap();
        assert_eq!(
            first.map(|s| s.offset),
            expect,
            "{ctx}: reader({from}) starts at the wrong record"
        );
        let fetch = log.read(from, 1).unwrap();
        if let Some(expect) = expect {
            let batch = fetch.batches.first().unwrap_or_else(|| {
                panic!("{ctx}: read({from}) returned nothing; next record is {expect}")
            });
            let header = batch.header();
            assert!(
                header.next_offset() > from && header.base_offset <= expect,
                "{ctx}: read({from}) returned batch {header:?}, next record is {expect}"
            );
            let first = batch.records().map(|r| r.unwrap().0).find(|&o| o >= from);
            if let Some(first) = first {
                assert_eq!(first, expect, "{ctx}: read({from})");
            }
        } else {
            assert!(
                fetch.batches.is_empty(),
                "{ctx}: read({from}) past the last record"
            );
        }
    }
}

#[test]
fn clean_removes_superseded_records_and_expired_tombstones() {
    let mut removed = Vec::new();
    for now in clean_times() {
        let ctx = format!("clean at {now}");
        let fs = mem_fs_with_dir(DIR).unwrap();
        let (log, w) = build(&fs);
        let before = read_all(&log);
        let report = log.clean_at(now).unwrap();
        assert!(report.segments_cleaned > 0, "{ctx}: {report:?}");
        assert!(report.records_removed > 0, "{ctx}: {report:?}");
        assert!(
            report.bytes_after < report.bytes_before,
            "{ctx}: {report:?}"
        );
        removed.push(report.records_removed);
        let got = check_log(&log, &w, now, &ctx);
        assert!(got.len() < before.len());
        check_fully_cleaned(&log, &got, &w, now, &ctx);
        check_reads_across_gaps(&log, &got, &w, &ctx);
        let expired = (w.start..w.end)
            .filter(|&o| w.tombstone_expired(o, now))
            .count();
        if now == clean_times()[0] {
            assert_eq!(expired, 0);
            let tombstones = got.iter().filter(|s| s.record.value.is_none()).count();
            assert!(tombstones > 0, "{ctx}: unexpired tombstones were removed");
        } else {
            assert!(expired > 0);
        }

        // A second clean finds nothing to do.
        let again = log.clean_at(now).unwrap();
        assert_eq!(again.records_removed, 0, "{ctx}: second clean {again:?}");
        // The cleaned log survives a close, a power loss and a reopen.
        drop(log);
        fs.crash(CrashMode::DropAll, 0);
        let log = open(&fs);
        let got2 = check_log(&log, &w, now, &format!("{ctx}, reopened"));
        assert_eq!(
            got2.iter().map(|s| s.offset).collect::<Vec<_>>(),
            got.iter().map(|s| s.offset).collect::<Vec<_>>()
        );
        check_reads_across_gaps(&log, &got2, &w, &format!("{ctx}, reopened"));
        // And keeps working.
        let info = log.append(&[Record::put("new", "value")]).unwrap();
        assert_eq!(info.base_offset, w.end);
    }
    // Later clean times expire more tombstones.
    assert!(
        removed[0] < removed[1] && removed[1] < removed[2],
        "{removed:?}"
    );
}

#[test]
fn power_loss_at_every_call_of_a_clean() {
    for now in clean_times() {
        let fs = mem_fs_with_dir(DIR).unwrap();
        let (log, w) = build(&fs);
        let before = fs.op_count();
        log.clean_at(now).unwrap();
        let total = fs.op_count() - before;
        drop(log);
        let mut failed = 0;
        for n in 0..=total {
            let mut variants = vec![(CrashMode::DropAll, 0), (CrashMode::KeepAll, 0)];
            variants.extend((0..4).map(|i| (CrashMode::Random, n * 4 + i)));
            for (mode, seed) in variants {
                let ctx =
                    format!("clean at {now}, crash at call {n}/{total}, {mode:?} seed {seed}");
                let fs = mem_fs_with_dir(DIR).unwrap();
                let (log, w2) = build(&fs);
                fs.crash_at(n);
                let result = log.clean_at(now);
                if mode == CrashMode::DropAll && result.is_err() {
                    failed += 1;
                }
                drop(log);
                fs.crash(mode, seed);
                let log = match Log::open(DIR, options().fs(Arc::new(fs.clone()))) {
                    Ok(log) => log,
                    Err(e) => panic!("{ctx}: reopen failed: {e} (clean: {result:?})"),
                };
                check_log(&log, &w2, now, &ctx);
                // Finishing the clean after the crash gives a fully cleaned
                // log.
                log.clean_at(now)
                    .unwrap_or_else(|e| panic!("{ctx}: clean after recovery: {e}"));
                let got = check_log(&log, &w2, now, &format!("{ctx}, cleaned again"));
                check_fully_cleaned(&log, &got, &w2, now, &ctx);
            }
        }
        assert_eq!(failed, total, "crash points that stopped the clean");
        drop(w);
    }
}

/// Reads `split` records, cleans, reads the rest: the reader sees offsets
/// in order, original contents, and a superset of the latest records.
#[test]
fn reader_opened_before_a_clean_sees_a_consistent_log() {
    let now = clean_times()[0];
    let total = {
        let (_log, w) = build(&mem_fs_with_dir(DIR).unwrap());
        w.end - w.start
    };
    for split in (0..=total).step_by(7) {
        let ctx = format!("reader split at {split}");
        // A fresh copy of the log for every split.
        let fs = mem_fs_with_dir(DIR).unwrap();
        let (log, w) = build(&fs);
        let mut reader = log.reader(w.start).unwrap();
        let mut got = Vec::new();
        for _ in 0..split {
            match reader.next() {
                Some(r) => got.push(r.unwrap()),
                None => break,
            }
        }
        log.clean_at(now).unwrap();
        for r in reader {
            got.push(r.unwrap());
        }
        check_read_back(&got, &w, now, &ctx);
        // Superset of what the cleaned log holds.
        let seen: BTreeSet<u64> = got.iter().map(|s| s.offset).collect();
        for s in read_all(&log) {
            assert!(
                seen.contains(&s.offset),
                "{ctx}: reader missed {}",
                s.offset
            );
        }
        // A reader opened before the clean but not yet started.
        let fs2 = mem_fs_with_dir(DIR).unwrap();
        let (log2, _) = build(&fs2);
        let idle = log2.reader(w.start).unwrap();
        log2.clean_at(now).unwrap();
        let got2: Vec<_> = idle.collect::<Result<_, _>>().unwrap();
        check_log(&log2, &w, now, &ctx);
        check_resolves_to_model(&got2, &w, now, &format!("{ctx}, idle reader"));
    }
}

/// A reader and a clean running at the same time.
#[test]
fn reader_concurrent_with_clean() {
    let now = clean_times()[0];
    for round in 0..20u64 {
        let ctx = format!("round {round}");
        let fs = mem_fs_with_dir(DIR).unwrap();
        let (log, w) = build(&fs);
        let got = std::thread::scope(|s| {
            let mut reader = log.reader(w.start).unwrap();
            let cleaner = s.spawn(|| log.clean_at(now));
            let mut got = Vec::new();
            let mut i = 0u64;
            for r in reader.by_ref() {
                got.push(r.unwrap());
                i += 1;
                if i.is_multiple_of(1 + round % 5) {
                    std::thread::yield_now();
                }
            }
            cleaner.join().unwrap().unwrap();
            // Whatever the reader did not get before the end, it gets now.
            for r in reader {
                got.push(r.unwrap());
            }
            got
        });
        check_read_back(&got, &w, now, &ctx);
        check_log(&log, &w, now, &ctx);
    }
}

/// Cleaning while appenders write and roll: the log stays a consistent
/// superset of the latest records, then cleans fully, and survives a power
/// loss.
#[test]
fn clean_concurrent_with_appends_and_rolls() {
    let now = T0 + 1_000_000;
    let fs = mem_fs_with_dir(DIR).unwrap();
    let (log, w) = build(&fs);
    let mut records = w.records.clone();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (appended, cleans) = std::thread::scope(|s| {
        let appender = s.spawn(|| {
            let mut rng = Rng::new(0xA11E_D0C0);
            let mut out = Vec::new();
            for batch in BATCHES..BATCHES + 150 {
                let batch_records: Vec<Record> = (0..1 + rng.below(6))
                    .map(|i| {
                        let key = format!("key-{:02}", rng.below(KEYS));
                        if rng.below(6) == 0 {
                            Record::tombstone(key)
                        } else {
                            Record::put(key, format!("late-{batch}-{i}"))
                        }
                        .with_timestamp_ms(T0 + batch as i64 * STEP_MS)
                    })
                    .collect();
                let info = log.append(&batch_records).unwrap();
                assert_eq!(info.base_offset, w.end + out.len() as u64);
                out.extend(batch_records);
                if batch % 5 == 0 {
                    log.roll().unwrap();
                    std::thread::yield_now();
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
            out
        });
        let cleaner = s.spawn(|| {
            let mut cleans = 0;
            loop {
                log.clean_at(now).unwrap();
                cleans += 1;
                if done.load(std::sync::atomic::Ordering::Acquire) {
                    return cleans;
                }
            }
        });
        (appender.join().unwrap(), cleaner.join().unwrap())
    });
    assert!(cleans > 0);
    records.extend(appended);
    let w = Written {
        end: records.len() as u64,
        records,
        start: w.start,
    };
    check_log(&log, &w, now, "after concurrent cleaning");
    log.clean_at(now).unwrap();
    let got = check_log(&log, &w, now, "after a final clean");
    check_fully_cleaned(&log, &got, &w, now, "after a final clean");
    log.sync().unwrap();
    drop(log);
    fs.crash(CrashMode::Random, 7);
    let log = open(&fs);
    let got = check_log(&log, &w, now, "reopened");
    check_fully_cleaned(&log, &got, &w, now, "reopened");
    check_reads_across_gaps(&log, &got, &w, "reopened");
}
