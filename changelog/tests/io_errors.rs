//! I/O errors: failed syncs make the log read-only for good (and every
//! waiting appender is told), and an I/O error at any call of a workload
//! leaves a log that reopens with a prefix of what was appended, including
//! everything acknowledged as durable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use varve_changelog::testing::{
    CrashMode, FaultKind, MemFs, for_each_sync_policy, mem_fs_with_dir, small_log_options,
};
use varve_changelog::{AppendInfo, Error, Log, LogOptions, Record, SyncPolicy};

const DIR: &str = "/log";

const T0: i64 = 1_700_000_000_000;

fn options(policy: SyncPolicy) -> LogOptions {
    small_log_options(policy)
}

fn open(fs: &MemFs, opts: &LogOptions) -> varve_changelog::Result<Log> {
    Log::open(DIR, opts.clone().fs(Arc::new(fs.clone())))
}

/// The records of batch number `batch`.
fn batch_records(batch: u64, count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let pad = ((batch * 11 + i as u64 * 5) % 40) as usize;
            Record::put(
                format!("key-{}", (batch + i as u64) % 17),
                format!("b{batch}-r{i}-{}", "x".repeat(pad)),
            )
            .with_timestamp_ms(T0 + batch as i64)
        })
        .collect()
}

/// What was written to a log, as its user could tell.
#[derive(Debug, Default)]
struct Model {
    /// The record at every offset written (by an append that returned
    /// `Ok`, or that failed after writing).
    records: Vec<Record>,
    /// The end offset of every written batch.
    batch_ends: Vec<u64>,
    /// Everything below this offset was acknowledged as durable.
    acked_end: u64,
    /// The number of batches attempted (to derive the next batch's content).
    attempts: u64,
}

impl Model {
    fn end(&self) -> u64 {
        self.records.len() as u64
    }

    /// Appends batch `attempts` of `count` records and records the outcome.
    fn append(
        &mut self,
        log: &Log,
        count: usize,
        policy: SyncPolicy,
    ) -> varve_changelog::Result<AppendInfo> {
        let records = batch_records(self.attempts, count);
        self.attempts += 1;
        let base = log.next_offset();
        assert_eq!(base, self.end(), "the log end moved behind our back");
        let result = log.append(&records);
        // A failed append either wrote nothing or wrote the whole batch (and
        // then failed to sync it).
        let after = log.next_offset();
        if after != base {
            assert_eq!(
                after,
                base + count as u64,
                "append moved the end by a torn amount"
            );
            self.records.extend(records);
            self.batch_ends.push(self.end());
        }
        match &result {
            Ok(info) => {
                assert_eq!(after, base + count as u64);
                assert_eq!((info.base_offset, info.last_offset), (base, after - 1));
                if policy == SyncPolicy::Always {
                    self.acked_end = after;
                }
            }
            Err(e) => assert_typed(e),
        }
        result
    }

    fn flush(&mut self, log: &Log) -> varve_changelog::Result<()> {
        let end = self.end();
        let result = log.sync();
        match &result {
            Ok(()) => self.acked_end = self.acked_end.max(end),
            Err(e) => assert_typed(e),
        }
        result
    }

    /// Checks a reopened log: a prefix of the written batches that holds
    /// everything acknowledged.
    fn check(&self, log: &Log, ctx: &str) {
        let start = log.log_start_offset();
        let end = log.next_offset();
        let ctx = format!(
            "{ctx}: log [{start}, {end}), acked end {}, written end {}, recovery {:?}",
            self.acked_end,
            self.end(),
            log.recovery_report()
        );
        assert_eq!(log.synced_offset(), end, "{ctx}: flushed offset after open");
        assert!(log.failure().is_none(), "{ctx}: failed after reopen");
        assert!(end >= self.acked_end, "{ctx}: acknowledged batches lost");
        assert!(end <= self.end(), "{ctx}: more records than were written");
        assert!(
            end == 0 || self.batch_ends.contains(&end),
            "{ctx}: log end is not a batch end: {:?}",
            self.batch_ends
        );
        let bounds: BTreeSet<u64> = std::iter::once(0)
            .chain(self.batch_ends.iter().copied())
            .collect();
        let mut reader = log.reader(start).expect("reader at the log start");
        let mut expect = start;
        while let Some((header, records)) = reader
            .next_batch()
            .unwrap_or_else(|e| panic!("{ctx}: read at {expect}: {e}"))
        {
            assert!(
                bounds.contains(&header.base_offset) && bounds.contains(&header.next_offset()),
                "{ctx}: batch [{}, {}) was never appended whole",
                header.base_offset,
                header.next_offset()
            );
            for stored in records {
                assert_eq!(stored.offset, expect, "{ctx}: hole");
                assert_eq!(
                    stored.record, self.records[expect as usize],
                    "{ctx}: content at {expect}"
                );
                expect += 1;
            }
        }
        assert_eq!(expect, end, "{ctx}: records missing");
    }
}

/// Errors from the log under injected faults are typed: I/O errors with
/// the operation named, or read-only after a failed sync.
fn assert_typed(e: &Error) {
    match e {
        Error::Io { op, .. } => assert!(!op.is_empty()),
        Error::ReadOnly { cause } => assert!(!cause.is_empty(), "read-only without a cause"),
        other => panic!("unexpected error under an injected I/O fault: {other:?}"),
    }
}

fn assert_read_only(result: varve_changelog::Result<impl std::fmt::Debug>, what: &str) {
    match result {
        Err(Error::ReadOnly { cause }) => {
            assert!(cause.contains("sync"), "{what}: cause {cause:?}");
        }
        other => panic!("{what}: expected ReadOnly, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Failed syncs.

fn failed_sync_is_final(policy: SyncPolicy) {
    let fs = mem_fs_with_dir(DIR).unwrap();
    let opts = options(policy);
    let log = open(&fs, &opts).unwrap();
    let mut model = Model::default();
    for i in 0..16 {
        model.append(&log, 1 + (i * 7) % 20, policy).unwrap();
        if i % 4 == 3 {
            model.flush(&log).unwrap();
        }
    }
    model.flush(&log).unwrap();
    let acked = model.acked_end;
    assert!(log.segment_base_offsets().len() > 1, "no roll happened");
    assert_eq!(log.synced_offset(), acked);

    fs.fail_syncs(true);
    let err = match policy {
        SyncPolicy::Always => model.append(&log, 3, policy).unwrap_err(),
        _ => {
            model.append(&log, 3, policy).unwrap();
            model.flush(&log).unwrap_err()
        }
    };
    assert!(
        matches!(err, Error::ReadOnly { .. } | Error::Io { .. }),
        "{err:?}"
    );
    let failure = log.failure().expect("failure() after a failed sync");
    assert!(failure.contains("sync"), "{failure}");

    // The failure is final, even once the device works again.
    fs.fail_syncs(false);
    for i in 0..3 {
        assert_read_only(
            model.append(&log, 1 + i, policy),
            "append after failed sync",
        );
        assert_read_only(log.sync(), "flush after failed sync");
        assert_read_only(log.roll(), "roll after failed sync");
    }
    assert_eq!(log.failure(), Some(failure));
    assert_eq!(
        log.synced_offset(),
        acked,
        "flushed offset moved after failure"
    );

    // Reads still work, including the batch whose sync failed.
    let got: Vec<_> = log.reader(0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len() as u64, model.end());
    for (i, stored) in got.iter().enumerate() {
        assert_eq!(stored.offset, i as u64);
        assert_eq!(stored.record, model.records[i]);
    }
    let mut fetched = 0;
    let mut from = 0;
    while from < model.end() {
        let fetch = log.read(from, 1 << 20).unwrap();
        assert!(fetch.next_fetch_offset > from);
        fetched += fetch
            .batches
            .iter()
            .map(|b| b.header().record_count)
            .sum::<u32>();
        from = fetch.next_fetch_offset;
    }
    assert_eq!(u64::from(fetched), model.end());

    // Power loss: everything acknowledged before the failure survives.
    drop(log);
    fs.crash(CrashMode::DropAll, 0);
    let log = open(&fs, &opts).unwrap();
    model.check(
        &log,
        &format!("{policy:?} after failed sync and power loss"),
    );
    assert_eq!(log.next_offset(), acked, "unsynced data survived DropAll");
    // And the reopened log is writable again.
    log.append(&batch_records(99, 2)).unwrap();
    log.sync().unwrap();
}

#[test]
fn failed_sync_makes_log_read_only_for_good() {
    for_each_sync_policy(failed_sync_is_final);
}

#[test]
fn failed_sync_during_roll_makes_log_read_only() {
    let fs = mem_fs_with_dir(DIR).unwrap();
    let opts = options(SyncPolicy::Manual);
    let log = open(&fs, &opts).unwrap();
    let mut model = Model::default();
    for i in 0..3 {
        model.append(&log, 1 + i, SyncPolicy::Manual).unwrap();
    }
    fs.fail_syncs(true);
    assert!(log.roll().is_err());
    fs.fail_syncs(false);
    assert!(log.failure().is_some());
    assert_read_only(
        model.append(&log, 1, SyncPolicy::Manual),
        "append after failed roll",
    );
    assert_read_only(log.sync(), "flush after failed roll");
    drop(log);
    fs.crash(CrashMode::DropAll, 0);
    let log = open(&fs, &opts).unwrap();
    model.check(&log, "after failed roll");
}

#[test]
fn concurrent_appenders_are_all_told_of_a_failed_sync() {
    const THREADS: u64 = 8;
    let fs = mem_fs_with_dir(DIR).unwrap();
    let opts = options(SyncPolicy::Always).segment_size_bytes(16 << 10);
    let log = Arc::new(open(&fs, &opts).unwrap());
    let appended = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let log = log.clone();
        let appended = appended.clone();
        let tx = tx.clone();
        handles.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut first_error = None;
            for seq in 0u64.. {
                let n = 1 + (seq % 4) as usize;
                let records: Vec<Record> = (0..n)
                    .map(|i| {
                        Record::put(format!("t{t}-s{seq}-i{i}"), format!("value-{t}-{seq}-{i}"))
                            .with_timestamp_ms(T0)
                    })
                    .collect();
                match log.append(&records) {
                    Ok(info) => {
                        assert!(
                            first_error.is_none(),
                            "appender {t}: append succeeded after {first_error:?}"
                        );
                        acked.push((info, t, seq, n));
                        appended.fetch_add(1, Ordering::Relaxed);
                    }
                    // The sync error itself may surface as an I/O error (a
                    // roll whose index write failed to sync, say); the log
                    // is read-only once a data sync failed.
                    Err(e @ Error::Io { .. }) => {
                        first_error.get_or_insert(e);
                    }
                    Err(e) => {
                        let _ = tx.send((t, acked, e));
                        return;
                    }
                }
                assert!(seq < 10_000_000, "appender {t} never saw the failure");
            }
        }));
    }
    drop(tx);
    while appended.load(Ordering::Relaxed) < 400 {
        std::thread::sleep(Duration::from_millis(1));
    }
    fs.fail_syncs(true);
    let mut acked = Vec::new();
    for _ in 0..THREADS {
        let (t, thread_acked, e) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("an appender hung after the failed sync");
        assert!(
            matches!(e, Error::ReadOnly { .. }),
            "appender {t} got {e:?}"
        );
        acked.extend(thread_acked);
    }
    for handle in handles {
        handle.join().expect("appender panicked");
    }
    assert!(log.failure().is_some());
    fs.fail_syncs(false);
    assert_read_only(
        log.append(&[Record::put("late", "x")]),
        "append after failure",
    );

    let acked_end = acked.iter().map(|(i, ..)| i.last_offset + 1).max().unwrap();
    assert!(log.synced_offset() >= acked_end);
    let log = Arc::try_unwrap(log).expect("appender threads still hold the log");
    drop(log);
    fs.crash(CrashMode::DropAll, 0);
    let log = open(&fs, &opts).unwrap();
    let end = log.next_offset();
    assert!(
        end >= acked_end,
        "acknowledged appends lost: end {end} < {acked_end}"
    );
    // Every batch present is whole and is what its appender wrote; every
    // acknowledged batch is present.
    let mut found = BTreeSet::new();
    let mut reader = log.reader(0).unwrap();
    let mut expect = 0;
    while let Some((header, records)) = reader.next_batch().unwrap() {
        assert_eq!(header.base_offset, expect, "hole before {expect}");
        let first = String::from_utf8(records[0].record.key.to_vec()).unwrap();
        let (t, seq) = {
            let mut parts = first.split('-');
            let t = parts.next().unwrap().to_owned();
            let s = parts.next().unwrap().to_owned();
            (t, s)
        };
        for (i, stored) in records.iter().enumerate() {
            assert_eq!(stored.offset, expect);
            let key = format!("{t}-{seq}-i{i}");
            assert_eq!(stored.record.key.as_ref(), key.as_bytes());
            expect += 1;
        }
        found.insert((header.base_offset, t, seq, records.len()));
    }
    assert_eq!(expect, end);
    for (info, t, seq, n) in acked {
        assert!(
            found.contains(&(info.base_offset, format!("t{t}"), format!("s{seq}"), n)),
            "acknowledged batch {info:?} of appender {t} missing"
        );
    }
}

// ---------------------------------------------------------------------------
// An I/O error at every call of a small workload.

/// Runs a small workload (open, appends, flushes, a roll, a consumer commit,
/// a truncation, close), continuing past errors. Returns the model and the
/// log if it is still open.
fn faulty_workload(fs: &MemFs, opts: &LogOptions, ctx: &str) -> (Model, Option<Log>) {
    let policy = opts.sync_policy;
    let mut model = Model::default();
    let log = match open(fs, opts) {
        Ok(log) => log,
        Err(e) => {
            assert_typed(&e);
            return (model, None);
        }
    };
    let sizes = [3, 20, 1, 9, 14, 5, 20, 2, 8, 17, 4, 11];
    for (i, &n) in sizes.iter().enumerate() {
        let _ = model.append(&log, n, policy);
        match i {
            2 | 6 | 9 => {
                let _ = model.flush(&log);
            }
            4 => {
                if let Err(e) = log.roll() {
                    assert_typed(&e);
                }
            }
            7 => {
                if let Err(e) = log.commit_position("c", model.end() / 2) {
                    assert_typed(&e);
                }
            }
            8 => {
                let _ = model.flush(&log);
                let to = model.acked_end.min(log.next_offset()) / 2;
                if let Err(e) = log.truncate_before(to) {
                    assert_typed(&e);
                }
            }
            _ => {}
        }
        assert!(
            log.next_offset() == model.end(),
            "{ctx}: in-memory log end {} vs model {}",
            log.next_offset(),
            model.end()
        );
    }
    let _ = model.flush(&log);
    (model, Some(log))
}

fn fault_at_every_call(policy: SyncPolicy) {
    let opts = options(policy);
    let fs = mem_fs_with_dir(DIR).unwrap();
    let (clean, log) = faulty_workload(&fs, &opts, "fault-free run");
    drop(log);
    let total = fs.op_count();
    assert_eq!(clean.acked_end, clean.end());
    assert!(total > 50);
    for kind in [FaultKind::Once, FaultKind::Persistent] {
        for mode in [CrashMode::KeepAll, CrashMode::DropAll] {
            for n in 0..=total {
                let ctx = format!("{policy:?}: {kind:?} fault at call {n}/{total}, then {mode:?}");
                let fs = mem_fs_with_dir(DIR).unwrap();
                fs.fail_after(n, kind);
                let (model, log) = faulty_workload(&fs, &opts, &ctx);
                fs.clear_faults();
                // The process dies with the log open.
                fs.crash(mode, 0);
                let reopened = match open(&fs, &opts) {
                    Ok(log) => log,
                    Err(e) => panic!("{ctx}: reopen failed: {e}"),
                };
                model.check(&reopened, &ctx);
                if mode == CrashMode::KeepAll {
                    assert_eq!(
                        reopened.next_offset(),
                        model.end(),
                        "{ctx}: a process kill lost written records"
                    );
                }
                // The dead log's handles are gone: dropping it must not
                // touch the reopened one.
                drop(log);
                model.check(&reopened, &format!("{ctx} (after dropping the dead log)"));
                reopened.append(&batch_records(1000, 1)).unwrap();
                reopened.sync().unwrap();
            }
        }
    }
}

#[test]
fn io_error_at_every_call() {
    for_each_sync_policy(fault_at_every_call);
}

// ---------------------------------------------------------------------------
// Concurrent writers of log.meta.

/// Rolls (which write `log.meta` under the append lock) racing with
/// `truncate_before` (which writes it under the maintenance lock) must not
/// fail with spurious I/O errors from the shared `log.meta.tmp`, and must
/// leave a valid `log.meta`. (A race test: without the serialization of
/// `write_meta` it fails in roughly a third of the runs.)
#[test]
fn concurrent_roll_and_truncate_never_fail() {
    use std::sync::atomic::AtomicBool;
    let fs = mem_fs_with_dir(DIR).unwrap();
    let opts = options(SyncPolicy::Manual);
    let log = open(&fs, &opts).unwrap();
    let done = AtomicBool::new(false);
    let (append_errors, truncate_errors) = std::thread::scope(|s| {
        let appender = s.spawn(|| {
            let mut errors = Vec::new();
            for i in 0..2000 {
                if let Err(e) = log.append(&batch_records(i, 1)) {
                    errors.push(format!("append: {e}"));
                }
                if let Err(e) = log.roll() {
                    errors.push(format!("roll: {e}"));
                }
            }
            done.store(true, Ordering::Release);
            errors
        });
        let truncater = s.spawn(|| {
            let mut errors = Vec::new();
            while !done.load(Ordering::Acquire) {
                if let Err(e) = log.truncate_before(log.next_offset()) {
                    errors.push(format!("truncate_before: {e}"));
                }
            }
            errors
        });
        (appender.join().unwrap(), truncater.join().unwrap())
    });
    assert!(
        append_errors.is_empty() && truncate_errors.is_empty(),
        "spurious errors: {:?} / {:?}",
        append_errors.first(),
        truncate_errors.first()
    );
    let end = log.next_offset();
    drop(log);
    fs.crash(CrashMode::DropAll, 0);
    let log = open(&fs, &opts).unwrap();
    assert_eq!(log.next_offset(), end);
}
