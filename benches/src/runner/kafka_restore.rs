//! The `kafka_restore` workload: ships the changelog of `log_append` to a
//! fresh compacted topic on a real broker, then rebuilds a Varve store from
//! that topic with `varve_db::restore` over a `KafkaSource`, the path a new
//! machine takes when it restores a store from Kafka.
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
    outcome.note = Some(format!(
        "{} records, {:.1} MB restored from Kafka: {:.0} records/s, {:.1} MB/s (shipped with lz4 at {:.0} records/s)",
        report.records,
        report.bytes as f64 / 1e6,
        report.records as f64 / secs,
        report.bytes as f64 / 1e6 / secs,
        end as f64 / ship_secs.max(1e-9),
    ));
    Ok(outcome)
}
