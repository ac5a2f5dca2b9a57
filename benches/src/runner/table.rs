//! The readable form of the results: one row per workload.

use super::WorkloadResult;

/// The table's header line.
pub fn header() -> String {
    format!(
        "{:<8} {:<16} {:>9} {:>11} {:>8} {:>9} {:>9} {:>9} {:>6} {:>6} {:>9} {:>8}",
        "engine",
        "workload",
        "ops",
        "ops/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "w-amp",
        "s-amp",
        "disk MiB",
        "RSS MiB"
    )
}

/// One result as a table row (with the skip reason or note after it).
pub fn row(r: &WorkloadResult) -> String {
    if let Some(why) = &r.skipped {
        return format!("{:<8} {:<16} skipped: {why}", r.engine, r.workload);
    }
    let f = |v: Option<f64>, decimals: usize| {
        v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
    };
    let mib = |v: u64| v as f64 / (1u64 << 20) as f64;
    let mut line = format!(
        "{:<8} {:<16} {:>9} {:>11} {:>8} {:>9} {:>9} {:>9} {:>6} {:>6} {:>9.1} {:>8}",
        r.engine,
        r.workload,
        r.num,
        f(r.ops_per_sec, 0),
        f(r.mb_per_sec, 1),
        f(r.p50_us, 1),
        f(r.p99_us, 1),
        f(r.p999_us, 1),
        f(r.write_amp, 2),
        f(r.space_amp, 2),
        mib(r.disk_bytes),
        f(r.peak_rss_bytes.map(mib), 0),
    );
    if let Some(note) = &r.note {
        line.push_str("  (");
        line.push_str(note);
        line.push(')');
    }
    line
}
