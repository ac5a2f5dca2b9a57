//! The RocksDB adapter (feature `rocksdb`; builds librocksdb from C++
//! source, which takes a long time).
//!
//! Settings (see `benches/README.md`): an LRU block cache of the run's
//! `--cache-size`; 64 MiB write buffer and 4 KiB blocks (RocksDB's
//! defaults, the same as Varve's); full Bloom filters of 10 bits per key
//! (Varve's default); no compression (the crate is built without
//! compression libraries, and the values are random bytes); the WAL is on,
//! and a write without `sync` is one `write` to the WAL, as in Varve. A
//! `sync` write sets `WriteOptions::set_sync(true)` (RocksDB also groups
//! concurrent sync writers).

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, DB, DBCompressionType, Direction, IteratorMode, Options, WriteBatch,
    WriteOptions,
};

use super::{
    BatchOp, EngineConfig, KvEngine, Result, count_entries, failed, levels_shape, visit_each,
};

/// A RocksDB database driven by the runner.
pub struct RocksDbEngine {
    db: DB,
}

impl RocksDbEngine {
    /// Opens (creating) a database in `dir`.
    ///
    /// # Errors
    /// RocksDB's open error.
    pub fn open(dir: &Path, config: &EngineConfig) -> Result<RocksDbEngine> {
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(config.cache_size_bytes));
        table.set_block_size(4096);
        table.set_bloom_filter(10.0, false);
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_block_based_table_factory(&table);
        options.set_compression_type(DBCompressionType::None);
        options.set_write_buffer_size(64 << 20);
        let db = DB::open(&options, dir).map_err(failed)?;
        Ok(RocksDbEngine { db })
    }

    fn write_options(sync: bool) -> WriteOptions {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        options.disable_wal(false);
        options
    }
}

impl KvEngine for RocksDbEngine {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        self.db
            .put_opt(key, value, &Self::write_options(sync))
            .map_err(failed)
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.db.get_pinned(key).map_err(failed)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], sync: bool) -> Result<()> {
        self.db
            .delete_opt(key, &Self::write_options(sync))
            .map_err(failed)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], sync: bool) -> Result<()> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match *op {
                BatchOp::Put(key, value) => batch.put(key, value),
                BatchOp::Delete(key) => batch.delete(key),
            }
        }
        self.db
            .write_opt(batch, &Self::write_options(sync))
            .map_err(failed)
    }

    fn bulk_write_batch(&self, ops: &[BatchOp<'_>]) -> Result<()> {
        // As Kafka Streams and Samza restore: no WAL; `flush` writes the
        // memtables to tables.
        let mut batch = WriteBatch::default();
        for op in ops {
            match *op {
                BatchOp::Put(key, value) => batch.put(key, value),
                BatchOp::Delete(key) => batch.delete(key),
            }
        }
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        self.db.write_opt(batch, &options).map_err(failed)
    }

    fn scan(&self, start: &[u8], limit: usize) -> Result<(usize, u64)> {
        let iter = self
            .db
            .iterator(IteratorMode::From(start, Direction::Forward));
        count_entries(iter.take(limit))
    }

    fn scan_all(&self, reverse: bool, visit: &mut dyn FnMut(usize)) -> Result<()> {
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::Start
        };
        visit_each(self.db.iterator(mode), visit)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(failed)?;
        self.db.flush_wal(true).map_err(failed)
    }

    fn compact(&self) -> Result<()> {
        self.db.compact_range::<&[u8], &[u8]>(None, None);
        Ok(())
    }

    fn shape(&self) -> Option<String> {
        // "Level Files Size(MB)", a rule, then one "level files size" row
        // per level.
        let stats = self
            .db
            .property_value("rocksdb.levelstats")
            .ok()
            .flatten()?;
        let levels: Vec<String> = stats
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let level: u32 = fields.next()?.parse().ok()?;
                let files: u64 = fields.next()?.parse().ok()?;
                let size_mb = fields.next()?;
                (files > 0).then(|| format!("L{level}: {files} files, {size_mb} MB"))
            })
            .collect();
        Some(levels_shape(levels, "no table files"))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.flush_wal(true).map_err(failed)
    }
}
