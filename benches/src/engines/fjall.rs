//! The fjall adapter (feature `fjall`).
//!
//! One database with one keyspace. Settings (see `benches/README.md`):
//! the block cache is the run's `--cache-size`; memtable 64 MiB and data
//! blocks 4 KiB (fjall's defaults, the same as Varve's); compression off
//! (the crate is built without `lz4`, and the benchmark values are random
//! bytes that do not compress); the journal is on, and a write without
//! `sync` is handed to the OS before it returns, as in Varve. A `sync`
//! write is a batch committed with `PersistMode::SyncData` (`fdatasync`).

use std::path::Path;

use fjall::{Database, Guard, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{BatchOp, EngineConfig, KvEngine, Result, count_entries, failed, visit_all};

/// A fjall database driven by the runner.
pub struct FjallEngine {
    db: Database,
    keyspace: Keyspace,
}

impl FjallEngine {
    /// Opens (creating) a database in `dir`.
    ///
    /// # Errors
    /// fjall's open error.
    pub fn open(dir: &Path, config: &EngineConfig) -> Result<FjallEngine> {
        let db = Database::builder(dir)
            .cache_size(config.cache_size_bytes as u64)
            .open()
            .map_err(failed)?;
        let keyspace = db
            .keyspace("bench", KeyspaceCreateOptions::default)
            .map_err(failed)?;
        Ok(FjallEngine { db, keyspace })
    }
}

impl KvEngine for FjallEngine {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Result<()> {
        if sync {
            return self.write_batch(&[BatchOp::Put(key, value)], true);
        }
        self.keyspace.insert(key, value).map_err(failed)
    }

    fn get(&self, key: &[u8]) -> Result<Option<usize>> {
        Ok(self.keyspace.get(key).map_err(failed)?.map(|v| v.len()))
    }

    fn delete(&self, key: &[u8], sync: bool) -> Result<()> {
        if sync {
            return self.write_batch(&[BatchOp::Delete(key)], true);
        }
        self.keyspace.remove(key).map_err(failed)
    }

    fn write_batch(&self, ops: &[BatchOp<'_>], sync: bool) -> Result<()> {
        let mut batch = self
            .db
            .batch()
            .durability(sync.then_some(PersistMode::SyncData));
        for op in ops {
            match *op {
                BatchOp::Put(key, value) => batch.insert(&self.keyspace, key, value),
                BatchOp::Delete(key) => batch.remove(&self.keyspace, key),
            }
        }
        batch.commit().map_err(failed)
    }

    fn scan(&self, start: &[u8], limit: usize) -> Result<(usize, u64)> {
        count_entries(
            self.keyspace
                .range(start..)
                .take(limit)
                .map(Guard::into_inner),
        )
    }

    fn scan_all(&self, reverse: bool, visit: &mut dyn FnMut(usize)) -> Result<()> {
        visit_all(self.keyspace.iter().map(Guard::into_inner), reverse, visit)
    }

    fn flush(&self) -> Result<()> {
        self.keyspace.rotate_memtable_and_wait().map_err(failed)?;
        self.db.persist(PersistMode::SyncAll).map_err(failed)
    }

    fn compact(&self) -> Result<()> {
        self.keyspace.major_compact().map_err(failed)
    }

    fn shape(&self) -> Option<String> {
        Some(format!(
            "{} tables ({} in L0)",
            self.keyspace.table_count(),
            self.keyspace.l0_table_count()
        ))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(failed)
    }
}
