//! Smoke test of the `varve-bench` runner: every workload at `--num 1000`
//! on Varve, with `--json`; every line must carry the documented fields
//! with sane values, and `report` must chart them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use varve_bench::runner::WORKLOADS;

/// Fields every result line carries (`null` where a figure does not apply).
const FIELDS: &[&str] = &[
    "engine",
    "workload",
    "num",
    "ops_per_sec",
    "mb_per_sec",
    "p50_us",
    "p99_us",
    "p999_us",
    "write_amp",
    "space_amp",
    "disk_bytes",
    "peak_rss_bytes",
];

/// Workloads that write, and so must report a write amplification.
const WRITERS: &[&str] = &[
    "fillseq",
    "fillrandom",
    "overwrite",
    "readwhilewriting",
    "deleterandom",
    "fillsync",
    "log_append",
];

fn varve_bench(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_varve-bench"))
        .args(args)
        .output()
        .expect("run varve-bench");
    assert!(
        out.status.success(),
        "varve-bench {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn number(line: &Value, field: &str) -> Option<f64> {
    line.get(field).and_then(Value::as_f64)
}

fn check_line(line: &Value) {
    for field in FIELDS {
        assert!(line.get(field).is_some(), "{field} missing in {line}");
    }
    let workload = line["workload"].as_str().unwrap();
    assert_eq!(line["engine"], "varve");
    if workload == "kafka_restore" {
        // It needs the kafka feature and a broker; without them it says so.
        let why = line["skipped"].as_str().unwrap_or("");
        if cfg!(feature = "kafka") && std::env::var_os("VARVE_KAFKA_BOOTSTRAP").is_some() {
            assert!(why.is_empty(), "{line}");
        } else {
            assert!(why.contains("kafka") || why.contains("KAFKA"), "{line}");
            return;
        }
    }
    assert!(line["skipped"].is_null(), "{workload} skipped: {line}");
    assert!(line["num"].as_u64().unwrap() > 0, "{line}");
    assert!(number(line, "ops_per_sec").unwrap() > 0.0, "{line}");
    assert!(number(line, "mb_per_sec").unwrap() >= 0.0, "{line}");
    let p50 = number(line, "p50_us").unwrap();
    let p99 = number(line, "p99_us").unwrap();
    let p999 = number(line, "p999_us").unwrap();
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{line}");
    assert!(line["disk_bytes"].as_u64().unwrap() > 0, "{line}");
    assert!(line["peak_rss_bytes"].as_u64().unwrap() > 0, "{line}");
    assert!(number(line, "space_amp").unwrap() >= 1.0, "{line}");
    match number(line, "write_amp") {
        Some(write_amp) => assert!(write_amp >= 1.0, "{line}"),
        None => assert!(!WRITERS.contains(&workload), "{line}"),
    }
    // The writer beside the readers is a rate over the readers' seconds:
    // its entries, as the note counts them, over `secs`.
    if workload == "readwhilewriting" {
        let rate = number(line, "writer_ops_per_sec").unwrap();
        let entry = number(line, "key_size").unwrap() + number(line, "value_size").unwrap();
        let written = line["user_bytes_written"].as_f64().unwrap() / entry;
        let expected = written / number(line, "secs").unwrap();
        assert!(
            rate > 0.0 && (rate - expected).abs() <= expected * 1e-6,
            "{line}"
        );
    } else {
        assert!(line["writer_ops_per_sec"].is_null(), "{line}");
    }
}

#[test]
fn every_workload_runs_and_reports_sane_json() {
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = scratch.path().join("run");
    let dir_arg = dir.to_str().unwrap();
    let out = varve_bench(&[
        "--workload",
        "all",
        "--num",
        "1000",
        "--threads",
        "2",
        "--json",
        "--dir",
        dir_arg,
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, WORKLOADS);
    lines.iter().for_each(check_line);
    // The sync floor wrote and synced every record, then removed its file.
    let floor = lines.iter().find(|l| l["workload"] == "syncfloor").unwrap();
    assert_eq!(floor["num"], 1000, "{floor}");
    assert!(
        floor["note"].as_str().unwrap().contains("fdatasync"),
        "{floor}"
    );
    let mut left = Vec::new();
    varve_bench::engines::for_each_file(&dir, &mut |path, _| {
        if path.to_string_lossy().ends_with("sync-floor") {
            left.push(path.to_owned());
        }
    });
    assert!(left.is_empty(), "{left:?}");

    let results = scratch.path().join("results.jsonl");
    std::fs::write(&results, &stdout).unwrap();
    let charts = scratch.path().join("charts");
    varve_bench(&[
        "report",
        results.to_str().unwrap(),
        "--out",
        charts.to_str().unwrap(),
    ]);
    assert!(Path::new(&charts.join("readrandom.svg")).exists());
    assert!(Path::new(&charts.join("summary.md")).exists());
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    for args in [
        &["--workload", "nosuch", "--num", "10"][..],
        &["--engine", "nosuch", "--num", "10"][..],
        &["--key-size", "4", "--num", "10"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_varve-bench"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}
