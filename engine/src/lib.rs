//! Varve: an embedded, ordered key-value store whose write-ahead log is a
//! Kafka-style changelog ([`varve_changelog`]).
//!
//! Every write is appended once, to the changelog; its offset is the
//! write's sequence number. The memtable is flushed to sorted tables
//! (SSTs), and the manifest records the changelog offset below which
//! everything is in tables, so recovery = open the tables + replay the
//! changelog from there.
//!
//! ```
//! # fn main() -> varve_db::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! use varve_db::{Db, Options, WriteBatch, WriteOptions};
//! let db = Db::open(dir.path(), Options::default())?;
//! let mut batch = WriteBatch::new();
//! batch.put("order:1", "NEW").put("order:2", "NEW");
//! db.write(batch, WriteOptions::default().sync(true))?; // durable on return
//! assert_eq!(db.get("order:1")?.as_deref(), Some(&b"NEW"[..]));
//! # Ok(()) }
//! ```

mod batch;
mod cache;
mod checkpoint;
mod db;
pub mod error;
mod flush;
mod lifecycle;
mod metrics;
mod metrics_export;
mod open;
mod options;
mod partitioned;
mod prefetch;
mod read_only;
mod read_path;
mod replicate;
pub mod restore;
mod shared;
mod snapshot;
mod standby;
mod state;
mod stats;
mod store_api;
mod table_cache;
#[cfg(feature = "testing")]
pub mod testing;
mod ttl;
mod write;
mod write_budget;
mod write_queue;

pub mod internals;
pub(crate) use internals::{compaction, iter, key, memtable, sst, version};

pub use batch::WriteBatch;
pub use cache::{BlockCache, CacheStats};
pub use checkpoint::{CheckpointInfo, check_outside_store};
pub use db::Db;
pub use error::{Error, Result};
pub use iter::db_iter::{Iter, KeyValue};
pub use metrics::{LatencySummary, Metrics};
pub use metrics_export::describe as describe_metrics;
pub use open::{CHANGELOG_DIR, LOCK_FILE};
pub use options::{
    ChangelogRetention, CompactionOptions, Compression, MAX_KEY_SIZE_BYTES, MAX_VALUE_SIZE_BYTES,
    Options, WriteOptions,
};
#[doc(hidden)]
pub use partitioned::read_partitions_file;
pub use partitioned::{
    MAX_PARTITIONS, PARTITIONS_FILE, PartitionedIter, PartitionedStore, partition_dir,
};
pub use read_only::ReadOnlyDb;
pub use read_path::Versioned;
pub use restore::{RestoreOptions, RestoreReport, restore, restore_partitioned};
pub use shared::{
    SWITCH_DENOMINATOR, SWITCH_NUMERATOR, SharedOptions, SharedResources, WriteBufferManager,
};
pub use snapshot::Snapshot;
pub use standby::{CatchUp, Standby};
pub use stats::{ChangelogStats, LevelStats, Stats};
pub use ttl::{Clock, ManualClock, SystemClock};
pub use varve_changelog;
