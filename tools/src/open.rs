//! How the commands that read or write data open a store: through the
//! engine, so they see exactly what the library sees. Readers use the
//! engine's read-only open (nothing is written; a TTL store's values come
//! without their write time and expired ones are hidden); writers open
//! with the options the store recorded (its TTL and compression). The
//! file-level commands (`verify`, `sst dump`, `log dump`, `manifest
//! dump`, `repair`) read the files themselves instead.

use std::path::Path;

use varve_db::varve_changelog::fs::StdFs;
use varve_db::{Options, PARTITIONS_FILE, ReadOnlyDb, partition_dir};

use crate::error::{Result, ToolError};

/// The number of partitions if `dir` is the root of a partitioned store.
///
/// # Errors
/// [`ToolError::Engine`] if its `PARTITIONS` file is damaged.
pub fn partitions(dir: &Path) -> Result<Option<u32>> {
    if !dir.join(PARTITIONS_FILE).is_file() {
        return Ok(None);
    }
    Ok(Some(varve_db::read_partitions_file(&StdFs, dir)?))
}

/// Refuses the root of a partitioned store for `command`, which works on
/// one store only.
///
/// # Errors
/// [`ToolError::PartitionedRoot`] naming the partition directories;
/// [`ToolError::Engine`] if the `PARTITIONS` file is damaged.
pub fn refuse_root(dir: &Path, command: &'static str) -> Result<()> {
    match partitions(dir)? {
        Some(partitions) => Err(ToolError::PartitionedRoot {
            root: dir.to_owned(),
            partitions,
            command,
        }),
        None => Ok(()),
    }
}

/// Opens the store in `dir` read-only, warning on stderr about a torn
/// changelog tail it leaves out.
///
/// # Errors
/// [`ToolError::Missing`], and the engine's errors (`NotAStore`,
/// `Locked`, `Corruption` …).
pub fn read_only(dir: &Path) -> Result<ReadOnlyDb> {
    if !dir.exists() {
        return Err(ToolError::Missing(dir.to_owned()));
    }
    let db = ReadOnlyDb::open(dir, Options::default())?;
    if let Some((segment, byte, bytes, what)) = &db.changelog_end().torn_tail {
        eprintln!(
            "warning: ignoring a torn tail of {bytes} bytes at {}:{byte}: {what}; opening the store for writing would cut it",
            segment.display()
        );
    }
    Ok(db)
}

/// Opens every partition of the partitioned store rooted at `dir`
/// read-only, in partition order.
///
/// # Errors
/// As [`read_only`], for any partition.
pub fn read_only_partitions(dir: &Path, partitions: u32) -> Result<Vec<ReadOnlyDb>> {
    (0..partitions)
        .map(|p| read_only(&partition_dir(dir, p)))
        .collect()
}

/// The options to open the store in `dir` with for writing: those it
/// recorded, or the defaults for a store that does not exist yet.
///
/// # Errors
/// [`ToolError::PartitionedRoot`] for a partitioned store's root, the engine's
/// errors reading the store.
pub fn write_options(dir: &Path) -> Result<Options> {
    refuse_root(dir, "put/delete/load/compact")?;
    if !dir.join(crate::store::CURRENT).is_file() {
        return Ok(Options::default());
    }
    Ok(Options::default().recorded(dir)?)
}
