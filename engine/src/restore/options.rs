//! [`RestoreOptions`]: how a restore runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::options::Options;

use super::progress::RestoreListener;

/// Default size of a restore's run (the records gathered for one table):
/// each full one is sorted and becomes a table. The memory budget bounds
/// it further (see [`RestoreOptions::memory_budget_bytes`]).
pub const DEFAULT_RESTORE_MEMTABLE_SIZE_BYTES: usize = 256 << 20;
/// Default memory budget of a restore.
pub const DEFAULT_RESTORE_MEMORY_BUDGET_BYTES: usize = 512 << 20;
/// What a restore's budget keeps aside for other than its runs: the poll
/// and the table builder's blocks, write buffer, bloom filter and index.
const RESERVED_BYTES: usize = 16 << 20;
/// Default amount of records asked of the source per poll.
pub const DEFAULT_POLL_SIZE_BYTES: usize = 1 << 20;

/// How [`restore`](super::restore) runs; built with chained setters.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::AtomicBool;
/// let cancel = Arc::new(AtomicBool::new(false));
/// let opts = varve_db::RestoreOptions::default()
///     .memtable_size_bytes(8 << 20)
///     .cancel_flag(cancel.clone());
/// // Another thread may `cancel.store(true, ..)` to stop the restore.
/// # let _ = opts;
/// ```
#[derive(Clone)]
pub struct RestoreOptions {
    pub(crate) store: Options,
    pub(crate) checkpoint: Option<PathBuf>,
    pub(crate) source_name: String,
    pub(crate) memtable_size_bytes: usize,
    pub(crate) memory_budget_bytes: usize,
    pub(crate) poll_size_bytes: usize,
    pub(crate) cancel: Option<Arc<AtomicBool>>,
    pub(crate) listener: Option<Arc<dyn RestoreListener>>,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            store: Options::default(),
            checkpoint: None,
            source_name: String::new(),
            memtable_size_bytes: DEFAULT_RESTORE_MEMTABLE_SIZE_BYTES,
            memory_budget_bytes: DEFAULT_RESTORE_MEMORY_BUDGET_BYTES,
            poll_size_bytes: DEFAULT_POLL_SIZE_BYTES,
            cancel: None,
            listener: None,
        }
    }
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("checkpoint", &self.checkpoint)
            .field("source_name", &self.source_name)
            .field("memtable_size_bytes", &self.memtable_size_bytes)
            .field("memory_budget_bytes", &self.memory_budget_bytes)
            .field("poll_size_bytes", &self.poll_size_bytes)
            .field("cancellable", &self.cancel.is_some())
            .field("listener", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl RestoreOptions {
    /// The options of the store being built (table format, compaction
    /// shape, changelog retention). Background compaction is held off
    /// during the load whatever they say.
    ///
    /// # Examples
    /// ```
    /// let store = varve_db::Options::default().bloom_bits_per_key(12);
    /// let _opts = varve_db::RestoreOptions::default().store_options(store);
    /// ```
    #[must_use]
    pub fn store_options(mut self, store: Options) -> Self {
        self.store = store;
        self
    }

    /// Start from the checkpoint in `dir` (see
    /// [`Db::checkpoint`](crate::Db::checkpoint)): its tables are linked
    /// (or copied) in, and only records at or past its offset are replayed.
    ///
    /// # Examples
    /// ```
    /// let _opts = varve_db::RestoreOptions::default().from_checkpoint("/backups/store-1");
    /// ```
    #[must_use]
    pub fn from_checkpoint(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(dir.into());
        self
    }

    /// A name for the source (`varve restore` gives the changelog's
    /// resolved path), at most 4,096 bytes; default empty. The restore
    /// marker records it, and resuming an interrupted restore with a
    /// source of another name is refused with
    /// [`Error::NotOwned`](crate::Error::NotOwned): the records already
    /// loaded came from the other source.
    ///
    /// # Examples
    /// ```
    /// let _opts = varve_db::RestoreOptions::default().source_name("/data/task-7/changelog");
    /// ```
    #[must_use]
    pub fn source_name(mut self, name: impl Into<String>) -> Self {
        self.source_name = name.into();
        self
    }

    /// Size of a restore's run (default 256 MiB): records are gathered
    /// until their key and value bytes plus 48 bytes each (their header
    /// and place in the sort order) reach it, then sorted and written as
    /// level-0 tables on a second thread while the next run is gathered.
    /// Records whose keys keep increasing are handed over at an eighth of
    /// it (at most 1 MiB) and added to one open table, installed once it
    /// holds the run size or the table size, whichever is smaller.
    /// The [memory budget](Self::memory_budget_bytes) caps it further.
    /// At least 64 KiB is used.
    ///
    /// # Examples
    /// ```
    /// let _opts = varve_db::RestoreOptions::default().memtable_size_bytes(256 << 20);
    /// ```
    #[must_use]
    pub fn memtable_size_bytes(mut self, size_bytes: usize) -> Self {
        self.memtable_size_bytes = size_bytes.max(64 << 10);
        self
    }

    /// The memory a restore's load may hold (default 512 MiB): two runs,
    /// one being gathered and one being written, each at most half of
    /// what is left after 16 MiB for the poll and the table builder (see
    /// `docs/STATE.md`). Runs are the smaller of this share and
    /// [`memtable_size_bytes`](Self::memtable_size_bytes); a run of at
    /// least 64 KiB is used whatever the budget. Each run written is a
    /// checkpoint (the store's flushed offset): a restore stopped at any
    /// moment resumes from the last one, and loads again at most what its
    /// two runs held.
    ///
    /// # Examples
    /// ```
    /// let _opts = varve_db::RestoreOptions::default().memory_budget_bytes(256 << 20);
    /// ```
    #[must_use]
    pub fn memory_budget_bytes(mut self, size_bytes: usize) -> Self {
        self.memory_budget_bytes = size_bytes;
        self
    }

    /// The size at which a run is written: the run option, capped by
    /// each run's share of the budget.
    pub(crate) fn run_size_bytes(&self) -> usize {
        let share = self.memory_budget_bytes.saturating_sub(RESERVED_BYTES) / 2;
        self.memtable_size_bytes.min(share).max(64 << 10)
    }

    /// About how many bytes to ask of the source per poll (default
    /// 1 MiB); progress is reported after each poll.
    ///
    /// # Examples
    /// ```
    /// let _opts = varve_db::RestoreOptions::default().poll_size_bytes(4 << 20);
    /// ```
    #[must_use]
    pub fn poll_size_bytes(mut self, size_bytes: usize) -> Self {
        self.poll_size_bytes = size_bytes.max(1);
        self
    }

    /// A flag checked before each poll: once set, the restore writes what
    /// it has loaded to tables and stops with
    /// [`Error::Cancelled`](crate::Error::Cancelled), leaving the directory
    /// marked incomplete (a later restore resumes it).
    ///
    /// # Examples
    /// ```
    /// let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    /// let _opts = varve_db::RestoreOptions::default().cancel_flag(flag);
    /// ```
    #[must_use]
    pub fn cancel_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Callbacks for progress (see [`RestoreListener`]).
    ///
    /// # Examples
    /// ```
    /// struct Quiet;
    /// impl varve_db::restore::RestoreListener for Quiet {}
    /// let _opts = varve_db::RestoreOptions::default().listener(std::sync::Arc::new(Quiet));
    /// ```
    #[must_use]
    pub fn listener(mut self, listener: Arc<dyn RestoreListener>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The store options the load itself runs with: created if missing,
    /// no background compaction.
    pub(crate) fn load_options(&self) -> Options {
        let mut opts = self.store.clone();
        opts.create_if_missing = true;
        opts.compaction.auto = false;
        opts
    }
}
