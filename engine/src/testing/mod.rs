//! Store builders shared by the test crates, for tests only; not part of
//! the stable API.
//!
//! Built only with the `testing` feature (which also turns on
//! `varve_changelog/testing`, re-exported here: [`Rng`], [`InterceptFs`],
//! [`MemFs`]). The test crates of the workspace enable it through their
//! dev-dependencies, so `cargo test --workspace` needs no flags.
//!
//! The presets are starting points: a test adds the one or two setters its
//! scenario needs (`tiny_options().fs(fs).sync_interval_ms(None)`).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use bytes::Bytes;

pub use varve_changelog::testing::{
    BrokenSource, CrashMode, FaultKind, Hook, InterceptFs, MemFs, Op, OpKind, Rng, all_sequences,
    env_u64, kafka_bootstrap, seed_range,
};

use varve_changelog::fs::FileSystem;

use crate::{CompactionOptions, Db, Options};

/// 4 KiB memtables and 64 KiB changelog segments: a flush every few dozen
/// writes, so crash tests see tables, not just the changelog.
#[must_use]
pub fn tiny_options() -> Options {
    Options::default()
        .memtable_size_bytes(4096)
        .changelog_segment_size_bytes(64 << 10)
}

/// [`tiny_options`] with one immutable memtable, 256-byte blocks and a
/// manifest that rotates at 64 bytes: every structure of the store
/// (tables, multi-block tables, manifest rotation) within a short workload.
#[must_use]
pub fn crash_options() -> Options {
    tiny_options()
        .max_immutable_memtables(1)
        .block_size_bytes(256)
        .manifest_rotate_size_bytes(64)
}

/// 64 KiB memtables: flushes and compactions within a few thousand writes.
#[must_use]
pub fn small_options() -> Options {
    Options::default().memtable_size_bytes(64 << 10)
}

/// Default options without background compaction, so a test decides when
/// tables are merged.
#[must_use]
pub fn manual_compaction() -> Options {
    Options::default().compaction(CompactionOptions::default().auto(false))
}

/// Every key and value of `db`, in order.
///
/// # Panics
/// If the store cannot be read (a test failure).
#[must_use]
pub fn read_all(db: &Db) -> BTreeMap<Bytes, Bytes> {
    db.iter()
        .map(|kv| kv.unwrap_or_else(|e| panic!("read the whole store: {e}")))
        .collect()
}

/// The names of the files in `dir` of `fs` that end with `suffix`
/// (`".sst"`: the tables of a store directory), sorted.
///
/// # Errors
/// The file system's error listing `dir`.
pub fn files_ending_with(fs: &dyn FileSystem, dir: &Path, suffix: &str) -> io::Result<Vec<String>> {
    let mut names = fs.list_dir(dir)?;
    names.retain(|n| n.ends_with(suffix));
    Ok(names)
}
