//! The broker restarts while the shipper runs: it reconnects and catches
//! up. Alone in its test binary, as it restarts the shared broker.
#![cfg(feature = "kafka")]

mod kafka_common;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use kafka_common::*;
use varve_changelog::kafka::{Shipper, ShipperOptions, TopicSpec, ensure_topic};
use varve_changelog::{Log, LogOptions};

#[test]
fn the_shipper_catches_up_after_a_broker_restart() {
    let Some(bootstrap) = bootstrap("the_shipper_catches_up_after_a_broker_restart") else {
        return;
    };
    let Ok(restart) = std::env::var("VARVE_KAFKA_RESTART") else {
        not_run(
            "the_shipper_catches_up_after_a_broker_restart",
            "VARVE_KAFKA_RESTART is not set",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    let config = config(&bootstrap, &unique_topic("restart"));
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();
    let n = test_records() / 2;
    fill(&log, 0, n, n / 10, |_| true);
    let mut opts = ShipperOptions::new("kafka", 0);
    opts.max_in_flight_records = 2_000;
    let handle = Shipper::new(log.clone(), config.clone(), opts)
        .unwrap()
        .spawn();
    handle.wait_shipped(n / 6, SHIP_TIMEOUT).unwrap();

    let status = Command::new("sh").arg("-c").arg(&restart).status().unwrap();
    assert!(status.success(), "{restart} failed");
    eprintln!(
        "broker restarted at shipped position {}",
        handle.shipped_position()
    );
    // Writes keep coming while the shipper reconnects.
    fill(&log, n, n / 2, n / 10, |_| true);
    let started = Instant::now();
    handle
        .wait_shipped(log.next_offset(), SHIP_TIMEOUT)
        .unwrap();
    eprintln!(
        "caught up {:?} after the restart; last error seen: {:?}",
        started.elapsed(),
        handle.last_error()
    );
    assert_eq!(handle.lag(), 0);
    assert_eq!(handle.stop(), n + n / 2);
    let dups = check_shipped(&local_records(&log), &read_partition(&config, 0));
    eprintln!("re-sent after the restart: {dups} records");
}
