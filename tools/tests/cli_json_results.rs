//! `--json` prints a JSON result on success for every command, so a
//! script never has to tell "printed nothing" from "did nothing": each
//! run below exits 0 and prints at least one line, every line a JSON
//! object.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{arg, json_lines, ok, tables, temp_store};

/// Runs `varve ARGS --json`, expects success and JSON lines; returns them.
fn json_ok(args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(&all);
    let lines = json_lines(&out);
    assert!(!lines.is_empty(), "varve {args:?} --json printed nothing");
    assert!(lines.iter().all(serde_json::Value::is_object), "{out}");
    lines
}

#[test]
fn every_command_prints_a_json_result_on_success() {
    let (dir, store, _) = temp_store("store");
    let s = arg(&store);
    let table = tables(&store)[0].clone();
    let lines = dir.path().join("lines.json");
    std::fs::write(&lines, "{\"key\":\"loaded\",\"value\":\"1\"}\n").unwrap();

    let verify = json_ok(&["verify", s, "--quiet"]);
    let summary = verify.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["problems"], 0);
    assert!(summary["files_checked"].as_u64().unwrap() >= 5, "{summary}");

    let positions = json_ok(&["positions", s]);
    assert_eq!(positions.len(), 1);
    assert_eq!(positions[0]["positions"][0]["consumer"], "shipper");

    let put = json_ok(&["put", s, "colour", "blue"]);
    assert_eq!(
        put[0],
        serde_json::json!({"ok": true, "op": "put", "key": "colour",
            "key_hex": "636f6c6f7572", "value": "blue", "value_hex": "626c7565"})
    );
    let delete = json_ok(&["delete", s, "colour"]);
    assert_eq!(delete[0]["op"], "delete");
    assert_eq!(delete[0]["key"], "colour");
    assert!(delete[0].get("value").is_none());

    json_ok(&["info", s]);
    json_ok(&["get", s, "key:0005"]);
    json_ok(&["scan", s, "--limit", "1"]);
    json_ok(&["sst", "dump", arg(&table)]);
    json_ok(&["log", "dump", s]);
    json_ok(&["manifest", "dump", s]);
    json_ok(&["load", s, arg(&lines)]);
    json_ok(&["compact", s]);
    let copy = dir.path().join("copy");
    json_ok(&["checkpoint", s, arg(&copy)]);
    let repaired = dir.path().join("repaired");
    json_ok(&["repair", s, "--to", arg(&repaired)]);
    let restored = dir.path().join("restored");
    json_ok(&["restore", s, arg(&restored)]);
    json_ok(&["positions", s, "--reset", "shipper", "--to", "latest"]);
    json_ok(&["positions", s, "--delete", "shipper"]);
    let empty = json_ok(&["positions", s]);
    assert_eq!(empty[0]["positions"], serde_json::json!([]));
}
