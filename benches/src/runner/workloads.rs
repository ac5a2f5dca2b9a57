//! What each workload does. Point workloads share [`parallel`]: the
//! operations are split between `--threads` threads and each operation is
//! timed on its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use varve_changelog::{Log, LogOptions, Record, SyncPolicy};
use varve_db::RestoreReport;

use super::metrics::Latency;
use super::{
    LiveSet, Outcome, Progress, Rng, RunConfig, SEEK_ENTRIES, ValueSource, fill_key, secs_since,
};
use crate::engines::{BatchOp, EngineError, KvEngine};

/// What the workloads of one run share.
pub(crate) struct Context<'a> {
    pub(crate) config: &'a RunConfig,
    pub(crate) engine: &'a dyn KvEngine,
    pub(crate) values: ValueSource,
    pub(crate) live: LiveSet,
    /// Directory of the log workloads' changelog.
    pub(crate) log_dir: PathBuf,
    /// Payload bytes appended to that changelog so far.
    pub(crate) log_bytes: u64,
    /// Runs so far, to give each workload its own random stream.
    round: u64,
}

impl<'a> Context<'a> {
    /// A changelog record for each key number in `numbers`, with its
    /// value; `key` is the buffer the keys are built in.
    pub(crate) fn records(&self, key: &mut [u8], numbers: &[u64]) -> Vec<Record> {
        numbers
            .iter()
            .map(|&i| {
                fill_key(key, i);
                Record::put(
                    Bytes::copy_from_slice(key),
                    Bytes::copy_from_slice(self.values.get(i)),
                )
            })
            .collect()
    }

    pub(crate) fn new(config: &'a RunConfig, engine: &'a dyn KvEngine, log_dir: PathBuf) -> Self {
        let entry_bytes = (config.key_size + config.value_size) as u64;
        Context {
            config,
            engine,
            values: ValueSource::new(config.value_size),
            live: LiveSet::new(config.num, entry_bytes),
            log_dir,
            log_bytes: 0,
            round: 0,
        }
    }

    fn entry_bytes(&self) -> u64 {
        (self.config.key_size + self.config.value_size) as u64
    }
}

type EngineResult<T> = crate::engines::Result<T>;

/// Runs workload `name` (already checked to exist).
pub(crate) fn run(ctx: &mut Context<'_>, name: &str) -> EngineResult<Outcome> {
    ctx.round += 1;
    let sync = ctx.config.sync;
    match name {
        "fillseq" => fill(ctx, name, false, sync),
        "fillrandom" | "overwrite" => fill(ctx, name, true, sync),
        "fillsync" => fill(ctx, name, false, true),
        "syncfloor" => super::sync_floor::run(ctx),
        "readrandom" => read_random(ctx, name),
        "readmissing" => read_missing(ctx, name),
        "seekrandom" => seek_random(ctx, name),
        "readseq" => read_all(ctx, false),
        "readreverse" => read_all(ctx, true),
        "readwhilewriting" => read_while_writing(ctx, name),
        "deleterandom" => delete_random(ctx, name),
        "compact" => compact(ctx),
        "flush" => timed_once(|| ctx.engine.flush()),
        "log_append" => log_append(ctx),
        "log_read" => log_read(ctx),
        "restore" => restore(ctx),
        "kafka_restore" => super::kafka_restore::run(ctx),
        "bulkload" => super::bulkload::run(ctx),
        other => Err(EngineError::Unsupported(format!("workload {other}"))),
    }
}

/// What one thread did in [`parallel`].
#[derive(Default)]
struct Share {
    latency: Latency,
    bytes: u64,
}

/// Runs `total` operations split between `threads` threads; `op(i, rng,
/// key)` does operation number `i` (`0..total`, each thread a contiguous
/// run) and returns the user bytes it moved. Every call is timed.
fn parallel<F>(
    ctx: &Context<'_>,
    name: &str,
    threads: usize,
    total: u64,
    op: F,
) -> EngineResult<Outcome>
where
    F: Fn(u64, &mut Rng, &mut [u8]) -> EngineResult<u64> + Sync,
{
    let progress = Progress::new(ctx.config.progress, name, total);
    let share = total / threads as u64;
    let seed = ctx.round * 1000;
    let start = Instant::now();
    let shares: Vec<EngineResult<Share>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (op, progress) = (&op, &progress);
                let first = t * share;
                let end = if t + 1 == threads as u64 {
                    total
                } else {
                    first + share
                };
                scope.spawn(move || -> EngineResult<Share> {
                    let mut rng = Rng::new(seed + t);
                    let mut key = vec![0u8; ctx.config.key_size];
                    let mut out = Share::default();
                    for i in first..end {
                        let op_start = Instant::now();
                        out.bytes += op(i, &mut rng, &mut key)?;
                        out.latency.record_ns(op_start.elapsed().as_nanos() as u64);
                        if (i - first + 1).is_multiple_of(Progress::STEP) {
                            progress.inc(Progress::STEP);
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(EngineError::Failed("worker thread panicked".into())))
            })
            .collect()
    });
    let secs = secs_since(start);
    progress.finish();
    let mut outcome = Outcome {
        ops: total,
        threads,
        secs,
        ..Outcome::default()
    };
    for s in shares {
        let s = s?;
        outcome.latency.merge(&s.latency);
        outcome.bytes += s.bytes;
    }
    Ok(outcome)
}

/// Writes `num` entries, `--batch-size` per call: keys in order, or drawn
/// at random from `0..num`.
fn fill(ctx: &mut Context<'_>, name: &str, random: bool, sync: bool) -> EngineResult<Outcome> {
    let config = ctx.config;
    let batch = config.batch_size as u64;
    let calls = config.num.div_ceil(batch);
    let entry_bytes = ctx.entry_bytes();
    let (engine, values, live) = (ctx.engine, &ctx.values, &ctx.live);
    let mut outcome = parallel(ctx, name, config.threads, calls, |call, rng, key| {
        let first = call * batch;
        let count = batch.min(config.num - first);
        if count == 1 {
            let i = if random { rng.below(config.num) } else { first };
            fill_key(key, i);
            engine.put(key, values.get(i), sync)?;
            live.insert(i);
            return Ok(entry_bytes);
        }
        let numbers: Vec<u64> = (first..first + count)
            .map(|i| if random { rng.below(config.num) } else { i })
            .collect();
        let mut keys = vec![0u8; key.len() * numbers.len()];
        for (chunk, &i) in keys.chunks_mut(key.len()).zip(&numbers) {
            fill_key(chunk, i);
        }
        let ops: Vec<BatchOp<'_>> = keys
            .chunks(key.len())
            .zip(&numbers)
            .map(|(k, &i)| BatchOp::Put(k, values.get(i)))
            .collect();
        engine.write_batch(&ops, sync)?;
        numbers.iter().for_each(|&i| live.insert(i));
        Ok(count * entry_bytes)
    })?;
    outcome.ops = config.num;
    outcome.user_bytes_written = outcome.bytes;
    Ok(outcome)
}

/// `num` point reads of random keys of `0..num`.
fn read_random(ctx: &Context<'_>, name: &str) -> EngineResult<Outcome> {
    let (num, engine, key_size) = (ctx.config.num, ctx.engine, ctx.config.key_size as u64);
    let found = AtomicU64::new(0);
    let mut outcome = parallel(ctx, name, ctx.config.threads, num, |_, rng, key| {
        fill_key(key, rng.below(num));
        Ok(match engine.get(key)? {
            Some(len) => {
                found.fetch_add(1, Ordering::Relaxed);
                key_size + len as u64
            }
            None => 0,
        })
    })?;
    outcome.note = Some(format!("{} of {num} found", found.into_inner()));
    Ok(outcome)
}

/// `num` point reads of keys never written that sort among the written
/// ones, as db_bench's `readmissing` does: a random key of `0..num` with
/// a `.` appended, which falls between that key and the next, so no
/// table can be skipped by its key range and the filters must answer.
fn read_missing(ctx: &Context<'_>, name: &str) -> EngineResult<Outcome> {
    let (num, engine) = (ctx.config.num, ctx.engine);
    let found = AtomicU64::new(0);
    let mut outcome = parallel(ctx, name, ctx.config.threads, num, |_, rng, key| {
        MISSING_KEY.with_borrow_mut(|missing| {
            missing.resize(key.len(), 0);
            fill_key(missing, rng.below(num));
            missing.push(b'.');
            if engine.get(missing)?.is_some() {
                found.fetch_add(1, Ordering::Relaxed);
            }
            Ok(0)
        })
    })?;
    outcome.note = Some(format!("{} of {num} found", found.into_inner()));
    Ok(outcome)
}

thread_local! {
    /// Each reader's buffer for `readmissing`'s keys, one byte longer
    /// than the written ones.
    static MISSING_KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `num` seeks to random keys, each reading [`SEEK_ENTRIES`] entries.
fn seek_random(ctx: &Context<'_>, name: &str) -> EngineResult<Outcome> {
    let (num, engine) = (ctx.config.num, ctx.engine);
    parallel(ctx, name, ctx.config.threads, num, |_, rng, key| {
        fill_key(key, rng.below(num));
        Ok(engine.scan(key, SEEK_ENTRIES)?.1)
    })
}

/// Every entry in order (or backwards), each step timed.
fn read_all(ctx: &Context<'_>, reverse: bool) -> EngineResult<Outcome> {
    let mut outcome = Outcome {
        threads: 1,
        ..Outcome::default()
    };
    let start = Instant::now();
    let mut last = start;
    ctx.engine.scan_all(reverse, &mut |bytes| {
        let now = Instant::now();
        outcome.latency.record_ns((now - last).as_nanos() as u64);
        last = now;
        outcome.ops += 1;
        outcome.bytes += bytes as u64;
    })?;
    outcome.secs = secs_since(start);
    Ok(outcome)
}

/// `--threads` readers do `num` random reads between them while one
/// writer overwrites random keys as fast as it can; figures are the
/// readers', and the writer's puts per second over the same time go in
/// `writer_ops_per_sec` (its total alone would favour the engine whose
/// readers are slowest).
fn read_while_writing(ctx: &Context<'_>, name: &str) -> EngineResult<Outcome> {
    let stop = AtomicBool::new(false);
    let (config, engine, values, live) = (ctx.config, ctx.engine, &ctx.values, &ctx.live);
    let entry_bytes = ctx.entry_bytes();
    let (reads, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| -> EngineResult<u64> {
            let mut rng = Rng::new(ctx.round * 1000 + 999);
            let mut key = vec![0u8; config.key_size];
            let mut written = 0;
            // At least one write, even if the readers finish first (a
            // tiny run on a busy machine), so that the figures are of
            // reads while writing.
            loop {
                let i = rng.below(config.num);
                fill_key(&mut key, i);
                engine.put(&key, values.get(i), config.sync)?;
                live.insert(i);
                written += entry_bytes;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Ok(written)
        });
        let reads = read_random(ctx, name);
        stop.store(true, Ordering::Relaxed);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(EngineError::Failed("writer thread panicked".into())));
        (reads, written)
    });
    let mut outcome = reads?;
    outcome.user_bytes_written = written?;
    outcome.writer_ops = outcome.user_bytes_written / entry_bytes;
    outcome.note = Some(format!(
        "{}; the writer wrote {} entries meanwhile, {:.0} per second",
        outcome.note.take().unwrap_or_default(),
        outcome.writer_ops,
        outcome.writer_ops as f64 / outcome.secs.max(1e-9)
    ));
    Ok(outcome)
}

/// `num` deletes of random keys of `0..num`.
fn delete_random(ctx: &Context<'_>, name: &str) -> EngineResult<Outcome> {
    let (num, engine, live, sync) = (ctx.config.num, ctx.engine, &ctx.live, ctx.config.sync);
    let key_size = ctx.config.key_size as u64;
    let mut outcome = parallel(ctx, name, ctx.config.threads, num, |_, rng, key| {
        let i = rng.below(num);
        fill_key(key, i);
        engine.delete(key, sync)?;
        live.remove(i);
        Ok(key_size)
    })?;
    outcome.user_bytes_written = outcome.bytes;
    Ok(outcome)
}

/// A full manual compaction, then the store's shape.
fn compact(ctx: &Context<'_>) -> EngineResult<Outcome> {
    match timed_once(|| ctx.engine.compact()) {
        Err(EngineError::Unsupported(why)) => Ok(Outcome::skipped(why)),
        other => {
            let mut outcome = other?;
            outcome.note = ctx.engine.shape();
            Ok(outcome)
        }
    }
}

/// One timed call.
fn timed_once(f: impl FnOnce() -> EngineResult<()>) -> EngineResult<Outcome> {
    let start = Instant::now();
    f()?;
    let mut outcome = Outcome {
        ops: 1,
        threads: 1,
        secs: secs_since(start),
        ..Outcome::default()
    };
    outcome.latency.record_ns(start.elapsed().as_nanos() as u64);
    Ok(outcome)
}

pub(crate) fn log_error(e: varve_changelog::Error) -> EngineError {
    EngineError::Failed(e.to_string())
}

/// Appends `num` records to a changelog of its own, `--batch-size`
/// records per append (`--sync`: `SyncPolicy::Always`, else `Manual`),
/// keys in `--key-order`.
fn log_append(ctx: &mut Context<'_>) -> EngineResult<Outcome> {
    let config = ctx.config;
    let options = LogOptions::default().sync_policy(if config.sync {
        SyncPolicy::Always
    } else {
        SyncPolicy::Manual
    });
    let log = Log::open(&ctx.log_dir, options).map_err(log_error)?;
    let progress = Progress::new(config.progress, "log_append", config.num);
    let mut outcome = Outcome {
        threads: 1,
        ..Outcome::default()
    };
    let mut key = vec![0u8; config.key_size];
    let numbers = config.key_order.numbers(config.num, ctx.round * 1000 + 7);
    let start = Instant::now();
    let mut first = 0;
    while first < config.num {
        let count = (config.batch_size as u64).min(config.num - first);
        let records = ctx.records(&mut key, &numbers[first as usize..(first + count) as usize]);
        let append_start = Instant::now();
        log.append(&records).map_err(log_error)?;
        outcome
            .latency
            .record_ns(append_start.elapsed().as_nanos() as u64);
        progress.inc(count);
        first += count;
    }
    outcome.secs = secs_since(start);
    progress.finish();
    log.close().map_err(log_error)?;
    outcome.ops = config.num;
    outcome.bytes = config.num * ctx.entry_bytes();
    outcome.user_bytes_written = outcome.bytes;
    ctx.log_bytes += outcome.bytes;
    outcome.note = Some(format!(
        "{} records per append, keys in {:?} order",
        config.batch_size, config.key_order
    ));
    Ok(outcome)
}

/// Reads the whole changelog of `log_append` through the record cursor,
/// each record timed.
fn log_read(ctx: &Context<'_>) -> EngineResult<Outcome> {
    if ctx.log_bytes == 0 {
        return Ok(Outcome::skipped("nothing to read: run log_append first"));
    }
    let log = Log::open(&ctx.log_dir, LogOptions::default()).map_err(log_error)?;
    let mut outcome = Outcome {
        threads: 1,
        ..Outcome::default()
    };
    let start = Instant::now();
    let mut last = start;
    for stored in log.reader(log.log_start_offset()).map_err(log_error)? {
        let stored = stored.map_err(log_error)?;
        let now = Instant::now();
        outcome.latency.record_ns((now - last).as_nanos() as u64);
        last = now;
        outcome.ops += 1;
        outcome.bytes +=
            (stored.record.key.len() + stored.record.value.as_ref().map_or(0, |v| v.len())) as u64;
    }
    outcome.secs = secs_since(start);
    log.close().map_err(log_error)?;
    Ok(outcome)
}

/// Rebuilds a Varve store from the changelog of `log_append` with
/// `varve_db::restore`, and compares its rate with the floor a restore aims at:
/// copying the same segment files into a new directory, `fdatasync` on
/// each and one sync of the directory (both from the page cache, as the
/// log was just written). The copy runs once before the restore and once
/// after it, and the faster of the two is the floor: on a shared virtual
/// disk one copy's speed moves by a factor of two or more between runs.
/// One operation is the whole restore.
fn restore(ctx: &Context<'_>) -> EngineResult<Outcome> {
    if ctx.log_bytes == 0 {
        return Ok(Outcome::skipped("nothing to restore: run log_append first"));
    }
    let copy_dir = ctx.log_dir.with_extension(format!("copy-{}", ctx.round));
    let (file_bytes, copy_before) = copy_segments(&ctx.log_dir, &copy_dir)?;
    let _ = std::fs::remove_dir_all(&copy_dir);

    let log = Log::open(&ctx.log_dir, LogOptions::default()).map_err(log_error)?;
    let target = ctx.log_dir.with_extension(format!("restore-{}", ctx.round));
    let _ = std::fs::remove_dir_all(&target);
    let (report, secs) = timed_restore(log, &target)?;
    let (_, copy_after) = copy_segments(&ctx.log_dir, &copy_dir)?;
    let _ = std::fs::remove_dir_all(&copy_dir);
    let mb_s = |secs: f64| file_bytes as f64 / 1e6 / secs.max(1e-9);
    let restore_mb_s = mb_s(secs);
    let copy_mb_s = mb_s(copy_before.min(copy_after));
    let mut outcome = Outcome::one_op(secs, report.bytes);
    outcome.note = Some(format!(
        "{} records, keys in {:?} order, {:.0} MB of segments: restore {restore_mb_s:.0} MB/s, \
         copy+fdatasync {copy_mb_s:.0} MB/s (the faster of {:.0} before and {:.0} after), \
         ratio {:.2}",
        report.records,
        ctx.config.key_order,
        file_bytes as f64 / 1e6,
        mb_s(copy_before),
        mb_s(copy_after),
        restore_mb_s / copy_mb_s.max(1e-9)
    ));
    Ok(outcome)
}

/// One `varve_db::restore` of a new store in `target` from `log` with the
/// default options, timed; closes the log and removes the store after.
pub(crate) fn timed_restore(log: Log, target: &Path) -> EngineResult<(RestoreReport, f64)> {
    let start = Instant::now();
    let report = varve_db::restore(
        target,
        &mut varve_changelog::LogSource::new(&log),
        varve_db::RestoreOptions::default(),
    )
    .map_err(|e| EngineError::Failed(format!("restore: {e}")))?;
    let secs = secs_since(start);
    log.close().map_err(log_error)?;
    let _ = std::fs::remove_dir_all(target);
    Ok((report, secs))
}

/// Copies the segment files (`*.log`) of `from` into a new directory `to`,
/// `fdatasync` on each, then syncs `to`; returns the bytes and seconds.
pub(crate) fn copy_segments(
    from: &std::path::Path,
    to: &std::path::Path,
) -> EngineResult<(u64, f64)> {
    let failed = |what: &str, path: &std::path::Path, e: std::io::Error| {
        EngineError::Failed(format!("{what} {}: {e}", path.display()))
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(from)
        .map_err(|e| failed("list", from, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    names.sort();
    let _ = std::fs::remove_dir_all(to);
    let start = Instant::now();
    std::fs::create_dir_all(to).map_err(|e| failed("create", to, e))?;
    let mut bytes = 0u64;
    for name in &names {
        let dest = to.join(name.file_name().unwrap_or_default());
        bytes += std::fs::copy(name, &dest).map_err(|e| failed("copy", name, e))?;
        std::fs::File::open(&dest)
            .and_then(|f| f.sync_data())
            .map_err(|e| failed("fdatasync", &dest, e))?;
    }
    std::fs::File::open(to)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed("sync", to, e))?;
    Ok((bytes, secs_since(start)))
}
