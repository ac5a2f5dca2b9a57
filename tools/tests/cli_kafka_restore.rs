//! `varve restore --kafka` against a real broker: a store's changelog is
//! shipped to a topic, restored from it by the command, and read back key
//! by key (feature `kafka`; the broker is named by `VARVE_KAFKA_BOOTSTRAP`,
//! see `.ci/kafka-broker.sh`).
#![cfg(feature = "kafka")]

mod common;

use std::time::Duration;

use common::{arg, assert_scans_as, json_lines, ok, refused, temp_path, temp_store};
use varve_db::varve_changelog::kafka::{
    KafkaConfig, Shipper, ShipperOptions, TopicSpec, ensure_topic,
};
use varve_db::varve_changelog::{Log, LogOptions};

/// The broker, or `None` after saying the test did not run.
fn bootstrap(test: &str) -> Option<String> {
    varve_db::testing::kafka_bootstrap(test)
}

/// A topic no other run uses.
fn unique_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("varve-cli-{prefix}-{}-{nanos}", std::process::id())
}

#[test]
fn restore_from_a_topic_rebuilds_the_store_key_by_key() {
    let Some(bootstrap) = bootstrap("restore_from_a_topic_rebuilds_the_store_key_by_key") else {
        return;
    };
    let (dir, source, model) = temp_store("source");
    let topic = unique_topic("restore");
    let config = KafkaConfig::new(bootstrap.clone(), topic.clone()).timeout_ms(30_000);
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();
    let log = Log::open(source.join("changelog"), LogOptions::default()).unwrap();
    let end = log.next_offset();
    {
        let mut shipper = Shipper::new(&log, config, ShipperOptions::new("cli-test", 0)).unwrap();
        assert_eq!(
            shipper.ship_until(end, Duration::from_secs(120)).unwrap(),
            end
        );
    }
    log.close().unwrap();

    let target = dir.path().join("restored");
    let out = ok(&[
        "--json",
        "restore",
        "--kafka",
        &bootstrap,
        &topic,
        "0",
        arg(&target),
    ]);
    let report = &json_lines(&out)[0];
    assert_eq!(report["records"], end, "{out}");
    assert_eq!(report["resumed"], false, "{out}");
    assert_scans_as(&target, &model);

    // A second restore into the finished store is refused, and the store
    // is left as it is.
    refused(
        &["restore", "--kafka", &bootstrap, &topic, "0", arg(&target)],
        "",
    );
    assert_scans_as(&target, &model);
}

#[test]
fn a_missing_topic_or_partition_is_refused_and_creates_nothing() {
    let Some(bootstrap) = bootstrap("a_missing_topic_or_partition_is_refused_and_creates_nothing")
    else {
        return;
    };
    let (_dir, target) = temp_path("restored");
    refused(
        &[
            "restore",
            "--kafka",
            &bootstrap,
            &unique_topic("missing"),
            "0",
            arg(&target),
        ],
        "Kafka",
    );
    let topic = unique_topic("one-partition");
    let config = KafkaConfig::new(bootstrap.clone(), topic.clone()).timeout_ms(30_000);
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();
    refused(
        &["restore", "--kafka", &bootstrap, &topic, "3", arg(&target)],
        "Kafka",
    );
    assert!(!target.exists(), "nothing was created");
}
