//! Checkpoints: consistent while writes continue, openable, writable, and
//! never mistaken for complete after a crash midway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use varve_db::testing::{CrashMode, InterceptFs, MemFs, OpKind};
use varve_db::varve_changelog::fs::FileSystem;
use varve_db::{CompactionOptions, Db, Error, Options};

type State = BTreeMap<Bytes, Bytes>;

/// Write `i` of the workload: a put, or every seventh a delete.
fn op(i: u64) -> (Bytes, Option<Bytes>) {
    if i % 7 == 3 {
        (Bytes::from(format!("k{:03}", (i * 13) % 150)), None)
    } else {
        let key = Bytes::from(format!("k{:03}", (i * 31) % 150));
        (key, Some(Bytes::from(format!("v{i}-{}", "x".repeat(40)))))
    }
}

fn apply(db: &Db, i: u64) {
    match op(i) {
        (k, Some(v)) => db.put(k, v).unwrap(),
        (k, None) => db.delete(k).unwrap(),
    }
}

/// The state after writes `0..n` (write `i` is at changelog offset `i`).
fn model(n: u64) -> State {
    let mut state = State::new();
    for i in 0..n {
        match op(i) {
            (k, Some(v)) => state.insert(k, v),
            (k, None) => state.remove(&k),
        };
    }
    state
}

fn contents(db: &Db) -> State {
    db.iter().map(|kv| kv.unwrap()).collect()
}

fn small_options() -> Options {
    Options::default()
        .memtable_size_bytes(8 << 10)
        .block_size_bytes(512)
}

fn no_create() -> Options {
    small_options().create_if_missing(false)
}

#[test]
fn checkpoint_while_another_thread_writes() {
    const WRITES: u64 = 6000;
    let tmp = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(tmp.path().join("store"), small_options()).unwrap());
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || (0..WRITES).for_each(|i| apply(&db, i)))
    };
    while db.latest_seqno() < WRITES / 3 {
        std::thread::yield_now();
    }
    let cp = tmp.path().join("cp");
    let info = db.checkpoint(&cp).unwrap();
    writer.join().unwrap();
    assert_eq!(info.path, cp);
    assert!(
        info.offset >= WRITES / 3 && info.offset <= WRITES,
        "{info:?}"
    );

    let copy = Db::open(&cp, no_create()).unwrap();
    assert_eq!(copy.latest_seqno(), info.offset);
    assert_eq!(copy.changelog().log_start_offset(), info.offset);
    assert_eq!(contents(&copy), model(info.offset));
    // The checkpoint accepts writes from its offset on, and keeps them.
    copy.put("new", "after").unwrap();
    assert_eq!(copy.changelog().next_offset(), info.offset + 1);
    copy.close().unwrap();
    let copy = Db::open(&cp, no_create()).unwrap();
    let mut expected = model(info.offset);
    expected.insert("new".into(), "after".into());
    assert_eq!(contents(&copy), expected);
    // The store itself is unaffected.
    assert_eq!(contents(&db), model(WRITES));
}

#[test]
fn checkpoint_of_an_empty_store_and_a_compacted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path().join("store"), small_options()).unwrap();
    let empty = db.checkpoint(tmp.path().join("empty")).unwrap();
    assert_eq!(empty.offset, 0);
    (0..2000).for_each(|i| apply(&db, i));
    db.compact_range::<&[u8], _>(..).unwrap();
    (2000..2100).for_each(|i| apply(&db, i));
    let info = db.checkpoint(tmp.path().join("full")).unwrap();
    assert_eq!(info.offset, 2100);
    // Compaction after the checkpoint does not touch its (linked) tables.
    db.compact_range::<&[u8], _>(..).unwrap();
    drop(db);
    let copy = Db::open(tmp.path().join("empty"), no_create()).unwrap();
    assert!(contents(&copy).is_empty());
    let copy = Db::open(tmp.path().join("full"), no_create()).unwrap();
    assert_eq!(contents(&copy), model(2100));
}

#[test]
fn refuses_a_non_empty_target() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path().join("store"), small_options()).unwrap();
    db.put("a", "1").unwrap();
    let target = tmp.path().join("busy");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("something"), b"x").unwrap();
    let err = db.checkpoint(&target).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    // A file is refused too; an existing empty directory is fine.
    let err = db.checkpoint(target.join("something")).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    assert_eq!(db.checkpoint(tmp.path().join("empty")).unwrap().offset, 1);
}

/// A store on `fs` at `/db` holding writes `0..n`, flushed, with
/// background compaction off so the file-system calls are repeatable.
fn store_on(fs: &MemFs, n: u64) -> Db {
    let opts = small_options().compaction(CompactionOptions::default().auto(false));
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = Db::open("/db", opts.fs(dynfs)).unwrap();
    (0..n).for_each(|i| apply(&db, i));
    db.flush().unwrap();
    db
}

#[test]
fn a_crashed_checkpoint_never_opens_as_complete() {
    const WRITES: u64 = 600;
    let calls = {
        let fs = MemFs::new();
        let db = store_on(&fs, WRITES);
        (0..5).for_each(|i| apply(&db, WRITES + i));
        let before = fs.op_count();
        db.checkpoint("/cp").unwrap();
        fs.op_count() - before
    };
    assert!(calls > 10, "{calls}");
    let mut complete = 0;
    for n in 0..calls + 2 {
        let fs = MemFs::new();
        let db = store_on(&fs, WRITES);
        (0..5).for_each(|i| apply(&db, WRITES + i));
        fs.crash_at(fs.op_count() + n);
        let result = db.checkpoint("/cp");
        drop(db);
        let mode = [CrashMode::DropAll, CrashMode::KeepAll, CrashMode::Random][n as usize % 3];
        fs.crash(mode, n);
        let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
        match Db::open(Path::new("/cp"), no_create().fs(dynfs)) {
            Ok(copy) => {
                complete += 1;
                assert_eq!(copy.latest_seqno(), WRITES + 5, "crash at call {n}");
                assert_eq!(contents(&copy), model(WRITES + 5), "crash at call {n}");
            }
            Err(e) => {
                assert!(result.is_err(), "checkpoint said Ok but does not open: {e}");
                assert!(
                    matches!(e, Error::NotAStore { .. }),
                    "crash at call {n}: {e}"
                );
            }
        }
    }
    assert!(complete >= 1, "the crash-free run must open");
}

/// A file system that cannot hard-link (as across devices): every other
/// call goes to the [`MemFs`].
fn no_links(mem: &MemFs) -> InterceptFs {
    InterceptFs::new(Arc::new(mem.clone()), |op| {
        if op.kind == OpKind::HardLink {
            return Err(io::Error::new(
                io::ErrorKind::CrossesDevices,
                "no links here",
            ));
        }
        Ok(())
    })
}

#[test]
fn tables_are_copied_where_hard_links_fail() {
    let mem = MemFs::new();
    let fs: Arc<dyn FileSystem> = Arc::new(no_links(&mem));
    let db = Db::open("/db", small_options().fs(fs.clone())).unwrap();
    (0..1500).for_each(|i| apply(&db, i));
    let info = db.checkpoint("/cp").unwrap();
    // Later compactions of the store do not change the copies.
    (1500..2000).for_each(|i| apply(&db, i));
    db.compact_range::<&[u8], _>(..).unwrap();
    drop(db);
    // The copies are durable: they survive a power loss.
    mem.crash(CrashMode::DropAll, 1);
    let copy = Db::open("/cp", no_create().fs(fs)).unwrap();
    assert_eq!(info.offset, 1500);
    assert_eq!(contents(&copy), model(1500));
}

#[test]
fn a_checkpoint_inside_the_store_is_refused_and_the_store_still_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let db = Db::open(&store, Options::default()).unwrap();
    db.put("k", "v").unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(store.join("changelog"), &link).unwrap();
    for target in [
        store.join("changelog/cp"),
        store.join("cp"),
        store.clone(),
        link.join("cp"),
        store.join("changelog/../../store/cp"),
    ] {
        let err = db.checkpoint(&target).unwrap_err();
        assert!(
            matches!(err, Error::TargetInsideSource { .. }),
            "{target:?}: {err}"
        );
        assert!(err.to_string().contains(target.to_str().unwrap()), "{err}");
    }
    assert!(!store.join("changelog/cp").exists() && !store.join("cp").exists());
    db.close().unwrap();
    let db = Db::open(&store, Options::default()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    // On the in-memory file system (no links), lexically.
    let fs: Arc<dyn FileSystem> = Arc::new(MemFs::new());
    let db = Db::open("/s", Options::default().fs(fs.clone())).unwrap();
    let err = db.checkpoint("/s/changelog/./cp").unwrap_err();
    assert!(matches!(err, Error::TargetInsideSource { .. }), "{err}");
    assert_eq!(db.checkpoint("/s/../cp").unwrap().offset, 0);
}
