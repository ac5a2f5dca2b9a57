//! Restoring a [`PartitionedStore`](crate::PartitionedStore): one restore
//! per partition, each from its own source (partition `p` of the changelog
//! topic rebuilds partition `p` of the store).

use std::path::Path;

use varve_changelog::RecordSource;

use super::{RestoreOptions, RestoreReport, restore};
use crate::error::{Error, Result};
use crate::partitioned::{lock_and_check_count, partition_dir, prepare_dir};

/// Rebuilds a partitioned store in `dir` with `sources.len()` partitions,
/// partition `p` from `sources[p]`; the result opens with
/// [`PartitionedStore::open`](crate::PartitionedStore::open) and that
/// partition count.
///
/// `dir` must be missing, empty, or an interrupted partitioned restore
/// with the same partition count (each partition then resumes as
/// [`restore`] does, and a finished partition must not be given again:
/// it holds a store, which [`restore`] refuses). Partitions are restored
/// one after another, in order.
///
/// # Examples
/// ```
/// # fn main() -> varve_db::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use varve_db::varve_changelog::LogSource;
/// use varve_db::{Options, PartitionedStore, RestoreOptions};
/// let live = PartitionedStore::open(tmp.path().join("live"), 2, Options::default())?;
/// for i in 0..100 {
///     live.put(format!("key-{i}"), format!("value-{i}"))?;
/// }
/// let mut sources: Vec<_> = (0..2).map(|p| LogSource::new(live.partition(p).changelog())).collect();
/// let reports = varve_db::restore_partitioned(tmp.path().join("copy"), &mut sources, RestoreOptions::default())?;
/// assert_eq!(reports.iter().map(|r| r.records).sum::<u64>(), 100);
/// drop(sources);
/// let copy = PartitionedStore::open(tmp.path().join("copy"), 2, Options::default())?;
/// assert_eq!(copy.get("key-7")?.as_deref(), Some(&b"value-7"[..]));
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidArgument`] for no sources or more than
/// [`MAX_PARTITIONS`](crate::MAX_PARTITIONS);
/// [`Error::IncompatibleOptions`] if `dir` holds a partitioned store with
/// another count; [`Error::NotAStore`] if it holds something else;
/// [`Error::Locked`] if the store is open; and every error of [`restore`]
/// for a partition (the partitions before it stay restored, the failed one
/// resumes on the next call).
pub fn restore_partitioned<S: RecordSource>(
    dir: impl AsRef<Path>,
    sources: &mut [S],
    opts: RestoreOptions,
) -> Result<Vec<RestoreReport>> {
    let dir = dir.as_ref();
    let fs = opts.store.fs.clone();
    let n = u32::try_from(sources.len())
        .ok()
        .filter(|n| (1..=crate::MAX_PARTITIONS).contains(n))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "a partitioned restore needs 1 to {} sources, not {}",
                crate::MAX_PARTITIONS,
                sources.len()
            ))
        })?;
    let exists = prepare_dir(fs.as_ref(), dir, true)?;
    let _lock = lock_and_check_count(fs.as_ref(), dir, n, exists)?;
    let mut reports = Vec::with_capacity(sources.len());
    for (p, source) in (0..n).zip(sources.iter_mut()) {
        reports.push(restore(partition_dir(dir, p), source, opts.clone())?);
    }
    Ok(reports)
}
