//! The Kafka bridge against a real broker: ship, restore, partitioned
//! round trip, and the typed errors of set-up.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

mod kafka_common;

use std::time::{Duration, Instant};

use kafka_common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use varve_changelog::kafka::{
    Compression, Error, KafkaConfig, KafkaSource, Shipper, ShipperOptions, TopicSpec, check_topic,
    ensure_topic,
};
use varve_changelog::partitioner::partition_for_key;
use varve_changelog::{Log, LogOptions, RecordSource};

#[test]
fn ships_100k_records_with_overwrites_and_tombstones_and_restores_them() {
    let Some(bootstrap) =
        bootstrap("ships_100k_records_with_overwrites_and_tombstones_and_restores_them")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let n = test_records();
    fill(&log, 0, n, n / 10, |_| true);
    assert_eq!(log.next_offset(), n);
    let config = config(&bootstrap, &unique_topic("100k"));
    let info = ensure_topic(&config, &TopicSpec::new(1)).unwrap();
    assert!(info.created);
    assert_eq!(
        (info.partitions, info.cleanup_policy.as_str()),
        (1, "compact")
    );
    // A second call finds the topic and accepts it.
    assert!(!ensure_topic(&config, &TopicSpec::new(1)).unwrap().created);

    let opts = ShipperOptions::new("kafka", 0).compression(Compression::Lz4);
    let mut shipper = Shipper::new(&log, config.clone(), opts).unwrap();
    assert_eq!(shipper.lag(), n);
    let started = Instant::now();
    assert_eq!(shipper.ship_until(n, SHIP_TIMEOUT).unwrap(), n);
    eprintln!("shipped {n} records in {:?}", started.elapsed());
    assert_eq!(shipper.lag(), 0);
    assert_eq!(log.position("kafka"), Some(n));
    drop(shipper);

    let shipped = read_partition(&config, 0);
    let dups = check_shipped(&local_records(&log), &shipped);
    assert_eq!(dups, 0, "a clean run re-sends nothing");

    // The source as a restore uses it: headers dropped, records equal.
    let (bounds, restored, mut source) =
        read_with_source_kept(config.timeout_ms(READ_TIMEOUT_MS), 256 << 10);
    assert_eq!(bounds.end_offset - bounds.start_offset, n);
    assert!(source.poll(1 << 20).unwrap().is_empty());
    let local = local_records(&log);
    assert_eq!(restored.len(), local.len());
    for (r, l) in restored.iter().zip(&local) {
        assert_eq!(r.record, l.record);
    }
    assert_eq!(latest(&restored), latest(&local));
}

#[test]
fn appends_after_a_first_shipment_ship_incrementally() {
    let Some(bootstrap) = bootstrap("appends_after_a_first_shipment_ship_incrementally") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let config = config(&bootstrap, &unique_topic("incr"));
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();
    fill(&log, 0, 1_000, 100, |_| true);
    let mut shipper = Shipper::new(
        &log,
        config.clone(),
        ShipperOptions::new("kafka", 0).compression(Compression::None),
    )
    .unwrap();
    shipper.ship_until(1_000, SHIP_TIMEOUT).unwrap();
    // A source following the topic sees the first part, then the rest.
    let mut source = KafkaSource::new(config.clone(), 0).unwrap();
    let bounds = source.bounds().unwrap();
    assert_eq!(bounds.end_offset - bounds.start_offset, 1_000);
    source.seek(bounds.start_offset).unwrap();
    let mut got = Vec::new();
    while source.position() < bounds.end_offset {
        got.extend(source.poll(1 << 20).unwrap());
    }
    fill(&log, 1_000, 2_000, 100, |_| true);
    shipper.ship_until(3_000, SHIP_TIMEOUT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 3_000 && Instant::now() < deadline {
        got.extend(source.poll(1 << 20).unwrap());
    }
    assert_eq!(got.len(), 3_000);
    assert_eq!(source.bounds().unwrap().end_offset, source.position());
    assert_eq!(latest(&got), latest(&local_records(&log)));
}

/// The store's key routing: Kafka's default (murmur2) partitioner.
fn route(key: &[u8], partitions: u32) -> i32 {
    partition_for_key(key, partitions) as i32
}

/// Each partition ships with another codec, so every codec is read back.
const CODECS: [Compression; 4] = [
    Compression::None,
    Compression::Lz4,
    Compression::Zstd,
    Compression::Lz4,
];

#[test]
fn four_partitions_round_trip_through_a_four_partition_topic() {
    let Some(bootstrap) = bootstrap("four_partitions_round_trip_through_a_four_partition_topic")
    else {
        return;
    };
    let config = config(&bootstrap, &unique_topic("p4"));
    assert_eq!(
        ensure_topic(&config, &TopicSpec::new(4))
            .unwrap()
            .partitions,
        4
    );
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let logs: Vec<Log> = dirs
        .iter()
        .map(|d| Log::open(d.path(), LogOptions::default()).unwrap())
        .collect();
    for (p, log) in logs.iter().enumerate() {
        fill(log, 0, 20_000, 2_000, |k| route(k, 4) == p as i32);
        let opts = ShipperOptions::new("kafka", p as i32).compression(CODECS[p]);
        let mut shipper = Shipper::new(log, config.clone(), opts).unwrap();
        shipper.ship_until(log.next_offset(), SHIP_TIMEOUT).unwrap();
    }
    for (p, log) in logs.iter().enumerate() {
        let shipped = read_partition(&config, p as i32);
        assert!(shipped.iter().all(|r| route(&r.record.key, 4) == p as i32));
        check_shipped(&local_records(log), &shipped);
    }
    // A shipper for a partition the topic lacks is refused.
    let err = Shipper::new(&logs[0], config, ShipperOptions::new("kafka", 4)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PartitionMissing {
                partition: 4,
                partitions: 4,
                ..
            }
        ),
        "{err}"
    );
}

fn create_raw_topic(bootstrap: &str, topic: &str, partitions: i32, policy: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new =
        NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)).set("cleanup.policy", policy);
    let fut = admin.create_topics([&new], &AdminOptions::new());
    let result = futures_lite_block_on(fut).unwrap();
    assert!(result[0].is_ok(), "{result:?}");
}

/// A minimal executor for the admin future (completed by rdkafka's thread).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[test]
fn a_topic_with_the_wrong_cleanup_policy_or_partition_count_is_refused() {
    let Some(bootstrap) =
        bootstrap("a_topic_with_the_wrong_cleanup_policy_or_partition_count_is_refused")
    else {
        return;
    };
    let topic = unique_topic("delete");
    create_raw_topic(&bootstrap, &topic, 1, "delete");
    let config = config(&bootstrap, &topic).timeout_ms(5_000);
    let started = Instant::now();
    let err = ensure_topic(&config, &TopicSpec::new(1)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    match &err {
        Error::TopicConfig { setting, found, .. } => {
            assert_eq!((*setting, found.as_str()), ("cleanup.policy", "delete"))
        }
        other => panic!("expected TopicConfig, got {other:?}"),
    }
    eprintln!("wrong policy: {err}");

    let topic = unique_topic("parts");
    create_raw_topic(&bootstrap, &topic, 2, "compact");
    let config = config.clone();
    let mut config = config;
    config.topic = topic;
    let err = ensure_topic(&config, &TopicSpec::new(4)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TopicConfig {
                setting: "partitions",
                ..
            }
        ),
        "{err:?}"
    );
    eprintln!("wrong partition count: {err}");
    check_topic(&config, &TopicSpec::new(2)).unwrap();
}

#[test]
fn a_missing_topic_is_a_typed_error() {
    let Some(bootstrap) = bootstrap("a_missing_topic_is_a_typed_error") else {
        return;
    };
    let config = config(&bootstrap, &unique_topic("missing")).timeout_ms(5_000);
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let err = Shipper::new(&log, config.clone(), ShipperOptions::new("kafka", 0)).unwrap_err();
    assert!(matches!(err, Error::TopicMissing { .. }), "{err:?}");
    let err = KafkaSource::new(config.clone(), 0).unwrap_err();
    assert!(matches!(err, Error::TopicMissing { .. }), "{err:?}");
    let err = check_topic(&config, &TopicSpec::new(1)).unwrap_err();
    assert!(matches!(err, Error::TopicMissing { .. }), "{err:?}");
    assert_eq!(log.position("kafka"), None);
}

/// Needs no broker: nothing listens on port 1.
#[test]
fn an_unreachable_broker_is_a_typed_error_within_the_timeout() {
    let config = KafkaConfig::new("127.0.0.1:1", "changelog").timeout_ms(3_000);
    let limit = Duration::from_millis(3_000 + 2_000);
    let started = Instant::now();
    let err = ensure_topic(&config, &TopicSpec::new(1)).unwrap_err();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    eprintln!("unreachable: {err}");

    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    log.append(&[varve_changelog::Record::put("k", "v")])
        .unwrap();
    let started = Instant::now();
    let err = Shipper::new(&log, config.clone(), ShipperOptions::new("kafka", 0)).unwrap_err();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert_eq!(log.position("kafka"), None, "nothing marked shipped");

    let started = Instant::now();
    let err = KafkaSource::new(config, 0).unwrap_err();
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
}
