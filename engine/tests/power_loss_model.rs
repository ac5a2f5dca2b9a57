//! Simulated power loss against a `BTreeMap` oracle, over seeded random
//! workloads of puts, deletes, batches, flushes, compactions, checkpoints,
//! log rolls, log truncations, reopens, reads, scans and snapshots.
//!
//! Each cycle runs a workload once without faults (to count its
//! file-system calls and check its end state), then again on a fresh store
//! with a crash point armed at a random call: that call and every later one
//! fail, so the store stops as if the machine died. The in-memory file
//! system then loses power: each unsynced write is independently kept,
//! dropped or torn, and each directory may lose its unsynced creates,
//! renames and removes (`CrashMode::Random`; a few cycles use `DropAll` or
//! `KeepAll`). One cycle in ten crashes again while recovering. The
//! reopened store is checked against the oracle in `harness`: a prefix of
//! the attempted batches that includes every acknowledged one, the same
//! records in the changelog at contiguous offsets, agreeing read paths,
//! and no error before the crash point. Every checkpoint that returned
//! `Ok` must open with exactly the writes before it (one the crash
//! interrupted may instead fail to open). One cycle in four then writes with
//! `sync: true`, loses power again, and checks that write survived.
//!
//! Unlike `crash.rs` (scripted workloads, every call of one workload),
//! this test drives the changelog directly too (roll, truncate), checks
//! reads and snapshots while the workload runs, and checks the changelog's
//! records and offsets after recovery.
//!
//! `VARVE_CRASH_CYCLES` sets the number of cycles (default 2,000; the long
//! run uses 1,000,000); `VARVE_MODEL_SEED` replays one cycle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::sync::Arc;

use harness::{
    Op, Rng, Runner, State, Violation, check_checkpoints, check_recovered, env_u64, fresh_store,
    open_db, random_ops, read_back, small_options,
};
use varve_db::testing::seed_range;
use varve_db::varve_changelog::fs::{CrashMode, FileSystem, MemFs};
use varve_db::{Options, WriteBatch, WriteOptions};

const KEYS: u8 = 12;

/// What one cycle covered, for the summary line.
#[derive(Default)]
struct Tally {
    cycles: u64,
    crash_points: u64,
    compound: u64,
    post_crash_writes: u64,
    checkpoints_opened: u64,
    manifest_rotations: u64,
}

fn options(rng: &mut Rng) -> Options {
    small_options()
        .max_immutable_memtables(1 + rng.below(2) as usize)
        .sync_interval_ms(rng.chance(10).then_some(2))
        .bloom_bits_per_key(if rng.chance(20) { 0 } else { 10 })
}

fn cycle(seed: u64, tally: &mut Tally) -> Result<(), Violation> {
    let mut rng = Rng::new(seed);
    let opts = options(&mut rng);
    let len = 8 + rng.below(50) as usize;
    let big = rng.chance(30);
    let ops = random_ops(&mut rng, len, KEYS, big);
    if std::env::var_os("VARVE_MODEL_VERBOSE").is_some() {
        eprintln!("seed {seed}: {opts:?}\n{ops:#?}");
    }

    // Fault-free run: count the calls and check the end state.
    let fs = fresh_store(&opts);
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let before = fs.op_count();
    let mut runner = Runner::new(dynfs.clone(), &opts);
    runner.run(&ops)?;
    let calls = fs.op_count() - before;
    if harness::manifest_number(&fs) > 1 {
        tally.manifest_rotations += 1;
    }
    if !runner.hist.completed {
        return Err(Violation(format!(
            "fault-free run failed: {:?}",
            runner.hist.first_error
        )));
    }
    fs.crash(CrashMode::DropAll, 0);
    verify(&dynfs, &opts, &runner.hist, "fault-free")?;
    let opened = check_checkpoints(&dynfs, &opts, &runner.hist, KEYS)
        .map_err(|v| Violation(format!("fault-free: {v}")))?;
    if opened != runner.hist.checkpoints.len() {
        return Err(Violation(format!(
            "fault-free: {opened} of {} checkpoints open",
            runner.hist.checkpoints.len()
        )));
    }

    // The crash run.
    let n = rng.below(calls + 1);
    let fs = fresh_store(&opts);
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let armed_at = fs.op_count();
    fs.crash_at(n);
    let mut runner = Runner::new(dynfs.clone(), &opts);
    runner.run(&ops)?;
    if let Some((step, e)) = &runner.hist.first_error
        && fs.op_count() <= armed_at + n
    {
        return Err(Violation(format!(
            "step {step} failed before the crash point (call {n} of {calls}): {e}"
        )));
    }
    runner.abandon();
    let mode = rng.crash_mode(10);
    let crash_seed = rng.next_u64();
    fs.crash(mode, crash_seed);
    tally.crash_points += 1;
    if rng.chance(10) {
        // Power fails again while the store recovers.
        fs.crash_at(rng.below(80));
        drop(open_db(&dynfs, &opts));
        fs.crash(CrashMode::Random, crash_seed ^ 0xC0);
        tally.compound += 1;
    }
    let ctx = format!("crash at call {n} of {calls}, {mode:?}/{crash_seed}");
    let state = verify(&dynfs, &opts, &runner.hist, &ctx)?;
    tally.checkpoints_opened += check_checkpoints(&dynfs, &opts, &runner.hist, KEYS)
        .map_err(|v| Violation(format!("{ctx}: {v}")))? as u64;

    if rng.chance(25) {
        post_crash_write(&fs, &dynfs, &opts, state)
            .map_err(|v| Violation(format!("{ctx}: {v}")))?;
        tally.post_crash_writes += 1;
    }
    tally.cycles += 1;
    Ok(())
}

/// Reopens the store, checks it against the oracle and returns its state.
fn verify(
    fs: &Arc<dyn FileSystem>,
    opts: &Options,
    hist: &harness::History,
    ctx: &str,
) -> Result<State, Violation> {
    let db = open_db(fs, opts).map_err(|e| Violation(format!("{ctx}: reopen failed: {e}")))?;
    let got = read_back(&db, KEYS).map_err(|v| Violation(format!("{ctx}: {v}")))?;
    check_recovered(&got, hist).map_err(|v| Violation(format!("{ctx}: {v}")))?;
    db.close()
        .map_err(|e| Violation(format!("{ctx}: close after recovery: {e}")))?;
    Ok(got.state)
}

/// Recovery left the store durable: a sync write after it survives a
/// second power loss on top of the recovered state.
fn post_crash_write(
    fs: &MemFs,
    dynfs: &Arc<dyn FileSystem>,
    opts: &Options,
    mut state: State,
) -> Result<(), Violation> {
    let db = open_db(dynfs, opts).map_err(|e| Violation(format!("second open: {e}")))?;
    let mut batch = WriteBatch::new();
    batch.put("post-crash", "yes").delete(harness::key(0));
    db.write(batch, WriteOptions::default().sync(true))
        .map_err(|e| Violation(format!("sync write after recovery: {e}")))?;
    drop(db);
    fs.crash(CrashMode::DropAll, 0);
    state.insert("post-crash".into(), "yes".into());
    state.remove(&harness::key(0));
    let db = open_db(dynfs, opts).map_err(|e| Violation(format!("third open: {e}")))?;
    let got = read_back(&db, KEYS)?;
    if got.state != state {
        return Err(Violation(format!(
            "after a second power loss: got {}, want {}",
            harness::show(&got.state),
            harness::show(&state)
        )));
    }
    Ok(())
}

/// Prints the smallest fault-free workload of `seed` that still fails.
fn shrink_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let opts = options(&mut rng);
    let len = 8 + rng.below(50) as usize;
    let big = rng.chance(30);
    let ops = random_ops(&mut rng, len, KEYS, big);
    let fails = |c: &[Op]| harness::fault_free_check(c, &opts, KEYS).is_err();
    if !fails(&ops) {
        eprintln!("seed {seed}: the fault-free run passes; nothing to shrink");
        return;
    }
    let small = harness::shrink(&ops, 3, &fails);
    eprintln!(
        "seed {seed}: shrunk to {} ops: {small:?}\n{:?}",
        small.len(),
        harness::fault_free_check(&small, &opts, KEYS).err()
    );
}

fn run_seed(seed: u64, tally: &mut Tally) {
    if let Err(v) = cycle(seed, tally) {
        panic!("seed {seed} (replay: VARVE_MODEL_SEED={seed}): {v}");
    }
}

#[test]
fn power_loss_against_the_model() {
    let mut tally = Tally::default();
    if let Some(seed) = env_u64("VARVE_MODEL_SEED")
        && std::env::var_os("VARVE_MODEL_SHRINK").is_some()
    {
        shrink_seed(seed);
    }
    let cycles = env_u64("VARVE_CRASH_CYCLES").unwrap_or(2_000);
    let base = env_u64("VARVE_MODEL_BASE_SEED").unwrap_or(0x00D1_5C00);
    let started = std::time::Instant::now();
    for (i, seed) in seed_range("VARVE_MODEL_SEED", base, cycles).enumerate() {
        run_seed(seed, &mut tally);
        if i % 10_000 == 9_999 {
            eprintln!("{} cycles, {:?}", i + 1, started.elapsed());
        }
    }
    eprintln!(
        "power_loss_against_the_model: {} cycles, {} crash points, {} crashes during \
         recovery, {} post-crash sync writes, {} checkpoints opened after the crash, \
         {} workloads rotated the manifest, 0 violations, {:?}",
        tally.cycles,
        tally.crash_points,
        tally.compound,
        tally.post_crash_writes,
        tally.checkpoints_opened,
        tally.manifest_rotations,
        started.elapsed()
    );
    if tally.cycles >= 100 {
        assert!(
            tally.manifest_rotations > 0,
            "no workload rotated the manifest"
        );
    }
}

/// The model test's own ops, spelled out once so that a change to the op
/// set shows here: every op kind occurs in generated workloads.
#[test]
fn generated_workloads_use_every_op() {
    let mut rng = Rng::new(1);
    let ops = random_ops(&mut rng, 2_000, KEYS, true);
    let has = |f: &dyn Fn(&Op) -> bool| ops.iter().any(f);
    assert!(has(&|o| matches!(o, Op::Write { sync: true, .. })));
    assert!(has(&|o| matches!(o, Op::Write { sync: false, .. })));
    assert!(has(&|o| matches!(o, Op::Flush)));
    assert!(has(&|o| matches!(o, Op::LogRoll)));
    assert!(has(&|o| matches!(o, Op::LogTruncate(_))));
    assert!(has(&|o| matches!(o, Op::Reopen)));
    assert!(has(&|o| matches!(o, Op::Compact)));
    assert!(has(&|o| matches!(o, Op::Checkpoint)));
    assert!(has(&|o| matches!(o, Op::Range(_, _, true))));
    assert!(has(&|o| matches!(o, Op::CheckSnapshot)));
}
