//! Exhaustive small workloads: every workload of up to three operations
//! from {put, delete, batch, flush, compact, log roll, log truncate,
//! checkpoint}, run after a short preload, with a power loss at every
//! file-system call. The manifest rotates at 64 bytes, so the flushes and
//! compactions of many workloads rotate it (each run prints how many).
//!
//! At each crash point the in-memory file system loses power in
//! `CrashMode::Random` (each unsynced write kept, dropped or torn; each
//! directory may lose its unsynced entries), seeded by the crash point; the
//! reopened store is checked against the oracle in `harness`, and so is
//! every checkpoint taken before the crash: one that returned `Ok` opens
//! with exactly the writes before it, one the crash interrupted is absent
//! or fails to open.
//! `VARVE_EXHAUSTIVE_SEEDS` sets how many damage seeds each crash point
//! gets (default 1; a `DropAll` crash is always checked too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::sync::Arc;

use harness::{
    Mutation as M, Op, Runner, check_checkpoints, check_recovered, env_u64, fault_free_run,
    fresh_store, manifest_number, open_db, read_back, small_options,
};
use varve_db::testing::all_sequences;
use varve_db::varve_changelog::fs::{CrashMode, FileSystem};

const KEYS: u8 = 4;

/// The operations the workloads are made of.
fn alphabet() -> Vec<Op> {
    vec![
        Op::Write {
            muts: vec![M::Put(1, 8)],
            sync: false,
        },
        Op::Write {
            muts: vec![M::Delete(0)],
            sync: true,
        },
        Op::Write {
            muts: vec![M::Put(2, 3), M::Delete(1), M::Put(3, 900)],
            sync: true,
        },
        Op::Flush,
        Op::Compact,
        Op::LogRoll,
        Op::LogTruncate(100),
        Op::Checkpoint,
    ]
}

fn preload() -> Vec<Op> {
    vec![
        Op::Write {
            muts: vec![M::Put(0, 4), M::Put(1, 4)],
            sync: true,
        },
        Op::Write {
            muts: vec![M::Put(2, 4)],
            sync: false,
        },
    ]
}

fn workloads() -> Vec<Vec<Op>> {
    all_sequences(&alphabet(), 3)
}

#[test]
fn every_small_workload_crashed_at_every_call() {
    let seeds = env_u64("VARVE_EXHAUSTIVE_SEEDS").unwrap_or(1);
    let opts = small_options();
    let started = std::time::Instant::now();
    let (mut workloads_run, mut crash_points, mut crash_states) = (0u64, 0u64, 0u64);
    let mut checkpoints_opened = 0u64;
    let mut rotating = 0u64;
    for w in workloads() {
        let mut ops = preload();
        ops.extend(w.iter().cloned());
        let (fs, calls) = fault_free_run(&opts, &ops, &format!("{w:?}"));
        if manifest_number(&fs) > 1 {
            rotating += 1;
        }
        for n in 0..=calls {
            for s in 0..=seeds {
                let fs = fresh_store(&opts);
                let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
                fs.crash_at(n);
                let mut runner = Runner::new(dynfs.clone(), &opts);
                runner
                    .run(&ops)
                    .unwrap_or_else(|v| panic!("{w:?} crash at {n}: {v}"));
                runner.abandon();
                let (mode, seed) = if s == 0 {
                    (CrashMode::DropAll, 0)
                } else {
                    (CrashMode::Random, n * 1000 + s)
                };
                fs.crash(mode, seed);
                let ctx = format!("workload {w:?}, crash at call {n} of {calls}, {mode:?}/{seed}");
                let db = open_db(&dynfs, &opts).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
                let got = read_back(&db, KEYS).unwrap_or_else(|v| panic!("{ctx}: {v}"));
                check_recovered(&got, &runner.hist).unwrap_or_else(|v| panic!("{ctx}: {v}"));
                drop(db);
                checkpoints_opened += check_checkpoints(&dynfs, &opts, &runner.hist, KEYS)
                    .unwrap_or_else(|v| panic!("{ctx}: {v}"))
                    as u64;
                crash_states += 1;
            }
            crash_points += 1;
        }
        workloads_run += 1;
    }
    eprintln!(
        "every_small_workload_crashed_at_every_call: {workloads_run} workloads, \
         {crash_points} crash points, {crash_states} crash states checked, \
         {checkpoints_opened} checkpoints opened after a crash, {rotating} workloads \
         rotated the manifest, {:?}",
        started.elapsed()
    );
    assert!(rotating > 0, "no workload rotated the manifest");
}
