//! The db_bench-style workload runner behind the `varve-bench` binary.
//!
//! [`run`] opens one engine, runs the named workloads in order on the same
//! store, and hands each [`WorkloadResult`] to a callback as soon as it is
//! measured. The pieces: `workloads` (what each workload does), [`metrics`]
//! (latency, disk writes, peak memory, disk usage), [`table`] and [`json`]
//! (the two output forms) and [`report`] (charts from a JSON-lines file).

mod bulkload;
pub mod json;
pub mod kafka_restore;
pub mod metrics;
pub mod report;
mod sync_floor;
pub mod table;
pub mod threads;
mod workloads;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engines::{self, EngineConfig};
use metrics::Latency;

/// Every workload, in the order a full run uses them.
pub const WORKLOADS: &[&str] = &[
    "fillseq",
    "fillrandom",
    "overwrite",
    "readrandom",
    "readmissing",
    "readseq",
    "readreverse",
    "seekrandom",
    "readwhilewriting",
    "deleterandom",
    "compact",
    "fillsync",
    "syncfloor",
    "flush",
    "log_append",
    "log_read",
    "restore",
    "kafka_restore",
    "bulkload",
];

/// Entries a `seekrandom` operation reads: the one it seeks to and the
/// next nine.
pub const SEEK_ENTRIES: usize = 10;

/// What to run and how.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Engine name (`varve`, `rocksdb`, `fjall`, `sled`).
    pub engine: String,
    /// Workloads, run in order on one store.
    pub workloads: Vec<String>,
    /// Operations per workload (and the size of the key space).
    pub num: u64,
    /// Key size in bytes (at least 8).
    pub key_size: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Threads: writers for `fillsync`, readers for `readwhilewriting`,
    /// workers for the point workloads.
    pub threads: usize,
    /// Entries per write call in the fill workloads and `log_append`.
    pub batch_size: usize,
    /// Sync every write (fill workloads, `deleterandom`, `log_append`).
    pub sync: bool,
    /// Block cache capacity given to the engine.
    pub cache_size_bytes: usize,
    /// Directory that holds the store (`DIR/<engine>`) and the changelog
    /// of the log workloads (`DIR/changelog-bench`).
    pub dir: PathBuf,
    /// Draw a progress line on standard error (when it is a terminal).
    pub progress: bool,
    /// Order of the keys `log_append` writes (and so `restore` loads).
    pub key_order: KeyOrder,
    /// Varve only: partitions of a partitioned store on one shared budget.
    pub partitions: Option<u32>,
    /// The shared write-buffer budget of a partitioned Varve store.
    pub write_buffer_size_bytes: Option<usize>,
}

/// The order in which `log_append` writes its `num` keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyOrder {
    /// Key numbers `0, 1, 2, …`.
    #[default]
    Seq,
    /// Every key number of `0..num` once, in a seeded random order.
    Random,
}

impl std::str::FromStr for KeyOrder {
    type Err = String;

    fn from_str(text: &str) -> Result<KeyOrder, String> {
        match text {
            "seq" => Ok(KeyOrder::Seq),
            "random" => Ok(KeyOrder::Random),
            other => Err(format!("key order {other:?}: want seq or random")),
        }
    }
}

impl KeyOrder {
    /// The key numbers `0..num` in this order.
    pub fn numbers(self, num: u64, seed: u64) -> Vec<u64> {
        let mut numbers: Vec<u64> = (0..num).collect();
        if self == KeyOrder::Random {
            let mut rng = Rng::new(seed);
            // Fisher-Yates.
            for i in (1..numbers.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                numbers.swap(i, j);
            }
        }
        numbers
    }
}

/// The figures of one workload. `None` where a figure does not apply (no
/// latency for a skipped workload, no write amplification without writes).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadResult {
    /// Engine name.
    pub engine: String,
    /// Workload name.
    pub workload: String,
    /// Operations done.
    pub num: u64,
    /// Threads used.
    pub threads: usize,
    /// Key size in bytes.
    pub key_size: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Operations per second.
    pub ops_per_sec: Option<f64>,
    /// User bytes (keys and values) read or written per second, in 10^6.
    pub mb_per_sec: Option<f64>,
    /// Median operation latency in microseconds.
    pub p50_us: Option<f64>,
    /// 99th percentile latency in microseconds.
    pub p99_us: Option<f64>,
    /// 99.9th percentile latency in microseconds.
    pub p999_us: Option<f64>,
    /// Key and value bytes the workload asked the engine to write.
    pub user_bytes_written: u64,
    /// Bytes the process handed to the OS to write during the workload
    /// (`wchar` of `/proc/self/io`; where that is missing, the growth of
    /// the directory).
    pub bytes_written: Option<u64>,
    /// Where `bytes_written` came from: `proc_io` or `dir_growth`.
    pub bytes_written_source: &'static str,
    /// Bytes the kernel charged to the storage layer (`write_bytes` of
    /// `/proc/self/io`): whole page-cache folios as they turn dirty, so it
    /// can far exceed what the device writes for small synced writes.
    pub storage_bytes_written: Option<u64>,
    /// Write amplification: `bytes_written / user_bytes_written`.
    pub write_amp: Option<f64>,
    /// Bytes on disk of the store (or of the changelog, for the log
    /// workloads) after the workload.
    pub disk_bytes: u64,
    /// Key and value bytes of the live keys (for the log workloads: of
    /// the records in the log).
    pub live_bytes: u64,
    /// `disk_bytes / live_bytes`.
    pub space_amp: Option<f64>,
    /// Peak resident memory during the workload (or of the whole process
    /// so far if it could not be reset; see `peak_rss_scope`).
    pub peak_rss_bytes: Option<u64>,
    /// `workload` or `process`.
    pub peak_rss_scope: &'static str,
    /// `readwhilewriting` only: the writer's puts per second while the
    /// readers ran (its entries over the same seconds as `ops_per_sec`).
    pub writer_ops_per_sec: Option<f64>,
    /// Extra facts, such as the store's shape after `compact`.
    pub note: Option<String>,
    /// Why the workload did not run, when it did not.
    pub skipped: Option<String>,
}

/// Runs every workload of `config` in order on one store, calling `emit`
/// with each result as soon as it is measured.
///
/// # Errors
/// A message for an unknown workload, a bad configuration, or an engine
/// failure.
pub fn run(config: &RunConfig, emit: &mut dyn FnMut(&WorkloadResult)) -> Result<(), String> {
    check(config)?;
    let store_dir = config.dir.join(&config.engine);
    let engine_config = EngineConfig {
        cache_size_bytes: config.cache_size_bytes,
        partitions: config.partitions,
        write_buffer_size_bytes: config.write_buffer_size_bytes,
    };
    let engine = engines::open(&config.engine, &store_dir, &engine_config)
        .map_err(|e| format!("opening {}: {e}", config.engine))?;
    let mut ctx = workloads::Context::new(config, &*engine, config.dir.join("changelog-bench"));
    for name in &config.workloads {
        let result = measure(&mut ctx, name, &store_dir)?;
        emit(&result);
    }
    drop(ctx);
    engine.close().map_err(|e| format!("closing: {e}"))
}

fn check(config: &RunConfig) -> Result<(), String> {
    if let Some(bad) = config
        .workloads
        .iter()
        .find(|w| !WORKLOADS.contains(&w.as_str()))
    {
        return Err(format!(
            "unknown workload {bad} (known: {})",
            WORKLOADS.join(", ")
        ));
    }
    if config.key_size < 8 {
        return Err("--key-size must be at least 8".to_owned());
    }
    if config.num == 0 || config.threads == 0 || config.batch_size == 0 {
        return Err("--num, --threads and --batch-size must be positive".to_owned());
    }
    Ok(())
}

/// Runs one workload and gathers its figures.
fn measure(
    ctx: &mut workloads::Context<'_>,
    name: &str,
    store_dir: &std::path::Path,
) -> Result<WorkloadResult, String> {
    let config = ctx.config;
    let peak_rss_scope = if metrics::reset_peak_rss() {
        "workload"
    } else {
        "process"
    };
    let target_dir = if name.starts_with("log_") {
        ctx.log_dir.clone()
    } else {
        store_dir.to_path_buf()
    };
    let io_before = metrics::IoCounters::now();
    let size_before = metrics::disk_usage_bytes(&target_dir);
    let outcome = workloads::run(ctx, name).map_err(|e| format!("{name}: {e}"))?;
    let io = metrics::IoCounters::now()
        .zip(io_before)
        .map(|(after, before)| after.since(before));
    let disk_bytes = metrics::disk_usage_bytes(&target_dir);
    let (bytes_written, bytes_written_source) = match io {
        Some(io) => (io.written_bytes, "proc_io"),
        None => (disk_bytes.saturating_sub(size_before), "dir_growth"),
    };
    let live_bytes = if name.starts_with("log_") {
        ctx.log_bytes
    } else {
        ctx.live.live_bytes()
    };
    let ratio = |num: Option<u64>, den: u64| num.filter(|_| den > 0).map(|n| n as f64 / den as f64);
    let secs = outcome.secs.max(1e-9);
    let ran = outcome.skipped.is_none();
    Ok(WorkloadResult {
        engine: config.engine.clone(),
        workload: name.to_owned(),
        num: outcome.ops,
        threads: outcome.threads,
        key_size: config.key_size,
        value_size: config.value_size,
        secs: outcome.secs,
        ops_per_sec: ran.then(|| outcome.ops as f64 / secs),
        mb_per_sec: ran.then(|| outcome.bytes as f64 / 1e6 / secs),
        p50_us: outcome.latency.quantile_us(0.5),
        p99_us: outcome.latency.quantile_us(0.99),
        p999_us: outcome.latency.quantile_us(0.999),
        user_bytes_written: outcome.user_bytes_written,
        bytes_written: Some(bytes_written),
        bytes_written_source,
        storage_bytes_written: io.map(|io| io.storage_bytes),
        write_amp: ratio(Some(bytes_written), outcome.user_bytes_written),
        disk_bytes,
        live_bytes,
        space_amp: ratio(Some(disk_bytes), live_bytes),
        peak_rss_bytes: metrics::peak_rss_bytes(),
        peak_rss_scope,
        writer_ops_per_sec: (outcome.writer_ops > 0).then(|| outcome.writer_ops as f64 / secs),
        note: threads::with_engine_threads(outcome.note, config.partitions),
        skipped: outcome.skipped,
    })
}

/// What one workload did, before the runner adds the disk and memory
/// figures.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) ops: u64,
    pub(crate) threads: usize,
    pub(crate) secs: f64,
    /// User bytes read or written.
    pub(crate) bytes: u64,
    pub(crate) user_bytes_written: u64,
    /// Puts of a writer running beside the measured operations
    /// (`readwhilewriting`); 0 when there is none.
    pub(crate) writer_ops: u64,
    pub(crate) latency: Latency,
    pub(crate) note: Option<String>,
    pub(crate) skipped: Option<String>,
}

impl Outcome {
    /// A workload of one operation (a whole restore, say) that took
    /// `secs` and moved `bytes` user bytes.
    pub(crate) fn one_op(secs: f64, bytes: u64) -> Outcome {
        let mut outcome = Outcome {
            threads: 1,
            ops: 1,
            secs,
            bytes,
            ..Outcome::default()
        };
        outcome.latency.record_ns((secs * 1e9) as u64);
        outcome
    }

    /// A workload that did not run, and why.
    pub(crate) fn skipped(why: impl Into<String>) -> Outcome {
        Outcome {
            threads: 1,
            skipped: Some(why.into()),
            ..Outcome::default()
        }
    }
}

/// The key of number `i`: `k`, zero padding, then `i` as 8 big-endian
/// bytes, so that keys sort by number. Writes into `buf` (its length is
/// the key size, at least 8).
pub fn fill_key(buf: &mut [u8], i: u64) {
    let split = buf.len() - 8;
    buf[..split].fill(b'0');
    if let Some(first) = buf[..split].first_mut() {
        *first = b'k';
    }
    buf[split..].copy_from_slice(&i.to_be_bytes());
}

/// Values for the workloads: slices of one buffer of pseudo-random bytes
/// (so they do not compress), as db_bench's `RandomGenerator` does.
#[derive(Debug)]
pub struct ValueSource {
    data: Vec<u8>,
    size: usize,
}

impl ValueSource {
    /// Values of `size` bytes.
    pub fn new(size: usize) -> ValueSource {
        let len = (1 << 20).max(2 * size + 1);
        let mut rng = Rng::new(0x5eed);
        let data = (0..len).map(|_| rng.next_u64() as u8).collect();
        ValueSource { data, size }
    }

    /// The value for key number `i`.
    pub fn get(&self, i: u64) -> &[u8] {
        let span = (self.data.len() - self.size) as u64;
        let start = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % span) as usize;
        &self.data[start..start + self.size]
    }
}

/// A small, fast, seeded generator (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`bound` at least 1).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound.max(1))) >> 64) as u64
    }
}

/// Which keys of `0..num` are live, to know the logical size of the store.
/// Shared by the writer threads.
#[derive(Debug)]
pub(crate) struct LiveSet {
    words: Vec<AtomicU64>,
    live: AtomicU64,
    entry_bytes: u64,
}

impl LiveSet {
    pub(crate) fn new(num: u64, entry_bytes: u64) -> LiveSet {
        LiveSet {
            words: (0..num.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            live: AtomicU64::new(0),
            entry_bytes,
        }
    }

    pub(crate) fn insert(&self, i: u64) {
        let bit = 1 << (i % 64);
        if let Some(word) = self.words.get((i / 64) as usize)
            && word.fetch_or(bit, Ordering::Relaxed) & bit == 0
        {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn remove(&self, i: u64) {
        let bit = 1 << (i % 64);
        if let Some(word) = self.words.get((i / 64) as usize)
            && word.fetch_and(!bit, Ordering::Relaxed) & bit != 0
        {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn live_bytes(&self) -> u64 {
        self.live.load(Ordering::Relaxed) * self.entry_bytes
    }
}

/// A progress line on standard error for one workload (drawn only when
/// standard error is a terminal).
pub(crate) struct Progress(Option<ProgressBar>);

impl Progress {
    /// Steps between progress updates, to keep the bar off the hot path.
    pub(crate) const STEP: u64 = 1024;

    pub(crate) fn new(enabled: bool, name: &str, total: u64) -> Progress {
        if !enabled || total < 10 * Self::STEP {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>16} [{bar:30}] {human_pos}/{human_len} {elapsed} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name.to_owned());
        Progress(Some(bar))
    }

    pub(crate) fn inc(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    pub(crate) fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Seconds since `start`.
pub(crate) fn secs_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_key_order_is_a_permutation() {
        let mut numbers = KeyOrder::Random.numbers(1000, 7);
        assert_ne!(numbers, KeyOrder::Seq.numbers(1000, 7));
        numbers.sort_unstable();
        assert_eq!(numbers, KeyOrder::Seq.numbers(1000, 7));
    }

    #[test]
    fn keys_sort_by_number() {
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        fill_key(&mut a, 255);
        fill_key(&mut b, 256);
        assert!(a < b);
        assert_eq!(&a[..8], b"k0000000");
    }

    #[test]
    fn live_set_counts_each_key_once() {
        let live = LiveSet::new(100, 116);
        live.insert(3);
        live.insert(3);
        live.insert(99);
        live.remove(50);
        assert_eq!(live.live_bytes(), 2 * 116);
        live.remove(3);
        assert_eq!(live.live_bytes(), 116);
    }

    #[test]
    fn values_have_the_size_and_differ() {
        let values = ValueSource::new(100);
        assert_eq!(values.get(1).len(), 100);
        assert_ne!(values.get(1), values.get(2));
        let mut rng = Rng::new(1);
        assert!((0..1000).all(|_| rng.below(10) < 10));
    }
}
