//! Many stores on one memory and thread budget ([`SharedResources`]): the
//! write-buffer budget holds however the stores are written, the shared
//! cache stays within its capacity, every write reads back after reopen,
//! the engine runs only the pool's threads, stores close in any order
//! while others write, and a failed store does not stop the pool serving
//! the others.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use varve_db::varve_changelog::fs::{FileSystem, MemFs};
use varve_db::varve_changelog::testing::{InterceptFs, OpKind, Rng};
use varve_db::{
    Db, Error, Options, PartitionedStore, SharedOptions, SharedResources, WriteBatch, WriteOptions,
};

/// The tests count the process's engine threads: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const MEMTABLE_BYTES: usize = 512 << 10;
const BUDGET_BYTES: usize = 2 << 20;
const CACHE_BYTES: usize = 256 << 10;

fn resources() -> Arc<SharedResources> {
    SharedResources::new(
        SharedOptions::default()
            .cache_size_bytes(CACHE_BYTES)
            .write_buffer_size_bytes(BUDGET_BYTES)
            .flush_threads(2)
            .compaction_threads(2),
    )
    .unwrap()
}

fn options(shared: &Arc<SharedResources>, fs: Arc<dyn FileSystem>) -> Options {
    Options::default()
        .memtable_size_bytes(MEMTABLE_BYTES)
        .changelog_segment_size_bytes(256 << 10)
        .fs(fs)
        .shared_resources(shared.clone())
}

fn store_dir(i: usize) -> String {
    format!("/stores/{i:02}")
}

/// The names of this process's threads that the engine started.
fn engine_threads() -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let comm = entry.unwrap().path().join("comm");
        // A thread may end between the listing and the read.
        if let Ok(name) = std::fs::read_to_string(comm) {
            let name = name.trim().to_owned();
            if name.starts_with("varve-") {
                names.push(name);
            }
        }
    }
    names.sort();
    names
}

type Model = BTreeMap<Bytes, Bytes>;

/// Writes `count` random puts and deletes to `db`, recording them in a
/// model.
fn write_random(db: &Db, seed: u64, count: usize) -> Model {
    let mut model = Model::new();
    write_random_into(db, seed, count, &mut model);
    model
}

/// [`write_random`] on every store at once, store `i` with seed `i`: the
/// stores' models.
fn write_each_at_once(stores: &[Db], count: usize) -> Vec<Model> {
    thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(i, db)| s.spawn(move || write_random(db, i as u64, count)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// As [`write_random`], recording into `model`.
fn write_random_into(db: &Db, seed: u64, count: usize, model: &mut Model) {
    let mut rng = Rng::new(seed);
    for i in 0..count {
        let key = Bytes::from(format!("key-{:05}", rng.below(4000)));
        if i % 10 == 9 {
            db.delete(key.clone()).unwrap();
            model.remove(&key);
        } else {
            let len = 200 + rng.index(100);
            let value = Bytes::from(rng.bytes(len));
            db.put(key.clone(), value.clone()).unwrap();
            model.insert(key, value);
        }
    }
}

fn contents(db: &Db) -> Model {
    db.iter().collect::<varve_db::Result<Model>>().unwrap()
}

/// 16 stores written at once: each writes less than one memtable, so
/// only the budget makes them switch; without it their memtables would
/// hold about three times the budget.
#[test]
fn sixteen_stores_written_at_once_stay_within_the_budget() {
    let _serial = serial();
    let fs = MemFs::new();
    let shared = resources();
    let stores: Vec<Db> = (0..16)
        .map(|i| Db::open(store_dir(i), options(&shared, Arc::new(fs.clone()))).unwrap())
        .collect();
    assert_eq!(shared.store_count(), 16);
    let models = write_each_at_once(&stores, 1500);
    let budget = shared.write_buffer();
    let written: usize = 16 * 1500 * 250;
    assert!(written > 2 * BUDGET_BYTES + MEMTABLE_BYTES);
    // One memtable's slack: each store's leader checks the budget before
    // its group, and a group here is one small batch.
    assert!(
        budget.peak_bytes() <= BUDGET_BYTES + MEMTABLE_BYTES,
        "peak {} over budget {BUDGET_BYTES} + {MEMTABLE_BYTES}",
        budget.peak_bytes()
    );
    assert!(
        budget.peak_bytes() > BUDGET_BYTES / 2,
        "the budget was tested"
    );
    assert_eq!(engine_threads().len(), shared.thread_count());
    assert_eq!(shared.thread_count(), 4);
    // Reads through the shared cache, from every store at once.
    thread::scope(|s| {
        for (db, model) in stores.iter().zip(&models) {
            s.spawn(move || {
                for (k, v) in model.iter().step_by(3) {
                    assert_eq!(db.get(k).unwrap().as_ref(), Some(v));
                }
            });
        }
    });
    let cache = shared.cache_stats();
    assert!(cache.usage_bytes <= CACHE_BYTES as u64, "{cache:?}");
    assert!(cache.usage_bytes > 0 && cache.misses > 0, "{cache:?}");
    for db in stores {
        db.close().unwrap();
    }
    assert_eq!(shared.store_count(), 0);
    assert_eq!(budget.usage_bytes(), 0, "every memtable released its bytes");
    for (i, model) in models.iter().enumerate() {
        let db = Db::open(store_dir(i), options(&shared, Arc::new(fs.clone()))).unwrap();
        assert_eq!(&contents(&db), model, "store {i} after reopen");
    }
}

/// One store whose own memtable bound is far above the budget is still
/// held to the budget.
#[test]
fn a_store_with_a_large_memtable_is_held_to_the_budget() {
    let _serial = serial();
    let fs = MemFs::new();
    let shared = resources();
    let opts = options(&shared, Arc::new(fs.clone())).memtable_size_bytes(64 << 20);
    let db = Db::open("/big", opts.clone()).unwrap();
    let model = write_random(&db, 7, 20_000);
    let budget = shared.write_buffer();
    assert!(budget.peak_bytes() <= BUDGET_BYTES + MEMTABLE_BYTES);
    let tables: usize = db.stats().unwrap().levels.iter().map(|l| l.tables).sum();
    assert!(tables > 0, "the budget made the store flush");
    db.close().unwrap();
    let db = Db::open("/big", opts).unwrap();
    assert_eq!(contents(&db), model);
}

/// Stores close, in a shuffled order, while others keep writing; no job
/// runs on a closed store (it would find its directory unlocked and its
/// memtables released), and the writers' data is all there.
#[test]
fn stores_close_in_any_order_while_others_write() {
    let _serial = serial();
    let fs = MemFs::new();
    let shared = resources();
    let open = |i| Db::open(store_dir(i), options(&shared, Arc::new(fs.clone()))).unwrap();
    let writers: Vec<Db> = (0..4).map(open).collect();
    let mut closing: Vec<(usize, Db)> = (4..12).map(|i| (i, open(i))).collect();
    for (i, db) in &closing {
        write_random(db, *i as u64, 500);
    }
    let mut rng = Rng::new(42);
    for i in (1..closing.len()).rev() {
        closing.swap(i, rng.index(i + 1));
    }
    let done = AtomicBool::new(false);
    let models: Vec<Model> = thread::scope(|s| {
        let handles: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(i, db)| {
                let done = &done;
                s.spawn(move || {
                    let mut model = Model::new();
                    let mut round = 0u64;
                    while !done.load(Ordering::Relaxed) || round < 4 {
                        write_random_into(db, 100 * i as u64 + round, 300, &mut model);
                        round += 1;
                    }
                    model
                })
            })
            .collect();
        for (i, db) in closing.drain(..) {
            // Half closed explicitly, half dropped.
            if i % 2 == 0 {
                db.close().unwrap();
            } else {
                drop(db);
            }
        }
        done.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(shared.store_count(), 4);
    for (db, model) in writers.iter().zip(&models) {
        for (k, v) in model {
            assert_eq!(db.get(k).unwrap().as_ref(), Some(v));
        }
    }
    drop(writers);
    assert_eq!(shared.write_buffer().usage_bytes(), 0);
    for i in 4..12 {
        let db = open(i);
        assert_eq!(contents(&db), write_random_model(i as u64, 500));
    }
}

/// The model `write_random(_, seed, count)` builds, without a store.
fn write_random_model(seed: u64, count: usize) -> Model {
    let fs = MemFs::new();
    let db = Db::open("/model", Options::default().fs(Arc::new(fs))).unwrap();
    write_random(&db, seed, count)
}

/// A file system in memory on which every table sync fails, after
/// `delay`.
fn failing_table_syncs(delay: Duration) -> InterceptFs {
    InterceptFs::new(Arc::new(MemFs::new()), move |op| {
        if op.kind == OpKind::SyncData && op.has_extension("sst") {
            thread::sleep(delay);
            return Err(io::Error::other("injected table sync failure"));
        }
        Ok(())
    })
}

/// A store whose table syncs fail turns read-only; the pool keeps
/// flushing and compacting the others, which write far more than the
/// budget.
#[test]
fn a_failed_store_does_not_stop_the_pool_serving_the_others() {
    let _serial = serial();
    let shared = resources();
    let failing = failing_table_syncs(Duration::ZERO);
    let broken = Db::open("/broken", options(&shared, Arc::new(failing))).unwrap();
    let mut i = 0u64;
    let failure = loop {
        let value = vec![1u8; 1000];
        match broken.put(format!("k{i}"), value) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 100_000, "the broken store never failed");
    };
    assert!(matches!(failure, Error::ReadOnly { .. }), "{failure}");
    let fs = MemFs::new();
    let healthy: Vec<Db> = (0..3)
        .map(|i| Db::open(store_dir(i), options(&shared, Arc::new(fs.clone()))).unwrap())
        .collect();
    let models = write_each_at_once(&healthy, 8000);
    for (db, model) in healthy.iter().zip(&models) {
        let stats = db.stats().unwrap();
        assert!(stats.flushes > 0, "the pool flushed a healthy store");
        assert_eq!(&contents(db), model);
    }
    assert!(broken.put("more", "x").is_err());
    assert!(broken.close().is_err());
    assert_eq!(engine_threads().len(), shared.thread_count());
}

/// A store that fails while its memtables hold the whole budget gives
/// their bytes back: no flush will ever free them, and the other stores'
/// writers must not wait for them for ever.
#[test]
fn a_failed_store_holding_the_whole_budget_does_not_hold_the_others() {
    let _serial = serial();
    let shared = resources();
    // Slow, then failing: the writer fills the budget meanwhile.
    let failing = failing_table_syncs(Duration::from_millis(200));
    // One memtable may grow past the whole budget.
    let opts = options(&shared, Arc::new(failing)).memtable_size_bytes(4 * BUDGET_BYTES);
    let broken = Db::open("/broken", opts).unwrap();
    let mut i = 0u64;
    while broken.put(format!("k{i:08}"), vec![7u8; 1000]).is_ok() {
        i += 1;
        assert!(i < 1_000_000, "the broken store never failed");
    }
    assert!(
        shared.write_buffer().peak_bytes() >= BUDGET_BYTES,
        "the broken store filled the budget before it failed (peak {})",
        shared.write_buffer().peak_bytes()
    );
    // The store refuses writes as soon as it fails, and gives the bytes
    // back right after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while shared.write_buffer().usage_bytes() >= BUDGET_BYTES / 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "a failed store still holds {} bytes of the budget",
            shared.write_buffer().usage_bytes()
        );
        thread::sleep(std::time::Duration::from_millis(10));
    }
    // Another store writes twice the budget, within a minute.
    let fs = MemFs::new();
    let healthy = Db::open("/healthy", options(&shared, Arc::new(fs))).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let model = thread::scope(|s| {
        let writer = s.spawn(|| {
            let model = write_random(&healthy, 7, 4000);
            let _ = done_tx.send(());
            model
        });
        let finished = done_rx.recv_timeout(std::time::Duration::from_secs(60));
        assert!(finished.is_ok(), "the healthy store's writers were held");
        writer.join().unwrap()
    });
    assert_eq!(contents(&healthy), model);
    healthy.close().unwrap();
    assert!(broken.close().is_err());
    assert_eq!(shared.write_buffer().usage_bytes(), 0);
}

/// A partitioned store shares one budget by default; two partitioned
/// stores may share the caller's.
#[test]
fn partitioned_stores_share_a_budget() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().memtable_size_bytes(1 << 20);
    let store = PartitionedStore::open(dir.path().join("a"), 8, opts.clone()).unwrap();
    let shared = store.shared_resources().clone();
    assert_eq!(shared.store_count(), 8);
    assert_eq!(shared.options().write_buffer_size_bytes, 3 << 20);
    assert_eq!(engine_threads().len(), 2, "{:?}", engine_threads());
    let mut batch = WriteBatch::new();
    for i in 0..20_000 {
        batch.put(format!("key-{i:05}"), vec![b'v'; 100]);
        if batch.len() == 500 {
            store
                .write(std::mem::take(&mut batch), WriteOptions::default())
                .unwrap();
        }
    }
    assert!(shared.write_buffer().peak_bytes() <= (3 << 20) + (1 << 20));
    assert_eq!(store.iter().count(), 20_000);
    let other = PartitionedStore::open(
        dir.path().join("b"),
        4,
        opts.shared_resources(shared.clone()),
    )
    .unwrap();
    assert_eq!(shared.store_count(), 12);
    other.put("x", "y").unwrap();
    store.close().unwrap();
    other.close().unwrap();
    assert_eq!(shared.store_count(), 0);
}
