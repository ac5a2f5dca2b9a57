//! Sorted string tables: immutable, sorted files of internal entries.
//!
//! A table is written once by a [`TableBuilder`] (from a memtable flush or a
//! compaction) and then only read, through [`Table`]. The byte-level format
//! is described in `docs/format/sst.md`:
//!
//! ```text
//! table := data_block* filter_block properties_block index_block footer
//! ```
//!
//! Each block is followed by a 5-byte trailer (compression type and CRC32).
//! Data blocks hold prefix-compressed internal keys and values; the index
//! holds the last key and the handle of every data block; the filter is a
//! Bloom filter over user keys; the properties record counts, sizes, the key
//! range and the changelog offsets (sequence numbers) the table covers; the
//! fixed 64-byte footer locates the other three and ends with the format
//! version, its own CRC and the magic `varvesst`.
//!
//! Readers trust nothing they read: every block's CRC and structure is
//! checked, every length and offset is bounds-checked, and any damage is an
//! [`Error::Corruption`](crate::Error::Corruption) naming the file and the
//! byte offset, never a panic or a wrong answer.
//!
//! Module map: [`format`](mod@format) (constants, footer, handles, varints), [`block`]
//! (block builder and checked block), `block_iter` (cursor in a block),
//! [`filter`] (Bloom filter and hash), `properties`, `index` (decoded
//! index), `builder`, `reader`, `iterator` (two-level table cursor),
//! `verify`.

pub mod block;
mod block_iter;
mod builder;
mod compress;
pub mod filter;
pub mod format;
mod index;
mod iterator;
mod properties;
mod reader;
mod verify;

#[cfg(test)]
mod tests;

pub use block_iter::BlockIter;
pub use builder::{TableBuilder, TableInfo, TableOptions};
pub use format::{BlockHandle, Footer};
pub use iterator::TableIterator;
pub use properties::{TableProperties, names as property_names};
pub use reader::Table;
pub use verify::VerifyReport;
