//! The machine-readable form: one JSON object per workload and line.
//!
//! Fields: `engine`, `workload`, `num`, `threads`, `key_size`,
//! `value_size`, `secs`, `ops_per_sec`, `mb_per_sec`, `p50_us`, `p99_us`,
//! `p999_us`, `user_bytes_written`, `bytes_written`,
//! `bytes_written_source`, `storage_bytes_written`, `write_amp`, `disk_bytes`, `live_bytes`,
//! `space_amp`, `peak_rss_bytes`, `peak_rss_scope`, `writer_ops_per_sec`
//! (`readwhilewriting`'s writer), `note`, `skipped`;
//! `null` where a figure does not apply.

use serde_json::{Value, json};

use super::WorkloadResult;

/// `r` as one line of JSON (no trailing newline).
pub fn to_line(r: &WorkloadResult) -> String {
    json!({
        "engine": r.engine,
        "workload": r.workload,
        "num": r.num,
        "threads": r.threads,
        "key_size": r.key_size,
        "value_size": r.value_size,
        "secs": r.secs,
        "ops_per_sec": r.ops_per_sec,
        "mb_per_sec": r.mb_per_sec,
        "p50_us": r.p50_us,
        "p99_us": r.p99_us,
        "p999_us": r.p999_us,
        "user_bytes_written": r.user_bytes_written,
        "bytes_written": r.bytes_written,
        "bytes_written_source": r.bytes_written_source,
        "storage_bytes_written": r.storage_bytes_written,
        "write_amp": r.write_amp,
        "disk_bytes": r.disk_bytes,
        "live_bytes": r.live_bytes,
        "space_amp": r.space_amp,
        "peak_rss_bytes": r.peak_rss_bytes,
        "peak_rss_scope": r.peak_rss_scope,
        "writer_ops_per_sec": r.writer_ops_per_sec,
        "note": r.note,
        "skipped": r.skipped,
    })
    .to_string()
}

/// The figures a chart needs from one line of a results file.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartRow {
    /// Engine name.
    pub engine: String,
    /// Workload name.
    pub workload: String,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// p50, p99 and p99.9 latency in microseconds, where known.
    pub latency_us: [Option<f64>; 3],
}

/// Parses one line of a results file; `None` for a blank line, a line
/// that is not a result, or a skipped workload.
pub fn parse_line(line: &str) -> Option<ChartRow> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    if !v.get("skipped").is_none_or(Value::is_null) {
        return None;
    }
    Some(ChartRow {
        engine: v.get("engine")?.as_str()?.to_owned(),
        workload: v.get("workload")?.as_str()?.to_owned(),
        ops_per_sec: v.get("ops_per_sec")?.as_f64()?,
        latency_us: ["p50_us", "p99_us", "p999_us"].map(|f| v.get(f).and_then(Value::as_f64)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips_into_a_chart_row() {
        let r = WorkloadResult {
            engine: "varve".into(),
            workload: "readrandom".into(),
            num: 10,
            threads: 1,
            key_size: 16,
            value_size: 100,
            secs: 0.5,
            ops_per_sec: Some(20.0),
            mb_per_sec: Some(0.0),
            p50_us: Some(1.0),
            p99_us: Some(2.0),
            p999_us: None,
            user_bytes_written: 0,
            bytes_written: Some(0),
            bytes_written_source: "proc_io",
            storage_bytes_written: Some(0),
            write_amp: None,
            disk_bytes: 4096,
            live_bytes: 1160,
            space_amp: Some(3.5),
            peak_rss_bytes: Some(1 << 20),
            peak_rss_scope: "workload",
            writer_ops_per_sec: None,
            note: None,
            skipped: None,
        };
        let row = parse_line(&to_line(&r)).unwrap();
        assert_eq!(row.engine, "varve");
        assert_eq!(row.ops_per_sec, 20.0);
        assert_eq!(row.latency_us, [Some(1.0), Some(2.0), None]);
        let skipped = WorkloadResult {
            skipped: Some("no".into()),
            ..r
        };
        assert_eq!(parse_line(&to_line(&skipped)), None);
        assert_eq!(parse_line(""), None);
    }
}
