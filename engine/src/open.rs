//! Opening a store: checking the directory, loading the manifest, and
//! replaying the changelog from the flushed offset.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use varve_changelog::fs::PathKind;

use parking_lot::{Mutex, RwLock};
use varve_changelog::filename::segment_path;
use varve_changelog::fs::{DirLock, FileSystem, OpenMode, create_dir_all_durably};
use varve_changelog::{Log, LogOptions, SyncPolicy};

use crate::error::{Error, Result};
use crate::key::SeqNo;
use crate::lifecycle::Lifecycle;
use crate::memtable::{MemTable, seqno_of_offset};
use crate::options::{ChangelogRetention, Options};
use crate::state::{CompactionShared, DbInner, FlushShared, SuperVersion};
use crate::stats::Counters;
use crate::table_cache::TableCache;
use crate::ttl::ValueFormat;
use crate::version::{
    FileKind, Level, Version, VersionSet, VersionSetOptions, parse_file_name, table_file_name,
};
use crate::write::insert_all;
use crate::write_queue::WriteShared;

/// The changelog's directory inside a store.
pub const CHANGELOG_DIR: &str = "changelog";
/// The store's lock file.
pub const LOCK_FILE: &str = "LOCK";

pub(crate) fn open_inner(path: &Path, opts: Options) -> Result<DbInner> {
    if crate::restore::marker::is_restoring(opts.fs.as_ref(), path)? {
        return Err(Error::RestoreIncomplete {
            path: path.to_owned(),
        });
    }
    open_store(path, opts, false)
}

/// Opens a store; with `restoring`, a store a restore is building (its
/// marker file is present), whose empty changelog may still start below
/// the flushed offset if a crash came between the manifest edit and the
/// changelog's move.
pub(crate) fn open_store(path: &Path, opts: Options, restoring: bool) -> Result<DbInner> {
    opts.validate()?;
    let fs = opts.fs.clone();
    let exists = check_dir(fs.as_ref(), path, &opts)?;
    let lock = take_lock(fs.as_ref(), path)?;
    let ttl_ms = opts.ttl.map(crate::ttl::ttl_ms);
    let version_opts = VersionSetOptions {
        manifest_rotate_size_bytes: opts.manifest_rotate_size_bytes,
        ttl_ms,
    };
    let mut versions = if exists {
        VersionSet::open(fs.clone(), path, version_opts)?
    } else {
        VersionSet::create(fs.clone(), path, version_opts)?
    };
    check_ttl(&mut versions, path, ttl_ms)?;
    check_table_sizes(fs.as_ref(), path, &versions.current())?;
    let format = if ttl_ms.is_some() {
        ValueFormat::Timestamped
    } else {
        ValueFormat::Plain
    };
    let log = open_changelog(&fs, path, &opts)?;
    let version = versions.current();
    let flushed = version.flushed_offset();
    if restoring && flushed > log.next_offset() {
        log.truncate_fully_and_start_at(flushed)?;
    }
    if flushed < log.log_start_offset() || flushed > log.next_offset() {
        return Err(Error::corruption(
            path.join(CHANGELOG_DIR),
            0,
            format!(
                "the manifest's flushed offset {flushed} is outside the changelog's range [{}, {}]",
                log.log_start_offset(),
                log.next_offset()
            ),
        ));
    }
    let mem = Arc::new(MemTable::charged_to(
        0,
        opts.shared.as_ref().map(|s| s.write_buffer_arc().clone()),
    ));
    let replayed = replay_changelog(&log, flushed, &mem, format)?;
    tracing::info!(store = %path.display(), flushed, replayed, next = log.next_offset(), "store opened");
    let visible = log.next_offset().max(version.last_seqno().0);
    let inner = DbInner {
        path: path.to_owned(),
        fs,
        current: RwLock::new(Arc::new(SuperVersion {
            mem,
            imm: Vec::new(),
            version,
        })),
        visible_seqno: AtomicU64::new(visible),
        write: WriteShared::default(),
        flush: FlushShared::default(),
        tables: TableCache::new(opts.max_open_tables),
        block_cache: crate::shared::block_cache_of(&opts),
        compaction: CompactionShared::default(),
        counters: Counters::default(),
        metrics: Arc::new(crate::metrics::StoreMetrics::new(path)),
        snapshots: Mutex::new(BTreeMap::new()),
        next_memtable_id: AtomicU64::new(1),
        lifecycle: Lifecycle::default(),
        store_id: opts.shared.as_ref().map_or(0, |s| s.new_store_id()),
        switch_requested: AtomicBool::new(false),
        versions: Mutex::new(versions),
        log,
        opts,
        _lock: lock,
    };
    inner.delete_obsolete_files()?;
    let version = inner.versions.lock().current();
    inner.update_stall(&version);
    Ok(inner)
}

/// Inserts every changelog record at or after `from` into `mem`; returns
/// how many. A record whose offset lies beyond the sequence-number range
/// (`offset + 1 > SeqNo::MAX`), and a log whose next offset does, are
/// `Corruption` naming the segment and the batch's byte: the memtable
/// could not hold them, and the store could not write after them.
fn replay_changelog(log: &Log, from: u64, mem: &MemTable, format: ValueFormat) -> Result<u64> {
    let mut reader = log.reader(from)?;
    let mut replayed = 0u64;
    while let Some(record) = reader.next() {
        let record = record?;
        if seqno_of_offset(record.offset).is_none() {
            let (path, position) = reader.batch_location().map_or_else(
                || (log.dir().to_path_buf(), 0),
                |(p, b)| (p.to_path_buf(), b),
            );
            let what = format!(
                "record at offset {} lies beyond the sequence-number range (offsets must be below {})",
                record.offset,
                SeqNo::MAX.0
            );
            return Err(Error::corruption(path, position, what));
        }
        insert_all(
            mem,
            std::slice::from_ref(&record.record),
            record.offset,
            format,
        );
        replayed += 1;
    }
    let end = log.next_offset();
    if end > SeqNo::MAX.0 {
        let base = log.segment_base_offsets().last().copied().unwrap_or(end);
        let what = format!(
            "the changelog ends at offset {end}, beyond the sequence-number range (at most {})",
            SeqNo::MAX.0
        );
        return Err(Error::corruption(
            segment_path(log.dir(), base, ".log"),
            0,
            what,
        ));
    }
    Ok(replayed)
}

/// Checks that every live table exists with the size the manifest records
/// (as RocksDB does at open), so a truncated or missing table fails the
/// open rather than the first read that touches it.
fn check_table_sizes(fs: &dyn FileSystem, dir: &Path, version: &Version) -> Result<()> {
    for level in Level::all() {
        for table in version.tables(level) {
            let path = dir.join(table_file_name(table.number));
            let file = match fs.open_file(&path, OpenMode::Read) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let what = format!("table of {level} listed in the manifest is missing");
                    return Err(Error::corruption(path, 0, what));
                }
                Err(e) => return Err(Error::io("open table", &path, e)),
            };
            let size_bytes = file.len().map_err(|e| Error::io("stat", &path, e))?;
            if size_bytes != table.size_bytes {
                let what = format!(
                    "table of {level} is {size_bytes} bytes, but the manifest records {}",
                    table.size_bytes
                );
                return Err(Error::corruption(
                    path,
                    size_bytes.min(table.size_bytes),
                    what,
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a TTL store opened without a TTL and a plain store opened with
/// one (their values differ in format); records a changed duration.
fn check_ttl(versions: &mut VersionSet, path: &Path, given_ms: Option<u64>) -> Result<()> {
    let stored_ms = versions.current().ttl_ms();
    let shown = |ttl: Option<u64>| ttl.map_or_else(|| "none".to_owned(), |ms| format!("{ms} ms"));
    match (stored_ms, given_ms) {
        (None, None) => Ok(()),
        (Some(stored), Some(given)) if stored == given => Ok(()),
        (Some(stored), Some(given)) => {
            tracing::info!(store = %path.display(), stored, given, "TTL changed");
            versions.log_and_apply(crate::version::VersionEdit {
                ttl_ms: Some(given),
                ..Default::default()
            })?;
            Ok(())
        }
        _ => Err(Error::IncompatibleOptions {
            path: path.to_owned(),
            option: "ttl",
            stored: shown(stored_ms),
            given: shown(given_ms),
        }),
    }
}

/// Opens the store's changelog. When the open creates its directory, the
/// store directory is synced so that the new entry survives power loss
/// (the changelog does not sync the parent of a directory it creates).
fn open_changelog(fs: &Arc<dyn FileSystem>, path: &Path, opts: &Options) -> Result<Log> {
    let dir = path.join(CHANGELOG_DIR);
    let missing = fs
        .kind(&dir)
        .map_err(|e| Error::io("stat", &dir, e))?
        .is_none();
    let log = Log::open(&dir, log_options(opts))?;
    if missing {
        fs.sync_dir(path).map_err(|e| Error::sync(path, e))?;
    }
    Ok(log)
}

/// How far ahead of its data the active changelog segment is grown.
const CHANGELOG_PREALLOCATE_BYTES: u64 = 1 << 20;

pub(crate) fn log_options(opts: &Options) -> LogOptions {
    // The active segment is grown a mebibyte at a time ahead of the data
    // (space reserved, not written, where the file system can; elsewhere
    // not at all), so that the `fdatasync` of a synced write has only data
    // to make durable, not also a new file length.
    let mut log = LogOptions::default()
        .segment_size_bytes(opts.changelog_segment_size_bytes)
        .sync_policy(
            opts.sync_interval_ms
                .map_or(SyncPolicy::Manual, SyncPolicy::IntervalMs),
        )
        .preallocate_bytes(Some(CHANGELOG_PREALLOCATE_BYTES))
        // Never zeros: they would write every changelog byte twice.
        .preallocate_with_zeros(false)
        .fs(opts.fs.clone());
    match &opts.changelog_retention {
        ChangelogRetention::UntilFlushed => {}
        ChangelogRetention::UntilShipped => log.retain_for_consumers = true,
        ChangelogRetention::Compact {
            tombstone_retention_ms,
        } => log.tombstone_retention_ms = *tombstone_retention_ms,
    }
    log
}

/// Whether `path` holds a store; refuses anything that is neither a store
/// nor empty, without modifying it.
fn check_dir(fs: &dyn FileSystem, path: &Path, opts: &Options) -> Result<bool> {
    let not_a_store = |reason: String| Error::NotAStore {
        path: path.to_owned(),
        reason,
    };
    match fs.kind(path).map_err(|e| Error::io("stat", path, e))? {
        Some(PathKind::File) => return Err(not_a_store("it is a file".into())),
        None if opts.create_if_missing => {
            create_dir_all_durably(fs, path).map_err(|e| Error::io("create directory", path, e))?;
            return Ok(false);
        }
        None => {
            return Err(not_a_store(
                "the directory does not exist and create_if_missing is off".into(),
            ));
        }
        Some(PathKind::Dir) => {}
    }
    if VersionSet::exists(fs, path)? {
        return Ok(true);
    }
    let names = fs
        .list_dir(path)
        .map_err(|e| Error::io("list directory", path, e))?;
    // A crash while creating a store can leave a manifest or temporary
    // file without CURRENT: creation never finished, so it starts over.
    let unfinished = |n: &String| {
        n == LOCK_FILE
            || n == crate::restore::marker::MARKER_FILE
            || matches!(
                parse_file_name(n),
                Some(FileKind::Manifest(_) | FileKind::Temp | FileKind::Lock)
            )
    };
    if !names.iter().all(unfinished) {
        return Err(not_a_store(format!(
            "it holds {} entries but no CURRENT file",
            names.len()
        )));
    }
    if !opts.create_if_missing {
        return Err(not_a_store(
            "the directory is empty and create_if_missing is off".into(),
        ));
    }
    Ok(false)
}

fn take_lock(fs: &dyn FileSystem, path: &Path) -> Result<Box<dyn DirLock>> {
    fs.lock(&path.join(LOCK_FILE)).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            path: path.to_owned(),
        },
        _ => Error::io("lock", path.join(LOCK_FILE), e),
    })
}

impl DbInner {
    /// Deletes tables and manifests the current version no longer needs,
    /// and temporary files left by a crash.
    pub(crate) fn delete_obsolete_files(&self) -> Result<()> {
        let live = self.versions.lock().live_files();
        let names = self
            .fs
            .list_dir(&self.path)
            .map_err(|e| Error::io("list directory", &self.path, e))?;
        for name in names {
            let obsolete = match parse_file_name(&name) {
                Some(FileKind::Table(n)) => live.tables.binary_search(&n).is_err(),
                Some(FileKind::Manifest(n)) => n != live.manifest,
                Some(FileKind::Temp) => true,
                _ => false,
            };
            if obsolete {
                let p = self.path.join(&name);
                tracing::info!(file = %p.display(), "deleting obsolete file");
                if let Some(FileKind::Table(n)) = parse_file_name(&name) {
                    self.tables.remove(n);
                }
                self.fs
                    .remove_file(&p)
                    .map_err(|e| Error::io("remove obsolete file", &p, e))?;
            }
        }
        Ok(())
    }
}
