//! Append, read, roll, reopen, and the errors for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use varve_changelog::{Error, Log, LogOptions, Record};

fn small_segments() -> LogOptions {
    LogOptions::default()
        .segment_size_bytes(4096)
        .index_interval_bytes(256)
}

fn rec(i: u64) -> Record {
    Record::put(format!("key-{i:05}"), format!("value-{i}")).with_timestamp_ms(1_000 + i as i64)
}

fn read_all(log: &Log, from: u64) -> Vec<(u64, Record)> {
    log.reader(from)
        .unwrap()
        .map(|r| r.map(|s| (s.offset, s.record)).unwrap())
        .collect()
}

#[test]
fn offsets_are_dense_across_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    let mut next = 0;
    for b in 0..200u64 {
        let records: Vec<_> = (0..(b % 7 + 1)).map(|i| rec(next + i)).collect();
        let info = log.append(&records).unwrap();
        assert_eq!(info.base_offset, next);
        next += records.len() as u64;
        assert_eq!(info.last_offset, next - 1);
    }
    assert!(log.segment_base_offsets().len() > 3, "small segments roll");
    let all = read_all(&log, 0);
    assert_eq!(all.len() as u64, next);
    for (i, (offset, r)) in all.iter().enumerate() {
        assert_eq!(*offset, i as u64);
        assert_eq!(r, &rec(i as u64));
    }
    // Reading from the middle starts exactly there.
    assert_eq!(read_all(&log, 77)[0].0, 77);
    log.close().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.next_offset(), next);
    assert_eq!(log.synced_offset(), next);
    assert_eq!(log.recovery_report().truncated_at, None);
    assert_eq!(read_all(&log, 0).len() as u64, next);
    assert_eq!(log.append(&[rec(next)]).unwrap().base_offset, next);
}

#[test]
fn fetch_returns_whole_batches_and_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    for b in 0..10u64 {
        log.append(&(0..10).map(|i| rec(b * 10 + i)).collect::<Vec<_>>())
            .unwrap();
    }
    let fetch = log.read(35, 1).unwrap();
    assert_eq!(
        fetch.batches.len(),
        1,
        "at least one batch even if larger than max_bytes"
    );
    assert_eq!(fetch.batches[0].header().base_offset, 30);
    assert_eq!(fetch.next_fetch_offset, 40);
    assert_eq!(fetch.log_end_offset, 100);
    let fetch = log.read(0, 1 << 20).unwrap();
    assert_eq!(fetch.batches.len(), 10);
    let at_end = log.read(100, 1 << 20).unwrap();
    assert!(at_end.batches.is_empty());
    assert!(matches!(
        log.read(101, 10),
        Err(Error::OffsetOutOfRange { requested: 101, .. })
    ));
    assert!(matches!(
        log.reader(500),
        Err(Error::OffsetOutOfRange { .. })
    ));
}

#[test]
fn tombstones_headers_and_timestamps_survive() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let records = vec![
        Record::tombstone("gone").with_timestamp_ms(-5),
        Record::put("", "")
            .with_timestamp_ms(i64::MAX)
            .with_header("trace", "abc"),
    ];
    log.append(&records).unwrap();
    let got: Vec<_> = read_all(&log, 0).into_iter().map(|(_, r)| r).collect();
    assert_eq!(got, records);
}

#[test]
fn offset_for_timestamp_finds_first_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_segments()).unwrap();
    for i in 0..300u64 {
        log.append(&[rec(i)]).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some(0));
    assert_eq!(log.offset_for_timestamp(1_150).unwrap(), Some(150));
    assert_eq!(log.offset_for_timestamp(1_299).unwrap(), Some(299));
    assert_eq!(log.offset_for_timestamp(1_300).unwrap(), None);
}

#[test]
fn roll_by_record_age() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions::default().segment_age_ms(100);
    let log = Log::open(dir.path(), opts).unwrap();
    log.append(&[Record::put("a", "1").with_timestamp_ms(1_000)])
        .unwrap();
    log.append(&[Record::put("a", "2").with_timestamp_ms(1_050)])
        .unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0]);
    log.append(&[Record::put("a", "3").with_timestamp_ms(1_100)])
        .unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn tailing_reader_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    assert!(!log.wait_for(0, Duration::from_millis(20)));
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            log.append(&[rec(0)]).unwrap();
        })
    };
    let mut reader = log
        .tail(0, Duration::from_secs(10))
        .unwrap()
        .expect("record arrives");
    assert_eq!(reader.next().unwrap().unwrap().offset, 0);
    assert!(reader.next().is_none());
    writer.join().unwrap();
    log.append(&[rec(1)]).unwrap();
    assert_eq!(
        reader.next().unwrap().unwrap().offset,
        1,
        "a reader at the end picks up new appends"
    );
}

#[test]
fn second_opener_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _log = Log::open(dir.path(), LogOptions::default()).unwrap();
    match Log::open(dir.path(), LogOptions::default()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn foreign_directory_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = Log::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NotALog { .. }), "{err}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["notes.txt"], "nothing was written");
}

#[test]
fn segment_without_meta_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000000.log"), b"garbage").unwrap();
    assert!(matches!(
        Log::open(dir.path(), LogOptions::default()),
        Err(Error::NotALog { .. })
    ));
}

#[test]
fn a_file_is_not_a_log_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(
        Log::open(&file, LogOptions::default()),
        Err(Error::NotALog { .. })
    ));
}

#[test]
fn bad_arguments_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions::default().max_batch_size_bytes(4096);
    let log = Log::open(dir.path(), opts).unwrap();
    assert!(matches!(log.append(&[]), Err(Error::InvalidArgument(_))));
    let big = Record::put("k", vec![0u8; 5000]);
    assert!(matches!(
        log.append(&[big]),
        Err(Error::BatchTooLarge {
            max_bytes: 4096,
            ..
        })
    ));
    assert_eq!(log.next_offset(), 0, "nothing was written");
    assert!(matches!(
        log.commit_position("", 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.commit_position("c", 5),
        Err(Error::InvalidArgument(_))
    ));
    let bad_opts = LogOptions::default().segment_size_bytes(10);
    assert!(matches!(
        Log::open(dir.path().join("x"), bad_opts),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn positions_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        log.append(&[rec(0), rec(1), rec(2)]).unwrap();
        log.commit_position("shipper", 2).unwrap();
        log.commit_position("standby", 3).unwrap();
        log.remove_position("standby").unwrap();
    }
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.position("shipper"), Some(2));
    assert_eq!(log.position("standby"), None);
}

#[test]
fn retention_keeps_active_segment_and_consumer_positions() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments()
        .retention_bytes(Some(8192))
        .retain_for_consumers(true);
    let log = Log::open(dir.path(), opts.clone()).unwrap();
    for i in 0..400u64 {
        log.append(&[rec(i)]).unwrap();
    }
    log.commit_position("slow", 100).unwrap();
    let report = log.apply_retention().unwrap();
    assert!(
        log.log_start_offset() <= 100,
        "records at or above a consumer position are kept"
    );
    assert!(report.segments_deleted > 0);
    log.remove_position("slow").unwrap();
    log.apply_retention().unwrap();
    let (_, bytes) = log.size();
    assert!(bytes <= 8192 + 4096, "size bound applied: {bytes}");
    let start = log.log_start_offset();
    assert!(matches!(
        log.reader(start - 1),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(read_all(&log, start).len() as u64, 400 - start);
    log.truncate_before(390).unwrap();
    assert_eq!(log.log_start_offset(), 390);
    assert_eq!(
        log.segment_base_offsets().len(),
        1.max(log.segment_base_offsets().len())
    );
    drop(log);
    let log = Log::open(dir.path(), opts).unwrap();
    assert_eq!(log.log_start_offset(), 390, "log start offset is durable");
    assert_eq!(read_all(&log, 390).len(), 10);
}

#[test]
fn cleaner_keeps_latest_per_key_with_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_segments().tombstone_retention_ms(1_000);
    let log = Log::open(dir.path(), opts).unwrap();
    for round in 0..5i64 {
        for k in 0..40u64 {
            let r = if round == 4 && k % 4 == 0 {
                Record::tombstone(format!("k{k}"))
            } else {
                Record::put(format!("k{k}"), format!("r{round}"))
            };
            log.append(&[r.with_timestamp_ms(10_000 + round)]).unwrap();
        }
    }
    log.roll().unwrap();
    let before = log.size().1;
    let report = log.clean_at(10_500).unwrap();
    assert!(report.records_removed >= 160, "{report:?}");
    assert!(log.size().1 < before);
    let all = read_all(&log, 0);
    assert_eq!(
        all.len(),
        40,
        "one record per key, tombstones still retained"
    );
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(all.iter().all(|(o, _)| *o >= 160), "latest round only");
    let report = log.clean_at(20_000).unwrap();
    assert_eq!(report.records_removed, 10, "expired tombstones removed");
    assert_eq!(read_all(&log, 0).len(), 30);
    assert_eq!(log.next_offset(), 200);
}
