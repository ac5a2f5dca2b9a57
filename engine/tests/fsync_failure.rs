//! A failed `fdatasync` makes the store read-only: the failing write and
//! every later write return [`Error::ReadOnly`] (a failed sync is never
//! retried as if nothing happened, even once syncs work again), reads keep
//! working, concurrent sync writers waiting in group commit are all told,
//! and after power loss the store holds a prefix of the writes that
//! includes every write acknowledged as durable before the failure.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a failed unwrap is a test failure"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use varve_db::varve_changelog::fs::{CrashMode, MemFs};
use varve_db::{Db, Error, Options, WriteBatch, WriteOptions};

const DIR: &str = "/db";

type State = BTreeMap<Bytes, Bytes>;

fn open(fs: &MemFs, opts: &Options) -> varve_db::Result<Db> {
    Db::open(DIR, opts.clone().fs(Arc::new(fs.clone())))
}

fn put(key: &str, value: &str) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(key.to_owned(), value.to_owned());
    b
}

fn all(db: &Db) -> State {
    db.iter().collect::<varve_db::Result<State>>().unwrap()
}

fn is_read_only<T: std::fmt::Debug>(r: &varve_db::Result<T>) -> bool {
    matches!(r, Err(Error::ReadOnly { .. }))
}

#[track_caller]
fn assert_read_only<T: std::fmt::Debug>(r: varve_db::Result<T>, what: &str) {
    assert!(
        is_read_only(&r),
        "{what}: expected Error::ReadOnly, got {r:?}"
    );
}

/// The store after each prefix of `batches` (each a list of puts).
fn states(batches: &[(&str, &str)]) -> Vec<State> {
    let mut out = vec![State::new()];
    for (k, v) in batches {
        let mut s = out.last().unwrap().clone();
        s.insert(
            Bytes::copy_from_slice(k.as_bytes()),
            Bytes::copy_from_slice(v.as_bytes()),
        );
        out.push(s);
    }
    out
}

/// Checks that `db` holds the state after some prefix `k` of the batches,
/// `durable <= k <= attempted`; returns `k`.
#[track_caller]
fn assert_prefix(db: &Db, states: &[State], durable: usize, attempted: usize, ctx: &str) -> usize {
    let got = all(db);
    (durable..=attempted)
        .find(|&k| states[k] == got)
        .unwrap_or_else(|| {
            panic!("{ctx}: {got:?} is not the state after k batches, {durable} <= k <= {attempted}")
        })
}

/// Waits for every thread, failing the test if one does not finish within
/// `timeout` (a writer hung in group commit).
fn join_all<T>(handles: Vec<JoinHandle<T>>, timeout: Duration) -> Vec<T> {
    let deadline = Instant::now() + timeout;
    while !handles.iter().all(JoinHandle::is_finished) {
        if Instant::now() > deadline {
            let hung = handles.iter().filter(|h| !h.is_finished()).count();
            panic!(
                "{hung} of {} threads did not finish within {timeout:?}: hung",
                handles.len()
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Runs `f` on a thread and fails the test if it takes longer than
/// `timeout`.
fn within<T: Send + 'static>(timeout: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    join_all(vec![thread::spawn(f)], timeout).pop().unwrap()
}

/// The sync write that meets a failing sync fails; from then on every
/// write, flush and close fails with `ReadOnly` (also once syncs work
/// again); reads still work; after each kind of power loss the store
/// reopens with a prefix that includes the acknowledged sync write.
#[test]
fn failed_sync_makes_the_store_read_only() {
    let batches = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
    let states = states(&batches);
    for (mode, seed) in [
        (CrashMode::DropAll, 0),
        (CrashMode::KeepAll, 0),
        (CrashMode::Random, 1),
        (CrashMode::Random, 2),
    ] {
        let ctx = format!("{mode:?}/{seed}");
        let fs = MemFs::new();
        let db = open(&fs, &Options::default()).unwrap();
        db.write(put("a", "1"), WriteOptions::default()).unwrap();
        db.write(put("b", "2"), WriteOptions::default().sync(true))
            .unwrap();
        db.write(put("c", "3"), WriteOptions::default()).unwrap();
        fs.fail_syncs(true);
        let failed = db.write(put("d", "4"), WriteOptions::default().sync(true));
        assert_read_only(
            failed,
            &format!("{ctx}: the sync write that met the failing sync"),
        );
        assert_eq!(
            db.get("d").unwrap(),
            None,
            "{ctx}: the failed write is visible"
        );
        assert_read_only(db.put("e", "5"), "put after the failure");
        assert_read_only(db.delete("a"), "delete after the failure");
        assert_read_only(
            db.write(put("e", "5"), WriteOptions::default().sync(true)),
            "sync write after the failure",
        );
        assert_read_only(db.flush(), "flush after the failure");
        fs.fail_syncs(false);
        assert_read_only(db.put("e", "5"), "put once syncs work again");
        assert_read_only(
            db.write(put("e", "5"), WriteOptions::default().sync(true)),
            "sync write once syncs work again",
        );
        assert_read_only(
            db.write(WriteBatch::new(), WriteOptions::default().sync(true)),
            "empty sync write once syncs work again",
        );
        assert_read_only(db.flush(), "flush once syncs work again");
        // Reads keep working, and see exactly the acknowledged writes.
        assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(db.get("c").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(all(&db), states[3], "{ctx}: db.iter() after the failure");
        let range: Vec<Bytes> = db.range("b".."d").map(|kv| kv.unwrap().0).collect();
        assert_eq!(range, vec![Bytes::from("b"), Bytes::from("c")]);
        let rev: Vec<Bytes> = db.iter().rev().map(|kv| kv.unwrap().0).collect();
        assert_eq!(
            rev,
            vec![Bytes::from("c"), Bytes::from("b"), Bytes::from("a")]
        );
        let snap = db.snapshot();
        assert_eq!(snap.get("b").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(
            db.get_all(&["a", "d"]).unwrap(),
            vec![Some(Bytes::from("1")), None]
        );
        drop(snap);
        assert_read_only(db.close(), "close after the failure");

        fs.crash(mode, seed);
        let db = open(&fs, &Options::default()).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        let k = assert_prefix(&db, &states, 2, 4, &ctx);
        if mode == CrashMode::DropAll {
            assert_eq!(k, 2, "{ctx}: only the synced writes survive");
        }
        // The failure was the old handle's: the reopened store takes writes.
        db.write(put("z", "26"), WriteOptions::default().sync(true))
            .unwrap_or_else(|e| panic!("{ctx}: write after reopening: {e}"));
        db.close().unwrap();
    }
}

/// A store on `fs` whose first write, `a = 1`, was synced.
fn store_with_a_synced(fs: &MemFs) -> Db {
    let db = open(fs, &Options::default()).unwrap();
    db.write(put("a", "1"), WriteOptions::default().sync(true))
        .unwrap();
    db
}

/// Non-sync writes do not sync, so they succeed while syncs fail; the
/// `flush()` that must sync fails and makes the store read-only.
#[test]
fn failed_sync_in_flush_makes_the_store_read_only() {
    let fs = MemFs::new();
    let db = store_with_a_synced(&fs);
    fs.fail_syncs(true);
    db.write(put("b", "2"), WriteOptions::default()).unwrap();
    assert_read_only(db.flush(), "flush with failing syncs");
    assert_read_only(db.put("c", "3"), "put after the failed flush");
    fs.fail_syncs(false);
    assert_read_only(db.put("c", "3"), "put once syncs work again");
    assert_eq!(
        db.get("b").unwrap().as_deref(),
        Some(&b"2"[..]),
        "acknowledged non-sync write"
    );
    drop(db);
    fs.crash(CrashMode::DropAll, 0);
    let db = open(&fs, &Options::default()).unwrap();
    let states = states(&[("a", "1"), ("b", "2")]);
    assert_prefix(&db, &states, 1, 2, "after DropAll");
}

/// A failing sync in `close()` is reported, not swallowed.
#[test]
fn failed_sync_in_close_is_reported() {
    let fs = MemFs::new();
    let db = store_with_a_synced(&fs);
    db.write(put("b", "2"), WriteOptions::default()).unwrap();
    fs.fail_syncs(true);
    assert!(db.close().is_err(), "close with failing syncs succeeded");
    fs.crash(CrashMode::DropAll, 0);
    let db = open(&fs, &Options::default()).unwrap();
    assert_prefix(
        &db,
        &states(&[("a", "1"), ("b", "2")]),
        1,
        2,
        "after DropAll",
    );
}

/// The background flush thread meets the failing sync: writers are told
/// (none stalls forever waiting for a flush that will never come), every
/// later write is `ReadOnly`, and reads of the memtables still work.
#[test]
fn failed_sync_in_the_flush_thread_stops_writes() {
    let fs = MemFs::new();
    let opts = Options::default()
        .memtable_size_bytes(4096)
        .max_immutable_memtables(1);
    let db = Arc::new(open(&fs, &opts).unwrap());
    db.write(put("first", "1"), WriteOptions::default().sync(true))
        .unwrap();
    fs.fail_syncs(true);
    let (acked, err) = {
        let db = db.clone();
        within(Duration::from_secs(20), move || {
            let value = "v".repeat(500);
            for i in 0..10_000 {
                if let Err(e) = db.put(format!("k{i:05}"), value.clone()) {
                    return (i, e);
                }
            }
            panic!("10,000 writes succeeded although no memtable could be flushed");
        })
    };
    assert!(
        matches!(err, Error::ReadOnly { .. }),
        "write {acked} failed with {err:?}, not ReadOnly"
    );
    assert!(acked > 0);
    fs.fail_syncs(false);
    assert_read_only(db.put("late", "x"), "put after the flush failure");
    assert_read_only(
        db.write(put("late", "x"), WriteOptions::default().sync(true)),
        "sync write after the flush failure",
    );
    // Every acknowledged write is still readable (memtables and tables).
    for i in 0..acked {
        assert!(
            db.get(format!("k{i:05}")).unwrap().is_some(),
            "k{i:05} is gone"
        );
    }
    assert_eq!(db.prefix("k").count(), acked, "prefix scan");
    drop(Arc::into_inner(db).unwrap());
    fs.crash(CrashMode::DropAll, 0);
    let db = open(&fs, &opts).unwrap();
    let got = all(&db);
    assert_eq!(
        got.get(&b"first"[..]).map(|v| &v[..]),
        Some(&b"1"[..]),
        "the synced write is gone"
    );
    // Whatever survived of the non-sync writes is a prefix of them.
    let n = got.len() - 1;
    for i in 0..n {
        assert!(
            got.contains_key(format!("k{i:05}").as_bytes()),
            "hole at k{i:05} ({n} survived)"
        );
    }
}

/// 16 threads write with sync (group commit) while syncs start failing:
/// every one of them gets `ReadOnly` (none hangs), and keeps getting it;
/// every write acknowledged before is readable, and survives power loss,
/// and what survives of each thread's writes is a prefix of them.
#[test]
fn concurrent_sync_writers_are_all_told_of_the_failure() {
    const THREADS: usize = 16;
    let fs = MemFs::new();
    let db = Arc::new(open(&fs, &Options::default()).unwrap());
    let start = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, start) = (db.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut i = 0usize;
                let err = loop {
                    let mut b = WriteBatch::new();
                    b.put(format!("t{t:02}-{i:06}"), format!("{t}/{i}"));
                    match db.write(b, WriteOptions::default().sync(true)) {
                        Ok(()) => i += 1,
                        Err(e) => break e,
                    }
                    assert!(i < 1_000_000, "thread {t}: syncs never failed");
                };
                // Later writes of every kind are refused too.
                let later = [
                    db.put(format!("t{t:02}-later"), "x"),
                    db.write(put("later", "x"), WriteOptions::default().sync(true)),
                    db.flush(),
                ];
                (i, err, later)
            })
        })
        .collect();
    start.wait();
    thread::sleep(Duration::from_millis(50));
    fs.fail_syncs(true);
    let results = join_all(handles, Duration::from_secs(20));
    fs.fail_syncs(false);
    for (t, (acked, err, later)) in results.iter().enumerate() {
        assert!(
            matches!(err, Error::ReadOnly { .. }),
            "thread {t}: the failed write got {err:?}, not ReadOnly"
        );
        for r in later {
            assert!(
                is_read_only(r),
                "thread {t}: a later call got {r:?}, not ReadOnly"
            );
        }
        for i in 0..*acked {
            assert!(
                db.get(format!("t{t:02}-{i:06}")).unwrap().is_some(),
                "thread {t}: acknowledged write {i} is not readable"
            );
        }
    }
    let acked: Vec<usize> = results.iter().map(|r| r.0).collect();
    eprintln!("acknowledged sync writes per thread before the failure: {acked:?}");
    assert!(
        acked.iter().sum::<usize>() > 0,
        "no write succeeded before syncs failed"
    );
    assert_read_only(db.put("after", "x"), "put once syncs work again");

    drop(Arc::into_inner(db).unwrap());
    for (mode, seed) in [(CrashMode::DropAll, 0), (CrashMode::Random, 7)] {
        fs.crash(mode, seed);
        let db = open(&fs, &Options::default()).unwrap_or_else(|e| panic!("{mode:?}: reopen: {e}"));
        let got = all(&db);
        for (t, &n) in acked.iter().enumerate() {
            let prefix = format!("t{t:02}-");
            let survived: Vec<&Bytes> = got
                .keys()
                .filter(|k| k.starts_with(prefix.as_bytes()))
                .collect();
            assert!(
                survived.len() >= n,
                "{mode:?}: thread {t}: {} of its {n} acknowledged writes survived",
                survived.len()
            );
            // At most the one write that failed may have survived too.
            assert!(
                survived.len() <= n + 1,
                "{mode:?}: thread {t}: {} writes survived of {n} + 1",
                survived.len()
            );
            for (i, k) in survived.iter().enumerate() {
                assert_eq!(
                    &k[..],
                    format!("t{t:02}-{i:06}").as_bytes(),
                    "{mode:?}: thread {t}: a hole"
                );
                assert_eq!(
                    &got[*k][..],
                    format!("{t}/{i}").as_bytes(),
                    "{mode:?}: thread {t}: value {i}"
                );
            }
        }
        drop(db);
    }
}
