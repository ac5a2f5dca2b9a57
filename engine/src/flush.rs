//! Flushing immutable memtables to level-0 tables, in a background thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::iter::InternalIterator;
use crate::memtable::MemTable;
use crate::sst::{TableBuilder, TableOptions};
use crate::state::{DbInner, SuperVersion};
use crate::version::{Level, TableMeta, VersionEdit, table_file_name};
use varve_changelog::fs::OpenMode;

impl DbInner {
    /// The flush thread: flushes the oldest immutable memtable whenever
    /// there is one, until the store closes or fails.
    pub(crate) fn flush_loop(self: &Arc<Self>) {
        loop {
            {
                let mut g = self.flush_mutex.lock();
                while self.super_version().imm.is_empty()
                    && !self.closing.load(Ordering::Acquire)
                    && !self.failed.load(Ordering::Acquire)
                {
                    self.flush_cv.wait(&mut g);
                }
            }
            if self.failed.load(Ordering::Acquire)
                || (self.closing.load(Ordering::Acquire) && self.super_version().imm.is_empty())
            {
                return;
            }
            if let Err(e) = self.flush_oldest_immutable() {
                tracing::error!(error = %e, "flush failed");
                self.fail(&e);
                return;
            }
        }
    }

    /// Flushes the oldest immutable memtable (if any) to an L0 table and
    /// records it, with the new flushed offset, in the manifest.
    pub(crate) fn flush_oldest_immutable(&self) -> Result<()> {
        let _job = self.flush_job.lock();
        let Some(mem) = self.super_version().imm.last().cloned() else {
            return Ok(());
        };
        let Some(max_seqno) = mem.max_seqno() else {
            return Ok(());
        };
        // The changelog must be durable up to what the table covers before
        // the manifest says so; otherwise a crash could leave the log
        // ending below the flushed offset.
        self.log.flush().map_err(Error::from)?;
        let number = self.versions.lock().new_file_number();
        let meta = self.write_table(&mem, number)?;
        let edit = VersionEdit {
            flushed_offset: Some(max_seqno.0),
            last_seqno: Some(max_seqno),
            added: vec![(Level(0), meta)],
            ..VersionEdit::default()
        };
        let version = self.versions.lock().log_and_apply(edit)?;
        {
            let mut current = self.current.write();
            let imm: Vec<Arc<MemTable>> = current
                .imm
                .iter()
                .filter(|m| !Arc::ptr_eq(m, &mem))
                .cloned()
                .collect();
            *current = Arc::new(SuperVersion {
                mem: current.mem.clone(),
                imm,
                version,
            });
        }
        {
            let _g = self.flush_mutex.lock();
            self.flush_cv.notify_all();
        }
        self.after_flush(max_seqno.0);
        Ok(())
    }

    fn write_table(
        &self,
        mem: &Arc<MemTable>,
        number: crate::version::FileNumber,
    ) -> Result<TableMeta> {
        let path = self.path.join(table_file_name(number));
        let file = self
            .fs
            .open_file(&path, OpenMode::CreateNew)
            .map_err(|e| Error::io("create table", &path, e))?;
        let opts = TableOptions {
            block_size_bytes: self.opts.block_size_bytes,
            bloom_bits_per_key: self.opts.bloom_bits_per_key,
            ..TableOptions::default()
        };
        let mut builder = TableBuilder::new(file, path.clone(), opts);
        let mut iter = mem.iter();
        iter.seek_to_first();
        while iter.valid() {
            builder.add(iter.key(), iter.value())?;
            iter.next();
        }
        iter.status()?;
        let info = builder.finish()?;
        self.fs
            .sync_dir(&self.path)
            .map_err(|e| Error::io("sync directory", &self.path, e))?;
        let p = &info.properties;
        Ok(TableMeta {
            number,
            size_bytes: info.file_size_bytes,
            smallest: p.smallest_key.clone(),
            largest: p.largest_key.clone(),
            min_seqno: p.seqno_min,
            max_seqno: p.seqno_max,
            entry_count: p.entry_count,
            tombstone_count: p.tombstone_count,
        })
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
