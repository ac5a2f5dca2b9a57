//! Simulated power loss at every file-system call of a workload.
//!
//! A workload (appends of batches of 1–20 records, flushes, rolls, consumer
//! position commits, `truncate_before`, reopens) runs over a [`MemFs`] with
//! a crash point armed at call N: that call and every later one fail, so the
//! workload stops there as if the machine died. The file system then
//! "loses power" ([`CrashMode::DropAll`], [`CrashMode::KeepAll`] or
//! [`CrashMode::Random`]) and the log is reopened. The reopened log must
//! hold exactly a prefix of the appended batches (whole batches, no holes)
//! that includes every batch acknowledged as durable.
//!
//! `VARVE_CRASH_CYCLES` sets the number of randomized cycles (default
//! 2,000); `VARVE_CRASH_SEED` replays one randomized cycle by its seed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash_model;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crash_model::Outcome;
use varve_changelog::fs::FileSystem;
use varve_changelog::testing::{
    CrashMode, MemFs, Rng, env_u64, for_each_sync_policy, mem_fs_with_dir, seed_range,
    small_log_options,
};
use varve_changelog::{Log, LogOptions, Record, RecoveryMode, SyncPolicy};

const DIR: &str = "/log";

/// Record time of batch 0; batch `b` has time `T0 + b`.
const T0: i64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------
// Workloads.

/// The records of batch number `batch`: content derived from the number so
/// that a reopened log can be checked record by record.
fn batch_records(batch: u64, count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let i64_i = i as u64;
            let key = format!("key-{:03}", (batch * 7 + i64_i) % 61);
            // Every 17th batch has large values: bigger than a segment.
            let scale = if batch % 17 == 16 { 12 } else { 1 };
            let pad = ((batch * 13 + i64_i * 7) % 48) as usize * scale;
            let ts = T0 + batch as i64;
            let mut record = if (batch + i64_i) % 9 == 8 {
                Record::tombstone(key)
            } else {
                Record::put(key, format!("b{batch}-r{i}-{}", "v".repeat(pad)))
            }
            .with_timestamp_ms(ts);
            if batch % 4 == 1 && i == 0 {
                record = record.with_header("batch", batch.to_string());
            }
            record
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// Append a batch of this many records.
    Append(usize),
    /// `flush()`.
    Flush,
    /// `roll()`.
    Roll,
    /// Commit the position of consumer `.0` at `next_offset - .1`.
    Commit(u8, u64),
    /// `truncate_before(next_offset - .0)`.
    Truncate(u64),
    /// Flush, then `truncate_before(next_offset - .0)`.
    FlushTruncate(u64),
    /// `apply_retention_at(T0, next_offset - .0)`: delete the closed
    /// segments below that offset.
    Retain(u64),
    /// Close the log and open it again.
    Reopen,
}

fn open(fs: &MemFs, opts: &LogOptions) -> varve_changelog::Result<Log> {
    Log::open(DIR, opts.clone().fs(Arc::new(fs.clone())))
}

/// Runs `script` on a fresh log in `fs`, with a crash point armed at call
/// `crash_at` (counted from now), stopping at the first error. The log is
/// closed (or, after an error, dropped) before this returns.
fn run(fs: &MemFs, script: &[Op], opts: &LogOptions, crash_at: Option<u64>) -> Outcome {
    if let Some(n) = crash_at {
        fs.crash_at(n);
    }
    let mut out = Outcome::default();
    let mut log = match open(fs, opts) {
        Ok(log) => log,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    for op in script {
        let result = match *op {
            Op::Reopen => {
                let end = out.end();
                if let Err(e) = log.close() {
                    out.error = Some(e);
                    return out;
                }
                out.acked_end = end;
                match open(fs, opts) {
                    Ok(reopened) => {
                        log = reopened;
                        Ok(())
                    }
                    Err(e) => {
                        out.error = Some(e);
                        return out;
                    }
                }
            }
            op => apply(&log, op, opts, &mut out),
        };
        if let Err(e) = result {
            out.error = Some(e);
            return out;
        }
    }
    out.finish(log)
}

fn apply(log: &Log, op: Op, opts: &LogOptions, out: &mut Outcome) -> varve_changelog::Result<()> {
    match op {
        Op::Append(count) => {
            let batch = out.batch_ends.len() as u64;
            let records = batch_records(batch, count);
            let base = out.end();
            out.records.extend(records.iter().cloned());
            out.batch_ends.push(out.end());
            let info = log.append(&records)?;
            assert_eq!(
                (info.base_offset, info.last_offset),
                (base, base + count as u64 - 1),
                "offsets assigned to batch {batch}"
            );
            if opts.sync_policy == SyncPolicy::Always {
                out.acked_end = out.end();
            }
        }
        Op::Flush => {
            let end = out.end();
            log.sync()?;
            out.acked_end = out.acked_end.max(end);
        }
        Op::Roll => log.roll()?,
        Op::Commit(consumer, back) => {
            let offset = out.end().saturating_sub(back);
            let name = format!("consumer-{consumer}");
            let mut next = out.positions.clone();
            next.insert(name.clone(), offset);
            out.positions_attempted = Some(next.clone());
            log.commit_position(&name, offset)?;
            out.positions = next;
            out.positions_attempted = None;
        }
        Op::Truncate(back) => truncate(log, out, back)?,
        Op::FlushTruncate(back) => {
            apply(log, Op::Flush, opts, out)?;
            truncate(log, out, back)?;
        }
        Op::Retain(back) => {
            let keep_from = out.end().saturating_sub(back);
            out.max_start = out.max_start.max(keep_from);
            let report = log.apply_retention_at(T0, keep_from)?;
            assert!(report.log_start_offset <= keep_from.max(out.acked_start));
            out.acked_start = out.acked_start.max(report.log_start_offset);
            assert_eq!(log.log_start_offset(), out.acked_start);
        }
        Op::Reopen => unreachable!("handled by run"),
    }
    Ok(())
}

fn truncate(log: &Log, out: &mut Outcome, back: u64) -> varve_changelog::Result<()> {
    let offset = out.end().saturating_sub(back);
    out.max_start = out.max_start.max(offset);
    let report = log.truncate_before(offset)?;
    out.acked_start = out.acked_start.max(offset);
    assert_eq!(report.log_start_offset, out.acked_start);
    assert_eq!(log.log_start_offset(), out.acked_start);
    Ok(())
}

// ---------------------------------------------------------------------------
// Checking a reopened log.

/// Opens the log in `fs` (after a crash) and checks it against what the
/// workload was told. Returns the open log.
fn verify(fs: &MemFs, out: &Outcome, opts: &LogOptions, ctx: &str) -> Log {
    let log = match open(fs, opts) {
        Ok(log) => log,
        Err(e) => panic!(
            "{ctx}: reopen failed: {e}\n  workload error: {:?}\n  files: {:?}",
            out.error,
            list(fs)
        ),
    };
    check_contents(&log, out, ctx);
    let positions = log.positions();
    assert!(
        positions == out.positions || Some(&positions) == out.positions_attempted.as_ref(),
        "{ctx}: positions {positions:?}, acknowledged {:?}, attempted {:?}",
        out.positions,
        out.positions_attempted
    );
    log
}

fn check_contents(log: &Log, out: &Outcome, ctx: &str) {
    let start = log.log_start_offset();
    let end = log.next_offset();
    let report = log.recovery_report();
    let ctx = format!(
        "{ctx}: log [{start}, {end}), acked end {}, acked start {}, workload error {:?}, recovery {report:?}",
        out.acked_end, out.acked_start, out.error
    );
    assert_eq!(log.synced_offset(), end, "{ctx}: flushed_offset after open");
    assert!(
        end == 0 || out.batch_ends.contains(&end),
        "{ctx}: next_offset is not the end of an appended batch (torn batch or garbage); batch ends {:?}",
        out.batch_ends
    );
    assert!(
        end <= out.end(),
        "{ctx}: log has more records than were appended ({})",
        out.end()
    );
    assert!(
        end >= out.acked_end,
        "{ctx}: batches acknowledged as durable were lost"
    );
    assert!(start <= end, "{ctx}: log start past log end");
    assert!(
        start >= out.acked_start,
        "{ctx}: acknowledged truncate_before({}) was undone",
        out.acked_start
    );
    assert!(
        start <= out.max_start,
        "{ctx}: log start offset beyond any truncate_before ({})",
        out.max_start
    );
    let starts: BTreeSet<u64> = std::iter::once(0)
        .chain(out.batch_ends.iter().copied())
        .collect();
    let mut reader = log
        .reader(start)
        .unwrap_or_else(|e| panic!("{ctx}: reader({start}): {e}"));
    let mut expect = start;
    loop {
        let (header, records) = match reader.next_batch() {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(e) => panic!("{ctx}: reading at {expect}: {e}"),
        };
        assert!(
            starts.contains(&header.base_offset) && starts.contains(&header.next_offset()),
            "{ctx}: batch [{}, {}) is not an appended batch",
            header.base_offset,
            header.next_offset()
        );
        for stored in records {
            assert_eq!(stored.offset, expect, "{ctx}: hole or reordering");
            assert_eq!(
                &stored.record, &out.records[expect as usize],
                "{ctx}: content at offset {expect}"
            );
            expect += 1;
        }
    }
    assert_eq!(expect, end, "{ctx}: records missing before the log end");
}

/// After checking a reopened log, keep using it: append, flush, read back.
fn use_after_recovery(log: &Log, ctx: &str) {
    let end = log.next_offset();
    let info = log
        .append(&[Record::put("after", "recovery").with_timestamp_ms(T0)])
        .unwrap_or_else(|e| panic!("{ctx}: append after recovery: {e}"));
    assert_eq!(info.base_offset, end, "{ctx}: offset after recovery");
    log.sync()
        .unwrap_or_else(|e| panic!("{ctx}: flush after recovery: {e}"));
    let got: Vec<_> = log
        .reader(end)
        .and_then(|r| r.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{ctx}: read after recovery: {e}"));
    assert_eq!(got.len(), 1, "{ctx}: read after recovery");
    assert_eq!(got[0].record.key.as_ref(), b"after");
}

fn list(fs: &MemFs) -> Vec<(String, usize)> {
    let names = fs.list_dir(Path::new(DIR)).unwrap_or_default();
    names
        .into_iter()
        .map(|name| {
            let len = fs
                .read_all(&Path::new(DIR).join(&name))
                .map_or(0, |d| d.len());
            (name, len)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Options and scripts.

fn options(policy: SyncPolicy) -> LogOptions {
    small_log_options(policy)
}

/// The scripted workload: about 45 batches over ~8 segments.
fn scripted_workload(policy: SyncPolicy) -> Vec<Op> {
    let sizes = [
        1, 5, 20, 3, 7, 12, 20, 20, 2, 9, 14, 1, 1, 18, 6, 20, 11, 4, 8, 16, 19, 3, 10, 5, 20, 13,
        2, 7, 17, 1, 15, 20, 6, 9, 4, 12, 20, 8, 3, 11,
    ];
    let mut script = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        script.push(Op::Append(n));
        if policy == SyncPolicy::Manual && i % 3 == 2 {
            script.push(Op::Flush);
        }
        match i {
            4 | 22 => script.push(Op::Roll),
            8 => script.push(Op::Commit(0, 5)),
            12 => script.push(Op::FlushTruncate(30)),
            20 => script.push(Op::Commit(1, 0)),
            26 => script.push(Op::Commit(0, 2)),
            // Not flushed first: under `Manual`, the new start offset is
            // past the durable data.
            31 => script.push(Op::Truncate(7)),
            35 => script.push(Op::Truncate(0)),
            37 => script.push(Op::Retain(20)),
            _ => {}
        }
    }
    script.push(Op::Append(2));
    if policy == SyncPolicy::Manual {
        script.push(Op::Flush);
    }
    script
}

fn crash_variants(n: u64) -> Vec<(CrashMode, u64)> {
    let mut v = vec![(CrashMode::DropAll, 0), (CrashMode::KeepAll, 0)];
    v.extend((0..6).map(|i| (CrashMode::Random, n * 6 + i)));
    v
}

// ---------------------------------------------------------------------------
// Tests.

fn crash_at_every_call(policy: SyncPolicy) {
    let opts = options(policy);
    let script = scripted_workload(policy);
    let fs = mem_fs_with_dir(DIR).unwrap();
    let clean = run(&fs, &script, &opts, None);
    assert!(clean.error.is_none(), "clean run failed: {:?}", clean.error);
    let total = fs.op_count();
    // The workload must exercise what it claims to.
    {
        let log = open(&fs, &opts).unwrap();
        let bases = log.segment_base_offsets();
        assert!(bases[0] > 0, "no roll or no retention: segments {bases:?}");
        assert!(log.log_start_offset() > 0);
        check_contents(&log, &clean, "clean run");
    }
    let mut fired = 0;
    for n in 0..=total {
        for (mode, seed) in crash_variants(n) {
            let ctx = format!("{policy:?}: crash at call {n}/{total}, {mode:?} seed {seed}");
            let fs = mem_fs_with_dir(DIR).unwrap();
            let out = run(&fs, &script, &opts, Some(n));
            if mode == CrashMode::DropAll && out.error.is_some() {
                fired += 1;
            }
            fs.crash(mode, seed);
            let log = verify(&fs, &out, &opts, &ctx);
            use_after_recovery(&log, &ctx);
        }
    }
    assert_eq!(fired, total, "crash points that stopped the workload");
}

#[test]
fn power_loss_at_every_call() {
    for_each_sync_policy(crash_at_every_call);
}

/// A random workload and options for `seed`.
fn random_case(seed: u64) -> (LogOptions, Vec<Op>) {
    let mut rng = Rng::new(seed);
    let policy = if rng.chance(50) {
        SyncPolicy::Always
    } else {
        SyncPolicy::Manual
    };
    let opts = LogOptions::default()
        .segment_size_bytes(4096 + rng.below(3) * 2048)
        .index_interval_bytes([64, 512, 4096][rng.below(3) as usize])
        .sync_policy(policy)
        .preallocate_bytes(Some([0, 1000, 4096, 65536][rng.below(4) as usize]));
    let len = 5 + rng.below(50);
    let mut script = Vec::new();
    for _ in 0..len {
        let op = match rng.below(100) {
            0..=59 => Op::Append(1 + rng.below(20) as usize),
            60..=71 => Op::Flush,
            72..=79 => Op::Roll,
            80..=85 => Op::Commit(rng.below(3) as u8, rng.below(40)),
            86..=88 => Op::Truncate(rng.below(60)),
            89..=91 => Op::FlushTruncate(rng.below(60)),
            92..=94 => Op::Retain(rng.below(80)),
            _ => Op::Reopen,
        };
        script.push(op);
    }
    (opts, script)
}

/// One randomized cycle: a random workload, a crash at a random call,
/// power loss with random survival, sometimes a second crash during the
/// recovery, then the checks.
fn random_cycle(seed: u64) {
    let (opts, script) = random_case(seed);
    let mut rng = Rng::new(seed ^ 0xC0FF_EE00);
    let fs = mem_fs_with_dir(DIR).unwrap();
    let _ = run(&fs, &script, &opts, None);
    let total = fs.op_count();
    let n = rng.below(total + 1);
    let crash_seed = rng.next_u64();
    let ctx = format!(
        "seed {seed} (replay with VARVE_CRASH_SEED={seed}): {:?}, crash at call {n}/{total}, Random seed {crash_seed}",
        opts.sync_policy
    );
    if std::env::var_os("VARVE_CRASH_VERBOSE").is_some() {
        eprintln!("{ctx}\n  options {opts:?}\n  script {script:?}");
    }
    let fs = mem_fs_with_dir(DIR).unwrap();
    let out = run(&fs, &script, &opts, Some(n));
    fs.crash(CrashMode::Random, crash_seed);
    if rng.chance(30) {
        // Crash again, in the middle of recovering from the first crash
        // (or, if the recovery takes fewer calls, while closing after it).
        fs.crash_at(rng.below(64));
        drop(open(&fs, &opts));
        fs.crash(CrashMode::Random, crash_seed ^ 1);
    }
    let log = verify(&fs, &out, &opts, &ctx);
    use_after_recovery(&log, &ctx);
    if rng.chance(20) {
        // A clean close and reopen after recovery keeps everything.
        let end = log.next_offset();
        drop(log);
        fs.crash(CrashMode::DropAll, 0);
        let log = open(&fs, &opts).unwrap_or_else(|e| panic!("{ctx}: second reopen: {e}"));
        assert_eq!(log.next_offset(), end, "{ctx}: second reopen");
    }
}

#[test]
fn power_loss_random_workloads() {
    let cycles = env_u64("VARVE_CRASH_CYCLES").unwrap_or(2_000);
    for seed in seed_range("VARVE_CRASH_SEED", 0x5EED_0000, cycles) {
        random_cycle(seed);
    }
}

/// Recovery of a log whose active segment is damaged mid-way (tolerant
/// mode, so it is cut rather than refused), crashed at every call of that
/// recovery: the next open must still see a prefix, never a hole.
#[test]
fn power_loss_during_tolerant_recovery() {
    let opts = options(SyncPolicy::Manual).recovery(RecoveryMode::Tolerant);
    // A log of several segments, cleanly closed (recovery point at the end).
    let script: Vec<Op> = (0..40).map(|i| Op::Append(1 + (i * 7) % 20)).collect();
    let build = || {
        let fs = mem_fs_with_dir(DIR).unwrap();
        let out = run(&fs, &script, &opts, None);
        assert!(out.error.is_none());
        // Damage a batch in the middle of the second segment.
        let log = open(&fs, &opts).unwrap();
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 4, "segments {bases:?}");
        drop(log);
        let path = Path::new(DIR).join(format!("{:020}.log", bases[1]));
        // In the last batch: after the last index entry, so that the open
        // rescans the segment instead of trusting its index.
        let len = fs.read_all(&path).unwrap().len() as u64;
        fs.flip_bit(&path, len - 5, 3).unwrap();
        (fs, out)
    };
    let (fs, out) = build();
    let before = fs.op_count();
    let log = open(&fs, &opts).unwrap();
    assert!(log.recovery_report().truncated_at.is_some());
    assert!(log.recovery_report().segments_removed >= 2);
    let cut = log.next_offset();
    drop(log);
    let total = fs.op_count() - before;
    for n in 0..=total {
        for (mode, seed) in crash_variants(n) {
            let ctx =
                format!("tolerant recovery crashed at call {n}/{total}, {mode:?} seed {seed}");
            let (fs, out2) = build();
            fs.crash_at(n);
            let _ = open(&fs, &opts);
            fs.crash(mode, seed);
            let log = match open(&fs, &opts) {
                Ok(log) => log,
                Err(e) => panic!("{ctx}: reopen failed: {e}; files {:?}", list(&fs)),
            };
            // Everything up to the damage survives; nothing after a hole.
            let acked = Outcome {
                acked_end: cut,
                records: out2.records.clone(),
                batch_ends: out2.batch_ends.clone(),
                ..Outcome::default()
            };
            check_contents(&log, &acked, &ctx);
            assert_eq!(log.next_offset(), cut, "{ctx}: log end after recovery");
        }
    }
    drop(out);
}

/// A crash at any call of the very first open (which creates `log.meta`
/// through `log.meta.tmp`) leaves a directory that opens as an empty log.
#[test]
fn power_loss_during_the_first_open() {
    let opts = options(SyncPolicy::Manual);
    let fs = mem_fs_with_dir(DIR).unwrap();
    drop(open(&fs, &opts).unwrap());
    let total = fs.op_count();
    for n in 0..=total {
        for (mode, seed) in crash_variants(n) {
            let ctx = format!("first open crashed at call {n}/{total}, {mode:?} seed {seed}");
            let fs = mem_fs_with_dir(DIR).unwrap();
            fs.crash_at(n);
            drop(open(&fs, &opts));
            fs.crash(mode, seed);
            let log = match open(&fs, &opts) {
                Ok(log) => log,
                Err(e) => panic!("{ctx}: reopen failed: {e}; files {:?}", list(&fs)),
            };
            assert_eq!((log.log_start_offset(), log.next_offset()), (0, 0), "{ctx}");
            use_after_recovery(&log, &ctx);
        }
    }
}

/// `truncate_before` is durable when it returns, even when the new start
/// offset is past the last flush (`SyncPolicy::Manual`): after a power loss
/// the log opens (no "corruption below the recovery point") and its start
/// offset is not moved back.
#[test]
fn truncate_before_past_unflushed_data_then_power_loss() {
    let opts = options(SyncPolicy::Manual);
    let script = [
        Op::Append(5),
        Op::Append(9),
        Op::Flush,
        Op::Append(7),
        Op::Append(12),
        Op::Truncate(4),
    ];
    for (mode, seed) in std::iter::once((CrashMode::DropAll, 0))
        .chain((0..64).map(|seed| (CrashMode::Random, seed)))
    {
        let ctx = format!("{mode:?} seed {seed}");
        let fs = mem_fs_with_dir(DIR).unwrap();
        let log = open(&fs, &opts).unwrap();
        let mut out = Outcome::default();
        for op in script {
            apply(&log, op, &opts, &mut out).unwrap();
        }
        assert_eq!(out.acked_start, 29);
        // Power fails with the log open.
        fs.crash(mode, seed);
        let reopened = verify(&fs, &out, &opts, &ctx);
        drop(log);
        use_after_recovery(&reopened, &ctx);
    }
}
