//! The shared state of an open store and its consistent read views.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};
use varve_changelog::Log;
use varve_changelog::fs::{DirLock, FileSystem, OpenMode};

use crate::error::{Error, Result};
use crate::key::SeqNo;
use crate::memtable::MemTable;
use crate::options::Options;
use crate::sst::Table;
use crate::version::{FileNumber, Version, VersionSet, table_file_name};
use crate::write::WriteQueue;

/// What readers see: the memtables and the table version, swapped as one.
pub(crate) struct SuperVersion {
    pub(crate) mem: Arc<MemTable>,
    /// Immutable memtables, newest first.
    pub(crate) imm: Vec<Arc<MemTable>>,
    pub(crate) version: Arc<Version>,
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
    pub(crate) writes: Mutex<WriteQueue>,
    pub(crate) writes_cv: Condvar,
    /// Signals the flush thread (work to do, or shutting down) and writers
    /// stalled on a full set of immutable memtables.
    pub(crate) flush_mutex: Mutex<()>,
    pub(crate) flush_cv: Condvar,
    /// Held while a memtable is being flushed: one flush at a time.
    pub(crate) flush_job: Mutex<()>,
    pub(crate) tables: Mutex<HashMap<FileNumber, Arc<Table>>>,
    /// Live snapshots: sequence number → count.
    pub(crate) snapshots: Mutex<BTreeMap<u64, usize>>,
    pub(crate) next_memtable_id: AtomicU64,
    pub(crate) failure: Mutex<Option<String>>,
    pub(crate) failed: AtomicBool,
    pub(crate) closing: AtomicBool,
    pub(crate) _lock: Box<dyn DirLock>,
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
        if let Some(t) = self.tables.lock().get(&number) {
            return Ok(t.clone());
        }
        let path = self.path.join(table_file_name(number));
        let file = self
            .fs
            .open_file(&path, OpenMode::Read)
            .map_err(|e| Error::io("open table", &path, e))?;
        let table = Arc::new(Table::open(file, path, number.0)?);
        self.tables.lock().insert(number, table.clone());
        Ok(table)
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.failed.load(Ordering::Acquire) {
            let cause = self.failure.lock().clone().unwrap_or_default();
            return Err(Error::ReadOnly { cause });
        }
        Ok(())
    }

    /// Puts the store in the read-only failed state and returns the error
    /// to give the caller.
    pub(crate) fn fail(&self, cause: &Error) -> Error {
        let mut failure = self.failure.lock();
        if failure.is_none() {
            tracing::error!(error = %cause, "store is now read-only");
            *failure = Some(cause.to_string());
        }
        self.failed.store(true, Ordering::Release);
        let e = Error::ReadOnly {
            cause: failure.clone().unwrap_or_default(),
        };
        drop(failure);
        let _g = self.flush_mutex.lock();
        self.flush_cv.notify_all();
        e
    }
}
