//! `varve-changelog`: a segmented, append-only log with Kafka's log
//! semantics. It is the write-ahead log of the Varve engine and can be used
//! on its own.
//!
//! - [`Log`]: open a directory, [`append`](Log::append) batches of
//!   [`Record`]s (dense `u64` offsets), [`sync`](Log::sync), read with a
//!   [`LogReader`] or Kafka-style [`read`](Log::read) fetches, tail with
//!   [`wait_for`](Log::wait_for).
//! - Segments named by base offset (`{base_offset:020}.log`) with a sparse
//!   offset index and a time index; rolled by size and age.
//! - Recovery on open cuts a torn tail and reports it
//!   ([`RecoveryReport`]); damage below the recovery point is a typed
//!   [`Error::Corruption`].
//! - Retention ([`Log::truncate_before`], [`Log::apply_retention`]),
//!   compaction ([`Log::clean`]) and durable consumer positions
//!   ([`Log::commit_position`]).
//! - All I/O goes through the [`fs`] seam, so tests can simulate power loss
//!   and I/O errors with `MemFs` (the `testing` feature: a test toolkit,
//!   not part of the stable API).
//!
//! The formats are specified byte by byte in `docs/format/`.

pub mod batch;
mod cleaner;
pub mod durability;
pub mod error;
pub mod filename;
pub mod fs;
pub mod index;
#[cfg(feature = "kafka")]
pub mod kafka;
mod log;
pub mod meta;
mod options;
pub mod partitioner;
pub mod positions;
pub mod read_only;
mod reader;
mod record;
mod recovery;
mod replica;
mod retention;
mod segment;
mod setters;
mod source;
#[cfg(feature = "testing")]
pub mod testing;
mod varint;

pub use cleaner::CleanReport;
pub use error::{Error, Result};
pub use log::{AppendInfo, Log};
pub use options::{LogOptions, RecoveryMode, SyncPolicy};
pub use reader::{FetchResult, LogReader};
pub use record::{Header, Record, RecordRef, StoredRecord, now_ms};
pub use recovery::RecoveryReport;
pub use retention::RetentionReport;
pub use source::{LogSource, RecordSource, SourceBounds};
