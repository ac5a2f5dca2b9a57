//! Varve: an embedded, ordered key-value store whose write-ahead log is a
//! Kafka-style changelog ([`varve_changelog`]).
//!
//! The engine is being built; this crate currently holds its building
//! blocks (internal keys, memtable, tables, manifest).

pub mod error;
pub mod iter;
pub mod key;
pub mod memtable;
pub mod sst;
pub mod version;

pub use error::{Error, Result};
