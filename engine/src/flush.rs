//! Flushing immutable memtables to level-0 tables, in a background thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::compaction::stream::{DropRules, Entry, Retention};
use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::key::SeqNo;
use crate::memtable::MemTable;
use crate::shared::Step;
use crate::sst::{TableBuilder, TableOptions};
use crate::state::DbInner;
use crate::stats::Counters;
use crate::version::{FileNumber, Level, TableMeta, VersionEdit, table_file_name};
use varve_changelog::fs::OpenMode;

/// How soon the flush thread looks again at a switch request it could
/// not serve (a write leader held the store).
const SWITCH_RETRY: Duration = Duration::from_millis(10);

impl DbInner {
    /// The flush thread: flushes the oldest immutable memtable whenever
    /// there is one (and serves the write-buffer budget's switch
    /// requests), until the store closes or fails. Each round is one
    /// [`flush_step`](Self::flush_step), as a shared pool runs it.
    pub(crate) fn flush_loop(self: &Arc<Self>) {
        loop {
            {
                let mut g = self.flush.signal.lock();
                while self.super_version().imm.is_empty()
                    && !self.lifecycle.is_closing()
                    && !self.lifecycle.has_failed()
                {
                    if self.switch_requested.load(Ordering::Acquire) {
                        // Served by a step unless a write leader holds the
                        // store; then look again shortly.
                        self.flush.cv.wait_for(&mut g, SWITCH_RETRY);
                        break;
                    }
                    self.flush.cv.wait(&mut g);
                }
            }
            if self.lifecycle.has_failed()
                || (self.lifecycle.is_closing() && self.super_version().imm.is_empty())
            {
                return;
            }
            if self.flush_step() == Step::Stop {
                return;
            }
        }
    }

    /// One step of flushing: serves a switch request of the write-buffer
    /// budget if the write leadership is free, then flushes the oldest
    /// immutable memtable if there is one. A failed flush makes the store
    /// read-only (and the step says stop).
    pub(crate) fn flush_step(self: &Arc<Self>) -> Step {
        if self.lifecycle.has_failed() {
            return Step::Stop;
        }
        self.serve_switch_request();
        if self.super_version().imm.is_empty() {
            return Step::Idle;
        }
        match self.flush_oldest_immutable() {
            Ok(()) => Step::Progress,
            Err(e) => {
                tracing::error!(error = %e, "flush failed");
                self.fail(&e);
                Step::Stop
            }
        }
    }

    /// Flushes the oldest immutable memtable (if any) to an L0 table and
    /// records it, with the new flushed offset, in the manifest.
    pub(crate) fn flush_oldest_immutable(&self) -> Result<()> {
        let _job = self.flush.job.lock();
        let Some(mem) = self.super_version().imm.last().cloned() else {
            return Ok(());
        };
        let Some(max_seqno) = mem.max_seqno() else {
            return Ok(());
        };
        // The changelog must be durable up to what the table covers before
        // the manifest says so; otherwise a crash could leave the log
        // ending below the flushed offset.
        self.log.sync().map_err(Error::from)?;
        // Read now: a snapshot taken later reads at a number above
        // everything in the frozen memtable, so it needs only the newest
        // version of each key, which is always kept.
        let oldest_snapshot = self.oldest_snapshot();
        let number = self.new_output_number();
        let result = self
            .write_table(&mem, number, oldest_snapshot)
            .and_then(|meta| {
                let size_bytes = meta.size_bytes;
                let edit = VersionEdit {
                    flushed_offset: Some(max_seqno.0),
                    last_seqno: Some(max_seqno),
                    added: vec![(Level(0), meta)],
                    ..VersionEdit::default()
                };
                if let Err(e) = self.versions.lock().log_and_apply(edit) {
                    self.fail_on_sync_error(&e);
                    return Err(e);
                }
                Ok(size_bytes)
            });
        self.release_outputs(&[number]);
        let size_bytes = match result {
            Ok(size_bytes) => size_bytes,
            Err(e) => {
                self.fail_on_sync_error(&e);
                // After a failed manifest sync the edit may be durable:
                // keep the table, which the next open removes if unlisted.
                if !self.versions.lock().edits_refused() {
                    self.remove_tables(&[number]);
                }
                return Err(e);
            }
        };
        self.install_current_version(Some(&mem));
        Counters::add(&self.counters.flushes, 1);
        Counters::add(&self.counters.flush_bytes_written, size_bytes);
        let version = self.super_version().version.clone();
        tracing::info!(
            table = %number,
            bytes = size_bytes,
            flushed_offset = max_seqno.0,
            l0_tables = version.tables(Level(0)).len(),
            "flush finished"
        );
        {
            // Wakes writers waiting for room; no new flush is scheduled.
            let _g = self.flush.signal.lock();
            self.flush.cv.notify_all();
        }
        self.after_flush(max_seqno.0);
        Ok(())
    }

    /// A builder for new table `number`, with the store's table options.
    pub(crate) fn create_table(&self, number: FileNumber) -> Result<TableBuilder> {
        let path = self.path.join(table_file_name(number));
        let file = self
            .fs
            .open_file(&path, OpenMode::CreateNew)
            .map_err(|e| Error::io("create table", &path, e))?;
        let opts = TableOptions {
            block_size_bytes: self.opts.block_size_bytes,
            bloom_bits_per_key: self.opts.bloom_bits_per_key,
            compression: self.opts.compression,
            ..TableOptions::default()
        };
        Ok(TableBuilder::new(file, path, opts))
    }

    /// Writes `mem` to new table `number`, through the same drop rules
    /// as compaction (see [`crate::compaction::stream`]), with
    /// `oldest_snapshot` read when the flush started: versions that no
    /// reader at or above it can see are left out. Tombstones are all
    /// kept (older tables may hold their keys) and nothing expires here.
    pub(crate) fn write_table(
        &self,
        mem: &Arc<MemTable>,
        number: FileNumber,
        oldest_snapshot: SeqNo,
    ) -> Result<TableMeta> {
        let mut builder = self.create_table(number)?;
        let rules = Retention {
            oldest_snapshot,
            expiry: None,
            may_exist_below: |_: &[u8]| true,
        };
        let mut iter = mem.iter();
        iter.seek_to_first();
        for entry in DropRules::new(Entries(&mut iter), rules) {
            let entry = entry?;
            builder.add(entry.key(), &entry.value)?;
        }
        let info = builder.finish()?;
        self.fs
            .sync_dir(&self.path)
            .map_err(|e| Error::sync(&self.path, e))?;
        Ok(TableMeta::from_info(number, &info))
    }

    /// Changelog retention after a flush moved `flushed_offset` forward.
    fn after_flush(&self, flushed_offset: u64) {
        use crate::options::ChangelogRetention;
        let result = match self.opts.changelog_retention {
            ChangelogRetention::UntilFlushed | ChangelogRetention::UntilShipped => self
                .log
                .apply_retention_at(varve_changelog::now_ms(), flushed_offset)
                .map(|_| ()),
            ChangelogRetention::Compact { .. } => {
                // The cleaner drops expired tombstones; recovery replays
                // everything at or above the flushed offset, so only clean
                // once every closed segment lies below it.
                let active_base = self.log.segment_base_offsets().last().copied().unwrap_or(0);
                if flushed_offset >= active_base {
                    self.log.clean().map(|_| ())
                } else {
                    Ok(())
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "changelog retention failed");
        }
    }
}

/// The entries of a positioned internal iterator, as the drop rules take
/// them; ends with the iterator's error if it has one.
struct Entries<'a, I: InternalIterator>(&'a mut I);

impl<I: InternalIterator> Iterator for Entries<'_, I> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        if !self.0.valid() {
            return self.0.status().err().map(Err);
        }
        let entry = Entry::new(self.0.key(), self.0.value_bytes());
        self.0.next();
        Some(Ok(entry))
    }
}

#[cfg(test)]
mod tests {
    use crate::Db;
    use crate::version::Level;

    fn open(dir: &std::path::Path) -> Db {
        let opts =
            crate::Options::default().compaction(crate::CompactionOptions::default().auto(false));
        Db::open(dir, opts).unwrap()
    }

    /// `(entries, tombstones)` of each L0 table, newest first.
    fn level0(db: &Db) -> Vec<(u64, u64)> {
        let version = db.inner().super_version().version.clone();
        version
            .tables(Level(0))
            .iter()
            .map(|t| (t.entry_count, t.tombstone_count))
            .collect()
    }

    #[test]
    fn flush_leaves_out_versions_no_reader_can_see() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        for v in ["a", "b", "c"] {
            db.put("k", v).unwrap();
        }
        db.put("other", "x").unwrap();
        db.flush().unwrap();
        assert_eq!(level0(&db), vec![(2, 0)]);
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn flush_keeps_the_versions_a_snapshot_sees() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.put("k", "a").unwrap();
        db.put("k", "seen").unwrap();
        let snap = db.snapshot();
        db.put("k", "b").unwrap();
        db.put("k", "c").unwrap();
        db.flush().unwrap();
        // "c" for new reads, "b" above the snapshot, "seen" by it; "a" goes.
        assert_eq!(level0(&db), vec![(3, 0)]);
        assert_eq!(snap.get("k").unwrap().as_deref(), Some(&b"seen"[..]));
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"c"[..]));
        drop(snap);
        db.put("k", "d").unwrap();
        db.flush().unwrap();
        assert_eq!(level0(&db), vec![(1, 0), (3, 0)]);
    }

    /// A snapshot taken once the memtable is frozen, before its flush
    /// reads the oldest snapshot, reads above every entry of it: it needs
    /// only the newest versions, and a write after it stays invisible.
    #[test]
    fn a_snapshot_taken_after_the_freeze_reads_the_newest_versions() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.put("k", "a").unwrap();
        db.put("k", "b").unwrap();
        let inner = db.inner().clone();
        inner.with_write_leadership(|| inner.switch_memtable());
        let snap = db.snapshot();
        db.put("k", "after").unwrap();
        inner.flush_oldest_immutable().unwrap();
        assert_eq!(level0(&db), vec![(1, 0)]);
        assert_eq!(snap.get("k").unwrap().as_deref(), Some(&b"b"[..]));
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"after"[..]));
    }

    #[test]
    fn flush_keeps_every_tombstone() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        db.put("k", "a").unwrap();
        db.flush().unwrap();
        db.delete("k").unwrap();
        db.put("j", "x").unwrap();
        db.delete("j").unwrap(); // hides a put of the same memtable only
        db.delete("never-written").unwrap();
        db.flush().unwrap();
        assert_eq!(level0(&db), vec![(3, 3), (1, 0)]);
        assert_eq!(db.get("k").unwrap(), None);
        assert_eq!(db.get("j").unwrap(), None);
        db.close().unwrap();
        let db = open(dir.path());
        assert_eq!(db.get("k").unwrap(), None);
        assert_eq!(db.iter().count(), 0);
    }
}
