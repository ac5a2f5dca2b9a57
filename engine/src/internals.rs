//! The engine's parts below the store: the compaction picker, internal
//! iterators and keys, the memtable, tables (SSTs) and the manifest's
//! versions.
//!
//! **Not a stable API.** It is public for the `varve` tools, the fuzz
//! targets and the benchmarks, which read the files below a store; it may
//! change in any release. Applications use the items at the crate root.

#[path = "compaction/mod.rs"]
pub mod compaction;
#[path = "iter/mod.rs"]
pub mod iter;
#[path = "key.rs"]
pub mod key;
#[path = "memtable/mod.rs"]
pub mod memtable;
#[path = "sst/mod.rs"]
pub mod sst;
#[path = "version/mod.rs"]
pub mod version;
