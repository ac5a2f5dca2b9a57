//! The Varve adapter.
//!
//! Options are Varve's defaults (64 MiB memtable, 4 KiB blocks, 10-bit
//! Bloom filters, no compression, one compaction thread) with the block
//! cache (`cache_size_bytes`) from the run.
//! A write without `sync` is one changelog `write` (in the OS page cache
//! when the call returns); with `sync` it returns after the shared
//! `fdatasync` of its group.

use std::path::Path;

use varve_db::{Db, Options, WriteBatch, WriteOptions};

use super::{
    BatchOp, EngineConfig, KvEngine, Result, count_entries, failed, files_shape, levels_shape,
    visit_all,
};

/// The engine batch of `ops`.
pub(crate) fn write_batch_of(ops: &[BatchOp<'_>]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    for op in ops {
        match *op {
            BatchOp::Put(key, value) => batch.put(key.to_vec(), value.to_vec()),
            BatchOp::Delete(key) => batch.delete(key.to_vec()),
        };
    }
    batch
}

/// A Varve store driven by the runner.
#[derive(Debug)]
pub struct VarveEngine {
    db: Db,
}

impl VarveEngine {
    /// Opens (creating) a store in `dir`.
    ///
    /// # Errors
    /// Varve's open error.
    pub fn open(dir: &Path, config: &EngineConfig) -> Result<VarveEngine> {
        let options = Options::default().cache_size_bytes(config.cache_size_bytes);
        let db = Db::open(dir, options).map_err(failed)?;
        Ok(VarveEngine { db })
    }

    /// The store itself, for workloads that need more than the trait.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

impl KvEngine for VarveEngine {
    fn name(&self) -> &'static str {
        "varve"
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(key.to_vec(), value.to_vec());
        self.db
            .write(batch, WriteOptions::default().sync(sync))
            .map_err(failed)
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get(key).map_err(failed)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete(key.to_vec());
        self.db
            .write(batch, WriteOptions::default().sync(sync))
            .map_err(failed)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], sync: bool) -> Result<()> {
        self.db
            .write(write_batch_of(ops), WriteOptions::default().sync(sync))
            .map_err(failed)
    }

    fn scan(&self, start: &[u8], limit: usize) -> Result<(usize, u64)> {
        count_entries(self.db.range(start..).take(limit))
    }

    fn scan_all(&self, reverse: bool, visit: &mut dyn FnMut(usize)) -> Result<()> {
        visit_all(self.db.iter(), reverse, visit)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(failed)
    }

    fn compact(&self) -> Result<()> {
        self.db.compact_range::<&[u8], _>(..).map_err(failed)
    }

    fn shape(&self) -> Option<String> {
        let Ok(stats) = self.db.stats() else {
            return Some(files_shape(self.db.path()));
        };
        let levels: Vec<String> = stats
            .levels
            .iter()
            .enumerate()
            .filter(|(_, level)| level.tables > 0)
            .map(|(n, level)| {
                let mib = level.size_bytes as f64 / f64::from(1 << 20);
                format!("L{n}: {} tables, {mib:.1} MiB", level.tables)
            })
            .collect();
        Some(levels_shape(levels, "no tables"))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.close().map_err(failed)
    }
}
