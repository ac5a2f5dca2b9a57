//! `varve positions DIR --delete NAME` and `--reset NAME --to OFFSET`, as
//! an operator unpins a changelog held by a dead standby or shipper (like
//! `kafka-consumer-groups.sh --delete` and `--reset-offsets`): the edit is
//! refused while another process has the store open, the offset is checked
//! against the log's range, and what changed is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use tempfile::TempDir;

use common::{arg, json_lines, make_store, ok, refused};
use varve_db::{Db, Options};

/// The positions the engine sees when it opens the store.
fn engine_positions(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let db = Db::open(dir, Options::default()).unwrap();
    let positions = db.changelog().positions();
    db.close().unwrap();
    positions
}

/// A temporary directory that is a store with two consumers: `shipper`
/// at 10 and `standby` at 20.
fn store_with_two_consumers() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path());
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.changelog().commit_position("standby", 20).unwrap();
    db.close().unwrap();
    dir
}

#[test]
fn delete_forgets_a_consumer_and_says_so() {
    let dir = store_with_two_consumers();
    let d = arg(dir.path());
    let end = json_lines(&ok(&["positions", d, "--json"]))[0]["log_end_offset"]
        .as_u64()
        .unwrap();
    let dry = ok(&["positions", d, "--delete", "standby", "--dry-run"]);
    assert!(
        dry.starts_with("would delete standby (was at offset 20"),
        "{dry}"
    );
    assert!(dry.contains("nothing was written"), "{dry}");
    assert_eq!(engine_positions(dir.path()).len(), 2);
    let text = ok(&["positions", d, "--delete", "standby"]);
    assert_eq!(
        text,
        format!(
            "deleted standby (was at offset 20, lag {}); retention no longer waits for it\n",
            end - 20
        )
    );
    let left = engine_positions(dir.path());
    assert_eq!(
        left.into_iter().collect::<Vec<_>>(),
        vec![("shipper".to_owned(), 10)]
    );
    // Deleting it again names what there is.
    let names = "no consumer position named \"standby\" (it has: shipper)";
    refused(&["positions", d, "--delete", "standby"], names);
    let json = json_lines(&ok(&["positions", d, "--delete", "shipper", "--json"]));
    assert_eq!(json[0]["op"], "delete");
    assert_eq!(json[0]["offset_before"], 10);
    assert_eq!(json[0]["offset_after"], serde_json::Value::Null);
    assert!(engine_positions(dir.path()).is_empty());
    // The listing is a JSON result even when empty.
    let list = json_lines(&ok(&["positions", d, "--json"]));
    assert_eq!(list[0]["positions"], serde_json::json!([]));
    assert_eq!(list[0]["log_end_offset"], end);
}

#[test]
fn reset_moves_a_consumer_within_the_log_only() {
    let dir = store_with_two_consumers();
    let d = arg(dir.path());
    let list = json_lines(&ok(&["positions", d, "--json"]));
    let start = list[0]["log_start_offset"].as_u64().unwrap();
    let end = list[0]["log_end_offset"].as_u64().unwrap();
    let text = ok(&["positions", d, "--reset", "shipper", "--to", "300"]);
    assert_eq!(
        text,
        format!(
            "reset shipper: offset 10 -> 300 (lag {} -> {})\n",
            end - 10,
            end - 300
        )
    );
    assert_eq!(engine_positions(dir.path())["shipper"], 300);
    let json = json_lines(&ok(&[
        "positions",
        d,
        "--reset",
        "shipper",
        "--to",
        "latest",
        "--json",
    ]));
    assert_eq!(json[0]["offset_before"], 300);
    assert_eq!(json[0]["offset_after"], end);
    ok(&["positions", d, "--reset", "standby", "--to", "earliest"]);
    assert_eq!(engine_positions(dir.path())["standby"], start);
    // Past the log end: refused, nothing changed.
    let past = (end + 1).to_string();
    let outside = format!("offset {past} is outside the changelog [{start}, {end}]");
    refused(
        &["positions", d, "--reset", "shipper", "--to", &past],
        &outside,
    );
    let soon = ["positions", d, "--reset", "shipper", "--to", "soon"];
    refused(&soon, "expected an offset");
    // --reset needs --to.
    refused(&["positions", d, "--reset", "shipper"], "");
    assert_eq!(engine_positions(dir.path())["shipper"], end);
}

#[test]
fn an_edit_is_refused_while_another_process_has_the_store_open() {
    let dir = store_with_two_consumers();
    let d = arg(dir.path());
    let positions_file = dir.path().join("changelog/positions");
    let before = std::fs::read(&positions_file).unwrap();
    // This test process holds the store open; `varve` is another process.
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for args in [
        vec!["positions", d, "--delete", "standby"],
        vec!["positions", d, "--reset", "shipper", "--to", "0"],
    ] {
        let run = refused(&args, "is in use");
        assert!(run.stderr.contains("LOCK"), "{}", run.stderr);
    }
    // Listing still works on a live store.
    assert!(ok(&["positions", d]).contains("standby\toffset 20"));
    db.close().unwrap();
    assert_eq!(std::fs::read(&positions_file).unwrap(), before);
    ok(&["positions", d, "--delete", "standby"]);
    assert!(!engine_positions(dir.path()).contains_key("standby"));
}
