//! Several appenders and a tailing reader at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use varve_changelog::{Log, LogOptions, Record, SyncPolicy};

fn run(policy: SyncPolicy, writers: u64, batches_per_writer: u64) {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions::default()
        .sync_policy(policy)
        .segment_size_bytes(64 << 10);
    let log = Arc::new(Log::open(dir.path(), opts).unwrap());
    let total = writers * batches_per_writer * 3;
    let tailer = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut next = 0;
            while next < total {
                let Some(reader) = log.tail(next, Duration::from_secs(30)).unwrap() else {
                    panic!("tailer starved at {next}")
                };
                for r in reader {
                    let r = r.unwrap();
                    assert_eq!(r.offset, next, "offsets contiguous and in order");
                    next += 1;
                    seen.push(r.record.value.unwrap());
                }
            }
            seen
        })
    };
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut offsets = Vec::new();
                for b in 0..batches_per_writer {
                    let records: Vec<_> = (0..3)
                        .map(|i| Record::put(format!("w{w}"), format!("{w}:{b}:{i}")))
                        .collect();
                    let info = log.append(&records).unwrap();
                    assert_eq!(info.last_offset - info.base_offset, 2);
                    if policy == SyncPolicy::Always {
                        assert!(
                            log.synced_offset() > info.last_offset,
                            "synced append is durable on return"
                        );
                    }
                    offsets.push(info.base_offset);
                }
                offsets
            })
        })
        .collect();
    let mut bases: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    bases.sort_unstable();
    let expected: Vec<u64> = (0..writers * batches_per_writer).map(|i| i * 3).collect();
    assert_eq!(
        bases, expected,
        "every batch got its own contiguous offsets"
    );
    let seen = tailer.join().unwrap();
    assert_eq!(seen.len() as u64, total);
    // Each writer's records appear in the order it wrote them, batches whole.
    for w in 0..writers {
        let mine: Vec<String> = seen
            .iter()
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .filter(|v| v.starts_with(&format!("{w}:")))
            .collect();
        let want: Vec<String> = (0..batches_per_writer)
            .flat_map(|b| (0..3).map(move |i| format!("{w}:{b}:{i}")))
            .collect();
        assert_eq!(mine, want);
    }
}

#[test]
fn appenders_and_tailer_manual_sync() {
    run(SyncPolicy::Manual, 4, 2_000);
}

#[test]
fn appenders_and_tailer_group_commit() {
    run(SyncPolicy::Always, 8, 60);
}

#[test]
fn interval_sync_makes_appends_durable_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions::default().sync_policy(SyncPolicy::IntervalMs(10));
    let log = Log::open(dir.path(), opts).unwrap();
    log.append(&[Record::put("k", "v")]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.synced_offset() < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "interval flusher never synced"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
