//! The shared state of an open store and its consistent read views.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};
use varve_changelog::Log;
use varve_changelog::fs::{DirLock, FileSystem};

use crate::cache::BlockCache;
use crate::compaction::Busy;
use crate::error::{Error, Result};
use crate::key::SeqNo;
use crate::lifecycle::{Lifecycle, Writer};
use crate::memtable::MemTable;
use crate::options::Options;
use crate::sst::Table;
use crate::stats::Counters;
use crate::table_cache::TableCache;
use crate::version::{FileNumber, Version, VersionSet};
use crate::write_queue::WriteShared;

/// What readers see: the memtables and the table version, swapped as one.
pub(crate) struct SuperVersion {
    pub(crate) mem: Arc<MemTable>,
    /// Immutable memtables, newest first.
    pub(crate) imm: Vec<Arc<MemTable>>,
    pub(crate) version: Arc<Version>,
}

impl SuperVersion {
    /// This view's memtables and tables as the read path takes them, with
    /// tables opened through `table`.
    pub(crate) fn sources<'a>(
        &'a self,
        table: &'a dyn Fn(FileNumber) -> Result<Arc<Table>>,
    ) -> crate::read_path::ReadSources<'a> {
        crate::read_path::ReadSources {
            mem: &self.mem,
            imm: &self.imm,
            version: &self.version,
            table,
        }
    }
}

/// Everything an open store shares between its handle, its snapshots, its
/// iterators and its background thread.
pub(crate) struct DbInner {
    pub(crate) path: PathBuf,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) opts: Options,
    pub(crate) log: Log,
    pub(crate) versions: Mutex<VersionSet>,
    pub(crate) current: RwLock<Arc<SuperVersion>>,
    /// Largest sequence number visible to new reads.
    pub(crate) visible_seqno: AtomicU64,
    /// The group commit's queue (`write.rs`).
    pub(crate) write: WriteShared,
    /// The flush thread's signals (`flush.rs`).
    pub(crate) flush: FlushShared,
    pub(crate) tables: TableCache,
    pub(crate) block_cache: Option<Arc<BlockCache>>,
    /// Compactions, tables being written and the write stall
    /// (`compaction/worker.rs`).
    pub(crate) compaction: CompactionShared,
    pub(crate) counters: Counters,
    pub(crate) metrics: Arc<crate::metrics::StoreMetrics>,
    /// Live snapshots: sequence number → count.
    pub(crate) snapshots: Mutex<BTreeMap<u64, usize>>,
    pub(crate) next_memtable_id: AtomicU64,
    /// Writable, standby replica, failed or closing; every write passes
    /// its admission check.
    pub(crate) lifecycle: Lifecycle,
    /// The store's id in its shared resources' pools and cache (0 for a
    /// store with its own).
    pub(crate) store_id: u64,
    /// The shared write-buffer budget asked this store to switch its
    /// memtable; served by its next write leader or flush job.
    pub(crate) switch_requested: AtomicBool,
    pub(crate) _lock: Box<dyn DirLock>,
}

/// What the flush thread and the writers it holds share.
#[derive(Default)]
pub(crate) struct FlushShared {
    /// Signals the flush thread (work to do, or shutting down) and writers
    /// stalled on a full set of immutable memtables.
    pub(crate) signal: Mutex<()>,
    pub(crate) cv: Condvar,
    /// Held while a memtable is being flushed: one flush at a time.
    pub(crate) job: Mutex<()>,
}

/// What the compaction threads, manual compactions and stalled writers
/// share.
#[derive(Default)]
pub(crate) struct CompactionShared {
    /// Running compactions and tables being written.
    pub(crate) state: Mutex<CompactionState>,
    /// Signals compaction threads (work to do, shutting down), manual
    /// compactions waiting for busy tables, and writers held by a stall.
    pub(crate) cv: Condvar,
    /// The write stall in force: [`STALL_NONE`], [`STALL_SLOWDOWN`] or
    /// [`STALL_STOP`]; recomputed whenever a version is installed.
    pub(crate) stall: AtomicU8,
}

/// No write stall (the zero a new [`CompactionShared`] starts with).
pub(crate) const STALL_NONE: u8 = 0;
/// Each write group is delayed.
pub(crate) const STALL_SLOWDOWN: u8 = 1;
/// Writers are held until compaction catches up.
pub(crate) const STALL_STOP: u8 = 2;

/// What the compaction threads share.
#[derive(Default)]
pub(crate) struct CompactionState {
    pub(crate) busy: Busy,
    /// Tables being written by flushes and compactions: in no version yet,
    /// so obsolete-file deletion must leave them alone.
    pub(crate) pending_outputs: HashSet<FileNumber>,
    /// The error of the last background compaction, if it failed (cleared
    /// by the next one that succeeds). Writers held by a write stop get
    /// it instead of waiting for a compaction that cannot run (a full
    /// disk would hold them for ever).
    pub(crate) last_failure: Option<Error>,
}

impl DbInner {
    pub(crate) fn super_version(&self) -> Arc<SuperVersion> {
        self.current.read().clone()
    }

    pub(crate) fn visible(&self) -> SeqNo {
        SeqNo(self.visible_seqno.load(Ordering::Acquire))
    }

    /// Opens (or finds in the cache) the table with `number`.
    pub(crate) fn table(&self, number: FileNumber) -> Result<Arc<Table>> {
        crate::table_cache::open_table(
            &self.tables,
            self.fs.as_ref(),
            &self.path,
            number,
            self.block_cache.as_ref(),
        )
    }

    /// Makes the version set's current version the one readers see,
    /// dropping `flushed` from the immutable memtables if given. Taking the
    /// newest version under the `current` lock keeps concurrent installs
    /// (flush and compaction) from overwriting each other.
    pub(crate) fn install_current_version(&self, flushed: Option<&Arc<MemTable>>) {
        let mut current = self.current.write();
        let version = self.versions.lock().current();
        let imm = current
            .imm
            .iter()
            .filter(|m| flushed.is_none_or(|f| !Arc::ptr_eq(m, f)))
            .cloned()
            .collect();
        *current = Arc::new(SuperVersion {
            mem: current.mem.clone(),
            imm,
            version: Arc::clone(&version),
        });
        drop(current);
        self.update_stall(&version);
        self.signal_compaction();
    }

    /// Wakes whoever compacts this store: its compaction threads, or its
    /// shared pool (also wakes manual compactions and stalled writers).
    pub(crate) fn signal_compaction(&self) {
        {
            let _g = self.compaction.state.lock();
            self.compaction.cv.notify_all();
        }
        if let Some(shared) = &self.opts.shared {
            shared.schedule_compaction(self.store_id);
        }
    }

    /// Wakes whoever flushes this store: its flush thread, or its shared
    /// pool (also wakes writers waiting for a flush).
    pub(crate) fn signal_flush(&self) {
        {
            let _g = self.flush.signal.lock();
            self.flush.cv.notify_all();
        }
        if let Some(shared) = &self.opts.shared {
            shared.schedule_flush(self.store_id);
        }
    }

    /// The shared write-buffer budget, if the store uses one.
    pub(crate) fn write_buffer(&self) -> Option<&Arc<crate::shared::WriteBufferManager>> {
        self.opts.shared.as_ref().map(|s| s.write_buffer_arc())
    }

    /// A new, empty memtable, charged to the shared budget if any.
    pub(crate) fn new_memtable(&self, id: u64) -> MemTable {
        MemTable::charged_to(id, self.write_buffer().cloned())
    }

    /// The smallest sequence number any reader may read at: the oldest
    /// live snapshot, or what new reads see. Compactions may drop a version
    /// only if a newer one is visible at this sequence number.
    pub(crate) fn oldest_snapshot(&self) -> SeqNo {
        let snapshots = self.snapshots.lock();
        let visible = self.visible().0;
        SeqNo(snapshots.keys().next().map_or(visible, |&s| s.min(visible)))
    }

    /// Creates table file `number`'s entry in the pending outputs (so it
    /// is not deleted as obsolete while being written).
    pub(crate) fn new_output_number(&self) -> FileNumber {
        let number = self.versions.lock().new_file_number();
        self.compaction.state.lock().pending_outputs.insert(number);
        number
    }

    /// Releases `numbers` from the pending outputs.
    pub(crate) fn release_outputs(&self, numbers: &[FileNumber]) {
        let mut state = self.compaction.state.lock();
        for n in numbers {
            state.pending_outputs.remove(n);
        }
    }

    /// The admission check for a user write, flush or compaction.
    pub(crate) fn check_writable(&self) -> Result<()> {
        self.lifecycle.admit(Writer::User)
    }

    /// If `e` is a failed sync (of a table, the directory or the
    /// manifest), puts the store in the read-only state at once, before
    /// any cleanup, so no write is acknowledged after the failure.
    pub(crate) fn fail_on_sync_error(&self, e: &Error) {
        if e.is_failed_sync() {
            self.fail(e);
        }
    }

    /// Puts the store in the read-only failed state and returns the error
    /// to give the caller.
    pub(crate) fn fail(&self, cause: &Error) -> Error {
        let (e, first) = self.lifecycle.fail(cause);
        if first {
            tracing::error!(error = %cause, "store is now read-only");
            // No flush will free its memtables: give their bytes back to a
            // shared budget, so the other stores' writers are not held.
            let sv = self.super_version();
            sv.mem.release_budget();
            for imm in &sv.imm {
                imm.release_budget();
            }
        }
        let _g = self.flush.signal.lock();
        self.flush.cv.notify_all();
        e
    }
}
