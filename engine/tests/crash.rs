//! Crash tests through the fault-injecting file system: simulated power
//! loss at every file-system call of a workload of sync and non-sync
//! writes, flushes and reopens.
//!
//! A workload runs over a [`MemFs`] with a crash point armed at call N:
//! that call and every later one fail, so the workload stops at its first
//! error as if the machine died. The file system then "loses power"
//! ([`CrashMode::DropAll`], [`CrashMode::KeepAll`] or [`CrashMode::Random`])
//! and the store is reopened. The reopened store must:
//!
//! - open (always);
//! - hold exactly the state after some prefix of the attempted batches
//!   (whole batches, no holes), at least up to the last batch acknowledged
//!   as durable (a sync write that returned `Ok`, or anything before a
//!   `flush()` or `close()` that returned `Ok`);
//! - accept a sync write, and after a second power loss hold that write on
//!   top of the same state (recovery itself left the store durable).
//!
//! Crash points are counted from after the store's creation; crashes
//! during the creation itself have their own test. The memtable flush
//! thread runs concurrently with the workload, so the call sequence (and
//! which operation call N is) varies a little from run to run.
//!
//! `VARVE_CRASH_CYCLES` sets the number of randomized cycles (default
//! 500); `VARVE_CRASH_SEED` replays one randomized cycle by its seed (the
//! same workload and crash point; because of the flush thread's timing a
//! replay may not hit exactly the same operation, so run it a few times);
//! `VARVE_CRASH_VERBOSE` prints each cycle's workload.

#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns; a failed unwrap is a test failure"
)]

mod harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use harness::{
    DIR, Mutation, Mutation as M, State, apply, env_u64, fresh_store, key, records_of, show,
};
use varve_db::testing::seed_range;
use varve_db::testing::{
    CrashMode, InterceptFs, MemFs, OpKind, Rng, files_ending_with, read_all, tiny_options,
};
use varve_db::{ChangelogRetention, Db, Options, WriteBatch, WriteOptions};

/// Keys of the workloads: `key-00` .. `key-19`.
const KEYS: u64 = 20;

// ---------------------------------------------------------------------------
// Workloads and their model.

#[derive(Clone, Debug)]
enum Step {
    /// One write batch; batches are numbered 0, 1, … in workload order.
    Write { ops: Vec<Mutation>, sync: bool },
    /// `db.flush()`.
    Flush,
    /// `db.close()`, then open again.
    Reopen,
}

#[derive(Clone, Debug)]
struct Workload {
    opts: Options,
    steps: Vec<Step>,
}

/// Key number `n` (mod [`KEYS`]) as the harness names it.
fn key_no(n: u64) -> u8 {
    u8::try_from(n % KEYS).unwrap()
}

fn make_batch(batch: usize, ops: &[Mutation]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for (key, value) in records_of(batch, ops) {
        match value {
            Some(v) => b.put(key, v),
            None => b.delete(key),
        };
    }
    b
}

/// The model: `states[k]` is the store after the first `k` batches.
fn model_states(steps: &[Step]) -> Vec<State> {
    let mut states = vec![State::new()];
    let mut state = State::new();
    for step in steps {
        if let Step::Write { ops, .. } = step {
            let batch = states.len() - 1;
            apply(&mut state, &records_of(batch, ops));
            states.push(state.clone());
        }
    }
    states
}

// ---------------------------------------------------------------------------
// Running a workload.

/// What a workload run did, as far as its caller could tell.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    /// Batches whose write was called (all returned `Ok` except perhaps the
    /// last).
    attempted: usize,
    /// The first `durable` batches were acknowledged as durable.
    durable: usize,
    /// Whether the workload ran to its end (and closed the store) without
    /// an error.
    completed: bool,
}

fn open(fs: &MemFs, opts: &Options) -> varve_db::Result<Db> {
    Db::open(DIR, opts.clone().fs(Arc::new(fs.clone())))
}

/// Runs `w` until its first error. On an error the store is dropped while
/// the crash point still fails every call, so nothing more reaches the
/// file system.
fn run(fs: &MemFs, w: &Workload) -> Outcome {
    let mut out = Outcome::default();
    let Ok(mut db) = open(fs, &w.opts) else {
        return out;
    };
    let mut batch = 0;
    for step in &w.steps {
        match step {
            Step::Write { ops, sync } => {
                out.attempted = batch + 1;
                if db
                    .write(make_batch(batch, ops), WriteOptions::default().sync(*sync))
                    .is_err()
                {
                    return out;
                }
                batch += 1;
                if *sync {
                    out.durable = batch;
                }
            }
            Step::Flush => {
                if db.flush().is_err() {
                    return out;
                }
                out.durable = batch;
            }
            Step::Reopen => {
                if db.close().is_err() {
                    return out;
                }
                out.durable = batch;
                match open(fs, &w.opts) {
                    Ok(d) => db = d,
                    Err(_) => return out,
                }
            }
        }
    }
    if db.close().is_ok() {
        out.durable = batch;
        out.completed = true;
    }
    out
}

fn contents(db: &Db) -> State {
    read_all(db)
}

/// Crashes `fs` with `mode`/`seed` after a run that ended with `out`, and
/// checks the reopened store.
fn verify(
    fs: &MemFs,
    w: &Workload,
    states: &[State],
    out: Outcome,
    mode: CrashMode,
    seed: u64,
    ctx: &str,
) {
    fs.crash(mode, seed);
    fs.clear_faults();
    let db = open(fs, &w.opts)
        .unwrap_or_else(|e| panic!("{ctx}: {mode:?}/{seed}: reopen failed: {e} ({out:?})"));
    let got = contents(&db);
    let Some(k) = (out.durable..=out.attempted).find(|&k| states[k] == got) else {
        let nearest = (0..states.len()).find(|&k| states[k] == got);
        panic!(
            "{ctx}: {mode:?}/{seed}: reopened store is not a prefix in [{}, {}] of the batches \
             (matches prefix {nearest:?}) ({out:?})\n got:      {}\n durable:  {}\n attempted: {}",
            out.durable,
            out.attempted,
            show(&got),
            show(&states[out.durable]),
            show(&states[out.attempted]),
        );
    };
    // Point reads agree with the scan.
    for i in 0..KEYS {
        let want = got.get(&key(key_no(i))).cloned();
        let have = db
            .get(key(key_no(i)))
            .unwrap_or_else(|e| panic!("{ctx}: {mode:?}/{seed}: get: {e}"));
        assert_eq!(
            have, want,
            "{ctx}: {mode:?}/{seed}: get(key-{i:02}) disagrees with the scan (prefix {k})"
        );
    }
    // The recovered store takes writes, and recovery left it durable: a
    // second power loss keeps the same state plus the new sync write.
    db.write(
        {
            let mut b = WriteBatch::new();
            b.put("post", "crash");
            b
        },
        WriteOptions::default().sync(true),
    )
    .unwrap_or_else(|e| panic!("{ctx}: {mode:?}/{seed}: sync write after recovery failed: {e}"));
    drop(db);
    fs.crash(CrashMode::DropAll, 0);
    let db = open(fs, &w.opts)
        .unwrap_or_else(|e| panic!("{ctx}: {mode:?}/{seed}: second reopen failed: {e}"));
    let mut want = states[k].clone();
    want.insert(Bytes::from("post"), Bytes::from("crash"));
    let got2 = contents(&db);
    assert!(
        got2 == want,
        "{ctx}: {mode:?}/{seed}: after a second power loss the store changed (prefix {k})\n got:  {}\n want: {}",
        show(&got2),
        show(&want)
    );
}

/// The call count of a fault-free run of `w` (which must leave every
/// batch in the store).
fn fault_free(w: &Workload, states: &[State], ctx: &str) -> u64 {
    let fs = fresh_store(&w.opts);
    let before = fs.op_count();
    let out = run(&fs, w);
    let calls = fs.op_count() - before;
    assert!(out.completed, "{ctx}: fault-free run failed: {out:?}");
    assert_eq!(out.durable, states.len() - 1, "{ctx}");
    verify(
        &fs,
        w,
        states,
        out,
        CrashMode::DropAll,
        0,
        &format!("{ctx}: fault-free"),
    );
    calls
}

// ---------------------------------------------------------------------------
// Crashes while the store is being created.

/// `Db::open` on an empty directory, crashed at each of its calls: the
/// open never returned, so nothing was acknowledged, and the directory
/// must open afterwards as an empty store (not be refused as "not a
/// store" because creation left a manifest but no `CURRENT`).
#[test]
fn power_loss_while_creating_the_store() {
    let opts = tiny_options();
    let w = Workload {
        opts: opts.clone(),
        steps: Vec::new(),
    };
    let states = model_states(&w.steps);
    let calls = {
        let fs = MemFs::new();
        open(&fs, &opts).unwrap().close().unwrap();
        fs.op_count()
    };
    let mut failures = Vec::new();
    for n in 0..=calls {
        for (mode, seed) in [
            (CrashMode::DropAll, 0),
            (CrashMode::KeepAll, 0),
            (CrashMode::Random, n),
        ] {
            let fs = MemFs::new();
            fs.crash_at(n);
            drop(open(&fs, &opts));
            fs.crash(mode, seed);
            let ctx = format!("creation crashed at call {n}/{calls}, {mode:?}/{seed}");
            match open(&fs, &opts) {
                Err(e) => failures.push(format!("{ctx}: reopen failed: {e}")),
                Ok(db) => {
                    // Full checks (the empty store, writes after recovery);
                    // `verify` loses power once more first.
                    drop(db);
                    let out = Outcome::default();
                    verify(&fs, &w, &states, out, CrashMode::DropAll, 0, &ctx);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} crash points failed, first ones:\n{}",
        failures.len(),
        3 * (calls + 1),
        failures[..failures.len().min(5)].join("\n")
    );
}

// ---------------------------------------------------------------------------
// Scripted workload, crashed at every call.

/// 100 batches over 20 keys: small values with every fifth batch synced,
/// a `flush()`, then batches with a large value each (memtable flushes
/// every few batches, and a changelog segment roll), a reopen, another
/// `flush()` (retention then deletes the first segment) and more writes.
fn scripted_workload() -> Workload {
    let mut steps = Vec::new();
    for b in 0..100u64 {
        let mut ops = if b < 40 {
            vec![
                M::Put(key_no(b), 40 + (b % 7 * 10) as u32),
                M::Put(key_no(b * 7 + 3), 30),
            ]
        } else {
            vec![
                M::Put(key_no(b * 11), 1200 + (b % 5 * 50) as u32),
                M::Delete(key_no(b * 5 + 2)),
            ]
        };
        if b % 4 == 3 {
            ops.push(M::Delete(key_no(b * 3 + 1)));
        }
        steps.push(Step::Write {
            ops,
            sync: b % 5 == 4,
        });
        match b {
            39 | 89 => steps.push(Step::Flush),
            64 => steps.push(Step::Reopen),
            _ => {}
        }
    }
    Workload {
        // Compaction off: the scripted crash points stay deterministic
        // (compaction has its own crash test in `compaction.rs`), and the
        // flushed tables stay countable.
        opts: tiny_options().compaction(varve_db::CompactionOptions::default().auto(false)),
        steps,
    }
}

/// File names under `dir` of `fs` that end with `suffix`.
fn files(fs: &MemFs, dir: &str, suffix: &str) -> Vec<String> {
    files_ending_with(fs, std::path::Path::new(dir), suffix).unwrap()
}

#[test]
fn power_loss_at_every_call() {
    let w = scripted_workload();
    let states = model_states(&w.steps);
    let calls = fault_free(&w, &states, "scripted");
    // The workload exercises what it claims to: memtable flushes, a
    // segment roll and retention.
    {
        let fs = fresh_store(&w.opts);
        run(&fs, &w);
        let tables = files(&fs, DIR, ".sst");
        let segments = files(&fs, "/db/changelog", ".log");
        assert!(tables.len() >= 10, "tables {tables:?}");
        assert!(
            segments.len() == 1 && segments[0] != format!("{:020}.log", 0),
            "segments {segments:?}: expected one segment, not the first"
        );
    }
    let started = std::time::Instant::now();
    let mut stopped = 0;
    for n in 0..=calls {
        let ctx = format!("scripted, {calls} calls");
        for (mode, seed) in [
            (CrashMode::DropAll, 0),
            (CrashMode::KeepAll, 0),
            (CrashMode::Random, n * 2 + 1),
            (CrashMode::Random, n * 2 + 2),
        ] {
            let fs = fresh_store(&w.opts);
            fs.crash_at(n);
            let out = run(&fs, &w);
            stopped += usize::from(!out.completed);
            verify(
                &fs,
                &w,
                &states,
                out,
                mode,
                seed,
                &format!("{ctx}: crash at call {n}"),
            );
        }
    }
    eprintln!(
        "power_loss_at_every_call: {calls} crash points x 4 in {:?}",
        started.elapsed()
    );
    // The background flush thread makes the call order vary a little from
    // run to run, but nearly every crash point must stop the workload.
    assert!(
        stopped as u64 >= 4 * calls * 9 / 10,
        "only {stopped} of {} runs were stopped by the crash",
        4 * (calls + 1)
    );
}

// ---------------------------------------------------------------------------
// Random workloads, crashed at a random call.

fn random_workload(rng: &mut Rng) -> Workload {
    let big_values = rng.chance(30);
    let opts = tiny_options()
        .max_immutable_memtables(1 + rng.below(2) as usize)
        .changelog_retention(if rng.chance(20) {
            ChangelogRetention::Compact {
                tombstone_retention_ms: rng.below(2) * 60_000,
            }
        } else {
            ChangelogRetention::UntilFlushed
        });
    let len = 5 + rng.below(60);
    let mut steps = Vec::new();
    for _ in 0..len {
        let r = rng.below(100);
        if r < 5 {
            steps.push(Step::Flush);
        } else if r < 8 {
            steps.push(Step::Reopen);
        } else {
            let n_ops = 1 + rng.below(6);
            let ops = (0..n_ops)
                .map(|_| {
                    let key = key_no(rng.below(KEYS));
                    if rng.chance(20) {
                        M::Delete(key)
                    } else {
                        let pad = if big_values && rng.chance(30) {
                            rng.below(3000)
                        } else {
                            rng.below(64)
                        };
                        M::Put(key, pad as u32)
                    }
                })
                .collect();
            steps.push(Step::Write {
                ops,
                sync: rng.chance(30),
            });
        }
    }
    Workload { opts, steps }
}

fn random_cycle(seed: u64) {
    let mut rng = Rng::new(seed);
    let w = random_workload(&mut rng);
    let states = model_states(&w.steps);
    let ctx = format!("seed {seed} (replay with VARVE_CRASH_SEED={seed})");
    let calls = fault_free(&w, &states, &ctx);
    let n = rng.below(calls + 1);
    let mode = rng.crash_mode(3);
    let crash_seed = rng.next_u64();
    let ctx = format!("{ctx}: {} steps, crash at call {n}/{calls}", w.steps.len());
    if std::env::var_os("VARVE_CRASH_VERBOSE").is_some() {
        eprintln!("{ctx}\n  options {:?}\n  steps {:?}", w.opts, w.steps);
    }
    let fs = fresh_store(&w.opts);
    fs.crash_at(n);
    let out = run(&fs, &w);
    if rng.chance(30) {
        // Crash again in the middle of recovering from the first crash
        // (or, if recovery takes fewer calls, while closing after it).
        fs.crash(mode, crash_seed);
        fs.crash_at(rng.below(64));
        drop(open(&fs, &w.opts));
        verify(
            &fs,
            &w,
            &states,
            out,
            CrashMode::Random,
            crash_seed ^ 1,
            &format!("{ctx}, crashed again in recovery"),
        );
    } else {
        verify(&fs, &w, &states, out, mode, crash_seed, &ctx);
    }
}

#[test]
fn power_loss_random_workloads() {
    let cycles = env_u64("VARVE_CRASH_CYCLES").unwrap_or(500);
    let started = std::time::Instant::now();
    for seed in seed_range("VARVE_CRASH_SEED", 0x5EED_0000, cycles) {
        // Every failure message names the seed (see `random_cycle`).
        random_cycle(seed);
    }
    eprintln!(
        "power_loss_random_workloads: {cycles} cycles in {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Compacted changelog: tombstones still needed by recovery.

/// `mem` with table syncs made slow while `slow` is set, to hold the flush
/// thread in the middle of a memtable flush.
fn slow_table_fs(mem: &MemFs, slow: Arc<AtomicBool>) -> InterceptFs {
    InterceptFs::new(Arc::new(mem.clone()), move |op| {
        if op.kind == OpKind::SyncData && op.has_extension("sst") && slow.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        Ok(())
    })
}

/// With `ChangelogRetention::Compact`, the cleaner runs after every memtable
/// flush over the closed changelog segments. A tombstone there that is
/// *above* the flushed offset (its memtable is not flushed yet) is still
/// needed: recovery replays the changelog from the flushed offset over the
/// tables. If the cleaner drops it (its retention has passed, here 0 ms),
/// together with the older value it superseded, a reopen brings the deleted
/// key's value back from an older table. (Found by
/// `power_loss_random_workloads`, seed 1592590919; this is the same loss
/// without a crash: a clean close and reopen.)
#[test]
fn compacted_changelog_keeps_tombstones_above_the_flushed_offset() {
    for mode in [None, Some(CrashMode::DropAll)] {
        let mem = MemFs::new();
        let slow = Arc::new(AtomicBool::new(false));
        let fs = slow_table_fs(&mem, slow.clone());
        let opts = Options::default()
            .memtable_size_bytes(4096)
            .changelog_segment_size_bytes(64 << 10)
            .changelog_retention(ChangelogRetention::Compact {
                tombstone_retention_ms: 0,
            });
        let open = || Db::open(DIR, opts.clone().fs(Arc::new(fs.clone()))).unwrap();
        let db = open();
        // The old value, in a table.
        db.put("k", "old").unwrap();
        db.flush().unwrap();
        // Fill the memtable; the next write switches it and the flush
        // thread flushes it (slowly).
        db.put("filler", vec![b'f'; 5000]).unwrap();
        slow.store(true, Ordering::SeqCst);
        db.write(
            {
                let mut b = WriteBatch::new();
                b.delete("k");
                b
            },
            WriteOptions::default().sync(true),
        )
        .unwrap();
        // A large write rolls the changelog segment: the tombstone's segment
        // is closed before the slow flush finishes and runs the cleaner.
        db.write(
            {
                let mut b = WriteBatch::new();
                b.put("big", vec![b'b'; 70 << 10]);
                b
            },
            WriteOptions::default().sync(true),
        )
        .unwrap();
        assert_eq!(db.get("k").unwrap(), None);
        // Closing waits for the flush (and the cleaning after it); it does
        // not flush the memtable holding the tombstone.
        db.close().unwrap();
        slow.store(false, Ordering::SeqCst);
        if let Some(mode) = mode {
            mem.crash(mode, 0);
        }
        let db = open();
        assert_eq!(
            db.get("k").unwrap(),
            None,
            "{mode:?}: a key deleted by an acknowledged sync write is back after reopening"
        );
        assert_eq!(db.get("big").unwrap().map(|v| v.len()), Some(70 << 10));
    }
}
