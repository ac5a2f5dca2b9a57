//! The read-only subcommands on a real store: info, the dumps, positions,
//! get and scan, in text and JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{arg, json_lines, make_store, ok, tables, varve};

#[test]
fn info_shows_levels_changelog_and_positions() {
    let (_dir, store, _) = common::temp_store("s");
    let text = ok(&["info", arg(&store)]);
    assert!(text.contains("engine format  1"), "{text}");
    assert!(text.contains("L0: 2 table(s)"), "{text}");
    assert!(text.contains("consumer shipper: offset 10"), "{text}");
    assert!(text.contains("write amp      ≥"), "{text}");
    let json = json_lines(&ok(&["info", arg(&store), "--json", "--live"]));
    // The store's newest sequence number is the changelog's end, even for
    // writes not yet in a table.
    let end = json[0]["changelog"]["log_end_offset"].as_u64().unwrap();
    let in_tables = json[0]["manifest"]["last_seqno"].as_u64().unwrap();
    assert!(end > in_tables);
    assert!(
        text.contains(&format!("last seqno     {end} ({in_tables} in tables)")),
        "{text}"
    );
    assert_eq!(json.len(), 1);
    let info = &json[0];
    assert_eq!(info["levels"][0]["tables"].as_array().unwrap().len(), 2);
    let log = &info["changelog"];
    assert!(log["log_end_offset"].as_u64().unwrap() > log["flushed_offset"].as_u64().unwrap());
    assert_eq!(log["positions"]["shipper"]["offset"], 10);
    assert!(
        info["amplification"]["space_amplification"]
            .as_f64()
            .unwrap()
            > 1.0
    );
}

#[test]
fn sst_dump_shows_properties_blocks_bloom_and_entries() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    let table = &tables(dir.path())[0];
    let text = ok(&[
        "sst",
        "dump",
        arg(table),
        "--entries",
        "--from",
        "key:0100",
        "--limit",
        "3",
    ]);
    assert!(text.contains("entries       300 (0 tombstones)"), "{text}");
    assert!(text.contains("format version 2)"), "{text}");
    assert!(
        text.contains("bloom         kind 2  3072 bits  7 probes  300 distinct user keys  10.2 bits/key (option 10)  est. false positives 0.855%"),
        "{text}"
    );
    assert!(text.contains("  #0 @0 size"), "{text}");
    assert!(text.contains("  key:0100 @ "), "{text}");
    assert!(!text.contains("  key:0103 @ "), "{text}");
    let json = json_lines(&ok(&["sst", "dump", arg(table), "--entries", "--json"]));
    assert_eq!(json[0]["kind"], "table");
    assert_eq!(json[0]["bloom"]["distinct_user_keys"], 300);
    let entries: Vec<_> = json.iter().filter(|o| o["kind"] == "entry").collect();
    assert_eq!(entries.len(), 300);
    assert_eq!(entries[0]["key"], "key:0000");
    assert!(json.iter().filter(|o| o["kind"] == "block").count() > 1);
}

#[test]
fn log_dump_shows_batches_and_records() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    let text = ok(&[
        "log",
        "dump",
        arg(dir.path()),
        "--print-data",
        "--index-check",
    ]);
    assert!(
        text.contains("baseOffset: 0 lastOffset: 0 count: 1 position: 0"),
        "{text}"
    );
    assert!(text.contains("isValid: true"), "{text}");
    assert!(
        text.contains("key: tail:a value: only in the changelog"),
        "{text}"
    );
    assert!(text.contains("value: (tombstone)"), "{text}");
    assert!(text.contains("end of data at position"), "{text}");
    let segment = common::first_segment(dir.path());
    let json = json_lines(&ok(&[
        "log",
        "dump",
        arg(&segment),
        "--from",
        "300",
        "--json",
    ]));
    let batches: Vec<_> = json.iter().filter(|o| o["kind"] == "batch").collect();
    assert!(
        batches
            .iter()
            .all(|b| b["last_offset"].as_u64().unwrap() >= 300)
    );
    assert!(batches.iter().all(|b| b["valid"] == true));
}

#[test]
fn manifest_dump_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    let text = ok(&["manifest", "dump", arg(dir.path())]);
    assert!(text.contains("@0 engine_format=1"), "{text}");
    assert!(text.contains("    + L0 "), "{text}");
    assert!(text.contains("tables=2"), "{text}");
    let json = json_lines(&ok(&["manifest", "dump", arg(dir.path()), "--json"]));
    let state = &json.last().unwrap()["state"];
    assert_eq!(state["tables"].as_array().unwrap().len(), 2);
    let text = ok(&["positions", arg(dir.path())]);
    assert!(text.starts_with("shipper\toffset 10\tlag "), "{text}");
    let json = json_lines(&ok(&["positions", arg(dir.path()), "--json"]));
    assert_eq!(json[0]["positions"][0]["consumer"], "shipper");
}

#[test]
fn get_and_scan_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = make_store(dir.path());
    let d = arg(dir.path());
    assert_eq!(ok(&["get", d, "key:0005"]), "newest\n");
    assert_eq!(ok(&["get", d, "key:0007"]), "new-7\n");
    assert_eq!(ok(&["get", d, "tail:a"]), "only in the changelog\n");
    for deleted in ["key:0006", "key:0011", "missing"] {
        let run = varve(&["get", d, deleted]);
        assert_eq!(run.code, 1, "{deleted}: {}", run.stdout);
        assert!(run.stderr.contains("key not found"));
    }
    let want = common::scan_lines(&model);
    let all = ok(&["scan", d]);
    assert_eq!(all.lines().collect::<Vec<_>>(), want);
    let reversed = ok(&["scan", d, "--reverse"]);
    let mut want_rev = want.clone();
    want_rev.reverse();
    assert_eq!(reversed.lines().collect::<Vec<_>>(), want_rev);
    let ranged: Vec<String> = ok(&["scan", d, "--from", "key:0100", "--to", "key:0110"])
        .lines()
        .map(str::to_owned)
        .collect();
    let want_range: Vec<String> = want
        .iter()
        .filter(|l| l.as_str() >= "key:0100" && l.as_str() < "key:0110")
        .cloned()
        .collect();
    assert_eq!(ranged, want_range);
    let rev_limited = ok(&["scan", d, "--prefix", "key:01", "--reverse", "--limit", "2"]);
    let want_rl: Vec<&String> = want
        .iter()
        .filter(|l| l.starts_with("key:01"))
        .rev()
        .take(2)
        .collect();
    assert_eq!(rev_limited.lines().collect::<Vec<_>>(), want_rl);
    let json = json_lines(&ok(&["scan", d, "--prefix", "tail:", "--json"]));
    assert_eq!(
        json,
        vec![
            serde_json::json!({"key": "tail:a", "key_hex": "7461696c3a61",
            "value": "only in the changelog",
            "value_hex": "6f6e6c7920696e20746865206368616e67656c6f67"})
        ]
    );
}

#[test]
fn read_commands_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    let before = snapshot(dir.path());
    let d = arg(dir.path());
    for args in [
        vec!["info", d, "--live"],
        vec!["verify", d],
        vec!["scan", d],
        vec!["get", d, "key:0001"],
        vec!["log", "dump", d],
        vec!["manifest", "dump", d],
        vec!["positions", d],
    ] {
        ok(&args);
    }
    assert_eq!(snapshot(dir.path()), before);
}

/// Every file under `dir` with its contents.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}
