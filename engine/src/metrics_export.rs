//! The store's metrics through the [`metrics`] crate facade, so that any
//! exporter (Prometheus, StatsD, …) installed by the application sees them.
//!
//! Names follow Samza's key-value store metrics, prefixed `varve.store.`:
//! counters `gets`, `puts`, `deletes`, `writes` (batches), `ranges`,
//! `range-entries-read`, `bytes-read`, `bytes-written` and
//! `expired-entries-compacted`, and latency histograms in nanoseconds
//! `get-ns`, `put-ns`, `delete-ns`, `write-ns` and `range-ns`. Every one
//! carries the label `store` (the store's directory as opened).
//!
//! The handles are registered when the store opens, with the recorder
//! installed then (the global one, or a local one around the open); a
//! store opened before any recorder is installed exports nothing. With no
//! recorder the handles do nothing and cost a branch.

use std::path::Path;

use metrics::{Counter, Histogram, Label, Level, Metadata, Recorder};

/// The prefix of every exported name.
pub(crate) const PREFIX: &str = "varve.store.";

/// The facade handles of one kind of timed operation.
#[derive(Clone, Debug)]
pub(crate) struct TimedExport {
    count: Counter,
    ns: Histogram,
}

impl Default for TimedExport {
    /// Handles that export nothing.
    fn default() -> Self {
        TimedExport {
            count: Counter::noop(),
            ns: Histogram::noop(),
        }
    }
}

impl TimedExport {
    /// Counts one operation that took `ns` nanoseconds.
    pub(crate) fn record(&self, ns: u64) {
        self.count.increment(1);
        self.ns.record(ns as f64);
    }
}

/// Registers the handles of a store's exported metrics.
pub(crate) struct Exporter {
    labels: Vec<Label>,
}

impl Exporter {
    /// An exporter for the store in `path`.
    pub(crate) fn new(path: &Path) -> Exporter {
        Exporter {
            labels: vec![Label::new("store", path.display().to_string())],
        }
    }

    /// The counter `name` (without the prefix).
    pub(crate) fn counter(&self, name: &str) -> Counter {
        metrics::with_recorder(|recorder| {
            let key = self.key(name);
            recorder.register_counter(&key, &metadata())
        })
    }

    /// The counter `name` and the histogram `name-ns`, for operation `name`
    /// (singular, e.g. `get`: the counter is `gets`).
    pub(crate) fn timed(&self, op: &str) -> TimedExport {
        metrics::with_recorder(|recorder| TimedExport {
            count: recorder.register_counter(&self.key(&format!("{op}s")), &metadata()),
            ns: recorder.register_histogram(&self.key(&format!("{op}-ns")), &metadata()),
        })
    }

    fn key(&self, name: &str) -> metrics::Key {
        metrics::Key::from_parts(format!("{PREFIX}{name}"), self.labels.clone())
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()))
}

/// Describes every exported metric to `recorder` (units and help texts),
/// for exporters that publish descriptions.
///
/// # Examples
/// ```
/// // An exporter's recorder; here the facade's no-op one.
/// varve_db::describe_metrics(&metrics::NoopRecorder);
/// ```
pub fn describe(recorder: &dyn Recorder) {
    use metrics::{KeyName, SharedString, Unit};
    let counters = [
        ("gets", "point lookups (get, each key of get_all, contains)"),
        ("puts", "single puts"),
        ("deletes", "single deletes"),
        ("writes", "write batches"),
        ("ranges", "iterators created (range, prefix, iter)"),
        ("range-entries-read", "entries returned by iterators"),
        ("bytes-read", "value bytes returned to readers"),
        ("bytes-written", "key and value bytes written"),
        (
            "expired-entries-compacted",
            "expired puts compactions removed",
        ),
    ];
    for (name, help) in counters {
        let unit = name
            .starts_with("bytes")
            .then_some(Unit::Bytes)
            .or(Some(Unit::Count));
        recorder.describe_counter(
            KeyName::from(format!("{PREFIX}{name}")),
            unit,
            SharedString::from(help),
        );
    }
    for op in ["get", "put", "delete", "write", "range"] {
        recorder.describe_histogram(
            KeyName::from(format!("{PREFIX}{op}-ns")),
            Some(Unit::Nanoseconds),
            SharedString::from(format!("latency of one {op}")),
        );
    }
}
