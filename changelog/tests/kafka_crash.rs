//! The shipper dies mid-way — dropped without a clean shutdown, or its
//! process killed — and a new one resumes: nothing missing, order per key
//! kept.
#![cfg(feature = "kafka")]

mod kafka_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kafka_common::*;
use varve_changelog::kafka::{
    Compression, KafkaConfig, Shipper, ShipperOptions, TopicSpec, ensure_topic,
};
use varve_changelog::{Log, LogOptions};

fn opts(in_flight: usize) -> ShipperOptions {
    let mut o = ShipperOptions::new("kafka", 0).compression(Compression::None);
    o.max_in_flight_records = in_flight;
    o.commit_interval_ms = 0;
    o
}

#[test]
fn a_shipper_dropped_mid_way_resumes_without_loss() {
    let Some(bootstrap) = bootstrap("a_shipper_dropped_mid_way_resumes_without_loss") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let n = test_records() / 2;
    fill(&log, 0, n, n / 10, |_| true);
    let config = config(&bootstrap, &unique_topic("drop"));
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();

    // Ship part of the log, then leave records in flight and drop the
    // shipper without waiting for them.
    let mut shipper = Shipper::new(&log, config.clone(), opts(2_000)).unwrap();
    shipper.ship_until(n / 5, SHIP_TIMEOUT).unwrap();
    let _ = shipper.ship_until(n, Duration::from_millis(30));
    let position = shipper.shipped_position();
    assert!(position >= n / 5);
    drop(shipper);
    assert_eq!(log.position("kafka"), Some(position));
    eprintln!("dropped at shipped position {position}");

    // More writes arrive while no shipper runs; a new one resumes.
    fill(&log, n, n / 5, n / 10, |_| true);
    let mut shipper = Shipper::new(&log, config.clone(), opts(2_000)).unwrap();
    assert_eq!(shipper.shipped_position(), position);
    shipper.ship_until(log.next_offset(), SHIP_TIMEOUT).unwrap();
    assert_eq!(shipper.lag(), 0);
    let dups = check_shipped(&local_records(&log), &read_partition(&config, 0));
    eprintln!("re-sent after the drop: {dups} records");
}

const CHILD_DIR: &str = "VARVE_KAFKA_TEST_CHILD_DIR";
const CHILD_TOPIC: &str = "VARVE_KAFKA_TEST_CHILD_TOPIC";

/// The child half of the process-kill test: ships in the background and
/// prints its shipped position until it is killed. Does nothing unless the
/// parent set its environment.
#[test]
fn child_ships_until_killed() {
    let (Ok(dir), Ok(topic), Ok(bootstrap)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_TOPIC),
        std::env::var("VARVE_KAFKA_BOOTSTRAP"),
    ) else {
        return;
    };
    let log = Arc::new(Log::open(&dir, LogOptions::default()).unwrap());
    let config = KafkaConfig::new(bootstrap, topic);
    let handle = Shipper::new(log.clone(), config, opts(1_000))
        .unwrap()
        .spawn();
    loop {
        println!("shipped {}", handle.shipped_position());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_killed_shipper_process_resumes_without_loss() {
    let Some(bootstrap) = bootstrap("a_killed_shipper_process_resumes_without_loss") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let total = test_records();
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        fill(&log, 0, total, total / 10, |_| true);
    }
    let config = config(&bootstrap, &unique_topic("kill"));
    ensure_topic(&config, &TopicSpec::new(1)).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_ships_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_TOPIC, &config.topic)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut last = 0;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("shipped ") {
            last = n.trim().parse().unwrap();
            if last >= total / 5 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    assert!(
        last > 0 && last < total,
        "the child was killed mid-way (at {last})"
    );
    eprintln!("killed the shipper process at shipped position >= {last}");

    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let position = log.position("kafka").unwrap();
    assert!(position >= last && position < total, "position {position}");
    let mut shipper = Shipper::new(&log, config.clone(), opts(5_000)).unwrap();
    shipper.ship_until(total, SHIP_TIMEOUT).unwrap();
    let dups = check_shipped(&local_records(&log), &read_partition(&config, 0));
    eprintln!("re-sent after the kill: {dups} records");
}
