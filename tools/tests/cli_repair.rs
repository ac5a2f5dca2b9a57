//! `varve repair`: salvages a damaged store into a new one and says what
//! was lost; the damaged store is only read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{arg, assert_scans_as, flip_byte, json_lines, ok, refused, tables, temp_store, varve};

#[test]
fn repairing_a_sound_store_loses_nothing() {
    let (dir, store, model) = temp_store("s");
    let fixed = dir.path().join("fixed");
    let text = ok(&["repair", arg(&store), "--to", arg(&fixed)]);
    assert!(
        text.contains("tables: 2 whole, 0 partly salvaged, 0 dropped"),
        "{text}"
    );
    assert!(text.contains("lost: nothing"), "{text}");
    assert_scans_as(&fixed, &model);
    ok(&["verify", arg(&fixed)]);
    // An existing target is never overwritten.
    refused(
        &["repair", arg(&store), "--to", arg(&fixed)],
        "is not empty",
    );
}

#[test]
fn a_damaged_table_block_is_recovered_from_the_changelog() {
    let (dir, store, model) = temp_store("s");
    let fixed = dir.path().join("fixed");
    let table = tables(&store)[0].clone();
    flip_byte(&table, 10);
    let before = std::fs::read(&table).unwrap();
    let text = ok(&["repair", arg(&store), "--to", arg(&fixed)]);
    assert!(text.contains("1 partly salvaged"), "{text}");
    assert!(
        text.contains(
            "so nothing of it is lost; recovered from there: damaged data block(s) from byte 0"
        ),
        "{text}"
    );
    assert!(text.contains("lost: nothing"), "{text}");
    assert_scans_as(&fixed, &model);
    assert_eq!(
        std::fs::read(&table).unwrap(),
        before,
        "the damaged store is only read"
    );
}

#[test]
fn a_damaged_changelog_is_cut_and_reported() {
    let (dir, store, model) = temp_store("s");
    let fixed = dir.path().join("fixed");
    let segment = common::first_segment(&store);
    let dump = json_lines(&ok(&["log", "dump", arg(&segment), "--json"]));
    let batches: Vec<_> = dump.iter().filter(|o| o["kind"] == "batch").collect();
    // The third batch from the end holds "tail:a", written after the last flush.
    let bad = batches[batches.len() - 3];
    let position = bad["position"].as_u64().unwrap();
    let offset = bad["base_offset"].as_u64().unwrap();
    flip_byte(&segment, position + 50);
    assert_eq!(
        varve(&["get", arg(&store), "tail:a"]).code,
        2,
        "get refuses damaged acknowledged data"
    );
    let json = json_lines(&ok(&["repair", arg(&store), "--to", arg(&fixed), "--json"]));
    let lost: Vec<String> = json[0]["lost"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    assert!(
        lost.iter().any(
            |l| l.contains(&format!("{}:{position}:", segment.display()))
                && l.contains(&format!("records from offset {offset} on are lost"))
        ),
        "{lost:?}"
    );
    // The last three writes are gone; older versions from the tables remain.
    assert_eq!(varve(&["get", arg(&fixed), "tail:a"]).code, 1);
    assert_eq!(ok(&["get", arg(&fixed), "key:0005"]), "value-5-xxxxx\n");
    assert!(varve(&["get", arg(&fixed), "key:0006"]).code == 0);
    assert_eq!(ok(&["scan", arg(&fixed)]).lines().count(), model.len());
}

#[test]
fn a_damaged_table_whose_writes_left_the_changelog_is_reported_lost() {
    use varve_db::{Db, Options};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let fixed = dir.path().join("fixed");
    let opts = Options::default().changelog_segment_size_bytes(64 << 10);
    let db = Db::open(&store, opts).unwrap();
    for i in 0..3000 {
        db.put(format!("key:{i:05}"), "v".repeat(100)).unwrap();
    }
    db.flush().unwrap();
    db.put("after", "flush").unwrap();
    db.close().unwrap();
    assert!(
        !common::first_segment(&store).exists(),
        "retention removed the first segment"
    );
    let table = tables(&store)[0].clone();
    flip_byte(&table, 10);
    let text = ok(&["repair", arg(&store), "--to", arg(&fixed)]);
    let first_block = format!(
        "LOST: {}: damaged data block(s) from byte 0: keys between the start and ",
        table.display()
    );
    assert!(text.contains(&first_block), "{text}");
    assert!(text.contains("entries salvaged"), "{text}");
    let kept = ok(&["scan", arg(&fixed)]).lines().count();
    assert!(kept > 2000 && kept < 3001, "{kept}");
    assert_eq!(ok(&["get", arg(&fixed), "after"]), "flush\n");
    assert_eq!(varve(&["get", arg(&fixed), "key:00000"]).code, 1);
}

/// One damaged byte in a part of the changelog the tables already hold,
/// with intact tables compacted into the last level (tombstones and old
/// versions gone): the repair keeps exactly the store's contents (no
/// deleted key comes back, no older version wins) and reports nothing
/// lost, because nothing is.
#[test]
fn damage_below_the_flushed_offset_loses_nothing_and_resurrects_nothing() {
    let (dir, store, model) = temp_store("s");
    let fixed = dir.path().join("fixed");
    ok(&["compact", arg(&store)]);
    let segment = common::first_segment(&store);
    let dump = json_lines(&ok(&["log", "dump", arg(&segment), "--json"]));
    let batches: Vec<_> = dump.iter().filter(|o| o["kind"] == "batch").collect();
    // An early batch: its records were flushed long ago.
    let bad = batches[5];
    assert!(bad["base_offset"].as_u64().unwrap() < 100);
    flip_byte(&segment, bad["position"].as_u64().unwrap() + 30);
    let json = json_lines(&ok(&["repair", arg(&store), "--to", arg(&fixed), "--json"]));
    assert_eq!(json[0]["lost"], serde_json::json!([]), "{:?}", json[0]);
    let notes = json[0]["notes"].to_string();
    assert!(
        notes.contains("below the manifest's flushed offset"),
        "{notes}"
    );
    assert_scans_as(&fixed, &model);
    assert_eq!(
        varve(&["get", arg(&fixed), "key:0000"]).code,
        1,
        "a deleted key came back"
    );
}
