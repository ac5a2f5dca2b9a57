//! The bulk-load path of a restore: source records are gathered in a
//! [`SortedRun`] up to the memtable budget, and each full run is sorted,
//! written straight to a level-0 table and installed with its flushed
//! offset, with no changelog writes. The store's changelog stays empty and is moved to
//! start at each new flushed offset, so a crash at any point leaves a store
//! that a resumed restore can continue from its flushed offset.

use varve_changelog::StoredRecord;

use super::run::SortedRun;
use crate::error::{Error, Result};
use crate::key::SeqNo;
use crate::state::DbInner;
use crate::version::{Level, VersionEdit};

/// Loads records into a store being restored.
pub(crate) struct BulkLoader<'a> {
    inner: &'a DbInner,
    run: SortedRun,
    memtable_size_bytes: usize,
    /// The next offset to apply: every source record below it is in the
    /// run or in tables.
    position: u64,
}

/// What one [`BulkLoader::apply`] did.
pub(crate) struct Applied {
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

impl<'a> BulkLoader<'a> {
    pub(crate) fn new(inner: &'a DbInner, memtable_size_bytes: usize, position: u64) -> Self {
        BulkLoader {
            run: SortedRun::new(),
            inner,
            memtable_size_bytes,
            position,
        }
    }

    /// The next offset to apply.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// Applies the records below `end` (records at or past it arrived after
    /// the restore took its end, and are left out); writes the memtable to
    /// a table whenever it is full.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the source delivers offsets that do not
    /// increase or exceed the largest sequence number; table and manifest
    /// errors.
    pub(crate) fn apply(&mut self, records: Vec<StoredRecord>, end: u64) -> Result<Applied> {
        let mut applied = Applied {
            records: 0,
            bytes: 0,
        };
        for stored in records {
            if stored.offset >= end {
                self.position = end;
                break;
            }
            if stored.offset < self.position || stored.offset >= SeqNo::MAX.0 {
                return Err(Error::InvalidArgument(format!(
                    "the source delivered offset {} where offsets from {} up (and below {}) were expected",
                    stored.offset,
                    self.position,
                    SeqNo::MAX.0
                )));
            }
            self.position = stored.offset + 1;
            applied.records += 1;
            let value_len = stored.record.value.as_ref().map_or(0, |v| v.len());
            applied.bytes += (stored.record.key.len() + value_len) as u64;
            self.run.push(stored);
            if self.run.size_bytes() >= self.memtable_size_bytes || self.run.is_full() {
                self.flush()?;
            }
        }
        Ok(applied)
    }

    /// Writes the run (if it holds anything) to a level-0 table and
    /// installs it with the flushed offset [`position`](Self::position);
    /// then moves the empty changelog to start there.
    ///
    /// # Errors
    /// Table, manifest and changelog errors.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.flush_to(self.position)
    }

    /// Like [`flush`](Self::flush), declaring everything below `end`
    /// applied (the source holds no more records below it).
    ///
    /// # Errors
    /// As [`flush`](Self::flush).
    pub(crate) fn finish(&mut self, end: u64) -> Result<()> {
        self.position = self.position.max(end);
        self.flush_to(self.position)
    }

    fn flush_to(&mut self, flushed_offset: u64) -> Result<()> {
        let inner = self.inner;
        let version = inner.versions.lock().current();
        if self.run.is_empty() && version.flushed_offset() == flushed_offset {
            return self.move_changelog(flushed_offset);
        }
        let mut edit = VersionEdit {
            flushed_offset: Some(flushed_offset),
            last_seqno: Some(SeqNo(flushed_offset).max(version.last_seqno())),
            ..VersionEdit::default()
        };
        let mut number = None;
        if !self.run.is_empty() {
            let n = inner.new_output_number();
            number = Some(n);
            match self.run.write_table(inner, n, inner.opts.value_format()) {
                Ok(meta) => edit.added.push((Level(0), meta)),
                Err(e) => {
                    inner.release_outputs(&[n]);
                    inner.remove_tables(&[n]);
                    return Err(e);
                }
            }
        }
        let result = inner.versions.lock().log_and_apply(edit);
        if let Some(n) = number {
            inner.release_outputs(&[n]);
            if result.is_err() {
                inner.remove_tables(&[n]);
            }
        }
        result?;
        inner.install_current_version(None);
        tracing::debug!(flushed_offset, "restore: run written");
        self.move_changelog(flushed_offset)
    }

    /// Restarts the (empty) changelog at `offset`, where the next write or
    /// restored record goes.
    fn move_changelog(&self, offset: u64) -> Result<()> {
        let log = &self.inner.log;
        if log.next_offset() < offset || log.log_start_offset() < offset {
            log.truncate_fully_and_start_at(offset)?;
        }
        Ok(())
    }
}
