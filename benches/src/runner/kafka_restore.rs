//! The `kafka_restore` workload: ships the changelog of `log_append` to a
//! fresh compacted topic on a real broker, then rebuilds a Varve store from
//! that topic with `varve_db::restore` over a `KafkaSource`, the path a new
//! machine takes when it restores a store from Kafka. It compares that with
//! the floor: a plain rdkafka consumer reading the same topic from the same
//! broker with the same fetch settings, touching each record's bytes and
//! keeping nothing.
//!
//! It needs the `kafka` feature and a broker in `VARVE_KAFKA_BOOTSTRAP`
//! (`.ci/kafka-broker.sh start` prints one); without either it is skipped
//! and says why.

use super::Outcome;
use super::workloads::Context;
use crate::engines::EngineError;

/// The environment variable naming the broker (`host:port[,host:port]`).
pub const BOOTSTRAP_ENV: &str = "VARVE_KAFKA_BOOTSTRAP";

#[cfg(not(feature = "kafka"))]
pub(crate) fn run(_ctx: &Context<'_>) -> Result<Outcome, EngineError> {
    Ok(Outcome::skipped(
        "kafka_restore needs varve-bench built with --features kafka",
    ))
}

#[cfg(feature = "kafka")]
pub(crate) fn run(ctx: &Context<'_>) -> Result<Outcome, EngineError> {
    use std::time::{Duration, Instant};

    use varve_changelog::kafka::{
        Compression, KafkaConfig, KafkaSource, Shipper, ShipperOptions, TopicSpec, ensure_topic,
    };
    use varve_changelog::{Log, LogOptions};

    use super::secs_since;

    if ctx.log_bytes == 0 {
        return Ok(Outcome::skipped("nothing to restore: run log_append first"));
    }
    let Some(bootstrap) = std::env::var(BOOTSTRAP_ENV).ok().filter(|b| !b.is_empty()) else {
        return Ok(Outcome::skipped(format!(
            "no broker: set {BOOTSTRAP_ENV} (e.g. from `.ci/kafka-broker.sh start`)"
        )));
    };
    let failed =
        |what: &str, e: &dyn std::fmt::Display| EngineError::Failed(format!("{what}: {e}"));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let topic = format!("varve-bench-restore-{}-{nanos}", std::process::id());
    let config = KafkaConfig::new(bootstrap, topic).timeout_ms(120_000);
    ensure_topic(&config, &TopicSpec::new(1)).map_err(|e| failed("create topic", &e))?;

    let log = Log::open(&ctx.log_dir, LogOptions::default()).map_err(|e| failed("open log", &e))?;
    let end = log.next_offset();
    let opts = ShipperOptions::new("bench-kafka", 0).compression(Compression::Lz4);
    let ship_start = Instant::now();
    {
        let mut shipper =
            Shipper::new(&log, config.clone(), opts).map_err(|e| failed("shipper", &e))?;
        shipper
            .ship_until(end, Duration::from_secs(3600))
            .map_err(|e| failed("ship", &e))?;
    }
    let ship_secs = secs_since(ship_start);
    log.close().map_err(|e| failed("close log", &e))?;

    let consume_start = Instant::now();
    let consumed = plain_consume(&config, end).map_err(|e| failed("plain consumer", &e))?;
    let consume_secs = secs_since(consume_start).max(1e-9);

    let target = ctx.log_dir.with_extension(format!("kafka-restore-{nanos}"));
    let _ = std::fs::remove_dir_all(&target);
    let start = Instant::now();
    let mut source = KafkaSource::new(config, 0).map_err(|e| failed("source", &e))?;
    let report = varve_db::restore(&target, &mut source, varve_db::RestoreOptions::default())
        .map_err(|e| failed("restore", &e))?;
    let secs = secs_since(start);
    let _ = std::fs::remove_dir_all(&target);
    if report.records != end {
        return Err(EngineError::Failed(format!(
            "restored {} records, the changelog holds {end}",
            report.records
        )));
    }
    let mut outcome = Outcome::one_op(secs, report.bytes);
    let secs = secs.max(1e-9);
    let restore_rate = report.records as f64 / secs;
    let consume_rate = end as f64 / consume_secs;
    outcome.note = Some(format!(
        "{} records, {:.1} MB restored from Kafka: {restore_rate:.0} records/s, {:.1} MB/s; \
         a plain consumer read them at {consume_rate:.0} records/s ({:.1} MB/s): restore \
         {:.2}x of it (shipped with lz4 at {:.0} records/s)",
        report.records,
        report.bytes as f64 / 1e6,
        report.bytes as f64 / 1e6 / secs,
        consumed as f64 / 1e6 / consume_secs,
        restore_rate / consume_rate.max(1e-9),
        end as f64 / ship_secs.max(1e-9),
    ));
    Ok(outcome)
}

/// Reads partition 0 of the topic from its start until `end` records have
/// arrived (or the partition's end is reported), with nothing but a plain
/// rdkafka consumer using the source's fetch settings; returns the key and
/// value bytes read.
#[cfg(feature = "kafka")]
fn plain_consume(
    config: &varve_changelog::kafka::KafkaConfig,
    end: u64,
) -> Result<u64, varve_changelog::kafka::rdkafka::error::KafkaError> {
    use varve_changelog::kafka::rdkafka::config::ClientConfig;
    use varve_changelog::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use varve_changelog::kafka::rdkafka::error::KafkaError;
    use varve_changelog::kafka::rdkafka::{Message, Offset, TopicPartitionList};

    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.bootstrap_servers);
    for (key, value) in varve_changelog::kafka::SOURCE_FETCH_SETTINGS {
        client.set(*key, *value);
    }
    for (key, value) in &config.properties {
        client.set(key, value);
    }
    client
        .set("group.id", "varve-bench-plain-consumer")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = client.create()?;
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&config.topic, 0, Offset::Beginning)?;
    consumer.assign(&list)?;
    let (mut records, mut bytes) = (0u64, 0u64);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
    while records < end && std::time::Instant::now() < deadline {
        match consumer.poll(std::time::Duration::from_millis(100)) {
            Some(Ok(message)) => {
                records += 1;
                let key = message.key().unwrap_or_default();
                let value = message.payload().unwrap_or_default();
                bytes += (key.len() + value.len()) as u64;
                std::hint::black_box((key.first(), value.last()));
            }
            Some(Err(KafkaError::PartitionEOF(_))) if records > 0 => break,
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(bytes)
}
