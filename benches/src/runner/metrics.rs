//! What the runner measures besides time: latency histograms, bytes the
//! process wrote to disk (`/proc/self/io`), peak memory (`VmHWM` in
//! `/proc/self/status`, reset per workload through `/proc/self/clear_refs`)
//! and the on-disk size of a directory.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use hdrhistogram::Histogram;

/// A latency histogram in nanoseconds (3 significant digits).
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        // 1 ns .. 1 hour at 3 significant digits: cannot fail.
        let hist = Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
            .unwrap_or_else(|_| unreachable!("fixed, valid histogram bounds"));
        Latency { hist }
    }

    /// Records one operation of `nanos` nanoseconds (clamped into range).
    pub fn record_ns(&mut self, nanos: u64) {
        self.hist.saturating_record(nanos.max(1));
    }

    /// Adds another histogram's samples (from another thread).
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The latency at quantile `q` (0..=1) in microseconds, `None` if
    /// nothing was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// The write counters of this process (`/proc/self/io`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// `wchar`: bytes handed to `write`-family system calls (what the
    /// engine asked the OS to write: log, tables, manifest, compaction
    /// output; also the runner's few bytes of output).
    pub written_bytes: u64,
    /// `write_bytes`: bytes the kernel accounts as sent to the storage
    /// layer. It is charged when a page-cache folio turns dirty, a whole
    /// folio at a time, so with large folios a small synced write that
    /// re-dirties a clean folio is charged the folio's full size.
    pub storage_bytes: u64,
}

impl IoCounters {
    /// The counters now, or `None` where the kernel does not report them.
    pub fn now() -> Option<IoCounters> {
        let text = std::fs::read_to_string("/proc/self/io").ok()?;
        Some(IoCounters {
            written_bytes: field(&text, "wchar:")?,
            storage_bytes: field(&text, "write_bytes:")?,
        })
    }

    /// The growth of each counter since `earlier`.
    pub fn since(self, earlier: IoCounters) -> IoCounters {
        IoCounters {
            written_bytes: self.written_bytes.saturating_sub(earlier.written_bytes),
            storage_bytes: self.storage_bytes.saturating_sub(earlier.storage_bytes),
        }
    }
}

/// The process's peak resident set (`VmHWM`) in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_field("/proc/self/status", "VmHWM:").map(|kib| kib * 1024)
}

/// Resets the peak resident set to the current one (writes `5` to
/// `/proc/self/clear_refs`); false if the kernel refused, in which case
/// [`peak_rss_bytes`] is the peak of the whole process so far.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The first number after `label` in the text file at `path`.
fn proc_field(path: &str, label: &str) -> Option<u64> {
    field(&std::fs::read_to_string(path).ok()?, label)
}

/// The first number after the line that starts with `label` in `text`.
fn field(text: &str, label: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Bytes allocated on disk to the files under `dir` (block counts, so
/// sparse or preallocated files count what they really take). Files that
/// vanish during the walk are skipped.
pub fn disk_usage_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    crate::engines::for_each_file(dir, &mut |_, meta| total += meta.blocks() * 512);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_samples() {
        let mut lat = Latency::new();
        assert_eq!(lat.quantile_us(0.5), None);
        for ns in 1..=1000u64 {
            lat.record_ns(ns * 1000);
        }
        let p50 = lat.quantile_us(0.5).unwrap();
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        let mut other = Latency::new();
        other.record_ns(5);
        lat.merge(&other);
        assert_eq!(lat.count(), 1001);
    }

    #[test]
    fn proc_figures_are_readable_on_linux() {
        if Path::new("/proc/self/status").exists() {
            assert!(peak_rss_bytes().unwrap() > 0);
        }
        if let Some(before) = IoCounters::now() {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("f"), vec![1u8; 100_000]).unwrap();
            let delta = IoCounters::now().unwrap().since(before);
            assert!(delta.written_bytes >= 100_000, "{delta:?}");
        }
    }

    #[test]
    fn disk_usage_counts_written_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![7u8; 10_000]).unwrap();
        assert!(disk_usage_bytes(dir.path()) >= 10_000);
    }
}
