//! Writers held by a write stop while compaction keeps failing get the
//! compaction's error instead of waiting for ever (found by the `tmpfs`
//! ENOSPC test: on a full disk every compaction failed, L0 reached the
//! stop trigger, and a `sync: true` writer hung).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use varve_db::testing::{InterceptFs, MemFs, OpKind};
use varve_db::{CompactionOptions, Db, Options};

/// A file system whose table reads fail while the flag is set: flushes
/// (which only write tables) work, compactions (which read them) fail.
fn failing_table_reads() -> (InterceptFs, Arc<AtomicBool>) {
    let fail = Arc::new(AtomicBool::new(false));
    let flag = fail.clone();
    let fs = InterceptFs::new(Arc::new(MemFs::new()), move |op| {
        if op.kind == OpKind::Read && op.has_extension("sst") && flag.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected table read failure"));
        }
        Ok(())
    });
    (fs, fail)
}

#[test]
fn a_write_stop_with_failing_compactions_returns_an_error_not_a_hang() {
    let (fs, fail) = failing_table_reads();
    let opts = Options::default()
        .memtable_size_bytes(4096)
        .max_immutable_memtables(1)
        .compaction(
            CompactionOptions::default()
                .level0_compaction_trigger(2)
                .level0_slowdown_trigger(2)
                .level0_stop_trigger(3),
        );
    let db = Arc::new(Db::open("/db", opts.fs(Arc::new(fs.clone()))).unwrap());
    fail.store(true, Ordering::SeqCst);
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 0..2_000u32 {
                let value = vec![b'v'; 200];
                if let Err(e) = db.put(format!("key-{:03}", i % 50), value) {
                    return Some(e);
                }
            }
            None
        })
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(writer.join().unwrap()));
    let error = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the writer hung in a write stop while compaction kept failing")
        .expect("2,000 writes succeeded although no compaction could run");
    assert!(
        error.to_string().contains("injected table read failure"),
        "{error}"
    );
    // Compactions work again: so do writes.
    fail.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match db.put("after", "ok") {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("still refused: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("writes never resumed: {e}"),
        }
    }
    assert_eq!(db.get("after").unwrap().as_deref(), Some(&b"ok"[..]));
}
