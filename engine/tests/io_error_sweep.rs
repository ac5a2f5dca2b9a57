//! I/O-error injection: for each canonical workload, fail file-system call
//! N for every N — once, and from then on — and fail sync call K for every
//! K.
//!
//! Every case checks: no panic (in the test thread or the store's flush
//! thread); every error is typed and never claims corruption for an
//! injected I/O error; with a one-off fault the workload goes on, and
//! reads that succeed return the model's data; after the faults are
//! cleared and power is lost, the store reopens to a prefix of the
//! attempted batches that holds every acknowledged one (see `harness`),
//! and every read path agrees (a full verification); every checkpoint
//! that returned `Ok` opens with exactly the writes before it, and one that
//! failed is absent, refused, or whole.
//!
//! A failed sync of a changelog segment, a table or the manifest must in
//! addition poison the store: the sync write or flush during which it
//! happened fails, no later sync write, flush or close succeeds, and while
//! the store stays open writes (sync or not) are refused with
//! `Error::ReadOnly` and reads still serve every key. (A `close()` during
//! which a sync fails may still return `Ok`: that is the changelog's final
//! sync when the store is dropped, after `close()` synced everything.)
//!
//! `VARVE_IO_SWEEP_STRIDE` tests every k-th call only (default 1: all;
//! the workload with batches over 1 MiB is swept at every 9th call unless
//! the variable is set, to keep the default run within seconds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use harness::{
    History, Mutation as M, Op, Runner, check_checkpoints, check_recovered, env_u64,
    fault_free_run, fresh_store, open_db, read_back, small_options,
};
use parking_lot::Mutex;
use varve_db::testing::{CrashMode, FaultKind, InterceptFs, MemFs};
use varve_db::varve_changelog::fs::FileSystem;
use varve_db::{Db, Options, WriteBatch, WriteOptions};

const KEYS: u8 = 10;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The sweeps run one at a time, so a panic is charged to the right one.
static SERIAL: Mutex<()> = Mutex::new(());

/// Counts panics on every thread (the flush thread's too).
fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn w(muts: &[M], sync: bool) -> Op {
    Op::Write {
        muts: muts.to_vec(),
        sync,
    }
}

/// The canonical workloads.
fn workloads() -> Vec<(&'static str, Vec<Op>)> {
    use M::{Delete as D, Put as P};
    let fill: Vec<Op> = (0..30)
        .map(|i| w(&[P(i % KEYS, 200), P((i + 3) % KEYS, 100)], i % 7 == 0))
        .collect();
    vec![
        (
            "sync puts, flush, reopen",
            vec![
                w(&[P(1, 5)], true),
                w(&[P(2, 5)], true),
                Op::Flush,
                w(&[P(3, 5), D(1)], true),
                Op::Reopen,
                Op::Get(2),
                w(&[P(4, 5)], false),
            ],
        ),
        (
            "batches with deletes, roll, truncate",
            vec![
                w(&[P(1, 10), P(2, 10), D(3)], false),
                w(&[D(1), P(3, 10)], false),
                Op::LogRoll,
                w(&[P(4, 10)], true),
                Op::Flush,
                Op::LogTruncate(100),
                w(&[D(4), P(5, 1)], false),
                Op::Range(0, KEYS, false),
            ],
        ),
        ("memtable overflow with background flushes", fill),
        (
            "compaction",
            vec![
                w(&[P(1, 10), P(2, 10)], false),
                Op::Flush,
                w(&[D(1), P(3, 10)], true),
                Op::Compact,
                w(&[P(1, 1)], false),
                Op::Range(0, KEYS, true),
            ],
        ),
        (
            "reopen between every write",
            vec![
                w(&[P(1, 3)], false),
                Op::Reopen,
                w(&[D(1), P(2, 3)], false),
                Op::Reopen,
                w(&[P(1, 4)], true),
                Op::Reopen,
                Op::Range(0, KEYS, true),
            ],
        ),
        (
            "checkpoints between writes",
            vec![
                w(&[P(1, 20), P(2, 20)], false),
                Op::Checkpoint,
                w(&[D(1), P(3, 20)], true),
                Op::Flush,
                w(&[P(4, 20)], false),
                Op::Checkpoint,
                w(&[P(1, 2)], false),
            ],
        ),
        (
            "reads and snapshots across a flush",
            vec![
                w(&[P(1, 30), P(2, 30), P(3, 30)], false),
                Op::Snapshot,
                Op::Flush,
                w(&[D(2), P(4, 30)], false),
                Op::CheckSnapshot,
                Op::Range(0, KEYS, true),
                Op::Get(3),
                Op::Flush,
                Op::Range(1, 4, false),
            ],
        ),
        (
            // Real sizes: batches over the 1 MiB a segment scan once read
            // at a time, a value larger than a segment, a manifest that
            // rotates.
            "batches over 1 MiB, flush, reopen",
            vec![
                w(&[P(1, (1 << 20) + 500), P(2, 100)], true),
                w(&[P(3, 300 << 10)], false),
                Op::Flush,
                w(&[P(1, 2 << 20), D(3)], true),
                Op::Reopen,
                Op::Get(1),
                Op::Compact,
            ],
        ),
    ]
}

#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    injected: u64,
    read_only_checked: u64,
}

/// After a run, clears the faults, loses power and checks the reopened
/// store against the oracle.
fn verify_after(fs: &MemFs, opts: &Options, hist: &History, ctx: &str) {
    fs.clear_faults();
    fs.crash(CrashMode::DropAll, 0);
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = open_db(&dynfs, opts).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
    let got = read_back(&db, KEYS).unwrap_or_else(|v| panic!("{ctx}: {v}"));
    check_recovered(&got, hist).unwrap_or_else(|v| panic!("{ctx}: {v}"));
    db.close()
        .unwrap_or_else(|e| panic!("{ctx}: close failed: {e}"));
    check_checkpoints(&dynfs, opts, hist, KEYS).unwrap_or_else(|v| panic!("{ctx}: {v}"));
}

fn check_no_panics(ctx: &str) {
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "{ctx}: a thread panicked");
}

fn serial() -> parking_lot::MutexGuard<'static, ()> {
    let guard = SERIAL.lock();
    PANICS.store(0, Ordering::SeqCst);
    guard
}

/// Fails call N (once, then from N on) for every call N of every workload.
#[test]
fn fail_every_call_once_and_from_then_on() {
    count_panics();
    let _serial = serial();
    let stride_set = env_u64("VARVE_IO_SWEEP_STRIDE");
    let opts = small_options();
    let mut tally = Tally::default();
    for (name, ops) in workloads() {
        let (_, calls) = fault_free_run(&opts, &ops, name);
        let large = name.contains("over 1 MiB");
        let stride = stride_set.unwrap_or(if large { 9 } else { 1 }).max(1);
        for n in (0..calls).step_by(stride as usize) {
            for kind in [FaultKind::Once, FaultKind::Persistent] {
                let ctx = format!("{name}: call {n} of {calls} fails {kind:?}");
                let fs = fresh_store(&opts);
                fs.fail_after(n, kind);
                let mut runner = Runner::new(Arc::new(fs.clone()), &opts);
                runner.continue_after_error = kind == FaultKind::Once;
                runner
                    .run(&ops)
                    .unwrap_or_else(|v| panic!("{ctx}: wrong read: {v}"));
                runner.abandon();
                let hist = runner.hist.clone();
                assert_eq!(
                    hist.corruption_errors, 0,
                    "{ctx}: an injected I/O error was reported as corruption: {:?}",
                    hist.first_error
                );
                verify_after(&fs, &opts, &hist, &ctx);
                check_no_panics(&ctx);
                tally.cases += 1;
                tally.injected += u64::from(hist.first_error.is_some());
            }
        }
    }
    eprintln!("fail_every_call_once_and_from_then_on: {tally:?}");
}

// ---------------------------------------------------------------------------
// Failing chosen sync calls.

/// Fails sync call K (of `sync_data` and `sync_dir`), once or from then
/// on, and remembers which file it failed.
#[derive(Debug)]
struct SyncFaults {
    count: AtomicUsize,
    target: usize,
    persistent: bool,
    failed: Mutex<Vec<PathBuf>>,
}

impl SyncFaults {
    fn sync(&self, path: &Path) -> io::Result<()> {
        let k = self.count.fetch_add(1, Ordering::SeqCst);
        if k == self.target || (self.persistent && k > self.target) {
            self.failed.lock().push(path.to_path_buf());
            if std::env::var_os("VARVE_SYNC_TRACE").is_some() {
                eprintln!(
                    "sync {k} fails: {}",
                    std::backtrace::Backtrace::force_capture()
                );
            }
            return Err(io::Error::other(format!("injected sync failure {k}")));
        }
        Ok(())
    }
}

/// `mem` with the sync calls counted (and failed) by `shared`.
fn sync_fault_fs(mem: &MemFs, shared: Arc<SyncFaults>) -> InterceptFs {
    InterceptFs::new(Arc::new(mem.clone()), move |op| {
        if op.kind.is_sync() {
            shared.sync(op.path)?;
        }
        Ok(())
    })
}

/// Whether a failed sync of `path` must make the store read-only: the
/// data of a changelog segment, a table or the manifest of the store
/// (not of a checkpoint it writes: that checkpoint fails instead, and
/// `verify_after` checks that none that returned `Ok` is lost).
fn must_poison(path: &Path) -> bool {
    if path.to_string_lossy().starts_with("/checkpoint-") {
        return false;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    name.ends_with(".log") || name.ends_with(".sst") || name.starts_with("MANIFEST")
}

/// After a failed data sync: writes are refused with `ReadOnly`, reads
/// serve every key consistently.
fn check_read_only(db: &Db, ctx: &str) {
    for sync in [false, true] {
        let mut b = WriteBatch::new();
        b.put("after-failure", "x");
        match db.write(b, WriteOptions::default().sync(sync)) {
            Err(varve_db::Error::ReadOnly { cause }) => {
                assert!(
                    !cause.to_string().is_empty(),
                    "{ctx}: ReadOnly without a cause"
                );
            }
            other => panic!("{ctx}: write (sync {sync}) after a failed sync: {other:?}"),
        }
    }
    assert!(
        matches!(db.flush(), Err(varve_db::Error::ReadOnly { .. })),
        "{ctx}: flush after a failed sync was not refused"
    );
    read_back(db, KEYS).unwrap_or_else(|v| panic!("{ctx}: reads after a failed sync: {v}"));
}

#[test]
fn fail_every_sync_once_and_from_then_on() {
    count_panics();
    let _serial = serial();
    let opts = small_options();
    let mut tally = Tally::default();
    for (name, ops) in workloads() {
        for persistent in [false, true] {
            for target in 0.. {
                let ctx = format!("{name}: sync {target} fails (persistent {persistent})");
                let mem = fresh_store(&opts);
                let shared = Arc::new(SyncFaults {
                    count: AtomicUsize::new(0),
                    target,
                    persistent,
                    failed: Mutex::new(Vec::new()),
                });
                let fs = sync_fault_fs(&mem, shared.clone());
                let mut runner = Runner::new(Arc::new(fs), &opts);
                let watch = shared.clone();
                runner.sync_failed = Some(Box::new(move || {
                    watch
                        .failed
                        .lock()
                        .iter()
                        .filter(|p| must_poison(p))
                        .count()
                }));
                let watch = shared.clone();
                runner.log_sync_failed = Some(Box::new(move || {
                    watch
                        .failed
                        .lock()
                        .iter()
                        .filter(|p| must_poison(p) && p.extension().is_some_and(|e| e == "log"))
                        .count()
                }));
                runner
                    .run(&ops)
                    .unwrap_or_else(|v| panic!("{ctx}: wrong read: {v}"));
                let failed = shared.failed.lock().first().cloned();
                let Some(failed) = failed else {
                    // The workload made fewer syncs: this workload is done.
                    assert!(runner.hist.completed, "{ctx}: failed with no fault");
                    break;
                };
                tally.cases += 1;
                tally.injected += 1;
                let ctx = format!("{ctx} on {}", failed.display());
                if must_poison(&failed)
                    && let Some(db) = runner.take_db()
                {
                    check_read_only(&db, &ctx);
                    tally.read_only_checked += 1;
                }
                runner.abandon();
                let hist = runner.hist.clone();
                assert_eq!(hist.corruption_errors, 0, "{ctx}: {:?}", hist.first_error);
                // Drop the store before the faults end, so nothing more
                // reaches the disk through it.
                mem.fail_after(0, FaultKind::Persistent);
                verify_after(&mem, &opts, &hist, &ctx);
                check_no_panics(&ctx);
            }
        }
    }
    eprintln!("fail_every_sync_once_and_from_then_on: {tally:?}");
}
