//! Small builders the changelog's tests share.

use std::io;
use std::path::Path;

use crate::fs::MemFs;
use crate::{LogOptions, SyncPolicy};

/// A [`MemFs`] on which `dir` already exists, durably (so a test of power
/// loss is not about the creation of the log's directory).
///
/// # Errors
/// The file system's error creating the directory.
pub fn mem_fs_with_dir(dir: impl AsRef<Path>) -> io::Result<MemFs> {
    let fs = MemFs::new();
    fs.create_dir_durably(dir.as_ref())?;
    Ok(fs)
}

/// 4 KiB segments with an index entry every 512 bytes and 2 KiB
/// preallocation chunks, under `policy`: rolls, index lookups and the
/// preallocation's zero-fill and trim within a few dozen batches. (The
/// default preallocation, 1 MiB under `Always`, would copy a megabyte per
/// segment in every run.)
#[must_use]
pub fn small_log_options(policy: SyncPolicy) -> LogOptions {
    LogOptions::default()
        .segment_size_bytes(4096)
        .index_interval_bytes(512)
        .sync_policy(policy)
        .preallocate_bytes(Some(2048))
}
