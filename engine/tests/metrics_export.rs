//! The store's metrics reach an exporter through the `metrics` facade:
//! a recorder installed around the open sees every counter and latency
//! under Samza's names, labelled with the store, and matching
//! `Db::metrics()`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use varve_db::{Db, Options, WriteBatch, WriteOptions};

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A recorder that keeps every counter and histogram by name and labels.
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
    described: Mutex<Vec<(String, Option<Unit>)>>,
}

fn id(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    fn counter(&self, name: &str) -> u64 {
        let counters = self.counters.lock().unwrap();
        let found: Vec<_> = counters
            .iter()
            .filter(|(k, _)| k.starts_with(name))
            .collect();
        assert_eq!(found.len(), 1, "{name}: {:?}", counters.keys());
        found[0].1.load(Ordering::Relaxed)
    }

    fn samples(&self, name: &str) -> Vec<f64> {
        let histograms = self.histograms.lock().unwrap();
        let found: Vec<_> = histograms
            .iter()
            .filter(|(k, _)| k.starts_with(name))
            .collect();
        assert_eq!(found.len(), 1, "{name}: {:?}", histograms.keys());
        found[0].1.0.lock().unwrap().clone()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.described
            .lock()
            .unwrap()
            .push((key.as_str().to_owned(), unit));
    }
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.described
            .lock()
            .unwrap()
            .push((key.as_str().to_owned(), unit));
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let c = self
            .counters
            .lock()
            .unwrap()
            .entry(id(key))
            .or_default()
            .clone();
        Counter::from_arc(c)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let h = self
            .histograms
            .lock()
            .unwrap()
            .entry(id(key))
            .or_default()
            .clone();
        Histogram::from_arc(h)
    }
}

#[test]
fn every_operation_reaches_the_recorder_labelled_with_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders");
    let recorder = TestRecorder::default();
    let db =
        metrics::with_local_recorder(&recorder, || Db::open(&path, Options::default())).unwrap();
    db.put("k1", "value-1").unwrap();
    db.put("k2", "v2").unwrap();
    db.delete("k2").unwrap();
    let mut batch = WriteBatch::new();
    batch.put("k3", "abc").put("k4", "defg");
    db.write(batch, WriteOptions::default().sync(true)).unwrap();
    assert_eq!(db.get("k1").unwrap().as_deref(), Some(&b"value-1"[..]));
    assert_eq!(db.get("missing").unwrap(), None);
    assert_eq!(db.iter().count(), 3);

    let m = db.metrics();
    let store = format!("store={}", path.display());
    let name = |n: &str| format!("varve.store.{n}{{{store}}}");
    assert_eq!(recorder.counter(&name("gets")), 2);
    assert_eq!(recorder.counter(&name("puts")), 2);
    assert_eq!(recorder.counter(&name("deletes")), 1);
    assert_eq!(recorder.counter(&name("writes")), 1);
    assert_eq!(recorder.counter(&name("ranges")), 1);
    assert_eq!(recorder.counter(&name("range-entries-read")), 3);
    assert_eq!(recorder.counter(&name("bytes-read")), m.read_bytes);
    assert_eq!(recorder.counter(&name("bytes-written")), m.written_bytes);
    assert!(m.written_bytes > 0);
    for (op, summary) in [("get", m.gets), ("put", m.puts), ("delete", m.deletes)] {
        let samples = recorder.samples(&name(&format!("{op}-ns")));
        assert_eq!(samples.len() as u64, summary.count, "{op}");
        assert!(samples.iter().all(|&ns| ns > 0.0), "{op}: {samples:?}");
    }
    db.close().unwrap();
}

#[test]
fn two_stores_are_told_apart_and_a_store_opened_without_a_recorder_exports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = TestRecorder::default();
    let a = metrics::with_local_recorder(&recorder, || {
        Db::open(dir.path().join("a"), Options::default())
    })
    .unwrap();
    let b = metrics::with_local_recorder(&recorder, || {
        Db::open(dir.path().join("b"), Options::default())
    })
    .unwrap();
    let unrecorded = Db::open(dir.path().join("c"), Options::default()).unwrap();
    a.put("k", "v").unwrap();
    b.put("k", "v").unwrap();
    b.put("k", "w").unwrap();
    unrecorded.put("k", "v").unwrap();
    let puts = |store: &str| {
        recorder.counter(&format!(
            "varve.store.puts{{store={}}}",
            dir.path().join(store).display()
        ))
    };
    assert_eq!((puts("a"), puts("b")), (1, 2));
    let names = recorder.counters.lock().unwrap().len();
    assert_eq!(names % 2, 0, "both stores register the same set");
    assert_eq!(
        unrecorded.metrics().puts.count,
        1,
        "the in-process view still counts"
    );
}

#[test]
fn describe_names_every_metric_with_its_unit() {
    let recorder = TestRecorder::default();
    varve_db::describe_metrics(&recorder);
    let described = recorder.described.lock().unwrap();
    assert!(described.contains(&("varve.store.gets".into(), Some(Unit::Count))));
    assert!(described.contains(&("varve.store.bytes-written".into(), Some(Unit::Bytes))));
    assert!(described.contains(&("varve.store.get-ns".into(), Some(Unit::Nanoseconds))));
    assert_eq!(described.len(), 14);
}
