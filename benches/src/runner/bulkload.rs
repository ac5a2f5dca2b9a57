//! The `bulkload` workload: how fast each engine takes in a state store's
//! worth of records through its fastest honest bulk path, as a stream
//! processor's restore does. Every engine gets the same records: each key
//! of `0..num` once, in one fixed random order, in batches of
//! [`BATCH_RECORDS`].
//!
//! - Varve: the records are appended to a changelog first (not timed),
//!   then one `varve_db::restore` of a new store from it is timed, its
//!   final syncs included.
//! - Peers: each batch goes through
//!   [`KvEngine::bulk_write_batch`](crate::engines::KvEngine::bulk_write_batch)
//!   (RocksDB with the WAL disabled, as Kafka Streams and Samza restore;
//!   fjall and sled an unsynced batch, having no WAL switch), then one
//!   `flush` makes it durable; both are timed.

use std::time::Instant;

use varve_changelog::{Log, LogOptions};

use super::workloads::{Context, copy_segments, log_error, timed_restore};
use super::{KeyOrder, Outcome, Progress, fill_key, secs_since};
use crate::engines::{BatchOp, EngineError, Result};

/// Records per batch.
pub const BATCH_RECORDS: usize = 1000;
/// Seed of the records' order, the same for every engine.
const ORDER_SEED: u64 = 19;

/// Runs the workload on the run's engine.
pub(crate) fn run(ctx: &mut Context<'_>) -> Result<Outcome> {
    let config = ctx.config;
    let numbers = KeyOrder::Random.numbers(config.num, ORDER_SEED);
    let entry_bytes = (config.key_size + config.value_size) as u64;
    let (secs, note) = if ctx.engine.name() == "varve" {
        restore(ctx, &numbers)?
    } else {
        (peer(ctx, &numbers)?, String::new())
    };
    let bytes = config.num * entry_bytes;
    let mut outcome = Outcome {
        ops: config.num,
        threads: 1,
        secs,
        bytes,
        user_bytes_written: bytes,
        ..Outcome::default()
    };
    // One operation: the whole load, made durable.
    outcome.latency.record_ns((secs * 1e9) as u64);
    let secs = secs.max(1e-9);
    outcome.note = Some(format!(
        "{} records in random order, batches of {BATCH_RECORDS}: {:.0} records/s, {:.1} MB/s{note}",
        config.num,
        config.num as f64 / secs,
        bytes as f64 / 1e6 / secs,
    ));
    Ok(outcome)
}

/// The records `numbers[range]` as batch operations on `keys` (a buffer
/// the keys are written into).
fn batch_ops<'a>(ctx: &'a Context<'_>, numbers: &[u64], keys: &'a mut Vec<u8>) -> Vec<BatchOp<'a>> {
    let key_size = ctx.config.key_size;
    keys.clear();
    keys.resize(key_size * numbers.len(), 0);
    for (chunk, &i) in keys.chunks_mut(key_size).zip(numbers) {
        fill_key(chunk, i);
    }
    keys.chunks(key_size)
        .zip(numbers)
        .map(|(k, &i)| BatchOp::Put(k, ctx.values.get(i)))
        .collect()
}

/// A peer's bulk path, then its flush; returns the seconds both took.
fn peer(ctx: &Context<'_>, numbers: &[u64]) -> Result<f64> {
    let progress = Progress::new(ctx.config.progress, "bulkload", numbers.len() as u64);
    let mut keys = Vec::new();
    let start = Instant::now();
    for batch in numbers.chunks(BATCH_RECORDS) {
        let ops = batch_ops(ctx, batch, &mut keys);
        ctx.engine.bulk_write_batch(&ops)?;
        progress.inc(batch.len() as u64);
    }
    ctx.engine.flush()?;
    let secs = secs_since(start);
    progress.finish();
    numbers.iter().for_each(|&i| ctx.live.insert(i));
    Ok(secs)
}

/// Varve's path: a changelog of the records (not timed), then one timed
/// restore from it. Returns the seconds and a note comparing the restore
/// with copying the changelog's segments.
fn restore(ctx: &Context<'_>, numbers: &[u64]) -> Result<(f64, String)> {
    let log_dir = ctx.log_dir.with_extension("bulkload");
    let target = ctx.log_dir.with_extension("bulkload-store");
    let _ = std::fs::remove_dir_all(&log_dir);
    let _ = std::fs::remove_dir_all(&target);
    let log = Log::open(&log_dir, LogOptions::default()).map_err(log_error)?;
    let mut key = vec![0u8; ctx.config.key_size];
    for batch in numbers.chunks(BATCH_RECORDS) {
        let records = ctx.records(&mut key, batch);
        log.append(&records).map_err(log_error)?;
    }
    log.sync().map_err(log_error)?;
    let copy_dir = log_dir.with_extension("bulkload-copy");
    let (file_bytes, copy_secs) = copy_segments(&log_dir, &copy_dir)?;
    let _ = std::fs::remove_dir_all(&copy_dir);
    let (report, secs) = timed_restore(log, &target)?;
    let _ = std::fs::remove_dir_all(&log_dir);
    if report.records != numbers.len() as u64 {
        return Err(EngineError::Failed(format!(
            "restore applied {} records of {}",
            report.records,
            numbers.len()
        )));
    }
    let ratio = copy_secs / secs.max(1e-9);
    Ok((
        secs,
        format!(
            " (varve_db::restore of a changelog of them; {:.0} MB of segments, \
             ratio to copy+fdatasync {ratio:.2})",
            file_bytes as f64 / 1e6
        ),
    ))
}
