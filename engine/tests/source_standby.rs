//! `Standby::follow_source` (a standby that follows any `RecordSource`) and
//! `restore_partitioned`, with a local changelog as the source; the Kafka
//! versions of both are in `tests/kafka.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use bytes::Bytes;
use varve_db::varve_changelog::{
    Log, LogOptions, LogSource, Record, RecordSource, SourceBounds, StoredRecord,
};
use varve_db::{CatchUp, Db, Error, Options, PartitionedStore, RestoreOptions, Standby};

fn at(offset: u64, key: &str, value: Option<&str>) -> StoredRecord {
    let record = match value {
        Some(v) => Record::put(key.to_owned(), v.to_owned()),
        None => Record::tombstone(key.to_owned()),
    };
    StoredRecord { offset, record }
}

fn contents(db: &Db) -> BTreeMap<Bytes, Bytes> {
    db.iter().map(|kv| kv.unwrap()).collect()
}

#[test]
fn follows_a_compacted_source_with_gaps_resumes_after_reopen_and_promotes() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Arc::new(Log::open(tmp.path().join("up"), LogOptions::default()).unwrap());
    upstream
        .append_at(&[at(3, "a", Some("1")), at(7, "b", Some("2"))])
        .unwrap();
    let dir = tmp.path().join("standby");
    varve_db::restore(
        &dir,
        &mut LogSource::new(upstream.clone()),
        RestoreOptions::default(),
    )
    .unwrap();

    let standby =
        Standby::follow_source(LogSource::new(upstream.clone()), &dir, Options::default()).unwrap();
    assert_eq!(standby.position(), 8);
    upstream
        .append_at(&[at(10, "a", None), at(12, "c", Some("3"))])
        .unwrap();
    assert!(
        standby
            .wait_for_offset(13, Duration::from_secs(10))
            .unwrap()
    );
    assert_eq!(standby.position(), 13);
    assert_eq!(standby.lag().unwrap(), 0);
    assert!(standby.is_following());
    assert!(standby.error().is_none());
    assert_eq!(standby.get("a").unwrap(), None);
    assert_eq!(standby.get("c").unwrap().as_deref(), Some(&b"3"[..]));
    assert!(matches!(standby.put("x", "y"), Err(Error::Replica)));
    assert_eq!(
        standby.get("x").unwrap(),
        None,
        "the refused write left nothing"
    );
    standby.close().unwrap();

    // Reopened, it resumes from its own changelog's end.
    let db = Db::open(&dir, Options::default()).unwrap();
    assert_eq!(
        db.changelog().next_offset(),
        13,
        "the applied records are durable"
    );
    db.close().unwrap();
    upstream.append_at(&[at(20, "d", Some("4"))]).unwrap();
    let standby =
        Standby::follow_source(LogSource::new(upstream.clone()), &dir, Options::default()).unwrap();
    assert!(
        standby
            .wait_for_offset(21, Duration::from_secs(10))
            .unwrap()
    );
    let expected: BTreeMap<Bytes, Bytes> = [("b", "2"), ("c", "3"), ("d", "4")]
        .into_iter()
        .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
        .collect();
    assert_eq!(contents(&standby), expected);

    let db = standby.promote(CatchUp::None).unwrap();
    db.put("e", "5").unwrap();
    assert_eq!(
        db.changelog().next_offset(),
        22,
        "writes continue the source's offsets"
    );
    db.close().unwrap();
    let db = Db::open(&dir, Options::default()).unwrap();
    assert_eq!(db.get("e").unwrap().as_deref(), Some(&b"5"[..]));
    assert_eq!(db.get("d").unwrap().as_deref(), Some(&b"4"[..]));
}

#[test]
fn a_store_ahead_of_its_source_or_behind_its_start_is_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Arc::new(Log::open(tmp.path().join("up"), LogOptions::default()).unwrap());
    let other = tmp.path().join("other");
    let db = Db::open(&other, Options::default()).unwrap();
    db.put("a", "1").unwrap();
    db.close().unwrap();
    // The store holds offset 0; the source holds nothing.
    let err = Standby::follow_source(LogSource::new(upstream.clone()), &other, Options::default())
        .unwrap_err();
    assert!(matches!(err, Error::Stale { position: 1, .. }), "{err:?}");

    // A new store (position 0) and a source that starts at 5.
    upstream.truncate_fully_and_start_at(5).unwrap();
    upstream.append_at(&[at(5, "k", Some("v"))]).unwrap();
    let err = Standby::follow_source(
        LogSource::new(upstream.clone()),
        tmp.path().join("fresh"),
        Options::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Stale { position: 0, .. }), "{err:?}");
}

/// A source that serves records to one thread only: the follower thread
/// polls and gets nothing, so what a promoted standby holds is what the
/// promotion itself read.
struct OnlyTo<S> {
    inner: S,
    thread: ThreadId,
}

impl<S: RecordSource> RecordSource for OnlyTo<S> {
    type Error = S::Error;

    fn bounds(&mut self) -> Result<SourceBounds, S::Error> {
        self.inner.bounds()
    }

    fn seek(&mut self, offset: u64) -> Result<(), S::Error> {
        self.inner.seek(offset)
    }

    fn poll(&mut self, max_bytes: usize) -> Result<Vec<StoredRecord>, S::Error> {
        if std::thread::current().id() == self.thread {
            self.inner.poll(max_bytes)
        } else {
            Ok(Vec::new())
        }
    }
}

#[test]
fn promotion_catches_up_to_the_source_end_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Arc::new(Log::open(tmp.path().join("up"), LogOptions::default()).unwrap());
    upstream
        .append_at(&[
            at(0, "a", Some("1")),
            at(1, "b", Some("2")),
            at(4, "c", Some("3")),
        ])
        .unwrap();
    for (catch_up, next, c) in [(CatchUp::None, 0, None), (CatchUp::ToEnd, 5, Some("3"))] {
        let source = OnlyTo {
            inner: LogSource::new(upstream.clone()),
            thread: std::thread::current().id(),
        };
        let dir = tmp.path().join(format!("{catch_up:?}"));
        let standby = Standby::follow_source(source, &dir, Options::default()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(standby.position(), 0, "{catch_up:?}");
        assert_eq!(standby.lag().unwrap(), 5, "{catch_up:?}");
        let db = standby.promote(catch_up).unwrap();
        assert_eq!(db.changelog().next_offset(), next, "{catch_up:?}");
        assert_eq!(db.get("c").unwrap().as_deref(), c.map(str::as_bytes));
        db.put("d", "4").unwrap();
        assert_eq!(db.changelog().next_offset(), next + 1, "{catch_up:?}");
    }
}

#[test]
fn a_partitioned_store_is_restored_partition_by_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let live = PartitionedStore::open(tmp.path().join("live"), 3, Options::default()).unwrap();
    for i in 0..3_000u64 {
        let key = format!("key-{}", i % 500);
        if i % 9 == 4 {
            live.delete(key).unwrap();
        } else {
            live.put(key, format!("v{i}")).unwrap();
        }
    }
    let copy_dir = tmp.path().join("copy");

    // Wrong numbers of sources are refused before anything is written.
    let mut none: Vec<LogSource<&Log>> = Vec::new();
    let err =
        varve_db::restore_partitioned(&copy_dir, &mut none, RestoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(!copy_dir.exists());

    let mut sources: Vec<_> = (0..3)
        .map(|p| LogSource::new(live.partition(p).changelog()))
        .collect();
    let reports =
        varve_db::restore_partitioned(&copy_dir, &mut sources, RestoreOptions::default()).unwrap();
    assert_eq!(reports.iter().map(|r| r.records).sum::<u64>(), 3_000);

    // Another count for the same directory is refused, and so is a
    // second restore into finished partitions.
    let mut two: Vec<_> = (0..2)
        .map(|p| LogSource::new(live.partition(p).changelog()))
        .collect();
    let err =
        varve_db::restore_partitioned(&copy_dir, &mut two, RestoreOptions::default()).unwrap_err();
    assert!(matches!(err, Error::IncompatibleOptions { .. }), "{err:?}");
    let err = varve_db::restore_partitioned(&copy_dir, &mut sources, RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

    let copy = PartitionedStore::open(&copy_dir, 3, Options::default()).unwrap();
    // A restore into an open store is refused.
    let err = varve_db::restore_partitioned(&copy_dir, &mut sources, RestoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    let got: Vec<_> = copy.iter().map(|kv| kv.unwrap()).collect();
    let want: Vec<_> = live.iter().map(|kv| kv.unwrap()).collect();
    assert_eq!(got, want);
    assert!(!got.is_empty());
}
