//! Restore: rebuilding a store in an empty directory from a changelog
//! alone (a local [`Log`](varve_changelog::Log) through
//! [`LogSource`](varve_changelog::LogSource), or any other
//! [`RecordSource`]), optionally starting from a checkpoint.
//!
//! Records are bulk-loaded (see `bulk`): no group commit, no changelog
//! writes, large sorted runs written straight to tables (see `run`),
//! background compaction off. At the end, tables that overlap no other
//! go to the last level as they are (see `placement`) and one full
//! compaction merges the rest, so the result is shaped like a fully
//! compacted store. A `RESTORING` marker (see
//! [`MARKER_FILE`]) makes [`Db::open`](crate::Db::open) refuse the
//! directory until the restore finishes; running [`restore`] again on it
//! resumes from what is already in tables. `docs/STATE.md` is the manual.

mod bulk;
pub(crate) mod marker;
mod options;
mod partitioned;
mod placement;
mod progress;
mod run;
mod staleness;
mod target;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use varve_changelog::fs::FileSystem;
use varve_changelog::{RecordSource, SourceBounds};

use marker::Marker;
use target::Target;

use crate::error::{Error, Result};
use crate::open::open_store;
use crate::state::DbInner;
use crate::version::{Version, read_version, write_store_manifest};

pub use marker::MARKER_FILE;
pub use options::RestoreOptions;
pub use partitioned::restore_partitioned;
pub use progress::{RestoreListener, RestoreProgress, RestoreReport};
pub use staleness::check_position;

use bulk::BulkLoader;

/// Rebuilds a store in `dir` from `source`, up to the source's end offset
/// taken when the restore starts (as Kafka Streams restores to the high
/// watermark). `dir` must be missing, empty, or hold an interrupted restore
/// (which is resumed from its flushed offset; the checkpoint option is then
/// ignored). With [`RestoreOptions::from_checkpoint`] the checkpoint's
/// tables are linked in first and only records at or past its offset are
/// replayed. The result opens with [`Db::open`](crate::Db::open): it holds
/// exactly the source's state below the end offset, and its changelog
/// starts there.
///
/// An empty poll before the end offset is taken as the end of the source's
/// records (the rest of the range is a gap, as in a compacted log).
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use varve_db::varve_changelog::LogSource;
/// let db = varve_db::Db::open(tmp.path().join("live"), varve_db::Options::default())?;
/// db.put("a", "1")?;
/// db.put("b", "2")?;
/// db.delete("a")?;
/// let mut source = LogSource::new(db.changelog());
/// let report = varve_db::restore(tmp.path().join("copy"), &mut source, varve_db::RestoreOptions::default())?;
/// assert_eq!((report.records, report.end_offset), (3, 3));
/// let copy = varve_db::Db::open(tmp.path().join("copy"), varve_db::Options::default())?;
/// assert_eq!(copy.get("a")?, None);
/// assert_eq!(copy.get("b")?.as_deref(), Some(&b"2"[..]));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Source`] wrapping the source's own error;
/// [`Error::Stale`] if the checkpoint's (or the resumed store's) offset is
/// below the source's start offset; [`Error::InvalidArgument`] if `dir`
/// holds something else, the starting offset is past the source's end, or
/// the source delivers offsets out of order; [`Error::Cancelled`] when the
/// cancel flag is set; I/O and corruption errors. After any error the
/// directory stays marked incomplete: run `restore` again to resume, or
/// delete it.
pub fn restore<S: RecordSource>(
    dir: impl AsRef<Path>,
    source: &mut S,
    opts: RestoreOptions,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let dir = dir.as_ref();
    let fs = opts.store.fs.clone();
    let bounds = source.bounds().map_err(source_error)?;
    let resumed = match target::inspect(fs.as_ref(), dir, &opts.source_name)? {
        Target::Resume => true,
        target => {
            let checkpoint = match &opts.checkpoint {
                Some(cp) => Some(checked_checkpoint(fs.as_ref(), cp, bounds)?),
                None => None,
            };
            if let Target::Wipe(found) = &target {
                target::remove_listed(fs.as_ref(), dir, found)?;
            }
            let marker = Marker {
                source: opts.source_name.clone(),
                names: target::names_before_store(checkpoint.as_ref()),
            };
            marker::write(fs.as_ref(), dir, &marker)?;
            if let (Some(cp), Some(version)) = (&opts.checkpoint, &checkpoint) {
                crate::checkpoint::link_tables(fs.as_ref(), cp, dir, version)?;
                write_store_manifest(fs.as_ref(), dir, version)?;
            }
            false
        }
    };
    let inner = open_store(dir, opts.load_options(), true)?;
    let (start, end) = start_and_end(&inner, source, bounds)?;
    let (mut report, cuts) = load(&inner, source, &opts, start, end, started)?;
    report.resumed = resumed;
    // Everything below `end` is applied: compaction may drop what no read
    // at `end` sees, tombstones at the bottom included.
    inner.visible_seqno.store(end, Ordering::Release);
    // The tables of each stretch between the keys unsorted runs were cut
    // at merge into the last level on their own, two stretches at a time;
    // tables that overlap nothing go there as they are; the compaction
    // then merges only the rest. A TTL store's compaction also
    // drops what expired from the last level, so it rewrites everything.
    if inner.opts.ttl.is_none() {
        placement::merge_stretches(&inner, &cuts)?;
        placement::place_disjoint_tables(&inner)?;
    }
    inner.compact_range(None)?;
    inner.log.sync()?;
    drop(inner);
    // Everything (the changelog's directory entry included) is durable
    // before the marker goes.
    fs.sync_dir(dir).map_err(|e| Error::sync(dir, e))?;
    marker::remove(fs.as_ref(), dir)?;
    report.elapsed = started.elapsed();
    if let Some(listener) = &opts.listener {
        listener.on_end(&report);
    }
    tracing::info!(store = %dir.display(), records = report.records, end, "restore finished");
    Ok(report)
}

/// Where the restore starts and ends; seeks the source to the start.
fn start_and_end<S: RecordSource>(
    inner: &DbInner,
    source: &mut S,
    bounds: SourceBounds,
) -> Result<(u64, u64)> {
    let version = inner.versions.lock().current();
    let position = version.flushed_offset();
    let has_state = position > 0 || !version.all_table_numbers().is_empty();
    let start = if has_state {
        check_position(position, bounds)?;
        position
    } else {
        bounds.start_offset
    };
    let end = bounds.end_offset;
    if start > end {
        return Err(Error::InvalidArgument(format!(
            "the store is at offset {start}, past the source's end {end}"
        )));
    }
    if start < end {
        source.seek(start).map_err(source_error)?;
    }
    Ok((start, end))
}

/// Polls the source and bulk-loads records from `start` up to `end`.
fn load<S: RecordSource>(
    inner: &DbInner,
    source: &mut S,
    opts: &RestoreOptions,
    start: u64,
    end: u64,
    started: Instant,
) -> Result<(RestoreReport, Vec<Vec<u8>>)> {
    let listener = opts.listener.as_deref();
    if let Some(l) = listener {
        l.on_start(start, end);
    }
    let (records, bytes, cuts) = std::thread::scope(|scope| {
        let mut loader = BulkLoader::new(inner, scope, opts.run_size_bytes(), start)?;
        let mut applied = bulk::Applied::default();
        while loader.position() < end {
            if opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Acquire))
            {
                loader.stop()?;
                return Err(Error::Cancelled);
            }
            let mut failed = None;
            let polled = source
                .poll_each(opts.poll_size_bytes, &mut |record| match loader.apply(
                    record,
                    end,
                    &mut applied,
                ) {
                    Ok(more) => more,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                })
                .map_err(source_error)?;
            if let Some(e) = failed {
                return Err(e);
            }
            if polled == 0 {
                break;
            }
            let (records, bytes) = (applied.records, applied.bytes);
            // The end is reported once its last run is installed, below.
            if let Some(l) = listener
                && loader.position() < end
            {
                let at = Offsets {
                    offset: loader.position(),
                    flushed: loader.flushed_offset(),
                    end,
                };
                l.on_progress(&progress_at(records, bytes, at, started));
            }
        }
        let cuts = loader.finish(end)?;
        Ok((applied.records, applied.bytes, cuts))
    })?;
    if let Some(l) = listener {
        let at = Offsets {
            offset: end,
            flushed: end,
            end,
        };
        l.on_progress(&progress_at(records, bytes, at, started));
    }
    let report = RestoreReport {
        start_offset: start,
        end_offset: end,
        records,
        bytes,
        elapsed: started.elapsed(),
        resumed: false,
    };
    Ok((report, cuts))
}

/// Where a load is: its next offset to apply, its flushed offset, its end.
struct Offsets {
    offset: u64,
    flushed: u64,
    end: u64,
}

fn progress_at(records: u64, bytes: u64, at: Offsets, started: Instant) -> RestoreProgress {
    RestoreProgress {
        records,
        bytes,
        offset: at.offset,
        flushed_offset: at.flushed,
        end_offset: at.end,
        elapsed: started.elapsed(),
    }
}

fn source_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Error {
    Error::Source(Arc::new(e))
}

/// The checkpoint's version, checked against the source's bounds.
fn checked_checkpoint(fs: &dyn FileSystem, dir: &Path, bounds: SourceBounds) -> Result<Version> {
    if marker::is_restoring(fs, dir)? {
        return Err(Error::RestoreIncomplete {
            path: dir.to_owned(),
        });
    }
    let version = read_version(fs, dir)?;
    let offset = version.flushed_offset();
    check_position(offset, bounds)?;
    if offset > bounds.end_offset {
        return Err(Error::InvalidArgument(format!(
            "the checkpoint's offset {offset} is past the source's end {}",
            bounds.end_offset
        )));
    }
    Ok(version)
}
