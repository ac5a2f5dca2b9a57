//! Exhaustive small workloads on the changelog alone: every workload of up
//! to three operations from {append and flush, append, roll, truncate,
//! retention delete, commit a consumer position}, run after a small
//! preload, with a power loss at every file-system call of the workload.
//!
//! At each crash point the in-memory file system loses power three ways:
//! `DropAll` (only synced data survives), `KeepAll` and `Random` (each
//! unsynced write kept, dropped or torn; each directory may lose its
//! unsynced entries), seeded by the crash point. The reopened log must
//! hold:
//!
//! - every record of a batch whose append was followed by a `flush()` that
//!   returned `Ok` (the acknowledged end);
//! - a prefix of the attempted batches: whole batches, each record's
//!   content, at contiguous offsets from the log start;
//! - a log start at least the last acknowledged `truncate_before` and at
//!   most the largest one attempted;
//! - the acknowledged consumer positions, or those of the commit the crash
//!   interrupted; positions are committed at the flushed offset, so none
//!   lies past the recovered log end;
//! - a log that accepts, syncs and reads back a new append.
//!
//! `VARVE_EXHAUSTIVE_SEEDS` sets how many `Random` seeds each crash point
//! gets (default 1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash_model;

use std::collections::BTreeSet;
use std::sync::Arc;

use crash_model::Outcome;
use varve_changelog::testing::{CrashMode, MemFs, all_sequences, env_u64, mem_fs_with_dir};
use varve_changelog::{Log, LogOptions, Record, SyncPolicy};

const DIR: &str = "/log";

/// Record time of batch 0; batch `b` has time `T0 + b`.
const T0: i64 = 1_700_000_000_000;
const CONSUMER: &str = "standby";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Append a batch of this many records, then `flush()`.
    AppendSync(usize),
    /// Append a batch of this many records, unsynced.
    Append(usize),
    /// `roll()`.
    Roll,
    /// `truncate_before(next_offset - 1)`.
    Truncate,
    /// `apply_retention_at(T0, next_offset)`: delete the closed segments
    /// below the log end (and below the consumer's position).
    Retain,
    /// Commit the consumer's position at the flushed offset.
    Commit,
}

const ALPHABET: [Op; 6] = [
    Op::AppendSync(3),
    Op::Append(2),
    Op::Roll,
    Op::Truncate,
    Op::Retain,
    Op::Commit,
];

/// Two segments, a committed position and an unsynced tail.
const PRELOAD: [Op; 5] = [
    Op::AppendSync(4),
    Op::Roll,
    Op::AppendSync(3),
    Op::Commit,
    Op::Append(2),
];

fn options() -> LogOptions {
    LogOptions::default()
        .segment_size_bytes(4096)
        .index_interval_bytes(64)
        .sync_policy(SyncPolicy::Manual)
        .retain_for_consumers(true)
        .preallocate_bytes(Some(1024))
}

/// The records of batch number `batch`.
fn batch_records(batch: u64, count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let key = format!("key-{batch}-{i}");
            let record = if (batch + i as u64) % 5 == 4 {
                Record::tombstone(key)
            } else {
                Record::put(key, format!("b{batch}-r{i}-{}", "v".repeat(i * 9)))
            };
            record.with_timestamp_ms(T0 + batch as i64)
        })
        .collect()
}

fn open(fs: &MemFs) -> varve_changelog::Result<Log> {
    Log::open(DIR, options().fs(Arc::new(fs.clone())))
}

fn step(log: &Log, op: Op, out: &mut Outcome) -> varve_changelog::Result<()> {
    match op {
        Op::AppendSync(n) | Op::Append(n) => {
            let batch = out.batch_ends.len() as u64;
            let records = batch_records(batch, n);
            let base = out.end();
            out.records.extend(records.iter().cloned());
            out.batch_ends.push(out.end());
            let info = log.append(&records)?;
            assert_eq!(info.base_offset, base, "offset assigned to batch {batch}");
            if matches!(op, Op::AppendSync(_)) {
                log.sync()?;
                out.acked_end = out.end();
            }
        }
        Op::Roll => log.roll()?,
        Op::Truncate => {
            let offset = out.end().saturating_sub(1).max(log.log_start_offset());
            out.max_start = out.max_start.max(offset);
            let report = log.truncate_before(offset)?;
            out.acked_start = out.acked_start.max(report.log_start_offset);
        }
        Op::Retain => {
            let keep_from = out.end();
            out.max_start = out.max_start.max(keep_from);
            let report = log.apply_retention_at(T0, keep_from)?;
            if let Some(&p) = out.positions.get(CONSUMER) {
                assert!(
                    report.log_start_offset <= p.max(out.acked_start),
                    "retention deleted records at or above the position {p}: {report:?}"
                );
            }
            out.acked_start = out.acked_start.max(report.log_start_offset);
        }
        Op::Commit => {
            let offset = log.synced_offset();
            let mut next = out.positions.clone();
            next.insert(CONSUMER.to_owned(), offset);
            out.positions_attempted = Some(next.clone());
            log.commit_position(CONSUMER, offset)?;
            out.positions = next;
            out.positions_attempted = None;
        }
    }
    Ok(())
}

/// Runs the preload, arms a crash point at call `crash_at` of the
/// workload (if any), runs the workload and closes the log, stopping at
/// the first error.
fn run(fs: &MemFs, workload: &[Op], crash_at: Option<u64>) -> Outcome {
    let mut out = Outcome::default();
    let log = open(fs).expect("open a new log");
    for op in PRELOAD {
        step(&log, op, &mut out).expect("preload");
    }
    if let Some(n) = crash_at {
        fs.crash_at(n);
    }
    for &op in workload {
        if let Err(e) = step(&log, op, &mut out) {
            out.error = Some(e);
            return out;
        }
    }
    out.finish(log)
}

/// Checks a reopened log against what the workload was told.
fn check(log: &Log, out: &Outcome) -> Result<(), String> {
    let (start, end) = (log.log_start_offset(), log.next_offset());
    if log.synced_offset() != end {
        return Err(format!("flushed offset {} after open", log.synced_offset()));
    }
    if end < out.acked_end {
        return Err(format!(
            "acknowledged records lost: acked end {}",
            out.acked_end
        ));
    }
    if end > out.end() || !(end == 0 || out.batch_ends.contains(&end)) {
        return Err(format!("end {end} is not an attempted batch end"));
    }
    if start < out.acked_start || start > out.max_start.max(out.acked_start) || start > end {
        return Err(format!(
            "log start {start}: acknowledged {}, largest attempted {}",
            out.acked_start, out.max_start
        ));
    }
    let starts: BTreeSet<u64> = std::iter::once(0)
        .chain(out.batch_ends.iter().copied())
        .collect();
    let mut reader = log.reader(start).map_err(|e| format!("reader: {e}"))?;
    let mut expect = start;
    while let Some((header, records)) = reader
        .next_batch()
        .map_err(|e| format!("read at {expect}: {e}"))?
    {
        if !starts.contains(&header.next_offset()) {
            return Err(format!("a batch ends at {}", header.next_offset()));
        }
        for stored in records {
            if stored.offset != expect {
                return Err(format!("offset {} where {expect} was due", stored.offset));
            }
            if stored.record != out.records[expect as usize] {
                return Err(format!("wrong record at offset {expect}"));
            }
            expect += 1;
        }
    }
    if expect != end {
        return Err(format!("reading stopped at {expect}"));
    }
    let positions = log.positions();
    if positions != out.positions && Some(&positions) != out.positions_attempted.as_ref() {
        return Err(format!(
            "positions {positions:?}, acknowledged {:?}, attempted {:?}",
            out.positions, out.positions_attempted
        ));
    }
    if let Some((name, p)) = positions.iter().find(|(_, p)| **p > end) {
        return Err(format!("position {name}={p} past the durable log end"));
    }
    Ok(())
}

/// The recovered log takes, syncs and reads back one more append.
fn use_after_recovery(log: &Log) -> Result<(), String> {
    let end = log.next_offset();
    let info = log
        .append(&[Record::put("after", "recovery").with_timestamp_ms(T0)])
        .map_err(|e| format!("append after recovery: {e}"))?;
    log.sync().map_err(|e| format!("flush: {e}"))?;
    if info.base_offset != end {
        return Err(format!("appended at {} after end {end}", info.base_offset));
    }
    let got = log
        .reader(end)
        .and_then(|r| r.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("read after recovery: {e}"))?;
    if got.len() != 1 || got[0].record.key.as_ref() != b"after" {
        return Err(format!("read back {} records", got.len()));
    }
    Ok(())
}

fn workloads() -> Vec<Vec<Op>> {
    all_sequences(&ALPHABET, 3)
}

#[test]
fn every_small_changelog_workload_crashed_at_every_call() {
    let seeds = env_u64("VARVE_EXHAUSTIVE_SEEDS").unwrap_or(1);
    let started = std::time::Instant::now();
    let (mut workloads_run, mut crash_points, mut crash_states) = (0u64, 0u64, 0u64);
    for w in workloads() {
        // Count the workload's calls, from after the preload to after close.
        let fs = mem_fs_with_dir(DIR).unwrap();
        let log = open(&fs).expect("open");
        let mut out = Outcome::default();
        for op in PRELOAD {
            step(&log, op, &mut out).expect("preload");
        }
        let before = fs.op_count();
        for &op in &w {
            step(&log, op, &mut out).unwrap_or_else(|e| panic!("{w:?}: fault-free: {e}"));
        }
        log.close().expect("close");
        let calls = fs.op_count() - before;
        for n in 0..=calls {
            let modes = [(CrashMode::DropAll, 0), (CrashMode::KeepAll, 0)]
                .into_iter()
                .chain((0..seeds).map(|s| (CrashMode::Random, n * 1000 + s)));
            for (mode, seed) in modes {
                let fs = mem_fs_with_dir(DIR).unwrap();
                let out = run(&fs, &w, Some(n));
                assert!(
                    out.error.is_some() || n == calls,
                    "{w:?}: the crash at call {n} of {calls} did not stop the workload"
                );
                fs.crash(mode, seed);
                let ctx = format!("workload {w:?}, crash at call {n} of {calls}, {mode:?}/{seed}");
                let log = open(&fs).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
                check(&log, &out)
                    .and_then(|()| use_after_recovery(&log))
                    .unwrap_or_else(|e| {
                        panic!(
                            "{ctx}: {e}\n  log [{}..{}), acked end {}, {:?}",
                            log.log_start_offset(),
                            log.next_offset(),
                            out.acked_end,
                            log.recovery_report()
                        )
                    });
                crash_states += 1;
            }
            crash_points += 1;
        }
        workloads_run += 1;
    }
    eprintln!(
        "every_small_changelog_workload_crashed_at_every_call: {workloads_run} workloads, \
         {crash_points} crash points, {crash_states} crash states checked, {:?}",
        started.elapsed()
    );
}

/// The workloads and preload exercise what they claim to: the preload
/// leaves two segments and a position; truncation and retention move the
/// log start.
#[test]
fn the_workloads_move_the_log_start() {
    let fs = mem_fs_with_dir(DIR).unwrap();
    let out = run(&fs, &[Op::Retain], None);
    let log = open(&fs).unwrap();
    assert!(log.log_start_offset() > 0, "retention deleted nothing");
    assert_eq!(log.positions().get(CONSUMER), Some(&7));
    check(&log, &out).unwrap();
    drop(log);
    let fs = mem_fs_with_dir(DIR).unwrap();
    let out = run(&fs, &[Op::Truncate], None);
    let log = open(&fs).unwrap();
    assert_eq!(log.log_start_offset(), out.end() - 1);
    check(&log, &out).unwrap();
}
