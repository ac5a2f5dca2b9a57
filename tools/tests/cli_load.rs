//! `varve load`: batches by bytes below the changelog's batch limit, names
//! the input line of an oversize key or value, and a failed `--create`
//! leaves no new store behind (and removes nothing it did not create).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;
use std::path::Path;

use common::{arg, ok, varve};

fn line(key: &str, value_len: usize) -> String {
    format!(
        "{{\"key\":\"{key}\",\"value\":\"{}\"}}\n",
        "v".repeat(value_len)
    )
}

#[test]
fn a_hundred_lines_of_200_kib_load() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, input) = (tmp.path().join("s"), tmp.path().join("in.jsonl"));
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&line(&format!("k{i:03}"), 200 << 10));
    }
    // Largest legal values, twice in a row: each alone in its batch.
    for i in 0..2 {
        text.push_str(&line(&format!("big{i}"), 8 << 20));
    }
    std::fs::write(&input, text).unwrap();
    let out = ok(&["load", arg(&store), arg(&input), "--create"]);
    assert_eq!(out, "loaded 102 puts and 0 deletes\n");
    let got = ok(&["get", arg(&store), "k099"]);
    assert_eq!(got.trim_end().len(), 200 << 10);
    let got = ok(&["get", arg(&store), "big1"]);
    assert_eq!(got.trim_end().len(), 8 << 20);
}

#[test]
fn an_oversize_key_or_value_names_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, input) = (tmp.path().join("s"), tmp.path().join("in.jsonl"));
    ok(&["put", arg(&store), "keep", "me", "--create"]);
    let big_key = "k".repeat((64 << 10) + 1);
    let cases = [
        (
            format!("{}\n{}", line("a", 1), line(&big_key, 1)),
            "in.jsonl:3: key of 65537 bytes",
        ),
        (
            format!("{}\n\n{}", line("a", 1), line("b", (8 << 20) + 1)),
            "in.jsonl:4: value of 8388609 bytes",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&input, text).unwrap();
        let run = varve(&["load", arg(&store), arg(&input)]);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains(want), "{}", run.stderr);
        assert_eq!(varve(&["get", arg(&store), "a"]).code, 1);
        // An existing store is kept, whatever failed.
        assert_eq!(ok(&["get", arg(&store), "keep"]), "me\n");
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_load_create_leaves_no_new_store() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let mut text = String::new();
    for i in 0..3000 {
        writeln!(
            text,
            "{{\"key\":\"k{i}\",\"value\":\"{}\"}}",
            "x".repeat(4000)
        )
        .unwrap();
    }
    text.push_str("{\"key\":\"bad\"}\n");
    std::fs::write(&input, text).unwrap();
    // A missing directory: created, then removed.
    let missing = tmp.path().join("new");
    let run = varve(&["load", arg(&missing), arg(&input), "--create"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("in.jsonl:3001"), "{}", run.stderr);
    assert!(run.stderr.contains("was removed"), "{}", run.stderr);
    assert!(!missing.exists());
    // An empty directory: kept, emptied again.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = varve(&["load", arg(&empty), arg(&input), "--create"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(entries(&empty), Vec::<String>::new());
    // An existing store keeps the batches written before the bad line.
    let store = tmp.path().join("store");
    ok(&["put", arg(&store), "keep", "me", "--create"]);
    let run = varve(&["load", arg(&store), arg(&input), "--create"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(ok(&["get", arg(&store), "keep"]), "me\n");
    assert!(entries(&store).contains(&"CURRENT".to_owned()));
}
