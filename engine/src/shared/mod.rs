//! [`SharedResources`]: one memory and thread budget for many stores.
//!
//! A block cache, a write-buffer budget ([`WriteBufferManager`]) and two
//! pools of background threads (flushes, compactions), used by every
//! [`Db`](crate::Db) opened with
//! [`Options::shared_resources`](crate::Options::shared_resources) and by
//! default by every partition of a
//! [`PartitionedStore`](crate::PartitionedStore).

mod pool;
mod write_buffer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::cache::BlockCache;
use crate::error::{Error, Result};
use crate::state::DbInner;

use pool::Pool;
pub(crate) use pool::Step;
pub use write_buffer::{SWITCH_DENOMINATOR, SWITCH_NUMERATOR, WriteBufferManager};

/// The budget of a [`SharedResources`]. Defaults are documented on each
/// field.
///
/// # Examples
/// ```
/// let opts = varve_db::SharedOptions::default().write_buffer_size_bytes(64 << 20);
/// assert_eq!(opts.flush_threads, 2);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SharedOptions {
    /// Capacity of the one block cache of all the stores. Default 64 MiB;
    /// 0 disables it.
    pub cache_size_bytes: usize,
    /// Budget of all memtables (active and immutable) of all the stores.
    /// Default 128 MiB; at least 1 MiB.
    pub write_buffer_size_bytes: usize,
    /// Threads flushing memtables, for all the stores. Default 2; at
    /// least 1.
    pub flush_threads: usize,
    /// Threads compacting tables, for all the stores. Default 2; at
    /// least 1.
    pub compaction_threads: usize,
}

varve_changelog::option_setters!(SharedOptions {
    cache_size_bytes: usize,
    write_buffer_size_bytes: usize,
    flush_threads: usize,
    compaction_threads: usize,
});

impl Default for SharedOptions {
    fn default() -> Self {
        SharedOptions {
            cache_size_bytes: 64 << 20,
            write_buffer_size_bytes: 128 << 20,
            flush_threads: 2,
            compaction_threads: 2,
        }
    }
}

impl SharedOptions {
    /// The budget one store opened with `opts` would use on its own: its
    /// cache size, room for its memtables (`memtable_size_bytes * (1 +
    /// max_immutable_memtables)`), one flush thread and its compaction
    /// threads. [`PartitionedStore`](crate::PartitionedStore) shares this
    /// among its partitions unless given resources of its own.
    ///
    /// # Examples
    /// ```
    /// let store = varve_db::Options::default().memtable_size_bytes(8 << 20);
    /// let shared = varve_db::SharedOptions::like_one_store(&store);
    /// assert_eq!(shared.write_buffer_size_bytes, 24 << 20);
    /// assert_eq!((shared.flush_threads, shared.compaction_threads), (1, 1));
    /// ```
    #[must_use]
    pub fn like_one_store(opts: &crate::Options) -> SharedOptions {
        let memtables = opts.max_immutable_memtables.saturating_add(1);
        SharedOptions {
            cache_size_bytes: opts.cache_size_bytes,
            write_buffer_size_bytes: opts
                .memtable_size_bytes
                .saturating_mul(memtables)
                .max(1 << 20),
            flush_threads: 1,
            compaction_threads: opts.compaction_threads.max(1),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::InvalidArgument(what.to_owned()));
        if self.write_buffer_size_bytes < 1 << 20 {
            return bad("write_buffer_size_bytes must be at least 1 MiB");
        }
        if self.flush_threads == 0 {
            return bad("flush_threads must be at least 1");
        }
        if self.compaction_threads == 0 {
            return bad("compaction_threads must be at least 1");
        }
        Ok(())
    }
}

/// One memory and thread budget shared by many stores: a block cache
/// (RocksDB's shared `Cache`), a write-buffer budget (RocksDB's
/// `WriteBufferManager`) and pools of flush and compaction threads.
///
/// A store opened with [`Options::shared_resources`] uses these instead of
/// its own cache, memtable budget and threads: its
/// [`Options::cache_size_bytes`](crate::Options::cache_size_bytes) and
/// [`Options::compaction_threads`](crate::Options::compaction_threads)
/// are ignored, and [`Options::memtable_size_bytes`] stays the bound of one
/// of its memtables. Together the stores then hold at most
/// `cache_size_bytes` of cached blocks and (give or take one write group
/// per store) `write_buffer_size_bytes` of memtables, and run
/// `flush_threads + compaction_threads` background threads, however many
/// stores there are. A store that fails (a failed sync) stops getting
/// jobs; the others are served as before.
///
/// [`Options::shared_resources`]: crate::Options::shared_resources
/// [`Options::memtable_size_bytes`]: crate::Options::memtable_size_bytes
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use varve_db::{Db, Options, SharedOptions, SharedResources};
/// let budget = SharedResources::new(
///     SharedOptions::default()
///         .cache_size_bytes(32 << 20)
///         .write_buffer_size_bytes(64 << 20),
/// )?;
/// let opts = Options::default().shared_resources(budget.clone());
/// let a = Db::open(dir.path().join("a"), opts.clone())?;
/// let b = Db::open(dir.path().join("b"), opts)?;
/// a.put("k", "in a")?;
/// b.put("k", "in b")?;
/// assert!(budget.write_buffer().usage_bytes() > 0);
/// assert_eq!(budget.thread_count(), 4);
/// a.close()?;
/// b.close()?;
/// # Ok(()) }
/// ```
pub struct SharedResources {
    opts: SharedOptions,
    cache: Option<BlockCache>,
    write_buffer: Arc<WriteBufferManager>,
    /// Every open store using the resources, by id.
    stores: Mutex<Vec<(u64, Weak<DbInner>)>>,
    next_store_id: AtomicU64,
    flush_pool: Pool<DbInner>,
    compaction_pool: Pool<DbInner>,
}

impl std::fmt::Debug for SharedResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedResources")
            .field("opts", &self.opts)
            .field("write_buffer", &self.write_buffer)
            .finish_non_exhaustive()
    }
}

impl SharedResources {
    /// Creates the cache and budget and starts the threads.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bad options, [`Error::Io`] if a
    /// thread could not be started.
    pub fn new(opts: SharedOptions) -> Result<Arc<SharedResources>> {
        opts.validate()?;
        let spawn_error = |e| Error::io("spawn a background thread", std::path::Path::new(""), e);
        let flush_pool = Pool::start(
            "varve-pool-flush",
            opts.flush_threads,
            1,
            DbInner::flush_step,
        )
        .map_err(spawn_error)?;
        let compaction_pool = Pool::start(
            "varve-pool-compact",
            opts.compaction_threads,
            opts.compaction_threads,
            DbInner::compaction_step,
        )
        .map_err(spawn_error)?;
        Ok(Arc::new(SharedResources {
            cache: (opts.cache_size_bytes > 0).then(|| BlockCache::new(opts.cache_size_bytes)),
            write_buffer: Arc::new(WriteBufferManager::new(opts.write_buffer_size_bytes)),
            stores: Mutex::new(Vec::new()),
            next_store_id: AtomicU64::new(1),
            flush_pool,
            compaction_pool,
            opts,
        }))
    }

    /// The options the resources were made with.
    pub fn options(&self) -> &SharedOptions {
        &self.opts
    }

    /// The write-buffer budget (its usage and peak).
    pub fn write_buffer(&self) -> &WriteBufferManager {
        &self.write_buffer
    }

    /// Counters and usage of the shared block cache (zero capacity if it
    /// is disabled).
    pub fn cache_stats(&self) -> crate::CacheStats {
        self.cache
            .as_ref()
            .map(BlockCache::stats)
            .unwrap_or_default()
    }

    /// The background threads the resources run (flush plus compaction).
    pub fn thread_count(&self) -> usize {
        self.flush_pool.thread_count() + self.compaction_pool.thread_count()
    }

    /// Stores open on the resources now.
    pub fn store_count(&self) -> usize {
        self.stores.lock().len()
    }

    /// A new store id (for the cache keys and the pools).
    pub(crate) fn new_store_id(&self) -> u64 {
        self.next_store_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A block-cache handle for a new store (`None` if disabled).
    pub(crate) fn cache_for_store(&self) -> Option<Arc<BlockCache>> {
        self.cache.as_ref().map(|c| Arc::new(c.for_another_store()))
    }

    pub(crate) fn write_buffer_arc(&self) -> &Arc<WriteBufferManager> {
        &self.write_buffer
    }

    /// Registers an opened store with the pools and gives it its first
    /// look for work.
    pub(crate) fn register(&self, store: &Arc<DbInner>) {
        let id = store.store_id;
        self.stores.lock().push((id, Arc::downgrade(store)));
        self.flush_pool.register(id, Arc::downgrade(store));
        self.compaction_pool.register(id, Arc::downgrade(store));
        self.flush_pool.schedule(id);
        self.compaction_pool.schedule(id);
    }

    /// Forgets a closing store, once none of its jobs runs any more.
    pub(crate) fn unregister(&self, id: u64) {
        self.flush_pool.unregister(id);
        self.compaction_pool.unregister(id);
        self.stores.lock().retain(|(s, _)| *s != id);
    }

    pub(crate) fn schedule_flush(&self, id: u64) {
        self.flush_pool.schedule(id);
    }

    pub(crate) fn schedule_compaction(&self, id: u64) {
        self.compaction_pool.schedule(id);
    }

    /// The open, healthy store with the largest non-empty active memtable.
    pub(crate) fn largest_active_store(&self) -> Option<Arc<DbInner>> {
        let stores = self.stores.lock();
        let mut best: Option<(usize, Arc<DbInner>)> = None;
        for (_, weak) in stores.iter() {
            let Some(store) = weak.upgrade() else {
                continue;
            };
            if store.lifecycle.has_failed() || store.lifecycle.is_closing() {
                continue;
            }
            let size = store.super_version().mem.approximate_size_bytes();
            if size > 0 && best.as_ref().is_none_or(|(b, _)| size > *b) {
                best = Some((size, store));
            }
        }
        best.map(|(_, store)| store)
    }
}

/// The block cache a store opened with `opts` uses: a handle on the
/// shared one, or its own of `opts.cache_size_bytes` (`None` if that is
/// disabled).
pub(crate) fn block_cache_of(opts: &crate::Options) -> Option<Arc<BlockCache>> {
    match &opts.shared {
        Some(shared) => shared.cache_for_store(),
        None => {
            (opts.cache_size_bytes > 0).then(|| Arc::new(BlockCache::new(opts.cache_size_bytes)))
        }
    }
}
