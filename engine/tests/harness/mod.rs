//! Shared pieces of the reliability harness: a seeded PRNG, workloads of
//! store operations, a runner that records what each operation was told,
//! and an oracle that checks a reopened store against every history the
//! promise allows.
//!
//! The promise checked (see `docs/TESTING.md`):
//!
//! 1. every write acknowledged as durable (a `sync: true` write, or any
//!    write before a `flush()` or `close()` that returned `Ok`) survives;
//! 2. the reopened store equals the model after some prefix of the
//!    attempted write batches: whole batches, no holes, no resurrected
//!    deletes; the changelog holds exactly that prefix's records at
//!    contiguous offsets, and `latest_seqno()` is its record count;
//! 3. reads never return wrong data;
//! 4. a write that returned an error may or may not be in the store, but it
//!    is there whole or not at all;
//! 5. a checkpoint that returned `Ok` opens, after any later crash, with
//!    exactly the writes before it; one the crash interrupted is absent or
//!    refused, never open with other data.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use varve_db::varve_changelog::fs::{FileSystem, MemFs};
use varve_db::{Db, Options, WriteBatch, WriteOptions};

/// The directory of the store under test.
pub const DIR: &str = "/db";

/// A key-value state of the store or of the model.
pub type State = BTreeMap<Bytes, Bytes>;

/// One changelog record as the model sees it: a key and a value (`None`
/// for a delete).
pub type Rec = (Bytes, Option<Bytes>);

// ---------------------------------------------------------------------------
// PRNG and options: the test toolkit's.

/// The seeded PRNG of the harness.
pub use varve_db::testing::{Rng, env_u64};
/// Small options so that a few dozen writes flush memtables, roll
/// segments and delete old ones, and a few flushes rotate the manifest.
pub fn small_options() -> Options {
    varve_db::testing::crash_options()
}

// ---------------------------------------------------------------------------
// Workloads

/// One mutation inside a write batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Put key number `.0` with `.1` bytes of padding in the value.
    Put(u8, u32),
    /// Delete key number `.0`.
    Delete(u8),
}

/// One step of a workload. A new operation is one arm here and one arm in
/// [`Runner::step`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// One write batch (a lone put or delete is a batch of one).
    Write {
        /// The batch's mutations, in order.
        muts: Vec<Mutation>,
        /// Whether the write asks for `sync: true`.
        sync: bool,
    },
    /// `Db::flush()`.
    Flush,
    /// Roll the changelog to a new segment.
    LogRoll,
    /// Advance the changelog start offset to the given fraction (percent)
    /// of the offset the last completed `flush()` covered.
    LogTruncate(u8),
    /// `close()` and open again.
    Reopen,
    /// `Db::compact_range(..)` over every key (it flushes first, so a
    /// completed compaction acknowledges every write before it).
    Compact,
    /// `Db::checkpoint(..)` into a new directory (see [`checkpoint_dir`]).
    /// It flushes first, so a completed checkpoint acknowledges every
    /// write before it; after any later crash the checkpoint must open
    /// with exactly those writes.
    Checkpoint,
    /// A point read of key `.0`, checked against the model.
    Get(u8),
    /// A range scan `[.0, .1)` (forward, or reverse when `.2`), checked.
    Range(u8, u8, bool),
    /// Take a snapshot (replacing any held one) with the model's state.
    Snapshot,
    /// Check the held snapshot still reads the state it was taken at.
    CheckSnapshot,
}

/// The key numbered `k`.
pub fn key(k: u8) -> Bytes {
    Bytes::from(format!("key-{k:03}"))
}

/// The value that write number `write` puts at key `k`: it names the
/// write, so a stale or resurrected value is recognisable.
pub fn value(write: usize, k: u8, pad: u32) -> Bytes {
    let mut v = format!("w{write}-k{k}-").into_bytes();
    let pad = usize::try_from(pad).expect("pad fits in usize");
    v.extend(std::iter::repeat_n(b'a' + (write % 26) as u8, pad));
    Bytes::from(v)
}

/// The records write number `write` appends.
pub fn records_of(write: usize, muts: &[Mutation]) -> Vec<Rec> {
    muts.iter()
        .map(|m| match *m {
            Mutation::Put(k, pad) => (key(k), Some(value(write, k, pad))),
            Mutation::Delete(k) => (key(k), None),
        })
        .collect()
}

/// A random workload of `len` steps over `keys` keys.
pub fn random_ops(rng: &mut Rng, len: usize, keys: u8, big_values: bool) -> Vec<Op> {
    let keys = u64::from(keys.max(1));
    let mut ops = Vec::with_capacity(len);
    for _ in 0..len {
        let r = rng.below(100);
        let op = match r {
            0..=4 => Op::Flush,
            5..=6 => Op::LogRoll,
            7..=8 => Op::LogTruncate(rng.below(101) as u8),
            9 => Op::Reopen,
            10 => Op::Compact,
            11..=16 => Op::Get(rng.below(keys) as u8),
            17..=19 => {
                let a = rng.below(keys) as u8;
                let b = rng.below(keys + 1) as u8;
                Op::Range(a.min(b), a.max(b), rng.chance(50))
            }
            20..=21 => Op::Snapshot,
            22..=23 => Op::CheckSnapshot,
            24..=25 => Op::Checkpoint,
            _ => {
                let n = if rng.chance(40) { 1 } else { 2 + rng.below(5) };
                let muts = (0..n)
                    .map(|_| {
                        let k = rng.below(keys) as u8;
                        if rng.chance(25) {
                            Mutation::Delete(k)
                        } else {
                            let pad = if big_values && rng.chance(25) {
                                rng.below(2500)
                            } else {
                                rng.below(40)
                            };
                            Mutation::Put(k, pad as u32)
                        }
                    })
                    .collect();
                Op::Write {
                    muts,
                    sync: rng.chance(35),
                }
            }
        };
        ops.push(op);
    }
    ops
}

/// The most bytes of padding a value may carry: the engine's 8 MiB value
/// limit less room for the value's `w{write}-k{k}-` prefix.
pub const PAD_MAX_BYTES: u32 = (varve_db::MAX_VALUE_SIZE_BYTES - 64) as u32;

/// The most key and value bytes one batch of a realistic workload
/// carries: the changelog's 16 MiB batch limit less room for the batch
/// header and a record header per record.
pub const BATCH_PAYLOAD_MAX_BYTES: u64 = (16 << 20) - (64 << 10);

/// A value size drawn from a skewed distribution, as real state stores
/// see it: most values are a few bytes, some are kilobytes, a few are
/// megabytes, up to the engine's limit.
pub fn skewed_pad(rng: &mut Rng) -> u32 {
    let (lo, hi): (u64, u64) = match rng.below(1000) {
        0..=599 => (0, 40),
        600..=899 => (40, 4 << 10),
        900..=969 => (4 << 10, 256 << 10),
        970..=994 => (256 << 10, 2 << 20),
        _ => (2 << 20, u64::from(PAD_MAX_BYTES)),
    };
    (lo + rng.below(hi - lo)) as u32
}

/// A write batch of a realistic workload: one record, a few, or records
/// of skewed sizes filling a batch up to the 16 MiB limit, drawing at
/// most `budget` bytes (which it lowers by what it used).
pub fn realistic_batch(rng: &mut Rng, keys: u8, budget: &mut u64) -> Vec<Mutation> {
    let keys = u64::from(keys.max(1));
    let target = match rng.below(10) {
        0..=4 => 1,
        5..=7 => 0,
        _ => rng.below(BATCH_PAYLOAD_MAX_BYTES + 1),
    };
    let count_max = if target == 1 { 1 } else { 2 + rng.below(40) };
    let mut muts = Vec::new();
    let mut bytes = 0u64;
    while (muts.len() as u64) < count_max || bytes < target {
        let k = rng.below(keys) as u8;
        if rng.chance(10) {
            muts.push(Mutation::Delete(k));
            continue;
        }
        let room = BATCH_PAYLOAD_MAX_BYTES.saturating_sub(bytes).min(*budget);
        let pad = u64::from(skewed_pad(rng)).min(room.saturating_sub(64));
        bytes += pad + 64;
        *budget = budget.saturating_sub(pad + 64);
        muts.push(Mutation::Put(k, pad as u32));
        if room <= 64 || muts.len() >= 5_000 {
            break;
        }
    }
    muts
}

/// A realistic workload of `len` steps over `keys` keys: batches from
/// [`realistic_batch`] drawing on `budget_bytes` in all (so one run stays
/// within a few tens of MiB), flushes, compactions, log rolls and
/// truncations, reopens, reads and checkpoints. Its first write is a batch
/// of just over 1 MiB and, when the budget allows, a later one is filled
/// up to the 16 MiB limit, so every run writes both.
pub fn realistic_ops(rng: &mut Rng, len: usize, keys: u8, budget_bytes: u64) -> Vec<Op> {
    let mut budget = budget_bytes;
    let mut ops = vec![Op::Write {
        muts: vec![Mutation::Put(0, (1 << 20) + 100)],
        sync: true,
    }];
    let mut full_batch_at = 1 + rng.below(len.max(2) as u64) as usize;
    while ops.len() < len {
        let op = match rng.below(100) {
            0..=7 => Op::Flush,
            8..=11 => Op::LogRoll,
            12..=13 => Op::LogTruncate(rng.below(101) as u8),
            14..=16 => Op::Reopen,
            17..=19 => Op::Compact,
            20..=23 => Op::Get(rng.below(u64::from(keys.max(1))) as u8),
            24..=25 => Op::Range(0, keys, rng.chance(50)),
            26 => Op::Checkpoint,
            _ if ops.len() >= full_batch_at && budget >= BATCH_PAYLOAD_MAX_BYTES => {
                full_batch_at = usize::MAX;
                budget -= BATCH_PAYLOAD_MAX_BYTES;
                let half = (BATCH_PAYLOAD_MAX_BYTES / 2 - 64) as u32;
                Op::Write {
                    muts: vec![Mutation::Put(1, half), Mutation::Put(2, half)],
                    sync: rng.chance(50),
                }
            }
            _ => Op::Write {
                muts: realistic_batch(rng, keys, &mut budget),
                sync: rng.chance(35),
            },
        };
        ops.push(op);
    }
    ops
}

/// The number of the manifest the store in [`DIR`] uses now (1 for a new
/// store; higher once the manifest has been rotated).
pub fn manifest_number(fs: &MemFs) -> u64 {
    let current = fs
        .read_all(std::path::Path::new(&format!("{DIR}/CURRENT")))
        .expect("read CURRENT");
    let name = String::from_utf8_lossy(&current);
    name.trim_end()
        .strip_prefix("MANIFEST-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("CURRENT names {name:?}"))
}

/// Opens the store in [`DIR`] of `fs`.
pub fn open_db(fs: &Arc<dyn FileSystem>, opts: &Options) -> varve_db::Result<Db> {
    Db::open(DIR, opts.clone().fs(fs.clone()))
}

/// A file system holding a newly created, closed, empty store.
pub fn fresh_store(opts: &Options) -> MemFs {
    let fs = MemFs::new();
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    open_db(&dynfs, opts)
        .expect("create store")
        .close()
        .expect("close new store");
    fs
}

/// Runs `ops` without faults on a fresh store: the file system it left and
/// the number of file-system calls the workload made (the crash or fault
/// points a sweep visits). `name` names the workload if the run fails.
pub fn fault_free_run(opts: &Options, ops: &[Op], name: &str) -> (MemFs, u64) {
    let fs = fresh_store(opts);
    let before = fs.op_count();
    let mut runner = Runner::new(Arc::new(fs.clone()), opts);
    runner.run(ops).unwrap();
    assert!(runner.hist.completed, "{name}: fault-free run failed");
    let calls = fs.op_count() - before;
    (fs, calls)
}

// ---------------------------------------------------------------------------
// Running a workload

/// One write batch as the runner saw it.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The batch's records.
    pub recs: Vec<Rec>,
    /// Whether `write` returned `Ok`.
    pub ok: bool,
}

/// The directory of the `n`th checkpoint a workload takes (outside the
/// store's own directory).
pub fn checkpoint_dir(n: usize) -> String {
    format!("/checkpoint-{n}")
}

/// One checkpoint as the runner saw it.
#[derive(Clone, Debug)]
pub struct CheckpointTaken {
    /// Its directory.
    pub dir: String,
    /// The number of write batches attempted before it: the checkpoint
    /// holds exactly these (each failed one present or absent).
    pub batches: usize,
    /// The offset `checkpoint` returned, if it returned `Ok`.
    pub offset: Option<u64>,
}

/// What a workload run told its caller.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every write batch attempted, in order.
    pub attempts: Vec<Attempt>,
    /// The first `durable` attempts were acknowledged as durable.
    pub durable: usize,
    /// The first error an operation returned, with the step index.
    pub first_error: Option<(usize, String)>,
    /// Errors after the first (when the runner goes on after errors).
    pub errors: usize,
    /// Whether every step and the final close returned `Ok`.
    pub completed: bool,
    /// Errors that claimed corruption (an injected I/O error must never
    /// be reported as damaged data).
    pub corruption_errors: usize,
    /// Every checkpoint attempted, in order.
    pub checkpoints: Vec<CheckpointTaken>,
}

/// A violation of the promise found while the workload ran.
#[derive(Debug)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs a workload against a store and the model side by side.
pub struct Runner<'a> {
    fs: Arc<dyn FileSystem>,
    opts: &'a Options,
    db: Option<Db>,
    /// The history so far.
    pub hist: History,
    /// Writes that returned `Ok` (plus failed ones, whose effect is
    /// unknown: reads are then not checked against the model).
    model: State,
    model_exact: bool,
    /// Records appended by the writes a completed `flush()` covered.
    flushed_records: u64,
    snapshot: Option<(varve_db::Snapshot, State)>,
    /// Whether to keep going after an operation failed.
    pub continue_after_error: bool,
    /// Says whether an injected sync failure has happened; once it has, no
    /// later sync write, flush or close may succeed, and neither may the
    /// sync write or flush during which it happened.
    /// (It returns how many have happened; a reopen starts afresh, since
    /// recovery is the documented way back from a failed sync.)
    pub sync_failed: Option<Box<dyn Fn() -> usize + 'a>>,
    sync_failures_at_open: usize,
    /// Of those, how many were syncs of changelog segments. A sync write
    /// is judged by these only: a table or manifest sync that a background
    /// flush had just seen fail, before the store recorded it, does not
    /// undo the write's own changelog sync. `None`: judged by all.
    pub log_sync_failed: Option<Box<dyn Fn() -> usize + 'a>>,
    log_sync_failures_at_open: usize,
}

impl<'a> Runner<'a> {
    /// A runner over the store in `fs` (opened on the first step).
    pub fn new(fs: Arc<dyn FileSystem>, opts: &'a Options) -> Self {
        Runner {
            fs,
            opts,
            db: None,
            hist: History::default(),
            model: State::new(),
            model_exact: true,
            flushed_records: 0,
            snapshot: None,
            continue_after_error: false,
            sync_failed: None,
            sync_failures_at_open: 0,
            log_sync_failed: None,
            log_sync_failures_at_open: 0,
        }
    }

    fn log_sync_failed_now(&self) -> bool {
        match &self.log_sync_failed {
            Some(f) => f() > self.log_sync_failures_at_open,
            None => self.sync_failed_now(),
        }
    }

    fn sync_failed_now(&self) -> bool {
        self.sync_failed
            .as_ref()
            .is_some_and(|f| f() > self.sync_failures_at_open)
    }

    /// Checks a durable acknowledgement against an injected sync failure.
    fn check_ack(
        &self,
        step: usize,
        what: &str,
        failed_before: bool,
        strict: bool,
    ) -> Result<(), Violation> {
        if failed_before || (strict && self.sync_failed_now()) {
            return Err(Violation(format!(
                "step {step}: {what} returned Ok after a failed sync (failed before it: {failed_before})"
            )));
        }
        Ok(())
    }

    fn error(&mut self, step: usize, e: &dyn ErrorKind) -> bool {
        let text = e.to_string();
        assert!(!text.is_empty(), "an error with no message");
        if e.corruption() {
            self.hist.corruption_errors += 1;
        }
        if self.hist.first_error.is_none() {
            self.hist.first_error = Some((step, text));
        } else {
            self.hist.errors += 1;
        }
        self.continue_after_error
    }

    /// Opens the store if it is closed. Returns false if that failed.
    fn ensure_open(&mut self, step: usize) -> bool {
        if self.db.is_some() {
            return true;
        }
        match open_db(&self.fs, self.opts) {
            Ok(db) => {
                self.db = Some(db);
                self.sync_failures_at_open = self.sync_failed.as_ref().map_or(0, |f| f());
                self.log_sync_failures_at_open = self.log_sync_failed.as_ref().map_or(0, |f| f());
                true
            }
            Err(e) => {
                self.error(step, &e);
                false
            }
        }
    }

    /// Runs every op, then closes the store. Stops at the first error
    /// unless [`Runner::continue_after_error`]. Returns a violation if a
    /// read returned wrong data.
    pub fn run(&mut self, ops: &[Op]) -> Result<(), Violation> {
        for (i, op) in ops.iter().enumerate() {
            if !self.ensure_open(i) {
                return Ok(());
            }
            if !self.step(i, op)? {
                return Ok(());
            }
        }
        self.snapshot = None;
        if let Some(db) = self.db.take() {
            let failed_before = self.sync_failed_now();
            match db.close() {
                Ok(()) => {
                    self.check_ack(ops.len(), "close", failed_before, false)?;
                    self.hist.durable = self.hist.attempts.len();
                    self.hist.completed = self.hist.first_error.is_none();
                }
                Err(e) => {
                    self.error(ops.len(), &e);
                }
            }
        }
        Ok(())
    }

    /// Drops the store without closing it cleanly (as a crash would find
    /// it): the caller has armed a fault that fails every call.
    pub fn abandon(&mut self) {
        self.snapshot = None;
        self.db = None;
    }

    /// Takes the open store (after a run that stopped at an error).
    pub fn take_db(&mut self) -> Option<Db> {
        self.snapshot = None;
        self.db.take()
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("store is open")
    }

    /// One step; returns whether to go on.
    fn step(&mut self, i: usize, op: &Op) -> Result<bool, Violation> {
        let failed_before = self.sync_failed_now();
        let log_failed_before = self.log_sync_failed_now();
        match op {
            Op::Write { muts, sync } => {
                let write = self.hist.attempts.len();
                let recs = records_of(write, muts);
                let mut batch = WriteBatch::new();
                for (k, v) in &recs {
                    match v {
                        Some(v) => batch.put(k.clone(), v.clone()),
                        None => batch.delete(k.clone()),
                    };
                }
                let result = self.db().write(batch, WriteOptions::default().sync(*sync));
                self.hist.attempts.push(Attempt {
                    recs: recs.clone(),
                    ok: result.is_ok(),
                });
                match result {
                    Ok(()) => {
                        if *sync {
                            // Not "during": a concurrent failure of the
                            // flush thread does not undo this write's sync.
                            self.check_ack(i, "sync write", log_failed_before, false)?;
                        }
                        apply(&mut self.model, &recs);
                        if *sync {
                            self.hist.durable = self.hist.attempts.len();
                        }
                    }
                    Err(e) => {
                        self.model_exact = false;
                        return Ok(self.error(i, &e));
                    }
                }
            }
            Op::Flush => match self.db().flush() {
                Ok(()) => {
                    self.check_ack(i, "flush", failed_before, true)?;
                    self.hist.durable = self.hist.attempts.len();
                    self.flushed_records = self.db().changelog().next_offset();
                }
                Err(e) => return Ok(self.error(i, &e)),
            },
            Op::Compact => match self.db().compact_range::<&[u8], _>(..) {
                Ok(()) => {
                    self.check_ack(i, "compaction", failed_before, true)?;
                    self.hist.durable = self.hist.attempts.len();
                    self.flushed_records = self.db().changelog().next_offset();
                }
                Err(e) => return Ok(self.error(i, &e)),
            },
            Op::Checkpoint => {
                let dir = checkpoint_dir(self.hist.checkpoints.len());
                let result = self.db().checkpoint(&dir);
                self.hist.checkpoints.push(CheckpointTaken {
                    dir,
                    batches: self.hist.attempts.len(),
                    offset: result.as_ref().ok().map(|info| info.offset),
                });
                match result {
                    Ok(_) => {
                        self.check_ack(i, "checkpoint", failed_before, true)?;
                        self.hist.durable = self.hist.attempts.len();
                        self.flushed_records = self.db().changelog().next_offset();
                    }
                    Err(e) => return Ok(self.error(i, &e)),
                }
            }
            Op::LogRoll => {
                if let Err(e) = self.db().changelog().roll() {
                    return Ok(self.error(i, &e));
                }
            }
            Op::LogTruncate(pct) => {
                let to = self.flushed_records * u64::from(*pct) / 100;
                if let Err(e) = self.db().changelog().truncate_before(to) {
                    return Ok(self.error(i, &e));
                }
            }
            Op::Reopen => {
                self.snapshot = None;
                let db = self.db.take().expect("store is open");
                match db.close() {
                    Ok(()) => {
                        self.check_ack(i, "close", failed_before, false)?;
                        self.hist.durable = self.hist.attempts.len();
                    }
                    Err(e) => return Ok(self.error(i, &e)),
                }
                if !self.ensure_open(i) {
                    return Ok(false);
                }
            }
            Op::Get(k) => match self.db().get(key(*k)) {
                Ok(got) => {
                    if self.model_exact && got.as_ref() != self.model.get(&key(*k)) {
                        return Err(Violation(format!(
                            "step {i}: get(key-{k:03}) = {got:?}, model {:?}",
                            self.model.get(&key(*k))
                        )));
                    }
                }
                Err(e) => return Ok(self.error(i, &e)),
            },
            Op::Range(a, b, rev) => {
                let range = key(*a)..key(*b);
                let iter = self.db().range(range.clone());
                let got: varve_db::Result<Vec<(Bytes, Bytes)>> = if *rev {
                    iter.rev().collect()
                } else {
                    iter.collect()
                };
                match got {
                    Ok(mut got) => {
                        if *rev {
                            got.reverse();
                        }
                        let want: Vec<(Bytes, Bytes)> = self
                            .model
                            .range(range)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if self.model_exact && got != want {
                            return Err(Violation(format!(
                                "step {i}: range {a}..{b} rev={rev}: got {}, model {}",
                                show_pairs(&got),
                                show_pairs(&want)
                            )));
                        }
                    }
                    Err(e) => return Ok(self.error(i, &e)),
                }
            }
            Op::Snapshot => {
                if self.model_exact {
                    self.snapshot = Some((self.db().snapshot(), self.model.clone()));
                }
            }
            Op::CheckSnapshot => {
                if let Some((snap, want)) = &self.snapshot {
                    match snap
                        .range::<&[u8], _>(..)
                        .collect::<varve_db::Result<State>>()
                    {
                        Ok(got) => {
                            if &got != want {
                                return Err(Violation(format!(
                                    "step {i}: snapshot at seqno {} changed: got {}, want {}",
                                    snap.seqno(),
                                    show(&got),
                                    show(want)
                                )));
                            }
                        }
                        Err(e) => return Ok(self.error(i, &e)),
                    }
                }
            }
        }
        Ok(true)
    }
}

/// The errors the runner sees: the engine's and the changelog's.
pub trait ErrorKind: fmt::Display {
    /// Whether the error reports damaged data.
    fn corruption(&self) -> bool;
}

impl ErrorKind for varve_db::Error {
    fn corruption(&self) -> bool {
        self.is_corruption()
    }
}

impl ErrorKind for varve_db::varve_changelog::Error {
    fn corruption(&self) -> bool {
        self.is_corruption()
    }
}

/// Applies records to a state.
pub fn apply(state: &mut State, recs: &[Rec]) {
    for (k, v) in recs {
        match v {
            Some(v) => state.insert(k.clone(), v.clone()),
            None => state.remove(k),
        };
    }
}

// ---------------------------------------------------------------------------
// The oracle

/// Every history the promise allows after `hist`: the attempted batches
/// up to some prefix of length `>= hist.durable`, where each batch whose
/// write failed may be present or absent. Each candidate is its records in
/// log order and the resulting state.
pub fn candidates(hist: &History) -> Vec<(usize, Vec<Rec>, State)> {
    let mut out: Vec<(usize, Vec<Rec>, State)> = Vec::new();
    // Partial histories: (records, state), one per choice of failed
    // batches so far. Failed batches are rare, so this stays small.
    let mut partial: Vec<(Vec<Rec>, State)> = vec![(Vec::new(), State::new())];
    for p in 0..=hist.attempts.len() {
        if p >= hist.durable {
            for (recs, state) in &partial {
                out.push((p, recs.clone(), state.clone()));
            }
        }
        let Some(a) = hist.attempts.get(p) else { break };
        let mut next = Vec::with_capacity(partial.len() * 2);
        for (recs, state) in partial {
            if !a.ok && next.len() < 64 {
                next.push((recs.clone(), state.clone()));
            }
            let mut recs = recs;
            let mut state = state;
            recs.extend(a.recs.iter().cloned());
            apply(&mut state, &a.recs);
            next.push((recs, state));
        }
        partial = next;
    }
    out
}

/// What a reopened store holds: its state, its changelog's records from
/// the log start, the log start offset, and `latest_seqno()`.
pub struct Recovered {
    /// Every key and value (forward scan).
    pub state: State,
    /// The changelog's records from its start offset.
    pub log: Vec<Rec>,
    /// The changelog's start offset.
    pub log_start: u64,
    /// `Db::latest_seqno()`.
    pub seqno: u64,
}

/// Reads everything from an open store and cross-checks its read paths:
/// forward scan, reverse scan and point reads of keys `0..keys` agree, and
/// the changelog's offsets are contiguous.
pub fn read_back(db: &Db, keys: u8) -> Result<Recovered, Violation> {
    let v = |what: &str, e: &dyn fmt::Display| Violation(format!("{what}: {e}"));
    let state: State = db
        .iter()
        .collect::<varve_db::Result<State>>()
        .map_err(|e| v("scan", &e))?;
    let mut rev: Vec<(Bytes, Bytes)> = db
        .iter()
        .rev()
        .collect::<varve_db::Result<_>>()
        .map_err(|e| v("reverse scan", &e))?;
    rev.reverse();
    if rev.iter().cloned().collect::<State>() != state || rev.len() != state.len() {
        return Err(Violation("reverse scan disagrees with forward scan".into()));
    }
    for k in 0..keys {
        let got = db.get(key(k)).map_err(|e| v("get", &e))?;
        if got.as_ref() != state.get(&key(k)) {
            return Err(Violation(format!(
                "get(key-{k:03}) = {got:?} but the scan says {:?}",
                state.get(&key(k))
            )));
        }
    }
    let log = db.changelog();
    // Background retention may delete segments while this reads (a flush
    // wakes its waiters before it applies retention): a read that ended
    // early because the log start moved past it is read again.
    let mut attempts = 0;
    let (log_start, recs) = loop {
        attempts += 1;
        let log_start = log.log_start_offset();
        let (recs, expect) = read_log(log, log_start)?;
        if expect == log.next_offset() {
            break (log_start, recs);
        }
        if attempts >= 5 || log.log_start_offset() <= expect {
            return Err(Violation(format!(
                "changelog read from {log_start} ended at {expect}, next_offset {}, \
                 log start now {}",
                log.next_offset(),
                log.log_start_offset()
            )));
        }
    };
    Ok(Recovered {
        state,
        log: recs,
        log_start,
        seqno: db.latest_seqno(),
    })
}

/// The changelog's records from `from`, checked contiguous, and the
/// offset the read ended at.
fn read_log(log: &varve_db::varve_changelog::Log, from: u64) -> Result<(Vec<Rec>, u64), Violation> {
    let v = |what: &str, e: &dyn fmt::Display| Violation(format!("{what}: {e}"));
    let mut recs = Vec::new();
    let mut reader = log.reader(from).map_err(|e| v("log reader", &e))?;
    let mut expect = from;
    while let Some((_, batch)) = reader.next_batch().map_err(|e| v("log read", &e))? {
        for r in batch {
            if r.offset != expect {
                return Err(Violation(format!(
                    "changelog offsets not contiguous: {} after {expect}",
                    r.offset
                )));
            }
            expect += 1;
            recs.push((r.record.key, r.record.value));
        }
    }
    Ok((recs, expect))
}

/// Checks a reopened store against every candidate of `hist`. Returns the
/// number of batches of the matching prefix.
pub fn check_recovered(got: &Recovered, hist: &History) -> Result<usize, Violation> {
    let cands = candidates(hist);
    for (p, recs, state) in &cands {
        if *state != got.state || recs.len() as u64 != got.seqno {
            continue;
        }
        let start = usize::try_from(got.log_start).unwrap_or(usize::MAX);
        if start <= recs.len() && recs[start..] == got.log[..] {
            return Ok(*p);
        }
    }
    let matching_state: Vec<usize> = cands
        .iter()
        .filter(|(_, _, s)| *s == got.state)
        .map(|(p, r, _)| p * 1000 + r.len())
        .collect();
    Err(Violation(format!(
        "reopened store is no allowed prefix: durable {} of {} attempted batches \
         (failed: {:?}); seqno {}, log [{}..{}); state {}; prefixes with this state \
         (batches*1000+records): {matching_state:?}; durable state {}",
        hist.durable,
        hist.attempts.len(),
        hist.attempts
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.ok)
            .map(|(i, _)| i)
            .collect::<Vec<_>>(),
        got.seqno,
        got.log_start,
        got.log_start + got.log.len() as u64,
        show(&got.state),
        cands
            .iter()
            .find(|(p, _, _)| *p == hist.durable)
            .map(|(_, _, s)| show(s))
            .unwrap_or_default(),
    )))
}

/// Opens every checkpoint of `hist` after a crash and checks it.
///
/// A checkpoint that returned `Ok` must open, and hold exactly the write
/// batches attempted before it (each failed one present or absent), with
/// `latest_seqno()` equal to the offset it returned and an empty
/// changelog starting there. One the crash interrupted may be absent or
/// fail to open with an error other than an I/O error; if it opens, the
/// same holds. Returns the number of checkpoints that opened.
pub fn check_checkpoints(
    fs: &Arc<dyn FileSystem>,
    opts: &Options,
    hist: &History,
    keys: u8,
) -> Result<usize, Violation> {
    let opts = opts.clone().create_if_missing(false);
    let mut opened = 0;
    for cp in &hist.checkpoints {
        let ctx = |what: String| {
            Violation(format!(
                "checkpoint {} (after {} batches, returned {:?}): {what}",
                cp.dir, cp.batches, cp.offset
            ))
        };
        let db = match Db::open(&cp.dir, opts.clone().fs(fs.clone())) {
            Ok(db) => db,
            Err(e) if cp.offset.is_some() => return Err(ctx(format!("does not open: {e}"))),
            // After the crash no call fails: an I/O error (a file the
            // checkpoint names but does not hold) is not a clean refusal.
            Err(e) if is_io(&e) => return Err(ctx(format!("fails with an I/O error: {e}"))),
            Err(_) => continue,
        };
        let got = read_back(&db, keys).map_err(|v| ctx(v.0))?;
        let before = History {
            attempts: hist.attempts[..cp.batches].to_vec(),
            durable: cp.batches,
            ..History::default()
        };
        check_recovered(&got, &before).map_err(|v| ctx(v.0))?;
        if !got.log.is_empty() || got.log_start != got.seqno {
            return Err(ctx(format!(
                "changelog [{}..{}) is not empty at seqno {}",
                got.log_start,
                got.log_start + got.log.len() as u64,
                got.seqno
            )));
        }
        if cp.offset.is_some_and(|o| o != got.seqno) {
            return Err(ctx(format!("opens at seqno {}", got.seqno)));
        }
        db.close().map_err(|e| ctx(format!("close: {e}")))?;
        opened += 1;
    }
    Ok(opened)
}

/// Whether `e` is an I/O error (of the store or of its changelog).
fn is_io(e: &varve_db::Error) -> bool {
    match e {
        varve_db::Error::Io { .. } => true,
        varve_db::Error::Changelog(e) => matches!(**e, varve_db::varve_changelog::Error::Io { .. }),
        _ => false,
    }
}

/// A short printable form of a state.
pub fn show(state: &State) -> String {
    show_pairs(
        &state
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>(),
    )
}

fn show_pairs(pairs: &[(Bytes, Bytes)]) -> String {
    let entries: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(&v[..v.len().min(10)])
            )
        })
        .collect();
    format!("{{{}}}", entries.join(", "))
}

/// Shrinks a failing workload: drops ops (and mutations inside batches)
/// one at a time while `fails` still holds. Each candidate is tried
/// `tries` times, since the flush thread makes runs vary a little.
pub fn shrink(ops: &[Op], tries: usize, fails: &dyn Fn(&[Op]) -> bool) -> Vec<Op> {
    let still_fails = |c: &[Op]| (0..tries).any(|_| fails(c));
    let mut cur = ops.to_vec();
    loop {
        let mut progress = false;
        let mut i = 0;
        while i < cur.len() {
            let mut cand = cur.clone();
            cand.remove(i);
            if still_fails(&cand) {
                cur = cand;
                progress = true;
                continue;
            }
            if let Op::Write { muts, sync } = &cur[i]
                && muts.len() > 1
            {
                for j in 0..muts.len() {
                    let mut m = muts.clone();
                    m.remove(j);
                    let mut cand = cur.clone();
                    cand[i] = Op::Write {
                        muts: m,
                        sync: *sync,
                    };
                    if still_fails(&cand) {
                        cur = cand;
                        progress = true;
                        break;
                    }
                }
            }
            i += 1;
        }
        if !progress {
            return cur;
        }
    }
}

/// Runs `ops` without faults on a fresh store and checks the reads made
/// along the way and the state after a clean close and power loss.
pub fn fault_free_check(ops: &[Op], opts: &Options, keys: u8) -> Result<(), Violation> {
    let fs = fresh_store(opts);
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let mut runner = Runner::new(dynfs.clone(), opts);
    runner.run(ops)?;
    if !runner.hist.completed {
        return Err(Violation(format!(
            "fault-free run failed: {:?}",
            runner.hist.first_error
        )));
    }
    fs.crash(varve_db::varve_changelog::fs::CrashMode::DropAll, 0);
    let db = open_db(&dynfs, opts).map_err(|e| Violation(format!("reopen: {e}")))?;
    let got = read_back(&db, keys)?;
    check_recovered(&got, &runner.hist)?;
    check_checkpoints(&dynfs, opts, &runner.hist, keys)?;
    Ok(())
}
