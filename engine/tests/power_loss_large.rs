//! Simulated power loss under realistic sizes (issue 15): values from 0
//! bytes to 8 MiB drawn from a skewed distribution, batches from one
//! record up to the 16 MiB limit (every workload writes one just over
//! 1 MiB first and, budget allowing, one filled to the limit), 64 KiB
//! changelog segments so the data rolls dozens of them, and a manifest
//! that rotates at 64 bytes.
//!
//! Each cycle runs its workload without faults, then checks a clean-close
//! reopen and a reopen after power loss (`DropAll`) against the oracle in
//! `harness`; then it runs the workload again on a fresh store with a
//! crash point armed at a random call, loses power (`CrashMode::Random`,
//! a few `DropAll`/`KeepAll`), and checks the reopened store the same way.
//!
//! Cycles are expensive (tens of MiB each), so the default is small:
//! `VARVE_LARGE_CYCLES` sets the count (default 8, or one per 250
//! `VARVE_CRASH_CYCLES` when that is set, so the long run covers sizes
//! too); `VARVE_LARGE_SEED` replays one cycle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::sync::Arc;

use harness::{
    History, Op, Rng, Violation, check_recovered, env_u64, fresh_store, manifest_number, open_db,
    read_back, realistic_ops, small_options,
};
use varve_db::Options;
use varve_db::testing::seed_range;
use varve_db::varve_changelog::fs::{CrashMode, FileSystem, MemFs};

const KEYS: u8 = 8;
/// Key and value bytes one workload writes at most (besides its first
/// 1 MiB batch).
const BUDGET_BYTES: u64 = 40 << 20;

#[derive(Default)]
struct Tally {
    cycles: u64,
    batches_over_1_mib: u64,
    full_batches: u64,
    segment_rolls: u64,
    rotations: u64,
}

fn workload(seed: u64) -> (Options, Vec<Op>) {
    let mut rng = Rng::new(seed);
    let len = 10 + rng.below(20) as usize;
    let ops = realistic_ops(&mut rng, len, KEYS, BUDGET_BYTES);
    (small_options(), ops)
}

/// Reopens the store, checks it against the oracle and closes it.
fn verify(fs: &MemFs, opts: &Options, hist: &History, ctx: &str) -> Result<(), Violation> {
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = open_db(&dynfs, opts).map_err(|e| Violation(format!("{ctx}: reopen: {e}")))?;
    let got = read_back(&db, KEYS).map_err(|v| Violation(format!("{ctx}: {v}")))?;
    check_recovered(&got, hist).map_err(|v| Violation(format!("{ctx}: {v}")))?;
    db.close()
        .map_err(|e| Violation(format!("{ctx}: close after reopen: {e}")))
}

fn cycle(seed: u64, tally: &mut Tally) -> Result<(), Violation> {
    let (opts, ops) = workload(seed);
    let mut rng = Rng::new(seed ^ 0x5EED);
    for op in &ops {
        tally.segment_rolls += u64::from(matches!(op, Op::LogRoll));
        if let Op::Write { muts, .. } = op {
            let bytes: u64 = muts
                .iter()
                .map(|m| match m {
                    harness::Mutation::Put(_, pad) => u64::from(*pad),
                    harness::Mutation::Delete(_) => 0,
                })
                .sum();
            tally.batches_over_1_mib += u64::from(bytes > 1 << 20);
            tally.full_batches += u64::from(bytes > 15 << 20);
            // A batch larger than a segment always ends in a new one.
            tally.segment_rolls += u64::from(bytes > opts.changelog_segment_size_bytes);
        }
    }

    // Fault-free: a clean close, then power loss.
    let fs = fresh_store(&opts);
    let before = fs.op_count();
    let mut runner = harness::Runner::new(Arc::new(fs.clone()), &opts);
    runner.run(&ops)?;
    let calls = fs.op_count() - before;
    if !runner.hist.completed {
        return Err(Violation(format!(
            "fault-free run failed: {:?}",
            runner.hist.first_error
        )));
    }
    tally.rotations += u64::from(manifest_number(&fs) > 1);
    verify(&fs, &opts, &runner.hist, "fault-free, clean close")?;
    fs.crash(CrashMode::DropAll, 0);
    verify(&fs, &opts, &runner.hist, "fault-free, power loss")?;

    // A crash at a random call.
    let n = rng.below(calls + 1);
    let fs = fresh_store(&opts);
    fs.crash_at(n);
    let mut runner = harness::Runner::new(Arc::new(fs.clone()), &opts);
    runner.run(&ops)?;
    runner.abandon();
    let mode = rng.crash_mode(8);
    let crash_seed = rng.next_u64();
    fs.crash(mode, crash_seed);
    let ctx = format!("crash at call {n} of {calls}, {mode:?}/{crash_seed}");
    verify(&fs, &opts, &runner.hist, &ctx)?;
    // The recovered store closes cleanly and reopens the same.
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = open_db(&dynfs, &opts).map_err(|e| Violation(format!("{ctx}: second open: {e}")))?;
    read_back(&db, KEYS).map_err(|v| Violation(format!("{ctx}: second open: {v}")))?;
    db.close()
        .map_err(|e| Violation(format!("{ctx}: second close: {e}")))?;
    tally.cycles += 1;
    Ok(())
}

#[test]
fn power_loss_with_realistic_sizes() {
    let mut tally = Tally::default();
    let run = |seed: u64, tally: &mut Tally| {
        if let Err(v) = cycle(seed, tally) {
            panic!("seed {seed} (replay: VARVE_LARGE_SEED={seed}): {v}");
        }
    };
    let cycles = env_u64("VARVE_LARGE_CYCLES")
        .unwrap_or_else(|| (env_u64("VARVE_CRASH_CYCLES").unwrap_or(0) / 250).max(8));
    let started = std::time::Instant::now();
    for seed in seed_range("VARVE_LARGE_SEED", 0x1A56_E000, cycles) {
        run(seed, &mut tally);
    }
    eprintln!(
        "power_loss_with_realistic_sizes: {} cycles, {} batches over 1 MiB, {} batches \
         over 15 MiB, at least {} changelog segment rolls, {} workloads rotated the manifest, \
         0 violations, {:?}",
        tally.cycles,
        tally.batches_over_1_mib,
        tally.full_batches,
        tally.segment_rolls,
        tally.rotations,
        started.elapsed()
    );
    assert!(tally.batches_over_1_mib >= tally.cycles);
}
