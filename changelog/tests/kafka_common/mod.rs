//! Helpers shared by the Kafka bridge tests (`tests/kafka_*.rs`).
//!
//! The tests run against a real broker whose address is in
//! `VARVE_KAFKA_BOOTSTRAP` (see `.ci/kafka-broker.sh`); without it each test
//! prints that it did not run and passes.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use varve_changelog::kafka::{KafkaConfig, KafkaSource, OFFSET_HEADER, local_offset_from_header};
use varve_changelog::{Log, Record, RecordSource, SourceBounds, StoredRecord};

/// The broker's bootstrap address, or `None` after printing that `test`
/// did not run.
pub fn bootstrap(test: &str) -> Option<String> {
    varve_changelog::testing::kafka_bootstrap(test)
}

/// Prints that `test` did not run, past the test harness's output capture
/// (which only catches the `print!` macros), so it shows in every run.
pub fn not_run(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "NOT RUN: {test}: {why}");
}

/// A topic name no other test run uses.
pub fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("varve-test-{prefix}-{}-{nanos}", std::process::id())
}

/// A configuration for `topic` with a 30 s timeout.
pub fn config(bootstrap: &str, topic: &str) -> KafkaConfig {
    KafkaConfig::new(bootstrap, topic).timeout_ms(30_000)
}

/// Appends `n` records over `keys` keys (overwrites; every 7th record a
/// tombstone) in batches of 500, starting with sequence `first`, for keys
/// that `route` sends to this log.
pub fn fill(log: &Log, first: u64, n: u64, keys: u64, route: impl Fn(&[u8]) -> bool) {
    let mut batch = Vec::with_capacity(500);
    for i in first..first + n {
        let k = (i.wrapping_mul(2_654_435_761)) % keys;
        let key = format!("key-{k:06}");
        if !route(key.as_bytes()) {
            continue;
        }
        let record = if i % 7 == 3 {
            Record::tombstone(key)
        } else {
            Record::put(key, format!("value-{i}-{}", "x".repeat((i % 50) as usize)))
                .with_header("h", format!("{i}"))
        };
        batch.push(record);
        if batch.len() == 500 {
            log.append(&batch).unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        log.append(&batch).unwrap();
    }
}

/// Every record of a topic partition, from the earliest offset to the high
/// watermark, with the `varve.offset` header kept.
pub fn read_partition(config: &KafkaConfig, partition: i32) -> Vec<StoredRecord> {
    let mut source = KafkaSource::new(config.clone().timeout_ms(READ_TIMEOUT_MS), partition)
        .unwrap()
        .keep_offset_header(true);
    let bounds = source.bounds().unwrap();
    source.seek(bounds.start_offset).unwrap();
    let mut out = Vec::new();
    while source.position() < bounds.end_offset {
        let records = source.poll(1 << 20).unwrap();
        assert!(
            !records.is_empty() || source.position() >= bounds.end_offset,
            "source stopped at {} before the end {}",
            source.position(),
            bounds.end_offset
        );
        out.extend(records);
    }
    out
}

/// Latest value of every key, applying records in order.
pub fn latest<'a>(records: impl IntoIterator<Item = &'a StoredRecord>) -> BTreeMap<Bytes, Bytes> {
    let mut map = BTreeMap::new();
    for r in records {
        match &r.record.value {
            Some(v) => map.insert(r.record.key.clone(), v.clone()),
            None => map.remove(&r.record.key),
        };
    }
    map
}

/// Every record of the local log.
pub fn local_records(log: &Log) -> Vec<StoredRecord> {
    log.reader(log.log_start_offset())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The `varve.offset` header of a shipped record.
pub fn local_offset(record: &StoredRecord) -> u64 {
    let h = record
        .record
        .headers
        .iter()
        .find(|h| h.key == OFFSET_HEADER)
        .expect("shipped record without varve.offset");
    local_offset_from_header(&h.value).unwrap()
}

/// Checks that the topic holds every local record (by its `varve.offset`
/// header, with key, value and user headers intact), that the last record
/// of every key on the topic is that key's latest local record (per-key
/// order kept despite re-sends), and that restoring the topic gives the
/// local latest values. Returns the number of duplicates (re-sent records).
pub fn check_shipped(local: &[StoredRecord], shipped: &[StoredRecord]) -> usize {
    let by_offset: HashMap<u64, &StoredRecord> = local.iter().map(|r| (r.offset, r)).collect();
    let mut seen = HashMap::new();
    let mut last_by_key: HashMap<Bytes, u64> = HashMap::new();
    for (i, s) in shipped.iter().enumerate() {
        if i > 0 {
            assert!(
                s.offset > shipped[i - 1].offset,
                "Kafka offsets must increase"
            );
        }
        let lo = local_offset(s);
        let original = by_offset
            .get(&lo)
            .unwrap_or_else(|| panic!("topic holds local offset {lo}, which the log does not"));
        assert_eq!(
            s.record.key, original.record.key,
            "key of local offset {lo}"
        );
        assert_eq!(
            s.record.value, original.record.value,
            "value of local offset {lo}"
        );
        assert_eq!(
            s.record.timestamp_ms, original.record.timestamp_ms,
            "timestamp of {lo}"
        );
        let user: Vec<_> = s
            .record
            .headers
            .iter()
            .filter(|h| h.key != OFFSET_HEADER)
            .cloned()
            .collect();
        assert_eq!(
            user, original.record.headers,
            "headers of local offset {lo}"
        );
        *seen.entry(lo).or_insert(0usize) += 1;
        last_by_key.insert(s.record.key.clone(), lo);
    }
    // The topic is compacted: the broker may drop a record once a later
    // one of its key is there. So every key's latest local record must be
    // on the topic (a latest tombstone may be gone too), and the last
    // record of each key on the topic must be that latest one.
    let mut local_last: HashMap<Bytes, u64> = HashMap::new();
    for r in local {
        local_last.insert(r.record.key.clone(), r.offset);
    }
    let missing: Vec<u64> = local
        .iter()
        .filter(|r| local_last[&r.record.key] == r.offset && r.record.value.is_some())
        .map(|r| r.offset)
        .filter(|o| !seen.contains_key(o))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "latest local records missing on the topic, first: {missing:?}"
    );
    for (key, lo) in &last_by_key {
        assert_eq!(
            local_last.get(key),
            Some(lo),
            "per-key order: the topic's last record of {key:?} is not its latest"
        );
    }
    let compacted = local
        .iter()
        .filter(|r| !seen.contains_key(&r.offset))
        .count();
    if compacted > 0 {
        eprintln!("the broker compacted away {compacted} superseded records");
    }
    assert_eq!(latest(shipped), latest(local), "restored values differ");
    seen.values().map(|n| n - 1).sum()
}

/// Records for the big tests: `VARVE_KAFKA_TEST_RECORDS`, default 100 000
/// (the figure). Tansu 0.6.0 serves fetches of big partitions very
/// slowly (see docs/KAFKA.md), so a smaller figure helps against it.
pub fn test_records() -> u64 {
    std::env::var("VARVE_KAFKA_TEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The bound on one fetch when reading a topic back (Tansu's fetches of big
/// partitions are slow).
pub const READ_TIMEOUT_MS: u64 = 120_000;

/// A long timeout for shipping many records to a debug-built broker.
pub const SHIP_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything in partition 0 of `config`'s topic, read as a restore reads
/// it (a `KafkaSource` from its start to its end, `poll_bytes` a poll),
/// with the bounds the source reported.
pub fn read_with_source(
    config: KafkaConfig,
    poll_bytes: usize,
) -> (SourceBounds, Vec<StoredRecord>) {
    let (bounds, records, _) = read_with_source_kept(config, poll_bytes);
    (bounds, records)
}

/// As [`read_with_source`], also returning the source, at the end.
pub fn read_with_source_kept(
    config: KafkaConfig,
    poll_bytes: usize,
) -> (SourceBounds, Vec<StoredRecord>, KafkaSource) {
    let mut source = KafkaSource::new(config, 0).unwrap();
    let bounds = source.bounds().unwrap();
    source.seek(bounds.start_offset).unwrap();
    let mut records = Vec::new();
    while source.position() < bounds.end_offset {
        records.extend(source.poll(poll_bytes).unwrap());
    }
    (bounds, records, source)
}
