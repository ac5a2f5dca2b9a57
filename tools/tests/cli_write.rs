//! put, delete and load: ldb-style writes, read back with get and scan.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{arg, json_lines, ok, temp_path, varve};

/// Creates the store `s` with `varve put --create` of the first of
/// `pairs`, then puts the others in order.
fn create_with(s: &str, pairs: &[(&str, &str)]) {
    for (i, (key, value)) in pairs.iter().enumerate() {
        let mut args = vec!["put", s, key, value];
        if i == 0 {
            args.push("--create");
        }
        ok(&args);
    }
}

#[test]
fn put_delete_and_get() {
    let (_dir, store) = temp_path("new");
    let s = arg(&store);
    create_with(s, &[("colour", "blue"), ("shape", "round")]);
    ok(&["put", "--hex", s, "00ff", "0a0b"]);
    assert_eq!(ok(&["get", s, "colour"]), "blue\n");
    assert_eq!(ok(&["get", s, "--hex", "00ff"]), "0x0a0b\n");
    ok(&["delete", s, "colour"]);
    assert_eq!(varve(&["get", s, "colour"]).code, 1);
    let json = json_lines(&ok(&["scan", s, "--json"]));
    assert_eq!(json.len(), 2);
    assert_eq!(
        json[0],
        serde_json::json!({"key": "\\x00\\xff", "key_hex": "00ff", "value": "\\n\\x0b", "value_hex": "0a0b"})
    );
    assert_eq!(
        json[1],
        serde_json::json!({"key": "shape", "key_hex": "7368617065", "value": "round", "value_hex": "726f756e64"})
    );
    assert_eq!(ok(&["scan", s]), "\\x00\\xff\t\\n\\x0b\nshape\tround\n");
    ok(&["verify", s]);
}

#[test]
fn load_writes_json_lines_and_names_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("loaded");
    let input = dir.path().join("in.jsonl");
    let mut lines = String::new();
    for i in 0..2500 {
        lines.push_str(&format!("{{\"key\":\"k{i:05}\",\"value\":\"v{i}\"}}\n"));
    }
    lines.push_str(
        "{\"key\":\"k00003\",\"value\":null}\n\n{\"key_hex\":\"ff\",\"value_hex\":\"00\"}\n",
    );
    std::fs::write(&input, lines).unwrap();
    let text = ok(&["load", arg(&store), arg(&input), "--create"]);
    assert_eq!(text, "loaded 2501 puts and 1 deletes\n");
    assert_eq!(ok(&["scan", arg(&store)]).lines().count(), 2500);
    assert_eq!(varve(&["get", arg(&store), "k00003"]).code, 1);
    assert_eq!(ok(&["get", arg(&store), "--hex", "ff"]), "0x00\n");
    std::fs::write(&input, "{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\"}\n").unwrap();
    let run = varve(&["load", arg(&store), arg(&input)]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("in.jsonl:2: missing \"value\""),
        "{}",
        run.stderr
    );
    assert_eq!(
        varve(&["get", arg(&store), "a"]).code,
        1,
        "the bad batch was not written"
    );
}

#[test]
fn compact_leaves_one_level_and_the_same_contents() {
    let (dir, store) = temp_path("compacted");
    let s = arg(&store);
    create_with(s, &[("a", "1"), ("a", "2"), ("b", "3")]);
    ok(&["delete", s, "b"]);
    let before = ok(&["scan", s]);
    let json = json_lines(&ok(&["compact", s, "--json"]));
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["live_data_bytes"], 2);
    let tables: u64 = json[0]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["tables"].as_u64().unwrap())
        .sum();
    assert_eq!(tables, 1);
    assert_eq!(ok(&["scan", s]), before);
    assert!(ok(&["compact", s]).contains("space amp"));
    ok(&["verify", s]);
    assert_ne!(
        varve(&["compact", arg(&dir.path().join("missing"))]).code,
        0
    );
}

/// A new store given by a relative path (one component, and nested ones)
/// is created durably: syncing the parent of its first component means
/// syncing the current directory, not a path "".
#[test]
fn a_new_store_at_a_relative_path_is_created() {
    let dir = tempfile::tempdir().unwrap();
    for rel in ["store", "a/b/store"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_varve"))
            .args(["put", rel, "k", "v", "--create"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_varve"))
            .args(["get", rel, "k"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "v\n", "{rel}");
    }
}
