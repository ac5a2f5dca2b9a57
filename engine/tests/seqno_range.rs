//! Changelog offsets beyond the engine's sequence-number range (a
//! sequence number is `offset + 1` and at most `SeqNo::MAX`): a valid
//! batch holding one is `Corruption` naming the segment and the batch's
//! byte, at open and on a standby's copy, never a memtable assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use varve_db::internals::key::SeqNo;
use varve_db::internals::version::{VersionEdit, VersionSet, VersionSetOptions};
use varve_db::varve_changelog::fs::StdFs;
use varve_db::varve_changelog::{Log, LogOptions, Record, StoredRecord};
use varve_db::{Db, Error, Options, Standby};

const BEYOND: u64 = 1 << 57;

fn changelog_dir(dir: &Path) -> std::path::PathBuf {
    dir.join(varve_db::CHANGELOG_DIR)
}

/// A closed store holding `k0`..`k2`, then a valid batch at `offset`
/// appended straight to its changelog; returns that batch's segment and
/// byte position.
fn store_with_batch_at(dir: &Path, offset: u64) -> (PathBuf, u64) {
    let db = Db::open(dir, Options::default()).unwrap();
    for i in 0..3 {
        db.put(format!("k{i}"), "v").unwrap();
    }
    db.close().unwrap();
    let log = Log::open(changelog_dir(dir), LogOptions::default()).unwrap();
    let record = StoredRecord {
        offset,
        record: Record::put("far", "away"),
    };
    log.append_at(&[record]).unwrap();
    log.sync().unwrap();
    let location = log.batch_location(offset).unwrap().unwrap();
    log.close().unwrap();
    location
}

fn assert_corruption(err: &Error, path: &Path, offset: u64, words: &str) {
    match err {
        Error::Corruption {
            path: p,
            offset: o,
            what,
        } => {
            assert_eq!((p.as_path(), *o), (path, offset), "{err}");
            assert!(what.contains(words), "{err}");
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn replay_of_a_batch_beyond_the_seqno_range_is_corruption() {
    for offset in [SeqNo::MAX.0, BEYOND, u64::MAX - 1] {
        let dir = tempfile::tempdir().unwrap();
        let (segment, position) = store_with_batch_at(dir.path(), offset);
        let err = Db::open(dir.path(), Options::default()).unwrap_err();
        assert_corruption(&err, &segment, position, "sequence-number range");
    }
}

#[test]
fn the_last_offset_in_range_replays() {
    let dir = tempfile::tempdir().unwrap();
    store_with_batch_at(dir.path(), SeqNo::MAX.0 - 1);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get("far").unwrap().as_deref(), Some(&b"away"[..]));
    assert_eq!(db.get("k1").unwrap().as_deref(), Some(&b"v"[..]));
}

/// A store whose last write took the last sequence number opens, reads,
/// and refuses the next write with a clear error instead of an assertion.
#[test]
fn a_write_past_the_last_sequence_number_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    store_with_batch_at(dir.path(), SeqNo::MAX.0 - 1);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let err = db.put("one", "more").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("sequence numbers"), "{err}");
    assert_eq!(db.get("far").unwrap().as_deref(), Some(&b"away"[..]));
    assert_eq!(db.get("one").unwrap(), None);
}

#[test]
fn a_log_ending_beyond_the_seqno_range_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, _) = store_with_batch_at(dir.path(), BEYOND);
    // The manifest says everything below the log end is flushed, so
    // nothing is replayed: the log's end alone is out of range.
    let mut versions =
        VersionSet::open(Arc::new(StdFs), dir.path(), VersionSetOptions::default()).unwrap();
    versions
        .log_and_apply(VersionEdit {
            flushed_offset: Some(BEYOND + 1),
            ..VersionEdit::default()
        })
        .unwrap();
    drop(versions);
    let err = Db::open(dir.path(), Options::default()).unwrap_err();
    assert_corruption(&err, &segment, 0, "beyond the sequence-number range");
}

#[test]
fn a_standby_copying_a_batch_beyond_the_seqno_range_stops_with_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let primary = Db::open(dir.path().join("p"), Options::default()).unwrap();
    primary.put("a", "1").unwrap();
    let record = StoredRecord {
        offset: BEYOND,
        record: Record::put("far", "away"),
    };
    primary.changelog().append_at(&[record]).unwrap();
    let (segment, position) = primary.changelog().batch_location(BEYOND).unwrap().unwrap();
    let standby = Standby::follow(&primary, dir.path().join("s"), "s", Options::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while standby.error().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let err = standby.error().expect("the standby stops");
    assert_corruption(&err, &segment, position, "sequence-number range");
}
