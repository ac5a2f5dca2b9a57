//! Snapshot isolation under concurrent writers: several writer and reader
//! threads with invariant checks, group commit of concurrent sync writers,
//! on the real file system with a small memtable so that memtable flushes
//! (and write stalls) happen while readers read.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a failed unwrap is a test failure"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use varve_db::testing::{InterceptFs, OpKind, files_ending_with, small_options};
use varve_db::varve_changelog::fs::StdFs;
use varve_db::{Db, Options, Snapshot, WriteBatch, WriteOptions};

const WRITERS: usize = 4;
const READERS: usize = 3;
const ACCOUNTS: usize = 4;
const INITIAL_BALANCE: i64 = 1000;
/// How long the writers of the invariant test write at most…
const WRITE_FOR: Duration = Duration::from_secs(3);
/// … and how many batches each (the tables are never compacted, so more
/// would only slow the readers' scans down).
const BATCHES_PER_WRITER: i64 = 3000;
/// Writers stop early once they wrote this many batches each and the
/// readers checked this many views in all.
const ENOUGH_BATCHES: i64 = 1000;
const ENOUGH_READER_ROUNDS: u64 = 150;

type Entries = Vec<(Bytes, Bytes)>;

fn options() -> Options {
    small_options()
}

fn acct(w: usize, j: usize) -> String {
    format!("acct-{w}-{j}")
}
fn pair_a(w: usize) -> String {
    format!("pair-a-{w}")
}
fn pair_b(w: usize) -> String {
    format!("pair-b-{w}")
}
fn seq(w: usize) -> String {
    format!("seq-{w}")
}

/// A number with padding, so that memtables fill up and get flushed.
fn encode(n: i64) -> Bytes {
    Bytes::from(format!("{n}|{}", "p".repeat(20)))
}

fn decode(v: &[u8]) -> i64 {
    let s = std::str::from_utf8(v).unwrap();
    let n = s.split('|').next().unwrap();
    n.parse().unwrap_or_else(|_| panic!("bad value {s:?}"))
}

/// Writer `w`'s batch number `i`: sets `seq-w = i`; sets both `pair-a-w`
/// and `pair-b-w` to `i`, or deletes both when `i % 10 == 9`; moves money
/// between two of the writer's own accounts (the writer knows their
/// balances, as it is their only writer).
fn writer_batch(w: usize, i: i64, balances: &mut [i64; ACCOUNTS], rng: &mut u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.put(seq(w), encode(i));
    if i % 10 == 9 {
        b.delete(pair_a(w)).delete(pair_b(w));
    } else {
        b.put(pair_a(w), encode(i)).put(pair_b(w), encode(i));
    }
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let from = (*rng % ACCOUNTS as u64) as usize;
    let to = (from + 1 + (*rng >> 8) as usize % (ACCOUNTS - 1)) % ACCOUNTS;
    let amount = (*rng >> 16) as i64 % 50;
    balances[from] -= amount;
    balances[to] += amount;
    b.put(acct(w, from), encode(balances[from]))
        .put(acct(w, to), encode(balances[to]));
    b
}

/// What one consistent view shows, after checking the invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    /// `seq-w` of each writer (-1 before its first batch).
    seqs: [i64; WRITERS],
}

/// Checks the invariants of a full scan: the balances add up, each pair
/// is equal (or both absent), and each writer's keys come from one batch.
fn check(entries: &Entries, ctx: &str) -> View {
    let map: BTreeMap<&[u8], i64> = entries.iter().map(|(k, v)| (&k[..], decode(v))).collect();
    assert_eq!(map.len(), entries.len(), "{ctx}: duplicate keys in a scan");
    assert!(
        entries.windows(2).all(|w| w[0].0 < w[1].0),
        "{ctx}: scan not in key order"
    );
    let get = |k: String| map.get(k.as_bytes()).copied();
    let mut sum = 0;
    let mut seqs = [-1; WRITERS];
    for (w, s) in seqs.iter_mut().enumerate() {
        for j in 0..ACCOUNTS {
            sum += get(acct(w, j)).unwrap_or_else(|| panic!("{ctx}: {} missing", acct(w, j)));
        }
        let (a, b) = (get(pair_a(w)), get(pair_b(w)));
        assert_eq!(a, b, "{ctx}: pair {w} differs: a={a:?} b={b:?}");
        *s = get(seq(w)).unwrap_or(-1);
        let want = if *s < 0 || *s % 10 == 9 {
            None
        } else {
            Some(*s)
        };
        assert_eq!(
            a, want,
            "{ctx}: pair {w} is not from batch {s} (seq-{w}): a torn batch"
        );
    }
    let total = (WRITERS * ACCOUNTS) as i64 * INITIAL_BALANCE;
    assert_eq!(
        sum, total,
        "{ctx}: the balances add up to {sum}, not {total}"
    );
    View { seqs }
}

fn scan_snapshot(snap: &Snapshot) -> Entries {
    snap.range::<&[u8], _>(..)
        .collect::<varve_db::Result<_>>()
        .unwrap()
}

fn scan_db(db: &Db) -> Entries {
    db.iter().collect::<varve_db::Result<_>>().unwrap()
}

fn initial_batch() -> WriteBatch {
    let mut b = WriteBatch::new();
    for w in 0..WRITERS {
        for j in 0..ACCOUNTS {
            b.put(acct(w, j), encode(INITIAL_BALANCE));
        }
    }
    b
}

fn count_tables(dir: &Path) -> usize {
    files_ending_with(&StdFs, dir, ".sst").unwrap().len()
}

/// 4 writers keep invariants (equal pairs, a constant sum of balances,
/// whole batches) while 3 readers check every snapshot, scan and multi-get
/// against them, re-read each snapshot after the writers moved on, and
/// check that later snapshots never go back in time. A fifth thread calls
/// `flush()` now and then; the 64 KiB memtable is flushed (and writers
/// stall) many times during the test.
#[test]
fn snapshots_are_consistent_under_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), options()).unwrap());
    db.write(initial_batch(), WriteOptions::default().sync(true))
        .unwrap();
    // A snapshot held for the whole test, across many memtable flushes.
    let long_lived = db.snapshot();
    let long_lived_entries = scan_snapshot(&long_lived);
    check(&long_lived_entries, "long-lived snapshot");

    let done = Arc::new(AtomicBool::new(false));
    let reader_rounds = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(WRITERS + READERS + 1));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (db, start, reader_rounds) = (db.clone(), start.clone(), reader_rounds.clone());
        writers.push(thread::spawn(move || {
            let mut balances = [INITIAL_BALANCE; ACCOUNTS];
            let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ ((w as u64 + 1) * 0x1234_5678);
            start.wait();
            let deadline = Instant::now() + WRITE_FOR;
            let mut i = 0;
            while i < BATCHES_PER_WRITER && Instant::now() < deadline {
                if i >= ENOUGH_BATCHES
                    && reader_rounds.load(Ordering::Relaxed) >= ENOUGH_READER_ROUNDS
                {
                    break;
                }
                let batch = writer_batch(w, i, &mut balances, &mut rng);
                db.write(batch, WriteOptions::default().sync(i % 16 == 15))
                    .unwrap_or_else(|e| panic!("writer {w} batch {i}: {e}"));
                i += 1;
            }
            (i, balances)
        }));
    }
    let mut readers = Vec::new();
    for r in 0..READERS {
        let (db, start, done, reader_rounds) = (
            db.clone(),
            start.clone(),
            done.clone(),
            reader_rounds.clone(),
        );
        readers.push(thread::spawn(move || {
            start.wait();
            let mut last = View {
                seqs: [-1; WRITERS],
            };
            let mut rounds = 0u64;
            while !done.load(Ordering::Acquire) {
                let ctx = format!("reader {r} round {rounds}");
                let snap = db.snapshot();
                let first = scan_snapshot(&snap);
                let view = check(&first, &ctx);
                for w in 0..WRITERS {
                    assert!(
                        view.seqs[w] >= last.seqs[w],
                        "{ctx}: writer {w} went back from {} to {}",
                        last.seqs[w],
                        view.seqs[w]
                    );
                }
                // Point reads at the snapshot agree with its scan.
                for (k, v) in &first {
                    assert_eq!(
                        snap.get(k).unwrap().as_ref(),
                        Some(v),
                        "{ctx}: snapshot get({k:?})"
                    );
                }
                for w in 0..WRITERS {
                    if view.seqs[w] % 10 == 9 || view.seqs[w] < 0 {
                        assert_eq!(
                            snap.get(pair_a(w)).unwrap(),
                            None,
                            "{ctx}: deleted pair-a-{w} is visible"
                        );
                    }
                }
                // Let the writers move on (and maybe flush), then re-read.
                thread::sleep(Duration::from_millis(2));
                let second = scan_snapshot(&snap);
                assert!(
                    first == second,
                    "{ctx}: a snapshot's scan changed while writers continued"
                );
                let mut reverse: Entries = snap
                    .range::<&[u8], _>(..)
                    .rev()
                    .collect::<varve_db::Result<_>>()
                    .unwrap();
                reverse.reverse();
                assert!(
                    first == reverse,
                    "{ctx}: a snapshot's reverse scan differs from its forward scan"
                );
                let accounts: Entries = snap
                    .prefix("acct-")
                    .collect::<varve_db::Result<_>>()
                    .unwrap();
                assert_eq!(accounts.len(), WRITERS * ACCOUNTS, "{ctx}: prefix scan");
                drop(snap);
                // Reads without an explicit snapshot are consistent too.
                let live = scan_db(&db);
                let live_view = check(&live, &format!("{ctx}: db.iter()"));
                for w in 0..WRITERS {
                    assert!(
                        live_view.seqs[w] >= view.seqs[w],
                        "{ctx}: db.iter() went back in time"
                    );
                    let got = db.get_all(&[seq(w), pair_a(w), pair_b(w)]).unwrap();
                    let got: Vec<Option<i64>> =
                        got.iter().map(|v| v.as_ref().map(|v| decode(v))).collect();
                    assert_eq!(got[1], got[2], "{ctx}: get_all sees pair {w} torn: {got:?}");
                    let s = got[0].unwrap_or(-1);
                    assert!(s >= live_view.seqs[w], "{ctx}: get_all went back in time");
                    let want = if s < 0 || s % 10 == 9 { None } else { Some(s) };
                    assert_eq!(
                        got[1], want,
                        "{ctx}: get_all sees batch {s} of writer {w} torn"
                    );
                }
                // An iterator consumed slowly keeps its own consistent view.
                let mut iter = db.iter();
                let mut slow: Entries = iter
                    .by_ref()
                    .take(5)
                    .collect::<varve_db::Result<_>>()
                    .unwrap();
                thread::sleep(Duration::from_millis(1));
                slow.extend(iter.collect::<varve_db::Result<Entries>>().unwrap());
                check(&slow, &format!("{ctx}: slowly consumed iterator"));
                last = live_view;
                rounds += 1;
                reader_rounds.fetch_add(1, Ordering::Relaxed);
            }
            rounds
        }));
    }
    let flusher = {
        let (db, done) = (db.clone(), done.clone());
        thread::spawn(move || {
            let mut flushes = 0;
            while !done.load(Ordering::Acquire) {
                thread::sleep(Duration::from_millis(300));
                db.flush().unwrap();
                flushes += 1;
            }
            flushes
        })
    };
    start.wait();
    let results: Vec<(i64, [i64; ACCOUNTS])> =
        writers.into_iter().map(|h| h.join().unwrap()).collect();
    done.store(true, Ordering::Release);
    let rounds: Vec<u64> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    let flushes = flusher.join().unwrap();

    // The long-lived snapshot did not change.
    assert!(
        scan_snapshot(&long_lived) == long_lived_entries,
        "the long-lived snapshot changed"
    );
    drop(long_lived);

    // The final state is what the writers wrote.
    let check_final = |db: &Db, ctx: &str| {
        let view = check(&scan_db(db), ctx);
        for (w, (n, balances)) in results.iter().enumerate() {
            assert_eq!(view.seqs[w], n - 1, "{ctx}: writer {w}'s last batch");
            for (j, want) in balances.iter().enumerate() {
                assert_eq!(
                    db.get(acct(w, j)).unwrap().map(|v| decode(&v)),
                    Some(*want),
                    "{ctx}: {}",
                    acct(w, j)
                );
            }
        }
    };
    check_final(&db, "after the writers");
    // Count flushes, not table files: compaction deletes its inputs at once.
    let tables = count_tables(dir.path());
    let memtable_flushes = db.stats().unwrap().flushes;
    let batches: i64 = results.iter().map(|r| r.0).sum();
    eprintln!(
        "{batches} batches by {WRITERS} writers, reader rounds {rounds:?}, {flushes} explicit flushes, {memtable_flushes} memtable flushes, {tables} tables"
    );
    assert!(
        memtable_flushes >= 5,
        "only {memtable_flushes} memtable flushes: the memtable was hardly flushed"
    );
    assert!(
        rounds.iter().all(|&r| r > 0),
        "a reader never ran: {rounds:?}"
    );

    let db = Arc::into_inner(db).unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    check_final(&db, "after reopening");
}

/// A snapshot of a new, empty store sees nothing written after it. (The
/// first write gets sequence number 0, the same number an empty store
/// reports as its newest visible one.)
#[test]
fn snapshot_of_an_empty_store_sees_no_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let snap = db.snapshot();
    db.put("k", "v").unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(
        snap.get("k").unwrap(),
        None,
        "the snapshot (seqno {}) sees a later write",
        snap.seqno()
    );
    assert_eq!(
        snap.range::<&[u8], _>(..).count(),
        0,
        "the snapshot's scan sees a later write"
    );
}

/// The same after a reopen, and for a snapshot taken between writes: it
/// sees exactly the writes before it.
#[test]
fn snapshots_see_exactly_the_writes_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let mut snaps = Vec::new();
    for i in 0..20u32 {
        db.put(format!("k{i:02}"), format!("v{i}")).unwrap();
        snaps.push((i, db.snapshot()));
    }
    for (i, snap) in &snaps {
        let keys: Vec<Bytes> = snap.range::<&[u8], _>(..).map(|kv| kv.unwrap().0).collect();
        let want: Vec<Bytes> = (0..=*i).map(|j| Bytes::from(format!("k{j:02}"))).collect();
        assert_eq!(keys, want, "snapshot after write {i}");
    }
    drop(snaps);
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let snap = db.snapshot();
    db.put("later", "x").unwrap();
    assert_eq!(snap.get("later").unwrap(), None);
    assert_eq!(snap.range::<&[u8], _>(..).count(), 20);
}

// ---------------------------------------------------------------------------
// Group commit.

/// `StdFs` that counts `sync_data` calls on changelog segments in
/// `log_syncs`.
fn counting_fs(log_syncs: Arc<AtomicU64>) -> InterceptFs {
    InterceptFs::new(Arc::new(StdFs), move |op| {
        if op.kind == OpKind::SyncData && op.has_extension("log") {
            log_syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// 16 threads × 40 sync writes: every write succeeds, concurrent writers
/// share syncs, and every value is there after reopening.
#[test]
fn concurrent_sync_writers_share_group_commit() {
    const THREADS: usize = 16;
    const PER_THREAD: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let log_syncs = Arc::new(AtomicU64::new(0));
    let fs = Arc::new(counting_fs(log_syncs.clone()));
    let db = Arc::new(Db::open(dir.path(), options().fs(fs)).unwrap());
    let syncs_before = log_syncs.load(Ordering::Relaxed);
    let start = Arc::new(Barrier::new(THREADS));
    let started = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, start) = (db.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    let mut b = WriteBatch::new();
                    b.put(
                        format!("t{t:02}-{i:03}"),
                        format!("v{t}-{i}-{}", "z".repeat(200)),
                    );
                    b.put(format!("last-{t:02}"), i.to_string());
                    db.write(b, WriteOptions::default().sync(true))
                        .unwrap_or_else(|e| panic!("thread {t} write {i}: {e}"));
                    // Durable and visible on return.
                    assert!(db.contains(format!("t{t:02}-{i:03}")).unwrap());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let writes = (THREADS * PER_THREAD) as u64;
    let syncs = log_syncs.load(Ordering::Relaxed) - syncs_before;
    eprintln!(
        "{writes} sync writes from {THREADS} threads in {:?} with {syncs} changelog syncs",
        started.elapsed()
    );
    assert!(syncs >= 1, "no changelog sync for sync writes");
    assert!(
        syncs < writes,
        "{syncs} syncs for {writes} sync writes: no group commit"
    );
    let check = |db: &Db, ctx: &str| {
        for t in 0..THREADS {
            for i in 0..PER_THREAD {
                let want = format!("v{t}-{i}-{}", "z".repeat(200));
                assert_eq!(
                    db.get(format!("t{t:02}-{i:03}")).unwrap().as_deref(),
                    Some(want.as_bytes()),
                    "{ctx}: t{t} i{i}"
                );
            }
            assert_eq!(
                db.get(format!("last-{t:02}")).unwrap().as_deref(),
                Some((PER_THREAD - 1).to_string().as_bytes()),
                "{ctx}"
            );
        }
        assert_eq!(
            db.iter().count(),
            THREADS * PER_THREAD + THREADS,
            "{ctx}: entries"
        );
    };
    check(&db, "before reopening");
    // Drop without close: the sync writes must not depend on a clean close
    // (on a real file system we cannot cut the power, but a reopen must
    // still find everything).
    drop(Arc::into_inner(db).unwrap());
    let db = Db::open(dir.path(), options()).unwrap();
    check(&db, "after reopening");
}
