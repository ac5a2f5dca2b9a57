//! Restores: from a store's changelog, from a checkpoint plus later
//! records, from a gapped (compacted) log; staleness, cancellation and
//! resumption, crashes at every file-system call, progress, source errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use varve_db::internals::version::{Level, VersionSet, VersionSetOptions};
use varve_db::restore::{RestoreListener, RestoreProgress, RestoreReport};
use varve_db::testing::BrokenSource;
use varve_db::varve_changelog::fs::{CrashMode, FileSystem, MemFs, StdFs};
use varve_db::varve_changelog::{Log, LogOptions, LogSource, Record, SourceBounds, StoredRecord};
use varve_db::{ChangelogRetention, Db, Error, Options, RestoreOptions, WriteBatch, WriteOptions};

type State = BTreeMap<Bytes, Bytes>;

fn contents(db: &Db) -> State {
    db.iter().map(|kv| kv.unwrap()).collect()
}

fn no_create() -> Options {
    Options::default().create_if_missing(false)
}

/// Write `i`: a put of a ~60-byte value, or every fifth a delete.
fn record(i: u64) -> Record {
    let key = format!("key-{:04}", (i * 7919) % 500);
    if i % 5 == 2 {
        Record::tombstone(key)
    } else {
        Record::put(key, format!("value-{i}-{}", "v".repeat(50)))
    }
}

fn apply(state: &mut State, r: &Record) {
    match &r.value {
        Some(v) => state.insert(r.key.clone(), v.clone()),
        None => state.remove(&r.key),
    };
}

/// A store that keeps its whole changelog (a consumer sits at offset 0),
/// with writes `from..to` applied in batches of up to 4.
fn write_range(db: &Db, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let mut batch = WriteBatch::new();
        for _ in 0..(1 + i % 4).min(to - i) {
            let r = record(i);
            match r.value {
                Some(v) => batch.put(r.key, v),
                None => batch.delete(r.key),
            };
            i += 1;
        }
        db.write(batch, WriteOptions::default()).unwrap();
    }
}

fn source_store(path: &Path, writes: u64) -> Db {
    let opts = Options::default()
        .memtable_size_bytes(16 << 10)
        .changelog_retention(ChangelogRetention::UntilShipped)
        .changelog_segment_size_bytes(64 << 10);
    let db = Db::open(path, opts).unwrap();
    db.changelog().commit_position("test", 0).unwrap();
    write_range(&db, 0, writes);
    db
}

fn small() -> RestoreOptions {
    RestoreOptions::default()
        .memtable_size_bytes(64 << 10)
        .poll_size_bytes(8 << 10)
}

#[test]
fn restore_equals_the_source_store_and_is_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_store(&tmp.path().join("src"), 5000);
    let target = tmp.path().join("restored");
    let mut source = LogSource::new(src.changelog());
    let report = varve_db::restore(&target, &mut source, small()).unwrap();
    assert_eq!((report.start_offset, report.end_offset), (0, 5000));
    assert_eq!(report.records, 5000);
    assert!(!report.resumed);
    assert!(report.bytes > 5000 * 8);
    // Shaped like a fully compacted store: one version per live key, no
    // tombstones, nothing in L0.
    let versions =
        VersionSet::open(Arc::new(StdFs), &target, VersionSetOptions::default()).unwrap();
    let version = versions.current();
    let tables: Vec<_> = Level::all()
        .flat_map(|l| version.tables(l).to_vec())
        .collect();
    assert!(version.tables(Level(0)).is_empty());
    assert_eq!(tables.iter().map(|t| t.tombstone_count).sum::<u64>(), 0);
    let entries: u64 = tables.iter().map(|t| t.entry_count).sum();
    assert_eq!(entries, contents(&src).len() as u64);
    drop(versions);

    let restored = Db::open(&target, no_create()).unwrap();
    assert_eq!(contents(&restored), contents(&src));
    assert_eq!(restored.latest_seqno(), src.latest_seqno());
    let stats = restored.stats().unwrap();
    assert_eq!(stats.levels[0].tables, 0, "{stats}");
    assert!(stats.levels.iter().map(|l| l.tables).sum::<usize>() >= 1);
    // The restored changelog is empty and continues at the end offset.
    assert_eq!(restored.changelog().log_start_offset(), 5000);
    restored.put("after", "restore").unwrap();
    assert_eq!(restored.latest_seqno(), 5001);
    assert!(!target.join(varve_db::restore::MARKER_FILE).exists());
}

#[test]
fn runs_that_overlap_nothing_go_to_the_last_level_and_the_rest_is_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, model) = memfs_source_of(2500, seq_record);
    let target = tmp.path().join("restored");
    varve_db::restore(&target, &mut LogSource::new(&log), small()).unwrap();
    let versions =
        VersionSet::open(Arc::new(StdFs), &target, VersionSetOptions::default()).unwrap();
    let version = versions.current();
    let last = Level((varve_db::internals::version::NUM_LEVELS - 1) as u8);
    let tables: Vec<_> = Level::all()
        .flat_map(|l| version.tables(l).to_vec())
        .collect();
    assert!(tables.len() >= 3, "{} tables", tables.len());
    assert_eq!(version.tables(last).len(), tables.len());
    assert_eq!(tables.iter().map(|t| t.tombstone_count).sum::<u64>(), 0);
    let entries: u64 = tables.iter().map(|t| t.entry_count).sum();
    assert_eq!(entries, model.len() as u64);
    drop(versions);
    let restored = Db::open(&target, no_create()).unwrap();
    assert_eq!(contents(&restored), model);
    assert_eq!(restored.latest_seqno(), 2500);
}

#[test]
fn a_ttl_store_restored_keeps_each_record_s_write_time() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(tmp.path().join("log"), LogOptions::default()).unwrap();
    let now_ms = 1_700_000_000_000i64;
    let at = |key: &str, age_s: i64| Record {
        timestamp_ms: now_ms - age_s * 1000,
        ..Record::put(key.to_owned(), "v")
    };
    // Two runs' worth: an old and a fresh version of `a`, `b` written
    // long ago, `c` recently.
    log.append(&[at("a", 500), at("b", 500)]).unwrap();
    log.append(&[at("a", 10), at("c", 30)]).unwrap();
    let clock = Arc::new(varve_db::ManualClock::new(now_ms as u64));
    let store = Options::default()
        .ttl(Some(std::time::Duration::from_secs(60)))
        .clock(clock.clone());
    let target = tmp.path().join("restored");
    let opts = small().store_options(store.clone());
    varve_db::restore(&target, &mut LogSource::new(&log), opts).unwrap();
    let db = Db::open(&target, store.create_if_missing(false)).unwrap();
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(db.get("b").unwrap(), None);
    assert_eq!(db.get("c").unwrap().as_deref(), Some(&b"v"[..]));
    // `c` was written 30 s before `a`: it expires first.
    clock.advance(std::time::Duration::from_secs(35));
    assert_eq!(db.get("c").unwrap(), None);
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A source store in `dir/src` with a checkpoint in `dir/cp` taken after
/// records `0..at`; the source then goes on to `end`.
fn checkpointed_source(dir: &Path, at: u64, end: u64) -> (Db, varve_db::CheckpointInfo) {
    let src = source_store(&dir.join("src"), at);
    let cp = src.checkpoint(dir.join("cp")).unwrap();
    write_range(&src, at, end);
    (src, cp)
}

#[test]
fn restore_from_a_checkpoint_replays_only_later_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, cp) = checkpointed_source(tmp.path(), 2000, 3000);
    let target = tmp.path().join("restored");
    let opts = small().from_checkpoint(&cp.path);
    let report = varve_db::restore(&target, &mut LogSource::new(src.changelog()), opts).unwrap();
    assert_eq!((report.start_offset, report.end_offset), (2000, 3000));
    assert_eq!(report.records, 1000);
    let restored = Db::open(&target, no_create()).unwrap();
    assert_eq!(contents(&restored), contents(&src));
    // The checkpoint is left as it was.
    let checkpoint = Db::open(&cp.path, no_create()).unwrap();
    assert_eq!(checkpoint.latest_seqno(), 2000);
}

#[test]
fn a_checkpoint_below_the_source_start_is_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, cp) = checkpointed_source(tmp.path(), 300, 600);
    // A copy of the changelog that starts at 450, as after retention.
    let log = Log::open(tmp.path().join("log"), LogOptions::default()).unwrap();
    log.truncate_fully_and_start_at(450).unwrap();
    let tail: Vec<StoredRecord> = src
        .changelog()
        .reader(450)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    log.append_at(&tail).unwrap();
    let target = tmp.path().join("restored");
    let opts = small().from_checkpoint(&cp.path);
    let err = varve_db::restore(&target, &mut LogSource::new(&log), opts).unwrap_err();
    match err {
        Error::Stale {
            position,
            log_start_offset,
            ..
        } => assert_eq!((position, log_start_offset), (300, 450)),
        e => panic!("expected Stale, got {e}"),
    }
    assert!(
        !target.exists(),
        "nothing is written for a stale checkpoint"
    );
    let bounds = SourceBounds {
        start_offset: 450,
        end_offset: 600,
    };
    assert!(varve_db::restore::check_position(450, bounds).is_ok());
    assert!(varve_db::restore::check_position(449, bounds).is_err());
}

/// Records every callback.
#[derive(Default)]
struct Recorder {
    start: Mutex<Option<(u64, u64)>>,
    offsets: Mutex<Vec<u64>>,
    flushed: Mutex<Vec<u64>>,
    end: Mutex<Option<RestoreReport>>,
    /// Set this flag once the restore has passed `cancel_at`.
    cancel: Option<(Arc<AtomicBool>, u64)>,
}

impl RestoreListener for Recorder {
    fn on_start(&self, start: u64, end: u64) {
        *self.start.lock() = Some((start, end));
    }
    fn on_progress(&self, p: &RestoreProgress) {
        assert_eq!(p.end_offset, self.start.lock().unwrap().1);
        assert!(p.flushed_offset <= p.offset, "{p:?}");
        self.offsets.lock().push(p.offset);
        self.flushed.lock().push(p.flushed_offset);
        if let Some((flag, at)) = &self.cancel
            && p.offset >= *at
        {
            flag.store(true, Ordering::Release);
        }
    }
    fn on_end(&self, report: &RestoreReport) {
        *self.end.lock() = Some(*report);
    }
}

#[test]
fn progress_offsets_increase_and_end_at_the_end_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_store(&tmp.path().join("src"), 3000);
    let recorder = Arc::new(Recorder::default());
    let opts = small().listener(recorder.clone());
    let target = tmp.path().join("restored");
    varve_db::restore(&target, &mut LogSource::new(src.changelog()), opts).unwrap();
    assert_eq!(*recorder.start.lock(), Some((0, 3000)));
    let offsets = recorder.offsets.lock().clone();
    assert!(offsets.len() > 5, "{offsets:?}");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    assert_eq!(offsets.last(), Some(&3000));
    // The checkpoint follows: it never goes back, moves while the load
    // runs (64 KiB runs of 3000 records: several), and reaches the end
    // with the last call.
    let flushed = recorder.flushed.lock().clone();
    assert!(flushed.windows(2).all(|w| w[0] <= w[1]), "{flushed:?}");
    assert!(flushed.iter().any(|f| (1..3000).contains(f)), "{flushed:?}");
    assert_eq!(flushed.last(), Some(&3000));
    let end = recorder.end.lock().unwrap();
    assert_eq!(end.records, 3000);
    assert!(end.mb_per_s() >= 0.0);
}

#[test]
fn cancel_then_resume_gives_the_same_store() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_store(&tmp.path().join("src"), 4000);
    let target = tmp.path().join("restored");
    let flag = Arc::new(AtomicBool::new(false));
    let recorder = Arc::new(Recorder {
        cancel: Some((flag.clone(), 1500)),
        ..Recorder::default()
    });
    let opts = small().listener(recorder.clone()).cancel_flag(flag);
    let err = varve_db::restore(&target, &mut LogSource::new(src.changelog()), opts).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(recorder.end.lock().is_none());
    let err = Db::open(&target, Options::default()).unwrap_err();
    assert!(matches!(err, Error::RestoreIncomplete { .. }), "{err}");

    let report = varve_db::restore(&target, &mut LogSource::new(src.changelog()), small()).unwrap();
    assert!(report.resumed);
    assert!(report.start_offset >= 1500, "{report:?}");
    assert_eq!(report.records, 4000 - report.start_offset);
    let restored = Db::open(&target, no_create()).unwrap();
    assert_eq!(contents(&restored), contents(&src));
}

#[test]
fn a_gapped_source_restores_correctly() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(tmp.path().join("log"), LogOptions::default()).unwrap();
    let mut model = State::new();
    let mut offset = 5;
    for chunk in 0..40 {
        let batch: Vec<StoredRecord> = (0..25)
            .map(|j| {
                let i = chunk * 25 + j;
                offset += 1 + i % 3; // gaps of 0 to 2 offsets
                StoredRecord {
                    offset,
                    record: record(i),
                }
            })
            .collect();
        batch.iter().for_each(|r| apply(&mut model, &r.record));
        log.append_at(&batch).unwrap();
    }
    let end = log.next_offset();
    let target = tmp.path().join("restored");
    let report = varve_db::restore(&target, &mut LogSource::new(&log), small()).unwrap();
    assert_eq!((report.records, report.end_offset), (1000, end));
    let restored = Db::open(&target, no_create()).unwrap();
    assert_eq!(contents(&restored), model);
    assert_eq!(restored.latest_seqno(), end);
    restored.put("next", "write").unwrap();
    assert_eq!(restored.changelog().next_offset(), end + 1);
}

#[test]
fn refuses_a_directory_that_is_neither_empty_nor_a_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source_store(&tmp.path().join("src"), 10);
    let err = varve_db::restore(
        tmp.path().join("src"),
        &mut LogSource::new(src.changelog()),
        small(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn source_errors_keep_their_type_and_leave_the_restore_incomplete() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("restored");
    let err = varve_db::restore(&target, &mut BrokenSource, small()).unwrap_err();
    let Error::Source(inner) = &err else {
        panic!("expected Source, got {err}");
    };
    let io = inner.downcast_ref::<io::Error>().unwrap();
    assert_eq!(io.kind(), io::ErrorKind::TimedOut);
    let err = Db::open(&target, Options::default()).unwrap_err();
    assert!(matches!(err, Error::RestoreIncomplete { .. }), "{err}");
}

/// A source log on its own in-memory file system, with `n` records,
/// write `i` made by `make(i)`.
fn memfs_source_of(n: u64, make: fn(u64) -> Record) -> (Log, State) {
    let fs: Arc<dyn FileSystem> = Arc::new(MemFs::new());
    let log = Log::open("/src", LogOptions::default().fs(fs)).unwrap();
    let mut model = State::new();
    let records: Vec<Record> = (0..n).map(make).collect();
    records.iter().for_each(|r| apply(&mut model, r));
    for chunk in records.chunks(50) {
        log.append(chunk).unwrap();
    }
    (log, model)
}

/// Write `i` of a store written in key order: a put of key `i`, except
/// that the last ten writes delete keys 200 below theirs (so the last run
/// or two overlap, and the runs before overlap nothing).
fn seq_record(i: u64) -> Record {
    if (2490..2500).contains(&i) {
        return Record::tombstone(format!("key-{:06}", i - 200));
    }
    Record::put(
        format!("key-{i:06}"),
        format!("value-{i}-{}", "v".repeat(50)),
    )
}

#[test]
fn a_crash_anywhere_in_a_restore_is_refused_on_open_and_resumes() {
    crash_anywhere_and_resume(record, Options::default());
}

#[test]
fn a_crash_anywhere_in_a_restore_whose_runs_are_cut_into_stretches_resumes() {
    // Tables of 4 KiB: every run of 64 KiB is cut at the first run's keys,
    // written on two threads, and the stretches merge on two threads.
    let store = Options::default()
        .compaction(varve_db::CompactionOptions::default().target_table_size_bytes(4 << 10));
    crash_anywhere_and_resume(record, store);
}

#[test]
fn a_crash_anywhere_in_a_restore_of_keys_in_order_is_refused_on_open_and_resumes() {
    crash_anywhere_and_resume(seq_record, Options::default());
}

fn crash_anywhere_and_resume(make: fn(u64) -> Record, store: Options) {
    let (log, model) = memfs_source_of(2500, make);
    let opts = |fs: &MemFs| small().store_options(store.clone().fs(Arc::new(fs.clone())));
    let calls = {
        let fs = MemFs::new();
        varve_db::restore("/r", &mut LogSource::new(&log), opts(&fs)).unwrap();
        fs.op_count()
    };
    assert!(calls > 20, "{calls}");
    let step = (calls / 120).max(1);
    let mut refused = 0;
    for n in (0..calls).step_by(step as usize) {
        let fs = MemFs::new();
        fs.crash_at(n);
        assert!(varve_db::restore("/r", &mut LogSource::new(&log), opts(&fs)).is_err());
        let mode = [CrashMode::DropAll, CrashMode::KeepAll, CrashMode::Random][n as usize % 3];
        fs.crash(mode, n);
        let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
        match Db::open("/r", no_create().fs(dynfs.clone())) {
            Ok(db) => {
                // Only possible once the marker's removal reached the disk.
                assert_eq!(contents(&db), model, "crash at call {n}");
                continue;
            }
            Err(Error::RestoreIncomplete { .. }) => refused += 1,
            Err(Error::NotAStore { .. }) => {}
            Err(e) => panic!("crash at call {n}: unexpected {e}"),
        }
        varve_db::restore("/r", &mut LogSource::new(&log), opts(&fs))
            .unwrap_or_else(|e| panic!("resume after a crash at call {n}: {e}"));
        let db = Db::open("/r", no_create().fs(dynfs)).unwrap();
        assert_eq!(contents(&db), model, "resumed after a crash at call {n}");
        assert_eq!(db.latest_seqno(), 2500);
    }
    assert!(refused > 10, "{refused} of {calls} calls");
    eprintln!("{calls} calls, {refused} crashes refused on open");
}

/// A closed store at `/s` on `fs` keeping its whole changelog: writes
/// `0..2000`, with a checkpoint at `/cp` after write 1200.
fn store_with_checkpoint(fs: &MemFs) {
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let opts = Options::default()
        .memtable_size_bytes(16 << 10)
        .changelog_retention(ChangelogRetention::UntilShipped);
    let db = Db::open("/s", opts.fs(dynfs)).unwrap();
    db.changelog().commit_position("test", 0).unwrap();
    write_range(&db, 0, 1200);
    assert_eq!(db.checkpoint("/cp").unwrap().offset, 1200);
    write_range(&db, 1200, 2000);
    db.close().unwrap();
}

fn open_changelog(fs: &MemFs) -> Log {
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    Log::open("/s/changelog", LogOptions::default().fs(dynfs)).unwrap()
}

#[test]
fn a_crash_anywhere_in_a_restore_from_a_checkpoint_resumes() {
    let mut model = State::new();
    (0..2000).for_each(|i| apply(&mut model, &record(i)));
    let opts = |fs: &MemFs| {
        small()
            .store_options(Options::default().fs(Arc::new(fs.clone())))
            .from_checkpoint("/cp")
    };
    let (base, calls) = {
        let fs = MemFs::new();
        store_with_checkpoint(&fs);
        let log = open_changelog(&fs);
        let base = fs.op_count();
        varve_db::restore("/r", &mut LogSource::new(&log), opts(&fs)).unwrap();
        (base, fs.op_count() - base)
    };
    let step = (calls / 60).max(1);
    for n in (0..calls).step_by(step as usize) {
        let fs = MemFs::new();
        store_with_checkpoint(&fs);
        let log = open_changelog(&fs);
        fs.crash_at(base + n);
        let _ = varve_db::restore("/r", &mut LogSource::new(&log), opts(&fs));
        drop(log);
        fs.crash(CrashMode::Random, n);
        let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
        match Db::open("/r", no_create().fs(dynfs.clone())) {
            Ok(db) => {
                assert_eq!(contents(&db), model, "crash at call {n}");
                continue;
            }
            Err(Error::RestoreIncomplete { .. } | Error::NotAStore { .. }) => {}
            Err(e) => panic!("crash at call {n}: unexpected {e}"),
        }
        let log = open_changelog(&fs);
        let report = varve_db::restore("/r", &mut LogSource::new(&log), opts(&fs))
            .unwrap_or_else(|e| panic!("resume after a crash at call {n}: {e}"));
        assert!(report.start_offset >= 1200, "{report:?}");
        let db = Db::open("/r", no_create().fs(dynfs)).unwrap();
        assert_eq!(contents(&db), model, "resumed after a crash at call {n}");
    }
}

#[test]
fn a_restore_from_a_live_store_stops_at_the_end_it_took() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Arc::new(source_store(&tmp.path().join("src"), 2000));
    let writer = {
        let src = src.clone();
        std::thread::spawn(move || write_range(&src, 2000, 8000))
    };
    let target = tmp.path().join("restored");
    let report = varve_db::restore(&target, &mut LogSource::new(src.changelog()), small()).unwrap();
    writer.join().unwrap();
    let end = report.end_offset;
    assert!((2000..=8000).contains(&end), "{report:?}");
    assert_eq!(report.records, end);
    let mut model = State::new();
    (0..end).for_each(|i| apply(&mut model, &record(i)));
    let restored = Db::open(&target, no_create()).unwrap();
    assert_eq!(contents(&restored), model);
    assert_eq!(restored.latest_seqno(), end);
}
