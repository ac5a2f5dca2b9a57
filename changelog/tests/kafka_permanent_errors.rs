//! The background shipper against a real broker: an error that retrying
//! cannot cure (here, a record larger than the producer may send) stops it
//! and says why, instead of retrying for ever while the local changelog
//! grows.
#![cfg(feature = "kafka")]
#![allow(clippy::unwrap_used)]

mod kafka_common;

use std::sync::Arc;
use std::time::Duration;

use kafka_common::*;
use varve_changelog::kafka::{Error, Shipper, ShipperOptions, TopicSpec, ensure_topic};
use varve_changelog::{Log, LogOptions, Record};

#[test]
fn a_record_the_producer_refuses_stops_the_shipper_with_the_cause() {
    let Some(bootstrap) =
        bootstrap("a_record_the_producer_refuses_stops_the_shipper_with_the_cause")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    log.append(&[Record::put("small", "v")]).unwrap();
    // Over librdkafka's default message.max.bytes (1,000,000).
    log.append(&[Record::put("big", vec![b'x'; 3 << 20])])
        .unwrap();
    log.append(&[Record::put("after", "v")]).unwrap();
    let config = config(&bootstrap, &unique_topic("permanent"));
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();
    let handle = Shipper::new(log.clone(), config, ShipperOptions::new("kafka", 0))
        .unwrap()
        .spawn();
    let err = handle
        .wait_shipped(log.next_offset(), SHIP_TIMEOUT)
        .unwrap_err();
    assert!(matches!(err, Error::Failed { .. }), "{err}");
    let failure = handle.failure().expect("the cause is kept");
    assert!(failure.contains("produce"), "{failure}");
    for _ in 0..100 {
        if !handle.is_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!handle.is_running(), "the shipper stopped");
    // What was acknowledged before the refused record is committed, and
    // nothing past it.
    assert!(handle.shipped_position() <= 1);
    assert!(log.position("kafka").unwrap_or(0) <= 1);
}
