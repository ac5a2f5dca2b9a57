//! Per-store operation metrics: counts, latency histograms, bytes read and
//! written ([`Db::metrics`](crate::Db::metrics)). A restore's progress is
//! reported to its listener and in its report (see `RestoreOptions`), not here:
//! it runs before the store is open.
//!
//! The same figures go to the [`metrics`] crate facade for exporters
//! (`metrics_export.rs`).
//!
//! Recording is lock-free: every counter is an `AtomicU64` updated with
//! `Relaxed` ordering, and latencies go into a fixed log-linear histogram
//! (4 sub-buckets per power of two, 252 buckets covering all of `u64`), so
//! an operation costs two clock reads and three or four atomic adds. A
//! snapshot reads the atomics one by one: taken while operations run, its
//! fields may disagree by the operations in flight.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::metrics_export::{Exporter, TimedExport};

/// Sub-buckets per power of two (a power of two itself).
const SUB_BUCKETS: u64 = 4;
/// log2 of [`SUB_BUCKETS`].
const SUB_BUCKET_BITS: u32 = 2;
/// Values below `SUB_BUCKETS` get a bucket each; each power of two from
/// `2^SUB_BUCKET_BITS` to `2^63` gets `SUB_BUCKETS` buckets.
const BUCKETS: usize = (SUB_BUCKETS + (64 - SUB_BUCKET_BITS as u64) * SUB_BUCKETS) as usize;
const _: () = assert!(BUCKETS == 252);
const _: () = assert!(1 << SUB_BUCKET_BITS == SUB_BUCKETS);

/// A lock-free latency histogram over fixed log-linear buckets. A value
/// `v >= 4` falls in the bucket of its leading bit and the two bits after
/// it, so a bucket spans at most a quarter of its lower bound and a
/// reported quantile (the bucket's midpoint, capped by the maximum) is
/// within 12.5 % of the true value.
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
    export: TimedExport,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::exported(TimedExport::default())
    }
}

impl Histogram {
    /// An empty histogram whose values also go to `export`.
    fn exported(export: TimedExport) -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
            export,
        }
    }
}

/// A counter of the store, also exported through the facade.
pub(crate) struct Count {
    value: AtomicU64,
    export: metrics::Counter,
}

impl Count {
    fn exported(export: metrics::Counter) -> Count {
        Count {
            value: AtomicU64::new(0),
            export,
        }
    }

    /// Adds `n`.
    pub(crate) fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
        self.export.increment(n);
    }

    /// The count so far.
    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// The bucket of `value`.
fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros(); // >= SUB_BUCKET_BITS
    let sub = (value >> (exponent - SUB_BUCKET_BITS)) & (SUB_BUCKETS - 1);
    (SUB_BUCKETS + u64::from(exponent - SUB_BUCKET_BITS) * SUB_BUCKETS + sub) as usize
}

/// The smallest and largest value of bucket `index`.
fn bucket_range(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return (index, index);
    }
    let shift = (index - SUB_BUCKETS) / SUB_BUCKETS; // exponent - SUB_BUCKET_BITS
    let sub = (index - SUB_BUCKETS) % SUB_BUCKETS;
    let lower = (SUB_BUCKETS + sub) << shift;
    let width = 1u64 << shift;
    (lower, lower + (width - 1))
}

impl Histogram {
    /// Adds one value.
    pub(crate) fn record(&self, value: u64) {
        self.buckets[bucket_of(value)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
        self.export.record(value);
    }

    /// Adds the time since `start`, in nanoseconds.
    pub(crate) fn record_since(&self, start: Instant) {
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.record(ns);
    }

    /// A summary of the values recorded so far.
    pub(crate) fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let max = self.max.load(Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed);
        LatencySummary {
            count,
            mean_ns: sum.checked_div(count).unwrap_or(0),
            p50_ns: quantile(&counts, count, 0.50, max),
            p99_ns: quantile(&counts, count, 0.99, max),
            max_ns: max,
        }
    }
}

/// The value at quantile `q` of the bucket counts: the midpoint of the
/// bucket holding the `ceil(q * count)`-th value, capped by `max`.
fn quantile(counts: &[u64], count: u64, q: f64, max: u64) -> u64 {
    if count == 0 {
        return 0;
    }
    // In 1..=count; the float product is exact enough for any real count.
    let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
    let mut seen = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            let (lower, upper) = bucket_range(i);
            return (lower + (upper - lower) / 2).min(max);
        }
    }
    max
}

/// The count and latency distribution of one kind of operation, in
/// nanoseconds.
///
/// # Examples
/// ```
/// let s = varve_db::LatencySummary::default();
/// assert_eq!((s.count, s.p99_ns), (0, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Operations recorded.
    pub count: u64,
    /// Mean latency.
    pub mean_ns: u64,
    /// Median latency (within 12.5 %).
    pub p50_ns: u64,
    /// 99th-percentile latency (within 12.5 %).
    pub p99_ns: u64,
    /// Largest latency (exact).
    pub max_ns: u64,
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "count {} mean {} ns p50 {} ns p99 {} ns max {} ns",
            self.count, self.mean_ns, self.p50_ns, self.p99_ns, self.max_ns
        )
    }
}

/// A snapshot of a store's operation metrics since it was opened
/// ([`Db::metrics`](crate::Db::metrics)). Latencies are in nanoseconds.
///
/// What is recorded where:
/// - `gets`: [`Db::get`](crate::Db::get) and each key of
///   [`Db::get_all`](crate::Db::get_all) (and `contains`).
/// - `puts`, `deletes`: [`Db::put`](crate::Db::put),
///   [`Db::delete`](crate::Db::delete) (not counted in `writes`).
/// - `writes`: [`Db::write`](crate::Db::write), one per batch.
/// - `ranges`: [`Db::range`](crate::Db::range), `prefix`, `all`: one per
///   iterator *creation*, its latency the creation (not the scan);
///   `range_entries_read` counts the entries those iterators returned,
///   added when each iterator is dropped.
/// - `read_bytes`: value bytes returned by gets and by those iterators.
/// - `written_bytes`: key and value bytes of every write (puts, deletes,
///   batches, the state-store API and replicated records): the counter
///   [`Stats::user_bytes_written`](crate::Stats::user_bytes_written) reads.
///
/// Snapshots' reads and the state-store API's conditional writes are not
/// recorded.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let db = varve_db::Db::open(dir.path(), varve_db::Options::default())?;
/// db.put("k", "value")?;
/// db.get("k")?;
/// let m = db.metrics();
/// assert_eq!((m.puts.count, m.gets.count), (1, 1));
/// assert_eq!(m.read_bytes, 5);
/// println!("{m}");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Point lookups.
    pub gets: LatencySummary,
    /// Single puts.
    pub puts: LatencySummary,
    /// Single deletes.
    pub deletes: LatencySummary,
    /// Write batches.
    pub writes: LatencySummary,
    /// Iterator creations.
    pub ranges: LatencySummary,
    /// Entries returned by range iterators (counted when each is dropped).
    pub range_entries_read: u64,
    /// Value bytes returned to readers (an iterator's when it is dropped).
    pub read_bytes: u64,
    /// Key and value bytes written (the counter of
    /// [`Stats::user_bytes_written`](crate::Stats::user_bytes_written)).
    pub written_bytes: u64,
    /// Expired puts of a TTL store that compactions turned into
    /// tombstones or dropped.
    pub expired_entries_compacted: u64,
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gets:    {}", self.gets)?;
        writeln!(f, "puts:    {}", self.puts)?;
        writeln!(f, "deletes: {}", self.deletes)?;
        writeln!(f, "writes:  {}", self.writes)?;
        writeln!(
            f,
            "ranges:  {} ({} entries read)",
            self.ranges, self.range_entries_read
        )?;
        writeln!(
            f,
            "bytes:   read {} written {}",
            self.read_bytes, self.written_bytes
        )?;
        write!(
            f,
            "expired: {} entries compacted",
            self.expired_entries_compacted
        )
    }
}

/// The live metrics of an open store.
pub(crate) struct StoreMetrics {
    pub(crate) gets: Histogram,
    pub(crate) puts: Histogram,
    pub(crate) deletes: Histogram,
    pub(crate) writes: Histogram,
    pub(crate) ranges: Histogram,
    pub(crate) range_entries_read: Count,
    pub(crate) read_bytes: Count,
    /// Only exported: [`Metrics::written_bytes`] reads the store's counter.
    pub(crate) written_bytes: metrics::Counter,
    pub(crate) expired_entries: Count,
}

impl StoreMetrics {
    /// The metrics of the store in `path`, exported through the facade's
    /// recorder (see `metrics_export.rs`).
    pub(crate) fn new(path: &std::path::Path) -> StoreMetrics {
        let e = Exporter::new(path);
        StoreMetrics {
            gets: Histogram::exported(e.timed("get")),
            puts: Histogram::exported(e.timed("put")),
            deletes: Histogram::exported(e.timed("delete")),
            writes: Histogram::exported(e.timed("write")),
            ranges: Histogram::exported(e.timed("range")),
            range_entries_read: Count::exported(e.counter("range-entries-read")),
            read_bytes: Count::exported(e.counter("bytes-read")),
            written_bytes: e.counter("bytes-written"),
            expired_entries: Count::exported(e.counter("expired-entries-compacted")),
        }
    }

    /// Counts `entries` entries holding `value_bytes` bytes of values that
    /// an iterator returned.
    pub(crate) fn entries_read(&self, entries: u64, value_bytes: u64) {
        self.range_entries_read.add(entries);
        self.read_bytes.add(value_bytes);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        Metrics {
            gets: self.gets.summary(),
            puts: self.puts.summary(),
            deletes: self.deletes.summary(),
            writes: self.writes.summary(),
            ranges: self.ranges.summary(),
            range_entries_read: self.range_entries_read.get(),
            read_bytes: self.read_bytes.get(),
            written_bytes: 0,
            expired_entries_compacted: self.expired_entries.get(),
        }
    }
}

impl crate::Db {
    /// A snapshot of this store's operation metrics since it was opened
    /// (see [`Metrics`] for what is recorded where).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> varve_db::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let db = varve_db::Db::open(dir.path(), varve_db::Options::default())?;
    /// db.delete("k")?;
    /// assert_eq!(db.metrics().deletes.count, 1);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let inner = self.inner();
        let mut metrics = inner.metrics.snapshot();
        metrics.written_bytes = crate::stats::Counters::get(&inner.counters.user_bytes_written);
        metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_u64_in_order() {
        let mut previous_upper = None;
        for i in 0..BUCKETS {
            let (lower, upper) = bucket_range(i);
            assert!(lower <= upper);
            if let Some(p) = previous_upper {
                assert_eq!(lower, p + 1, "bucket {i} follows bucket {}", i - 1);
            }
            assert_eq!(bucket_of(lower), i);
            assert_eq!(bucket_of(upper), i);
            previous_upper = Some(upper);
        }
        assert_eq!(previous_upper, Some(u64::MAX));
    }

    #[test]
    fn bucket_width_is_at_most_a_quarter() {
        for i in SUB_BUCKETS as usize..BUCKETS {
            let (lower, upper) = bucket_range(i);
            assert!(
                (upper - lower) <= lower / 4,
                "bucket {i}: {lower}..={upper}"
            );
        }
    }

    fn within(got: u64, want: u64) -> bool {
        got.abs_diff(want) <= want / 8 + 1
    }

    #[test]
    fn quantiles_of_uniform_values_are_within_bucket_error() {
        let h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 100);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.max_ns, 1_000_000);
        assert_eq!(s.mean_ns, 500_050);
        assert!(within(s.p50_ns, 500_000), "p50 {}", s.p50_ns);
        assert!(within(s.p99_ns, 990_000), "p99 {}", s.p99_ns);
    }

    #[test]
    fn quantiles_of_a_skewed_distribution() {
        let h = Histogram::default();
        for _ in 0..990 {
            h.record(1_000);
        }
        for _ in 0..10 {
            h.record(5_000_000);
        }
        let s = h.summary();
        assert!(within(s.p50_ns, 1_000), "p50 {}", s.p50_ns);
        assert!(within(s.p99_ns, 1_000), "p99 {}", s.p99_ns);
        assert_eq!(s.max_ns, 5_000_000);
        h.record(5_000_000);
        assert!(within(h.summary().p99_ns, 5_000_000));
    }

    #[test]
    fn empty_and_extreme_values() {
        let h = Histogram::default();
        assert_eq!(h.summary(), LatencySummary::default());
        h.record(0);
        h.record(u64::MAX);
        let s = h.summary();
        assert_eq!((s.count, s.p50_ns, s.max_ns), (2, 0, u64::MAX));
        assert!(s.p99_ns >= 7 << 61, "p99 {}", s.p99_ns);
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let h = std::sync::Arc::new(Histogram::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for v in 0..10_000u64 {
                        h.record(v + t);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.summary().count, 40_000);
    }

    proptest::proptest! {
        /// p50 and p99 land in the bucket of the exact quantile: within
        /// 12.5 % of it (plus one for the exact small buckets).
        #[test]
        fn quantiles_match_exact_ones_within_bucket_error(
            mut values in proptest::collection::vec(0u64..1 << 40, 1..500)
        ) {
            let h = Histogram::default();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            let exact = |q: f64| {
                let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
                values[rank - 1]
            };
            let s = h.summary();
            proptest::prop_assert_eq!(s.count, values.len() as u64);
            proptest::prop_assert_eq!(s.max_ns, *values.last().unwrap());
            for (got, q) in [(s.p50_ns, 0.5), (s.p99_ns, 0.99)] {
                let want = exact(q);
                proptest::prop_assert_eq!(bucket_of(got), bucket_of(want));
                proptest::prop_assert!(within(got, want), "q {} got {} want {}", q, got, want);
            }
        }
    }
}
