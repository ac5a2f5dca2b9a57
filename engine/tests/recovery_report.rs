//! What changelog recovery cut at open is visible through the `Db`
//! (issue 15, item 3): `Db::changelog_recovery_report()` and a `tracing`
//! warning.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use varve_db::varve_changelog::fs::{FileSystem, MemFs};
use varve_db::{Db, Options, WriteBatch, WriteOptions};

const SEGMENT: &str = "/db/changelog/00000000000000000000.log";

/// A closed store holding one synced write, with `garbage` appended to its
/// only segment (a torn, never acknowledged batch).
fn store_with_torn_tail(fs: &MemFs, garbage: usize) -> u64 {
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = Db::open("/db", Options::default().fs(dynfs)).unwrap();
    let mut batch = WriteBatch::new();
    batch.put("k", "v");
    db.write(batch, WriteOptions::default().sync(true)).unwrap();
    db.close().unwrap();
    let mut bytes = fs.read_all(Path::new(SEGMENT)).unwrap();
    let len = bytes.len() as u64;
    bytes.extend(std::iter::repeat_n(0xAB, garbage));
    fs.write_all(Path::new(SEGMENT), &bytes).unwrap();
    len
}

#[test]
fn a_clean_open_reports_no_cut() {
    let fs = MemFs::new();
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let db = Db::open("/db", Options::default().fs(dynfs.clone())).unwrap();
    assert!(db.changelog_recovery_report().created);
    db.put("k", "v").unwrap();
    db.close().unwrap();
    let db = Db::open("/db", Options::default().fs(dynfs)).unwrap();
    let report = db.changelog_recovery_report();
    assert!(!report.created);
    assert_eq!(report.truncated_at, None);
    assert_eq!(report.next_offset, 1);
}

#[test]
fn a_cut_torn_tail_is_reported_and_logged() {
    let fs = MemFs::new();
    let cut_at = store_with_torn_tail(&fs, 30);
    let dynfs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let subscriber = WarningCollector(warnings.clone());
    let db = tracing::subscriber::with_default(subscriber, || {
        Db::open("/db", Options::default().fs(dynfs)).unwrap()
    });
    let report = db.changelog_recovery_report().clone();
    assert_eq!(
        report.truncated_at,
        Some((Path::new(SEGMENT).to_path_buf(), cut_at))
    );
    assert_eq!(report.truncated_bytes, 30);
    assert!(report.truncation_reason.is_some());
    assert_eq!(report.next_offset, 1);
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    let warnings = warnings.lock();
    let cut = warnings
        .iter()
        .find(|w| w.contains("changelog recovery cut the log"))
        .unwrap_or_else(|| panic!("no warning about the cut in {warnings:?}"));
    assert!(
        cut.contains(SEGMENT) && cut.contains(&format!("byte={cut_at}")),
        "{cut}"
    );
    assert!(cut.contains("truncated_bytes=30"), "{cut}");
}

/// A minimal `tracing` subscriber that keeps every warning's fields as
/// text (the workspace has no subscriber crate).
struct WarningCollector(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}

impl tracing::Subscriber for WarningCollector {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().push(fields.0);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
