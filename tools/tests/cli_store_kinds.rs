//! The CLI on the kinds of store the engine makes: a TTL store (values
//! shown without their write time, expired ones hidden, writes keep the
//! TTL), an LZ4 store (compaction keeps LZ4) and a partitioned store's
//! root (get and scan read its partitions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{arg, json_lines, ok, varve};
use tempfile::TempDir;
use varve_db::{Clock, Compression, Db, ManualClock, Options, SystemClock};

const TTL: Duration = Duration::from_secs(3600);

/// A new temporary directory with a TTL store (one hour) at `ttl` in it,
/// holding, in a table and in the changelog tail, values written now and
/// values written two hours ago (expired). Returns the directory and the
/// store's path.
fn temp_ttl_store() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ttl");
    let now_ms = SystemClock.now_ms();
    let clock = Arc::new(ManualClock::new(now_ms - 2 * 3600 * 1000));
    let opts = Options::default().ttl(Some(TTL)).clock(clock.clone());
    let db = Db::open(&store, opts).unwrap();
    db.put("old:table", "expired in a table").unwrap();
    clock.set_ms(now_ms);
    db.put("new:table", "live in a table").unwrap();
    db.flush().unwrap();
    clock.set_ms(now_ms - 2 * 3600 * 1000);
    db.put("old:tail", "expired in the changelog").unwrap();
    clock.set_ms(now_ms);
    db.put("new:tail", "live in the changelog").unwrap();
    db.close().unwrap();
    (dir, store)
}

#[test]
fn ttl_store_values_come_without_their_write_time_and_expired_ones_are_hidden() {
    let (_dir, store) = temp_ttl_store();
    let d = arg(&store);
    assert_eq!(ok(&["get", d, "new:table"]), "live in a table\n");
    assert_eq!(ok(&["get", d, "new:tail"]), "live in the changelog\n");
    for expired in ["old:table", "old:tail"] {
        let run = varve(&["get", d, expired]);
        assert_eq!(run.code, 1, "{expired}: {}", run.stdout);
    }
    assert_eq!(
        ok(&["scan", d]),
        "new:table\tlive in a table\nnew:tail\tlive in the changelog\n"
    );
    assert_eq!(
        ok(&["scan", d, "--reverse", "--limit", "1"]),
        "new:tail\tlive in the changelog\n"
    );
    let json = json_lines(&ok(&["info", d, "--live", "--json"]));
    let live = "new:table".len() + "live in a table".len() + "new:tail".len() + 21;
    assert_eq!(json[0]["amplification"]["live_bytes"], live);
}

#[test]
fn ttl_store_takes_put_delete_load_and_compact_and_stays_a_ttl_store() {
    let (_dir, store) = temp_ttl_store();
    let d = arg(&store);
    ok(&["put", d, "added", "by put"]);
    ok(&["delete", d, "new:table"]);
    let input = store.with_extension("jsonl");
    std::fs::write(&input, "{\"key\":\"loaded\",\"value\":\"by load\"}\n").unwrap();
    ok(&["load", d, arg(&input)]);
    ok(&["compact", d]);
    assert_eq!(
        ok(&["scan", d]),
        "added\tby put\nloaded\tby load\nnew:tail\tlive in the changelog\n"
    );
    let recorded = Options::default().recorded(&store).unwrap();
    assert_eq!(recorded.ttl, Some(TTL), "the store is still a TTL store");
    let err = Db::open(&store, Options::default()).unwrap_err();
    assert!(err.to_string().contains("ttl"), "{err}");
    // A TTL reaching the engine twice would double the write-time prefix.
    let db = Db::open(&store, recorded).unwrap();
    assert_eq!(db.get("added").unwrap().as_deref(), Some(&b"by put"[..]));
}

#[test]
fn compacting_an_lz4_store_keeps_its_tables_lz4() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default().compression(Compression::Lz4);
    let db = Db::open(dir.path(), opts).unwrap();
    for round in 0..3 {
        for i in 0..200 {
            db.put(format!("key:{i:04}"), format!("{round}").repeat(200))
                .unwrap();
        }
        db.flush().unwrap();
    }
    db.close().unwrap();
    let d = arg(dir.path());
    ok(&["compact", d]);
    let tables = common::tables(dir.path());
    assert_eq!(tables.len(), 1, "{tables:?}");
    let dump = json_lines(&ok(&["sst", "dump", "--json", arg(&tables[0])]));
    assert_eq!(dump[0]["compression"], "lz4", "{}", dump[0]);
    assert!(ok(&["sst", "dump", arg(&tables[0])]).contains("compression lz4"));
    assert_eq!(
        ok(&["get", d, "key:0007"]),
        format!("{}\n", "2".repeat(200))
    );
}

#[test]
fn a_partitioned_root_is_read_by_get_and_scan() {
    let (_parent, root) = common::temp_partitioned();
    let r = arg(&root);
    assert_eq!(ok(&["get", r, "key:05"]), "newer, in the changelog\n");
    assert_eq!(ok(&["get", r, "key:17"]), "v17\n");
    assert_eq!(varve(&["get", r, "key:06"]).code, 1);
    let scan = ok(&["scan", r]);
    let keys: Vec<&str> = scan
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    let mut expected: Vec<String> = (0..40)
        .filter(|i| *i != 6)
        .map(|i| format!("key:{i:02}"))
        .collect();
    assert_eq!(keys, expected);
    expected.reverse();
    let rev = ok(&["scan", r, "--reverse", "--limit", "3"]);
    let rev: Vec<&str> = rev.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(rev, expected[..3]);
    let prefixed = ok(&["scan", r, "--prefix", "key:1", "--from", "key:15"]);
    assert_eq!(prefixed.lines().count(), 5, "{prefixed}");
    // Commands that need one store say what to do instead of "no CURRENT".
    for args in [vec!["log", "dump", r], vec!["put", r, "k", "v"]] {
        let run = common::refused(&args, "partitioned store");
        assert!(
            run.stderr.contains("partition-"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn repairing_a_ttl_store_makes_a_ttl_store_with_the_original_write_times() {
    let (dir, store) = temp_ttl_store();
    // One more value, written 50 minutes ago: 10 minutes left to live.
    let now_ms = SystemClock.now_ms();
    let opts = Options::default()
        .recorded(&store)
        .unwrap()
        .clock(Arc::new(ManualClock::new(now_ms - 50 * 60 * 1000)));
    let db = Db::open(&store, opts).unwrap();
    db.put("aging", "ten minutes left").unwrap();
    db.close().unwrap();
    let fixed = dir.path().join("fixed");
    let text = ok(&["repair", arg(&store), "--to", arg(&fixed)]);
    assert!(text.contains("2 expired value(s) not written"), "{text}");
    assert!(text.contains("lost: nothing"), "{text}");
    assert_eq!(
        ok(&["scan", arg(&fixed)]),
        "aging\tten minutes left\nnew:table\tlive in a table\nnew:tail\tlive in the changelog\n"
    );
    let recorded = Options::default().recorded(&fixed).unwrap();
    assert_eq!(recorded.ttl, Some(TTL), "the repaired store is a TTL store");
    let in_15_minutes =
        Options::default().clock(Arc::new(ManualClock::new(now_ms + 15 * 60 * 1000)));
    let ro = varve_db::ReadOnlyDb::open(&fixed, in_15_minutes).unwrap();
    assert_eq!(ro.get("aging").unwrap(), None, "the write time was kept");
    assert!(ro.get("new:table").unwrap().is_some());
}

#[test]
fn a_damaged_newest_table_does_not_stop_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::default()
        .ttl(Some(TTL))
        .compression(Compression::Lz4);
    let db = Db::open(dir.path(), opts).unwrap();
    db.put("k", "v".repeat(100)).unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    let table = common::tables(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&table).unwrap().len();
    common::flip_byte(&table, len - 1);
    let d = arg(dir.path());
    ok(&["put", d, "other", "value"]);
    assert_eq!(ok(&["get", d, "other"]), "value\n");
    assert_eq!(
        Options::default().recorded(dir.path()).unwrap().ttl,
        Some(TTL)
    );
}
