//! Per-store metrics count the operations done, and the bytes read and
//! written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use varve_db::{Db, Options, WriteBatch, WriteOptions};

#[test]
fn counts_match_the_operations_done() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for i in 0..10 {
        db.put(format!("k{i}"), "0123456789").unwrap(); // 2 + 10 bytes
    }
    db.delete("k9").unwrap(); // 2 bytes
    let mut batch = WriteBatch::new();
    batch.put("b1", "x").put("b2", "y"); // 2 * 3 bytes
    db.write(batch, WriteOptions::default()).unwrap();
    db.write(WriteBatch::new(), WriteOptions::default())
        .unwrap();

    for i in 0..5 {
        assert!(db.get(format!("k{i}")).unwrap().is_some());
    }
    assert!(db.get("missing").unwrap().is_none());
    db.get_all(&["k1", "k2", "nope"]).unwrap();
    let scanned = db.prefix("k").count();
    assert_eq!(scanned, 9);
    let _unused = db.range("a".."c");
    assert_eq!(db.iter().rev().count(), 11);

    let m = db.metrics();
    assert_eq!(m.puts.count, 10);
    assert_eq!(m.deletes.count, 1);
    assert_eq!(m.writes.count, 2);
    assert_eq!(m.gets.count, 6 + 3);
    assert_eq!(m.ranges.count, 3);
    assert_eq!(m.range_entries_read, 9 + 11);
    assert_eq!(m.written_bytes, 10 * 12 + 2 + 6);
    // 7 gets found 10 bytes; prefix read 9 values, all() 11 values.
    assert_eq!(m.read_bytes, 7 * 10 + (9 * 10) + (9 * 10 + 2));
    for h in [m.gets, m.puts, m.deletes, m.writes, m.ranges] {
        assert!(h.max_ns >= h.p99_ns && h.p99_ns >= h.p50_ns, "{h:?}");
        assert!(h.max_ns > 0);
    }
    let text = m.to_string();
    assert!(text.contains("puts:    count 10"), "{text}");
}

#[test]
fn stats_and_reopen_do_not_count_as_user_operations() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    db.put("k", "v").unwrap();
    db.stats().unwrap();
    assert_eq!(db.metrics().ranges.count, 0);
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.metrics(), varve_db::Metrics::default());
}
