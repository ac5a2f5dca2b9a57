//! The Varve adapter over a [`PartitionedStore`]: `--partitions N` stores
//! on one shared memory and thread budget ([`SharedResources`]).
//!
//! Options are Varve's defaults as in the `varve` adapter; the block
//! cache (`cache_size_bytes`) and the write-buffer budget
//! (`write_buffer_size_bytes`, default one store's: 192 MiB) are shared
//! by all partitions, which are flushed and compacted by 2 + 2 pool
//! threads. Keys are routed by Kafka's default partitioner; a scan merges
//! the partitions.

use std::path::Path;
use std::sync::Arc;

use varve_db::{
    Options, PartitionedStore, SharedOptions, SharedResources, WriteBatch, WriteOptions,
};

use super::{BatchOp, EngineConfig, KvEngine, Result, failed, files_shape};

/// A partitioned Varve store driven by the runner.
#[derive(Debug)]
pub struct VarvePartitionedEngine {
    store: PartitionedStore,
}

impl VarvePartitionedEngine {
    /// Opens (creating) a store of `partitions` partitions in `dir`.
    ///
    /// # Errors
    /// Varve's open error.
    pub fn open(
        dir: &Path,
        partitions: u32,
        config: &EngineConfig,
    ) -> Result<VarvePartitionedEngine> {
        let options = Options::default();
        let mut shared = SharedOptions::like_one_store(&options)
            .cache_size_bytes(config.cache_size_bytes)
            .flush_threads(2)
            .compaction_threads(2);
        if let Some(bytes) = config.write_buffer_size_bytes {
            shared = shared.write_buffer_size_bytes(bytes);
        }
        let shared: Arc<SharedResources> = SharedResources::new(shared).map_err(failed)?;
        let store = PartitionedStore::open(dir, partitions, options.shared_resources(shared))
            .map_err(failed)?;
        Ok(VarvePartitionedEngine { store })
    }

    /// What the run shares: partitions, budget, threads.
    pub fn describe(&self) -> String {
        let shared = self.store.shared_resources();
        format!(
            "{} partitions, {} MiB write buffer, {} MiB cache, {} pool threads",
            self.store.num_partitions(),
            shared.options().write_buffer_size_bytes >> 20,
            shared.options().cache_size_bytes >> 20,
            shared.thread_count()
        )
    }
}

impl VarvePartitionedEngine {
    /// Writes a one-key `batch` straight to `key`'s partition (what
    /// `PartitionedStore::write` does, without splitting a batch that
    /// needs no split).
    fn write_one(&self, key: &[u8], batch: WriteBatch, sync: bool) -> Result<()> {
        let partition = self.store.partition(self.store.partition_for(key));
        partition
            .write(batch, WriteOptions::default().sync(sync))
            .map_err(failed)
    }
}

impl KvEngine for VarvePartitionedEngine {
    fn name(&self) -> &'static str {
        "varve"
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(key.to_vec(), value.to_vec());
        self.write_one(key, batch, sync)
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.store.get(key).map_err(failed)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete(key.to_vec());
        self.write_one(key, batch, sync)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], sync: bool) -> Result<()> {
        self.store
            .write(
                super::varve::write_batch_of(ops),
                WriteOptions::default().sync(sync),
            )
            .map_err(failed)
    }

    fn scan(&self, start: &[u8], limit: usize) -> Result<(usize, u64)> {
        let (mut entries, mut bytes) = (0, 0);
        for kv in self.store.range(start..).take(limit) {
            let (key, value) = kv.map_err(failed)?;
            entries += 1;
            bytes += (key.len() + value.len()) as u64;
        }
        Ok((entries, bytes))
    }

    fn scan_all(&self, reverse: bool, visit: &mut dyn FnMut(usize)) -> Result<()> {
        if reverse {
            return Err(super::EngineError::Unsupported(
                "reverse scans of a partitioned store".to_owned(),
            ));
        }
        for kv in self.store.iter() {
            let (key, value) = kv.map_err(failed)?;
            visit(key.len() + value.len());
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.store.flush().map_err(failed)
    }

    fn compact(&self) -> Result<()> {
        for p in 0..self.store.num_partitions() {
            self.store
                .partition(p)
                .compact_range::<&[u8], _>(..)
                .map_err(failed)?;
        }
        Ok(())
    }

    fn shape(&self) -> Option<String> {
        Some(format!(
            "{}: {}",
            self.describe(),
            files_shape(self.store.path())
        ))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.store.close().map_err(failed)
    }
}
