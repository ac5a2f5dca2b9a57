//! Standby replicas: following a primary under writes, flushes,
//! compactions and changelog retention; closing and reopening; crashes of
//! the standby; staleness; refused writes; promotion.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use varve_db::testing::{CrashMode, InterceptFs, MemFs, OpKind, Rng, env_u64};
use varve_db::{
    CatchUp, ChangelogRetention, Db, Error, Options, Standby, WriteBatch, WriteOptions,
};

const WAIT: Duration = Duration::from_secs(60);
const NAME: &str = "standby-1";

type Map = BTreeMap<Bytes, Bytes>;

fn opts(retention: ChangelogRetention) -> Options {
    Options::default().changelog_retention(retention)
}

/// Small memtables and segments: flushes, compactions and retention
/// happen within a few thousand writes.
fn small(retention: ChangelogRetention) -> Options {
    Options::default()
        .memtable_size_bytes(32 << 10)
        .changelog_segment_size_bytes(64 << 10)
        .changelog_retention(retention)
}

fn contents(db: &Db) -> Map {
    db.iter().map(|kv| kv.unwrap()).collect()
}

fn catch_up(standby: &Standby, primary: &Db) {
    let end = primary.changelog().next_offset();
    assert!(
        standby.wait_for_offset(end, WAIT).unwrap(),
        "caught up to {end}"
    );
    assert_eq!(standby.lag().unwrap(), 0);
}

/// The store's state after every primary record below `seqno`, rebuilt
/// from the primary's changelog (which must still start at 0).
fn state_at(primary: &Db, seqno: u64) -> Map {
    assert_eq!(primary.changelog().log_start_offset(), 0);
    let mut state = Map::new();
    for r in primary.changelog().reader(0).unwrap() {
        let r = r.unwrap();
        if r.offset >= seqno {
            break;
        }
        match r.record.value {
            Some(v) => state.insert(r.record.key, v),
            None => state.remove(&r.record.key),
        };
    }
    state
}

/// Writes `n` batches from `threads` threads: puts of 1 to 3 keys,
/// overwrites of earlier keys, deletes; every value unique.
fn write_mix(primary: &Db, threads: usize, n: usize, value_bytes: usize, flush_every: usize) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..n {
                    let mut batch = WriteBatch::new();
                    let key = |j: usize| format!("key{:03}", (i * 7 + t * 13 + j * 31) % 211);
                    match i % 5 {
                        0 => {
                            batch.delete(key(0));
                        }
                        1 => {
                            batch.put(key(0), value(t, i, 0, value_bytes));
                            batch.delete(key(1));
                            batch.put(key(2), value(t, i, 2, value_bytes));
                        }
                        _ => {
                            batch.put(key(0), value(t, i, 0, value_bytes));
                        }
                    }
                    primary
                        .write(batch, WriteOptions::default().sync(i % 50 == 0))
                        .unwrap();
                    if flush_every > 0 && t == 0 && i % flush_every == flush_every - 1 {
                        primary.flush().unwrap();
                        if i % (flush_every * 3) == flush_every * 3 - 1 {
                            primary.compact_range::<&[u8], _>(..).unwrap();
                        }
                    }
                }
            });
        }
    });
}

fn value(t: usize, i: usize, j: usize, value_bytes: usize) -> String {
    let tag = format!("t{t}-i{i}-j{j}-");
    format!("{tag}{}", "x".repeat(value_bytes.saturating_sub(tag.len())))
}

#[test]
fn follows_concurrent_writes_and_reads_see_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
    primary.put("before", "the standby").unwrap();
    // Small memtables: the standby flushes (and compacts) while read.
    let sopts = Options::default().memtable_size_bytes(8 << 10);
    let standby = Standby::follow(&primary, dir.path().join("s"), NAME, sopts).unwrap();
    let done = AtomicBool::new(false);
    let samples = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut samples = Vec::new();
            while !done.load(Ordering::Acquire) {
                let snap = standby.snapshot();
                let seen: Map = snap.range::<&[u8], _>(..).map(|kv| kv.unwrap()).collect();
                samples.push((snap.seqno(), seen));
                std::thread::sleep(Duration::from_millis(2));
            }
            samples
        });
        write_mix(&primary, 3, 400, 20, 0);
        done.store(true, Ordering::Release);
        reader.join().unwrap()
    });
    catch_up(&standby, &primary);
    assert_eq!(contents(&standby), contents(&primary));
    assert_eq!(standby.latest_seqno(), primary.latest_seqno());
    assert!(samples.len() > 3, "{} samples", samples.len());
    // Every read view of the standby is the primary's state at some point
    // of its history: the state after the records below the view's seqno.
    for (seqno, seen) in &samples {
        assert_eq!(
            seen,
            &state_at(&primary, *seqno),
            "standby view at seqno {seqno}"
        );
    }
    assert!(standby.error().is_none());
    let tables: usize = standby
        .stats()
        .unwrap()
        .levels
        .iter()
        .map(|l| l.tables)
        .sum();
    assert!(tables > 0, "the standby never flushed");
    standby.close().unwrap();
}

#[test]
fn primary_flushes_compactions_and_retention_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(
        dir.path().join("p"),
        small(ChangelogRetention::UntilShipped),
    )
    .unwrap();
    let standby = Standby::follow(
        &primary,
        dir.path().join("s"),
        NAME,
        small(ChangelogRetention::UntilFlushed),
    )
    .unwrap();
    write_mix(&primary, 2, 1500, 200, 100);
    catch_up(&standby, &primary);
    // Retention follows the position the standby commits on the primary,
    // which trails by up to 100 ms: once it has passed the first round,
    // a second round's flushes let retention delete behind it.
    let end = primary.changelog().next_offset();
    let deadline = std::time::Instant::now() + WAIT;
    while primary.changelog().position(NAME).unwrap_or(0) < end
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    write_mix(&primary, 2, 1500, 200, 100);
    catch_up(&standby, &primary);
    assert_eq!(contents(&standby), contents(&primary));
    assert!(standby.error().is_none());
    let start = primary.changelog().log_start_offset();
    assert!(
        start > 0,
        "retention deleted nothing: the test proves nothing"
    );
    // The standby flushed tables of its own and trimmed its changelog.
    let stats = standby.stats().unwrap();
    assert!(stats.levels.iter().map(|l| l.tables).sum::<usize>() > 0);
    standby.close().unwrap();
    // Retention never passed what the standby made durable.
    let committed = primary.changelog().position(NAME).unwrap();
    assert_eq!(committed, primary.changelog().next_offset());
    assert!(primary.changelog().log_start_offset() <= committed);
}

/// A primary with small memtables and `retention` in `dir/p`, and a
/// standby in `dir/s` that applies `applied` writes and closes; the
/// primary then goes on without it, writing and flushing. Returns the
/// primary, the standby's directory, the position the standby closed at
/// and the primary's log start after that.
fn standby_left_behind(
    dir: &Path,
    retention: ChangelogRetention,
    applied: usize,
) -> (Db, PathBuf, u64, u64) {
    let primary = Db::open(dir.join("p"), small(retention)).unwrap();
    let sdir = dir.join("s");
    let standby = Standby::follow(&primary, &sdir, NAME, Options::default()).unwrap();
    write_mix(&primary, 1, applied, 200, 0);
    catch_up(&standby, &primary);
    let closed_at = standby.position();
    standby.close().unwrap();
    write_mix(&primary, 1, 1500, 200, 100);
    primary.flush().unwrap();
    let start = primary.changelog().log_start_offset();
    (primary, sdir, closed_at, start)
}

#[test]
fn close_and_reopen_resumes_from_its_position() {
    let dir = tempfile::tempdir().unwrap();
    // The primary goes on without the standby, flushing: retention keeps
    // what the standby has not applied, and no more.
    let (primary, sdir, closed_at, start) =
        standby_left_behind(dir.path(), ChangelogRetention::UntilShipped, 500);
    assert_eq!(primary.changelog().position(NAME), Some(closed_at));
    assert!(
        start > 0 && start <= closed_at,
        "start {start}, standby at {closed_at}"
    );

    let standby = Standby::follow(&primary, &sdir, NAME, Options::default()).unwrap();
    let resumed_at = standby.position();
    assert!(
        resumed_at >= closed_at,
        "resumed at {resumed_at}, closed at {closed_at}"
    );
    catch_up(&standby, &primary);
    assert_eq!(contents(&standby), contents(&primary));
    standby.close().unwrap();
}

#[test]
fn promote_continues_the_offsets_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
    let sdir = dir.path().join("s");
    let standby = Standby::follow(&primary, &sdir, NAME, Options::default()).unwrap();
    write_mix(&primary, 2, 300, 20, 0);
    // No waiting: promotion itself applies what the standby has not yet.
    let db = standby.promote(CatchUp::ToEnd).unwrap();
    let expected = contents(&primary);
    let next = primary.changelog().next_offset();
    assert_eq!(contents(&db), expected);
    assert_eq!(db.changelog().next_offset(), next);
    assert_eq!(db.latest_seqno(), next);
    assert_eq!(primary.changelog().position(NAME), None, "deregistered");
    primary.close().unwrap();

    db.put("after", "promotion").unwrap();
    assert_eq!(
        db.get_versioned("after").unwrap().unwrap().version,
        next + 1
    );
    db.delete("key000").unwrap();
    let mut expected = expected;
    expected.insert(Bytes::from("after"), Bytes::from("promotion"));
    expected.remove(&Bytes::from("key000"));
    db.close().unwrap();

    let db = Db::open(&sdir, Options::default()).unwrap();
    assert_eq!(contents(&db), expected);
    assert_eq!(db.changelog().next_offset(), next + 2);
    db.put("again", "writable").unwrap();
    db.close().unwrap();
}

#[test]
fn promote_without_catching_up_stays_at_its_position_and_deregisters() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
    primary.put("a", "1").unwrap();
    let standby =
        Standby::follow(&primary, dir.path().join("s"), NAME, Options::default()).unwrap();
    catch_up(&standby, &primary);
    let at = standby.position();
    let db = standby.promote(CatchUp::None).unwrap();
    assert_eq!(db.changelog().next_offset(), at);
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(primary.changelog().position(NAME), None, "deregistered");
    db.close().unwrap();

    // With the primary closed, its changelog is opened only to deregister.
    let standby =
        Standby::follow(&primary, dir.path().join("s2"), NAME, Options::default()).unwrap();
    catch_up(&standby, &primary);
    primary.close().unwrap();
    while standby.is_following() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let db = standby.promote(CatchUp::None).unwrap();
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    let old = Db::open(dir.path().join("p"), Options::default()).unwrap();
    assert_eq!(old.changelog().position(NAME), None, "deregistered");
}

#[test]
fn promote_after_the_primary_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
    let standby =
        Standby::follow(&primary, dir.path().join("s"), NAME, Options::default()).unwrap();
    write_mix(&primary, 1, 200, 20, 0);
    catch_up(&standby, &primary);
    let expected = contents(&primary);
    let next = primary.changelog().next_offset();
    primary.close().unwrap();
    // The follower notices and stops; that is not a failure of the standby.
    for _ in 0..1000 {
        if !standby.is_following() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(matches!(standby.error(), Some(Error::Source(_))));
    assert!(standby.lag().is_err());
    let db = standby.promote(CatchUp::ToEnd).unwrap();
    assert_eq!(contents(&db), expected);
    db.put("new", "leader").unwrap();
    assert_eq!(db.latest_seqno(), next + 1);
    // The old primary's directory is free again (the standby held it
    // only weakly), and promotion deregistered the standby there, so it no
    // longer holds back the old primary's retention.
    let old = Db::open(dir.path().join("p"), Options::default()).unwrap();
    assert_eq!(old.changelog().position(NAME), None);
}

#[test]
fn stale_standby_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Retention that ignores consumer positions.
    let (primary, sdir, closed_at, start) =
        standby_left_behind(dir.path(), ChangelogRetention::UntilFlushed, 100);
    assert!(start > closed_at, "start {start}, standby at {closed_at}");

    match Standby::follow(&primary, &sdir, NAME, Options::default()) {
        Err(Error::Stale {
            position,
            log_start_offset,
            ..
        }) => assert_eq!((position, log_start_offset), (closed_at, start)),
        other => panic!("expected Stale, got {other:?}"),
    }
    // A new, empty standby cannot start from a primary whose log no
    // longer starts at 0 either.
    match Standby::follow(&primary, dir.path().join("new"), "new", Options::default()) {
        Err(Error::Stale { position: 0, .. }) => {}
        other => panic!("expected Stale, got {other:?}"),
    }
    // The stale store itself is intact and can be opened as it is.
    let db = Db::open(&sdir, Options::default()).unwrap();
    assert_eq!(db.changelog().next_offset(), closed_at);
}

#[test]
fn writes_to_a_standby_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), Options::default()).unwrap();
    primary.put("k", "primary").unwrap();
    let standby =
        Standby::follow(&primary, dir.path().join("s"), NAME, Options::default()).unwrap();
    catch_up(&standby, &primary);
    let refused = |r: varve_db::Result<()>| {
        assert!(matches!(r, Err(Error::Replica)), "{r:?}");
    };
    refused(standby.put("k", "standby"));
    refused(standby.delete("k"));
    let mut batch = WriteBatch::new();
    batch.put("x", "y");
    refused(standby.write(batch, WriteOptions::default().sync(true)));
    refused(standby.put_if_absent("new", "v").map(|_| ()));
    refused(standby.compare_and_put("k", None, "v").map(|_| ()));
    refused(standby.remove("k").map(|_| ()));
    assert_eq!(standby.changelog().next_offset(), 1);
    assert_eq!(contents(&standby), contents(&primary));
    // Replication goes on.
    primary.put("k", "again").unwrap();
    catch_up(&standby, &primary);
    assert_eq!(standby.get("k").unwrap().as_deref(), Some(&b"again"[..]));
    let db = standby.promote(CatchUp::ToEnd).unwrap();
    db.put("k", "promoted").unwrap();
}

/// One standby crash: follow through `fs`, crash it mid-stream, reopen.
fn crash_once(mode: CrashMode, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
    let fs = MemFs::new();
    let standby_opts = Options::default().memtable_size_bytes(16 << 10);
    let sdir = Path::new("standby");
    let standby = Standby::follow(
        &primary,
        sdir,
        NAME,
        standby_opts.clone().fs(Arc::new(fs.clone())),
    )
    .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| write_mix(&primary, 2, 400, 60, 0));
        // Crash once the standby is well under way.
        while standby.position() < 300 && standby.is_following() {
            std::thread::sleep(Duration::from_millis(1));
        }
        fs.crash(mode, seed);
    });
    drop(standby);
    let committed = primary.changelog().position(NAME).unwrap();

    // The standby recovers a prefix of the primary's history, and at least
    // what it told the primary it had made durable.
    let db = Db::open(sdir, standby_opts.clone().fs(Arc::new(fs.clone()))).unwrap();
    let n = db.changelog().next_offset();
    assert!(
        n >= committed,
        "{mode:?}/{seed}: recovered to {n}, committed {committed}"
    );
    assert_eq!(
        contents(&db),
        state_at(&primary, n),
        "{mode:?}/{seed}: not a prefix"
    );
    db.close().unwrap();

    let standby =
        Standby::follow(&primary, sdir, NAME, standby_opts.fs(Arc::new(fs.clone()))).unwrap();
    assert!(standby.position() >= n);
    catch_up(&standby, &primary);
    assert_eq!(contents(&standby), contents(&primary), "{mode:?}/{seed}");
    standby.close().unwrap();
}

#[test]
fn standby_crash_recovers_a_prefix_and_catches_up() {
    crash_once(CrashMode::DropAll, 0);
    crash_once(CrashMode::KeepAll, 0);
    for seed in 1..=4 {
        crash_once(CrashMode::Random, seed);
    }
}

#[test]
fn dropped_standby_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
    let sdir = dir.path().join("s");
    let standby = Standby::follow(&primary, &sdir, NAME, Options::default()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| write_mix(&primary, 1, 300, 20, 0));
        while standby.position() < 100 {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    drop(standby);
    let standby = Standby::follow(&primary, &sdir, NAME, Options::default()).unwrap();
    assert!(standby.position() >= 100);
    catch_up(&standby, &primary);
    assert_eq!(contents(&standby), contents(&primary));
}

#[test]
fn compacted_primary_offsets_are_kept_across_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let retention = ChangelogRetention::Compact {
        tombstone_retention_ms: 3_600_000,
    };
    let primary = Db::open(dir.path().join("p"), small(retention)).unwrap();
    write_mix(&primary, 1, 1500, 200, 100);
    primary.flush().unwrap();
    let log = primary.changelog();
    let records = log.reader(log.log_start_offset()).unwrap().count() as u64;
    assert!(
        records < log.next_offset() - log.log_start_offset(),
        "the cleaner left no gaps: the test proves nothing"
    );
    let standby =
        Standby::follow(&primary, dir.path().join("s"), NAME, Options::default()).unwrap();
    catch_up(&standby, &primary);
    assert_eq!(contents(&standby), contents(&primary));
    // Same offsets, so the same sequence numbers (versions) for every key.
    for key in contents(&primary).keys() {
        let p = primary.get_versioned(key).unwrap().map(|v| v.version);
        let s = standby.get_versioned(key).unwrap().map(|v| v.version);
        assert_eq!(p, s, "{key:?}");
    }
    let db = standby.promote(CatchUp::ToEnd).unwrap();
    db.put("next", "write").unwrap();
    assert_eq!(
        db.get_versioned("next").unwrap().unwrap().version,
        primary.changelog().next_offset() + 1
    );
}

#[test]
fn a_failure_of_the_standby_is_kept_and_returned() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
    let fs = MemFs::new();
    let standby = Standby::follow(
        &primary,
        "standby",
        NAME,
        Options::default().fs(Arc::new(fs.clone())),
    )
    .unwrap();
    primary.put("a", "1").unwrap();
    catch_up(&standby, &primary);
    fs.fail_syncs(true);
    fs.fail_after(0, varve_db::varve_changelog::fs::FaultKind::Persistent);
    primary.put("b", "2").unwrap();
    let err = standby
        .wait_for_offset(primary.changelog().next_offset(), WAIT)
        .expect_err("the follower fails");
    assert!(!matches!(err, Error::Source(_)), "{err:?}");
    assert!(!standby.is_following());
    assert!(standby.error().is_some());
    assert!(standby.lag().is_err());
    // The standby still serves what it has.
    assert_eq!(standby.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(standby.close().is_err());
}

#[test]
fn follow_a_restarted_primary() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("p");
    let sdir = dir.path().join("s");
    let primary = Db::open(&pdir, opts(ChangelogRetention::UntilShipped)).unwrap();
    let standby = Standby::follow(&primary, &sdir, NAME, Options::default()).unwrap();
    write_mix(&primary, 1, 100, 20, 0);
    catch_up(&standby, &primary);
    primary.close().unwrap();
    for _ in 0..1000 {
        if !standby.is_following() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!standby.is_following());
    // Closing a standby whose primary is gone is not an error.
    standby.close().unwrap();
    let primary = Db::open(&pdir, opts(ChangelogRetention::UntilShipped)).unwrap();
    write_mix(&primary, 1, 100, 20, 0);
    let standby = Standby::follow(&primary, &sdir, NAME, Options::default()).unwrap();
    catch_up(&standby, &primary);
    assert_eq!(contents(&standby), contents(&primary));
}

/// A gate that writes to changelog segments wait at while it is shut.
#[derive(Debug, Default)]
struct Gate {
    shut: Mutex<bool>,
    cv: Condvar,
    /// Writes that have waited at the gate.
    held: std::sync::atomic::AtomicUsize,
}

impl Gate {
    fn set(&self, shut: bool) {
        *self.shut.lock().unwrap() = shut;
        self.cv.notify_all();
    }

    fn pass(&self) {
        let mut shut = self.shut.lock().unwrap();
        if *shut {
            self.held.fetch_add(1, Ordering::SeqCst);
        }
        while *shut {
            shut = self.cv.wait(shut).unwrap();
        }
    }
}

/// A [`MemFs`] whose changelog segment writes are held at `gate` while it
/// is shut, to hold a standby's follower in the middle of applying a group.
fn gated_fs(gate: Arc<Gate>) -> InterceptFs {
    InterceptFs::new(Arc::new(MemFs::new()), move |op| {
        if op.kind == OpKind::Write && op.has_extension("log") {
            gate.pass();
        }
        Ok(())
    })
}

/// A follower held back while a primary whose retention ignores consumer
/// positions deletes what it has not applied: it stops with `Stale`.
#[test]
fn a_follower_left_behind_by_retention_becomes_stale() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(
        dir.path().join("p"),
        small(ChangelogRetention::UntilFlushed),
    )
    .unwrap();
    let gate = Arc::new(Gate::default());
    let fs = gated_fs(gate.clone());
    let standby = Standby::follow(
        &primary,
        "s",
        NAME,
        Options::default().fs(Arc::new(fs.clone())),
    )
    .unwrap();
    primary.put("a", "1").unwrap();
    catch_up(&standby, &primary);
    gate.set(true);
    primary.put("b", "2").unwrap();
    while gate.held.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The follower is now held in its append of "b".
    write_mix(&primary, 1, 1500, 200, 100);
    primary.flush().unwrap();
    let start = primary.changelog().log_start_offset();
    assert!(
        start > 2,
        "retention deleted nothing: the test proves nothing"
    );
    gate.set(false);
    match standby.wait_for_offset(primary.changelog().next_offset(), WAIT) {
        Err(Error::Stale {
            position,
            log_start_offset,
            ..
        }) => assert!(position < log_start_offset && position == 2, "{position}"),
        other => panic!("expected Stale, got {other:?}"),
    }
    assert!(!standby.is_following());
    assert!(matches!(standby.lag(), Err(Error::Stale { .. })));
    assert!(matches!(standby.error(), Some(Error::Stale { .. })));
    // What it has stays readable, and it cannot be promoted.
    assert_eq!(standby.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(matches!(
        standby.promote(CatchUp::ToEnd),
        Err(Error::Stale { .. })
    ));
}

/// The primary loses an unsynced tail the standby had applied: the standby
/// is first ahead of it, then (after new writes) at the same position with
/// a different history. Both are refused.
#[test]
fn a_standby_of_a_primary_that_lost_its_tail_is_refused() {
    let pfs = MemFs::new();
    let popts = opts(ChangelogRetention::UntilShipped);
    let open_primary = || Db::open("p", popts.clone().fs(Arc::new(pfs.clone()))).unwrap();
    let primary = open_primary();
    let mut batch = WriteBatch::new();
    batch.put("a", "durable");
    primary
        .write(batch, WriteOptions::default().sync(true))
        .unwrap();
    primary.put("b", "lost").unwrap();
    primary.put("c", "lost").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let standby = Standby::follow(&primary, dir.path(), NAME, Options::default()).unwrap();
    catch_up(&standby, &primary);
    standby.close().unwrap();
    pfs.crash(CrashMode::DropAll, 0);
    drop(primary);

    let primary = open_primary();
    assert_eq!(primary.changelog().next_offset(), 1);
    match Standby::follow(&primary, dir.path(), NAME, Options::default()) {
        Err(Error::Stale { position: 3, .. }) => {}
        other => panic!("expected Stale (ahead), got {other:?}"),
    }
    for k in ["x", "y", "z"] {
        primary.put(k, "new history").unwrap();
    }
    match Standby::follow(&primary, dir.path(), NAME, Options::default()) {
        Err(Error::Stale {
            position: 3,
            reason,
            ..
        }) => assert!(reason.contains("differs"), "{reason}"),
        other => panic!("expected Stale (diverged), got {other:?}"),
    }
}

#[test]
fn a_standby_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Standby>();
}

/// The primary's history as the test wrote it: one entry per offset.
#[derive(Default)]
struct History(Vec<(Bytes, Option<Bytes>)>);

impl History {
    fn state_at(&self, seqno: u64) -> Map {
        let mut state = Map::new();
        for (key, value) in self.0.iter().take(seqno as usize) {
            match value {
                Some(v) => state.insert(key.clone(), v.clone()),
                None => state.remove(key),
            };
        }
        state
    }
}

/// One seeded cycle: random writes, flushes and compactions on the
/// primary (retention `UntilShipped`, small segments), while the standby
/// (on a `MemFs`) is checked, closed and reopened, crashed and reopened,
/// and finally promoted.
fn random_cycle(seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(
        dir.path().join("p"),
        small(ChangelogRetention::UntilShipped),
    )
    .unwrap();
    let fs = MemFs::new();
    let sopts = Options::default().memtable_size_bytes(8 << 10);
    let follow = || {
        Standby::follow(&primary, "s", NAME, sopts.clone().fs(Arc::new(fs.clone())))
            .unwrap_or_else(|e| panic!("seed {seed}: follow: {e}"))
    };
    let mut history = History::default();
    let mut standby = Some(follow());
    for step in 0..300 {
        match rng.below(100) {
            0..=69 => {
                let mut batch = WriteBatch::new();
                for j in 0..=rng.below(3) {
                    let key = Bytes::from(format!("k{:02}", rng.below(40)));
                    if rng.below(4) == 0 {
                        batch.delete(key.clone());
                        history.0.push((key, None));
                    } else {
                        let value = Bytes::from(format!("s{seed}-{step}-{j}-{}", "v".repeat(300)));
                        batch.put(key.clone(), value.clone());
                        history.0.push((key, Some(value)));
                    }
                }
                let sync = rng.below(10) == 0;
                primary
                    .write(batch, WriteOptions::default().sync(sync))
                    .unwrap();
            }
            70..=74 => primary.flush().unwrap(),
            75..=76 => primary.compact_range::<&[u8], _>(..).unwrap(),
            77..=84 => {
                let s = standby.as_ref().unwrap();
                catch_up(s, &primary);
                assert_eq!(contents(s), contents(&primary), "seed {seed} step {step}");
            }
            85..=89 => {
                standby.take().unwrap().close().unwrap();
                standby = Some(follow());
            }
            _ => {
                // Power loss of the standby's machine: no clean close.
                std::thread::sleep(Duration::from_millis(rng.below(3)));
                fs.crash(CrashMode::Random, rng.next_u64());
                drop(standby.take());
                let db = Db::open("s", sopts.clone().fs(Arc::new(fs.clone()))).unwrap();
                let n = db.changelog().next_offset();
                let committed = primary.changelog().position(NAME).unwrap();
                assert!(n >= committed, "seed {seed} step {step}: {n} < {committed}");
                assert_eq!(
                    contents(&db),
                    history.state_at(n),
                    "seed {seed} step {step}: prefix"
                );
                db.close().unwrap();
                standby = Some(follow());
            }
        }
    }
    eprintln!(
        "seed {seed}: primary changelog [{}, {})",
        primary.changelog().log_start_offset(),
        primary.changelog().next_offset()
    );
    let db = standby.take().unwrap().promote(CatchUp::ToEnd).unwrap();
    assert_eq!(contents(&db), contents(&primary), "seed {seed}: promoted");
    assert_eq!(contents(&db), history.state_at(history.0.len() as u64));
    assert_eq!(db.changelog().next_offset(), history.0.len() as u64);
}

#[test]
fn random_workloads_with_standby_restarts_and_crashes() {
    let cycles: u64 = env_u64("VARVE_STANDBY_CYCLES").unwrap_or(4);
    let first: u64 = env_u64("VARVE_STANDBY_SEED").unwrap_or(1);
    for seed in first..first + cycles {
        eprintln!(
            "standby random cycle, seed {seed} (VARVE_STANDBY_SEED={seed} VARVE_STANDBY_CYCLES=1)"
        );
        random_cycle(seed);
    }
}

/// The README's sequence: write, close the primary at once, promote. The
/// standby has usually not applied everything when the primary closes;
/// promotion must still reach the primary's last acknowledged write,
/// whether the primary was closed or dropped.
#[test]
fn promotion_right_after_the_primary_closes_loses_nothing() {
    for (round, close) in [true, false, true, false].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let primary =
            Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
        let standby =
            Standby::follow(&primary, dir.path().join("s"), NAME, Options::default()).unwrap();
        let mut want = Map::new();
        for i in 0..20_000u32 {
            let (k, v) = (format!("k{:05}", i % 7000), format!("v{i}"));
            primary.put(k.clone(), v.clone()).unwrap();
            want.insert(Bytes::from(k), Bytes::from(v));
        }
        primary.delete("k00001").unwrap();
        want.remove(&b"k00001"[..]);
        let end = primary.changelog().next_offset();
        if close {
            primary.close().unwrap();
        } else {
            drop(primary);
        }
        let db = standby.promote(CatchUp::ToEnd).unwrap();
        assert_eq!(db.changelog().next_offset(), end, "round {round}");
        assert_eq!(contents(&db), want, "round {round}");
        db.put("after", "promotion").unwrap();
        assert_eq!(db.changelog().next_offset(), end + 1);
        db.close().unwrap();
        // The primary's registration of the standby is gone.
        let reopened =
            Db::open(dir.path().join("p"), opts(ChangelogRetention::UntilShipped)).unwrap();
        assert_eq!(reopened.changelog().position(NAME), None, "round {round}");
    }
}
