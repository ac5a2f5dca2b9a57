//! The sled adapter (feature `sled`).
//!
//! Settings (see `benches/README.md`): the page cache is the run's
//! `--cache-size`; everything else is sled's default, including its
//! background flush every 500 ms, which is how sled hands unsynced writes
//! to the OS (it has no per-write `write` to the page cache). A `sync`
//! write is followed by `Db::flush`, sled's `fsync`. sled has no manual
//! compaction: the `compact` workload reports it as not supported.

use std::path::Path;

use super::{
    BatchOp, EngineConfig, EngineError, KvEngine, Result, count_entries, failed, files_shape,
    visit_all,
};

/// A sled database driven by the runner.
pub struct SledEngine {
    db: sled::Db,
    dir: std::path::PathBuf,
}

impl SledEngine {
    /// Opens (creating) a database in `dir`.
    ///
    /// # Errors
    /// sled's open error.
    pub fn open(dir: &Path, config: &EngineConfig) -> Result<SledEngine> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_size_bytes as u64)
            .open()
            .map_err(failed)?;
        Ok(SledEngine {
            db,
            dir: dir.to_path_buf(),
        })
    }

    fn sync_if(&self, sync: bool) -> Result<()> {
        if sync {
            self.db.flush().map_err(failed)?;
        }
        Ok(())
    }
}

impl KvEngine for SledEngine {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        self.db.insert(key, value).map_err(failed)?;
        self.sync_if(sync)
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get(key).map_err(failed)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], sync: bool) -> Result<()> {
        self.db.remove(key).map_err(failed)?;
        self.sync_if(sync)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], sync: bool) -> Result<()> {
        let mut batch = sled::Batch::default();
        for op in ops {
            match *op {
                BatchOp::Put(key, value) => batch.insert(key, value),
                BatchOp::Delete(key) => batch.remove(key),
            }
        }
        self.db.apply_batch(batch).map_err(failed)?;
        self.sync_if(sync)
    }

    fn scan(&self, start: &[u8], limit: usize) -> Result<(usize, u64)> {
        count_entries(self.db.range(start..).take(limit))
    }

    fn scan_all(&self, reverse: bool, visit: &mut dyn FnMut(usize)) -> Result<()> {
        visit_all(self.db.iter(), reverse, visit)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map(drop).map_err(failed)
    }

    fn compact(&self) -> Result<()> {
        Err(EngineError::Unsupported(
            "sled has no manual compaction".to_owned(),
        ))
    }

    fn shape(&self) -> Option<String> {
        Some(files_shape(&self.dir))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.flush().map(drop).map_err(failed)
    }
}
