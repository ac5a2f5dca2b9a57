//! One spelling of a binary key in every output: `\xNN` escapes in text
//! (printable text as is), `0x…` hex with `--hex` (and `--hex` arguments
//! taken with or without the `0x`), and in JSON always `"key"` (the text
//! spelling) beside `"key_hex"` (the exact bytes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use tempfile::TempDir;

use common::{arg, json_lines, ok, tables, varve};
use varve_db::{Db, Options};

const KEY: &[u8] = b"\x00\xff\x10";
const VALUE: &[u8] = b"v\x01";
const TEXT_KEY: &str = "\\x00\\xff\\x10";
const TEXT_VALUE: &str = "v\\x01";

/// A new temporary directory that is a closed store whose one table and
/// changelog hold the binary key; returns it and the table's path.
fn temp_binary_store() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.put(KEY.to_vec(), VALUE.to_vec()).unwrap();
    db.put("plain", "text").unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    let table = tables(dir.path()).remove(0);
    (dir, table)
}

#[test]
fn text_outputs_spell_a_binary_key_one_way() {
    let (dir, table) = temp_binary_store();
    let (d, t) = (arg(dir.path()), arg(&table));
    assert_eq!(ok(&["get", d, "--hex", "0x00ff10"]), format!("0x7601\n"));
    assert_eq!(ok(&["get", d, "--hex", "00FF10"]), "0x7601\n");
    let scan = ok(&["scan", d]);
    assert_eq!(scan, format!("{TEXT_KEY}\t{TEXT_VALUE}\nplain\ttext\n"));
    let sst = ok(&["sst", "dump", t, "--entries"]);
    assert!(
        sst.contains(&format!("smallest key  \"{TEXT_KEY}\" @ 1 put")),
        "{sst}"
    );
    assert!(
        sst.contains(&format!("[\"{TEXT_KEY}\" @ 1 put .. \"plain\" @ 2 put]")),
        "{sst}"
    );
    assert!(
        sst.contains(&format!("  {TEXT_KEY} @ 1 put => {TEXT_VALUE}")),
        "{sst}"
    );
    let log = ok(&["log", "dump", d, "--print-data"]);
    assert!(
        log.contains(&format!("key: {TEXT_KEY} value: {TEXT_VALUE} ")),
        "{log}"
    );
    let manifest = ok(&["manifest", "dump", d]);
    assert!(
        manifest.contains(&format!("[{TEXT_KEY} .. plain]")),
        "{manifest}"
    );
    // No other spelling anywhere.
    for text in [&scan, &sst, &log, &manifest] {
        assert!(!text.contains("0x00ff10"), "{text}");
        assert!(!text.contains("00ff10"), "{text}");
    }
}

#[test]
fn hex_outputs_spell_a_binary_key_as_0x() {
    let (dir, table) = temp_binary_store();
    let (d, t) = (arg(dir.path()), arg(&table));
    let scan = ok(&["scan", d, "--hex"]);
    assert_eq!(scan, "0x00ff10\t0x7601\n0x706c61696e\t0x74657874\n");
    let sst = ok(&["sst", "dump", t, "--entries", "--hex"]);
    assert!(sst.contains("smallest key  \"0x00ff10\" @ 1 put"), "{sst}");
    assert!(sst.contains("  0x00ff10 @ 1 put => 0x7601"), "{sst}");
    let log = ok(&["log", "dump", d, "--print-data", "--hex"]);
    assert!(log.contains("key: 0x00ff10 value: 0x7601 "), "{log}");
    let manifest = ok(&["manifest", "dump", d, "--hex"]);
    assert!(
        manifest.contains("[0x00ff10 .. 0x706c61696e]"),
        "{manifest}"
    );
}

#[test]
fn json_outputs_carry_key_and_key_hex_everywhere() {
    let (dir, table) = temp_binary_store();
    let (d, t) = (arg(dir.path()), arg(&table));
    let check = |obj: &serde_json::Value, name: &str| {
        assert_eq!(obj[name], TEXT_KEY, "{obj}");
        assert_eq!(obj[format!("{name}_hex")], "00ff10", "{obj}");
    };
    // --hex changes text (and how arguments are read) only: the JSON
    // objects are the same either way.
    let get = json_lines(&ok(&["get", d, "--json", "--hex", "00ff10"]));
    check(&get[0], "key");
    assert_eq!(get[0]["value"], TEXT_VALUE);
    assert_eq!(get[0]["value_hex"], "7601");
    let plain = json_lines(&ok(&["get", d, "--json", "plain"]));
    assert_eq!(plain[0]["key"], "plain");
    assert_eq!(plain[0]["key_hex"], "706c61696e");
    let scan = json_lines(&ok(&["scan", d, "--json"]));
    check(&scan[0], "key");
    assert_eq!(scan[0]["value_hex"], "7601");
    assert_eq!(json_lines(&ok(&["scan", d, "--json", "--hex"])), scan);
    let sst = json_lines(&ok(&["sst", "dump", t, "--entries", "--json"]));
    check(&sst[0], "smallest_key");
    let block = sst.iter().find(|o| o["kind"] == "block").unwrap();
    check(block, "first_key");
    let entry = sst.iter().find(|o| o["kind"] == "entry").unwrap();
    check(entry, "key");
    let log = json_lines(&ok(&["log", "dump", d, "--print-data", "--json"]));
    let record = log.iter().find(|o| o.get("key_hex").is_some()).unwrap();
    check(record, "key");
    let manifest = json_lines(&ok(&["manifest", "dump", d, "--json"]));
    let added = manifest
        .iter()
        .find_map(|r| r["added"].as_array().and_then(|a| a.first()).cloned())
        .unwrap();
    check(&added, "smallest_key");
    // What scan --json prints, load reads back byte for byte.
    let lines = dir.path().join("lines.json");
    std::fs::write(&lines, ok(&["scan", d, "--json"])).unwrap();
    let copy = dir.path().join("copy");
    ok(&["load", arg(&copy), arg(&lines), "--create"]);
    assert_eq!(ok(&["scan", arg(&copy)]), ok(&["scan", d]));
    assert_eq!(
        varve(&["get", arg(&copy), "--hex", "0x00ff10"]).stdout,
        "0x7601\n"
    );
}

#[test]
fn repair_reports_quote_binary_keys_in_the_same_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let db = Db::open(&store, Options::default()).unwrap();
    for i in 0..200u16 {
        let mut key = vec![0x01, 0xfe];
        key.extend_from_slice(&i.to_be_bytes());
        db.put(key, vec![b'v'; 100]).unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
    // Damage in the table's first data block: the report names the keys
    // around it (as lost, or as recovered from the changelog).
    common::flip_byte(&tables(&store)[0], 10);
    let to = dir.path().join("repaired");
    let report = ok(&["repair", arg(&store), "--to", arg(&to)]);
    let line = report
        .lines()
        .find(|l| l.contains("damaged data block"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        line.contains("keys between the start and \"\\x01\\xfe\\x00"),
        "{line}"
    );
    assert!(!line.contains("\\\\x"), "escaped twice: {line}");
}
