//! The Kafka bridge with the engine, against a real broker: a store ships
//! its changelog, a fresh store is restored from the topic and keeps
//! following it as a standby, and a partitioned store round-trips through
//! a topic with as many partitions, its routing agreeing with Kafka's
//! default partitioner.
//!
//! The broker's address is in `VARVE_KAFKA_BOOTSTRAP` (`.ci/kafka-broker.sh
//! test` starts one); without it every test prints `NOT RUN` and passes.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use varve_db::varve_changelog::RecordSource;
use varve_db::varve_changelog::kafka::rdkafka::ClientConfig;
use varve_db::varve_changelog::kafka::rdkafka::producer::{BaseRecord, DefaultProducerContext};
use varve_db::varve_changelog::kafka::rdkafka::producer::{Producer, ThreadedProducer};
use varve_db::varve_changelog::kafka::{
    Compression, KafkaConfig, KafkaSource, Shipper, ShipperOptions, TopicSpec, ensure_topic,
};
use varve_db::{
    CatchUp, ChangelogRetention, Db, Options, PartitionedStore, RestoreOptions, Standby,
    WriteBatch, WriteOptions,
};

const SHIP_TIMEOUT: Duration = Duration::from_secs(300);

/// The broker, or `None` after saying the test did not run.
fn bootstrap(test: &str) -> Option<String> {
    varve_db::testing::kafka_bootstrap(test)
}

fn records() -> u64 {
    std::env::var("VARVE_KAFKA_TEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn config(bootstrap: &str, name: &str) -> KafkaConfig {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("varve-engine-{name}-{}-{nanos}", std::process::id());
    KafkaConfig::new(bootstrap, topic).timeout_ms(60_000)
}

fn until_shipped() -> Options {
    Options::default()
        .changelog_retention(ChangelogRetention::UntilShipped)
        .memtable_size_bytes(1 << 20)
}

fn contents(db: &Db) -> BTreeMap<Bytes, Bytes> {
    db.iter().map(|kv| kv.unwrap()).collect()
}

/// Writes `n` operations from `first` over `n / 10` keys: puts that
/// overwrite, every 7th a delete, in batches of 100, with a flush every
/// 20,000 operations.
fn write_ops(db: &Db, first: u64, n: u64) {
    let keys = (n / 10).max(1);
    let mut batch = WriteBatch::new();
    for i in first..first + n {
        let key = format!("key-{:06}", i.wrapping_mul(2_654_435_761) % keys);
        if i % 7 == 3 {
            batch.delete(key);
        } else {
            batch.put(key, format!("value-{i}-{}", "x".repeat((i % 40) as usize)));
        }
        if batch.len() == 100 {
            db.write(std::mem::take(&mut batch), WriteOptions::default())
                .unwrap();
        }
        if (i + 1) % 20_000 == 0 {
            db.flush().unwrap();
        }
    }
    if !batch.is_empty() {
        db.write(batch, WriteOptions::default()).unwrap();
    }
}

/// The high watermark of partition `p`, as a fresh source sees it.
fn topic_end(config: &KafkaConfig, p: i32) -> u64 {
    KafkaSource::new(config.clone(), p)
        .unwrap()
        .bounds()
        .unwrap()
        .end_offset
}

#[test]
fn a_store_restored_from_its_topic_equals_it_key_by_key_and_follows_it_as_a_standby() {
    let Some(bootstrap) = bootstrap(
        "a_store_restored_from_its_topic_equals_it_key_by_key_and_follows_it_as_a_standby",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = config(&bootstrap, "store");
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();
    let db = Db::open(tmp.path().join("live"), until_shipped()).unwrap();
    let n = records();

    // The shipper registers at once: flushes keep every unshipped record.
    let opts = ShipperOptions::new("kafka", 0).compression(Compression::Lz4);
    let mut shipper = Shipper::new(db.changelog(), config.clone(), opts).unwrap();
    write_ops(&db, 0, n);
    db.flush().unwrap();
    assert_eq!(db.changelog().log_start_offset(), 0, "nothing shipped yet");
    let end = db.changelog().next_offset();
    let started = Instant::now();
    assert_eq!(shipper.ship_until(end, SHIP_TIMEOUT).unwrap(), end);
    eprintln!("shipped {end} records in {:?}", started.elapsed());
    assert_eq!(shipper.lag(), 0);

    // Restore a fresh store from the topic: equal key by key.
    let copy_dir = tmp.path().join("copy");
    let mut source = KafkaSource::new(config.clone(), 0).unwrap();
    let started = Instant::now();
    let report = varve_db::restore(&copy_dir, &mut source, RestoreOptions::default()).unwrap();
    eprintln!(
        "restored {} records in {:?}",
        report.records,
        started.elapsed()
    );
    assert_eq!(report.end_offset, end);
    let live = contents(&db);
    assert!(live.len() as u64 > n / 20, "the workload left keys behind");
    {
        let copy = Db::open(&copy_dir, Options::default()).unwrap();
        assert_eq!(contents(&copy), live);
        copy.close().unwrap();
    }

    // Keep following the topic as a standby, then promote it.
    let standby = Standby::follow_source(
        KafkaSource::new(config.clone(), 0).unwrap(),
        &copy_dir,
        Options::default(),
    )
    .unwrap();
    assert_eq!(standby.position(), end);
    assert!(standby.put("k", "v").is_err(), "a standby refuses writes");
    write_ops(&db, n, n / 10);
    let end = db.changelog().next_offset();
    shipper.ship_until(end, SHIP_TIMEOUT).unwrap();
    assert!(
        standby
            .wait_for_offset(topic_end(&config, 0), Duration::from_secs(120))
            .unwrap(),
        "the standby did not catch up: at {}",
        standby.position()
    );
    assert_eq!(standby.lag().unwrap(), 0);
    assert_eq!(contents(&standby), contents(&db));
    let promoted = standby.promote(CatchUp::None).unwrap();
    promoted.put("after", "promotion").unwrap();
    assert_eq!(promoted.changelog().next_offset(), end + 1);
    promoted.close().unwrap();

    // Shipped records may now go: a flush lets retention delete them.
    db.flush().unwrap();
    drop(shipper);
    db.close().unwrap();
}

#[test]
fn a_standby_ahead_of_the_topic_is_stale() {
    let Some(bootstrap) = bootstrap("a_standby_ahead_of_the_topic_is_stale") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let config = config(&bootstrap, "ahead");
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();
    // A store that holds more records than the (empty) topic.
    let db = Db::open(tmp.path().join("other"), Options::default()).unwrap();
    db.put("a", "1").unwrap();
    db.close().unwrap();
    let err = Standby::follow_source(
        KafkaSource::new(config, 0).unwrap(),
        tmp.path().join("other"),
        Options::default(),
    )
    .unwrap_err();
    assert!(matches!(err, varve_db::Error::Stale { .. }), "{err:?}");
}

#[test]
fn a_partitioned_store_round_trips_and_routes_keys_as_kafkas_default_partitioner() {
    let Some(bootstrap) =
        bootstrap("a_partitioned_store_round_trips_and_routes_keys_as_kafkas_default_partitioner")
    else {
        return;
    };
    const PARTITIONS: u32 = 4;
    let tmp = tempfile::tempdir().unwrap();
    let config = config(&bootstrap, "partitioned");
    ensure_topic(&config, &TopicSpec::new(PARTITIONS as i32)).unwrap();
    let store =
        PartitionedStore::open(tmp.path().join("live"), PARTITIONS, until_shipped()).unwrap();
    for i in 0..20_000u64 {
        let key = format!("user-{}", i % 3_000);
        if i % 11 == 5 {
            store.delete(key).unwrap();
        } else {
            store.put(key, format!("v{i}")).unwrap();
        }
    }
    let codecs = [
        Compression::None,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Lz4,
    ];
    for p in 0..PARTITIONS {
        let log = store.partition(p).changelog();
        let opts = ShipperOptions::new("kafka", p as i32).compression(codecs[p as usize]);
        let mut shipper = Shipper::new(log, config.clone(), opts).unwrap();
        shipper.ship_until(log.next_offset(), SHIP_TIMEOUT).unwrap();
    }

    // Another Kafka client writes to the topic with the default (murmur2)
    // partitioner and no partition of its own choosing.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let foreign: Vec<String> = (0..1_000).map(|i| format!("order-{i}")).collect();
    for key in &foreign {
        producer
            .send(
                BaseRecord::<str, str>::to(&config.topic)
                    .key(key)
                    .payload("external"),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    drop(producer);

    let mut sources: Vec<KafkaSource> = (0..PARTITIONS as i32)
        .map(|p| KafkaSource::new(config.clone(), p).unwrap())
        .collect();
    let copy_dir = tmp.path().join("copy");
    let reports =
        varve_db::restore_partitioned(&copy_dir, &mut sources, RestoreOptions::default()).unwrap();
    assert_eq!(reports.len(), PARTITIONS as usize);
    let copy = PartitionedStore::open(&copy_dir, PARTITIONS, Options::default()).unwrap();
    // Every foreign record landed in the partition the store routes its
    // key to, so a routed read finds it.
    for key in &foreign {
        assert_eq!(
            copy.get(key).unwrap().as_deref(),
            Some(&b"external"[..]),
            "{key} is not in partition {}",
            copy.partition_for(key)
        );
    }
    // And everything else is the live store, key by key.
    let restored: BTreeMap<Bytes, Bytes> = copy
        .iter()
        .map(|kv| kv.unwrap())
        .filter(|(k, _)| !k.starts_with(b"order-"))
        .collect();
    let live: BTreeMap<Bytes, Bytes> = store.iter().map(|kv| kv.unwrap()).collect();
    assert_eq!(restored, live);
    copy.close().unwrap();
    store.close().unwrap();
}
