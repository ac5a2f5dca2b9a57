//! Table properties: what a table holds, recorded when it is built.
//!
//! The properties block is an ordinary block (restart interval 1) of
//! `name → value` entries, names strictly increasing. Integers are `u64`
//! little-endian (8 bytes); keys are encoded internal keys; text is UTF-8.
//! Every name listed in [`names`] is required in format version 1; names a
//! reader does not know are skipped, so writers may add properties without
//! a version change.

use std::ops::RangeInclusive;
use std::path::Path;

use bytes::Bytes;

use super::block::{Block, BlockBuilder};
use crate::error::{Error, Result};
use crate::key::{InternalKeyRef, SeqNo};

/// Property names (on disk: never rename).
pub mod names {
    /// Restart interval of data blocks (`u64`).
    pub const BLOCK_RESTART_INTERVAL: &str = "varve.block_restart_interval";
    /// Target data block size in bytes (`u64`).
    pub const BLOCK_SIZE_BYTES: &str = "varve.block_size_bytes";
    /// Bloom filter bits per key; 0 when disabled (`u64`).
    pub const BLOOM_BITS_PER_KEY: &str = "varve.bloom_bits_per_key";
    /// When the table was built, milliseconds since the Unix epoch (`u64`).
    pub const CREATION_TIME_MS: &str = "varve.creation_time_ms";
    /// What built the table, e.g. `varve 0.1.0` (UTF-8).
    pub const CREATOR: &str = "varve.creator";
    /// Compression chosen for the table's data blocks: `none` or `lz4`
    /// (optional: tables without it were written uncompressed).
    pub const COMPRESSION: &str = "varve.compression";
    /// Number of data blocks (`u64`).
    pub const DATA_BLOCK_COUNT: &str = "varve.data_block_count";
    /// Bytes of data blocks with their trailers (`u64`).
    pub const DATA_SIZE_BYTES: &str = "varve.data_size_bytes";
    /// Number of entries, puts and deletes (`u64`).
    pub const ENTRY_COUNT: &str = "varve.entry_count";
    /// Bytes of the filter block with its trailer (`u64`).
    pub const FILTER_SIZE_BYTES: &str = "varve.filter_size_bytes";
    /// Bytes of the index block with its trailer (`u64`).
    pub const INDEX_SIZE_BYTES: &str = "varve.index_size_bytes";
    /// Largest internal key; empty for an empty table.
    pub const LARGEST_KEY: &str = "varve.largest_key";
    /// Sum of encoded internal key lengths (`u64`).
    pub const RAW_KEY_SIZE_BYTES: &str = "varve.raw_key_size_bytes";
    /// Sum of value lengths (`u64`).
    pub const RAW_VALUE_SIZE_BYTES: &str = "varve.raw_value_size_bytes";
    /// Largest sequence number, i.e. changelog offset (`u64`).
    pub const SEQNO_MAX: &str = "varve.seqno_max";
    /// Smallest sequence number, i.e. changelog offset (`u64`).
    pub const SEQNO_MIN: &str = "varve.seqno_min";
    /// Smallest internal key; empty for an empty table.
    pub const SMALLEST_KEY: &str = "varve.smallest_key";
    /// Number of delete entries (`u64`).
    pub const TOMBSTONE_COUNT: &str = "varve.tombstone_count";
}

/// What a table holds, recorded when it was built.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TableProperties {
    /// Number of entries (puts and deletes).
    pub entry_count: u64,
    /// Number of delete entries.
    pub tombstone_count: u64,
    /// Number of data blocks.
    pub data_block_count: u64,
    /// Bytes of data blocks, trailers included (they start the file, so
    /// this is also the offset of the filter block).
    pub data_size_bytes: u64,
    /// Bytes of the index block, trailer included.
    pub index_size_bytes: u64,
    /// Bytes of the filter block, trailer included.
    pub filter_size_bytes: u64,
    /// Sum of the lengths of the encoded internal keys.
    pub raw_key_size_bytes: u64,
    /// Sum of the lengths of the values.
    pub raw_value_size_bytes: u64,
    /// Smallest encoded internal key; empty iff the table is empty.
    pub smallest_key: Vec<u8>,
    /// Largest encoded internal key; empty iff the table is empty.
    pub largest_key: Vec<u8>,
    /// Smallest sequence number (0 for an empty table).
    pub seqno_min: SeqNo,
    /// Largest sequence number (0 for an empty table).
    pub seqno_max: SeqNo,
    /// Build time in milliseconds since the Unix epoch.
    pub creation_time_ms: u64,
    /// What built the table, e.g. `varve 0.1.0`.
    pub creator: String,
    /// Compression chosen for the data blocks (`none` or `lz4`; each
    /// block's trailer says whether that block is compressed).
    pub compression: String,
    /// Target data block size the table was built with.
    pub block_size_bytes: u64,
    /// Restart interval of the data blocks.
    pub block_restart_interval: u64,
    /// Bloom filter bits per key (0 when disabled).
    pub bloom_bits_per_key: u64,
}

impl TableProperties {
    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// The smallest internal key, or `None` for an empty table.
    pub fn smallest(&self) -> Option<InternalKeyRef<'_>> {
        InternalKeyRef::decode(&self.smallest_key)
    }

    /// The largest internal key, or `None` for an empty table.
    pub fn largest(&self) -> Option<InternalKeyRef<'_>> {
        InternalKeyRef::decode(&self.largest_key)
    }

    /// The changelog offsets the table's entries came from: a write at
    /// offset `o` has sequence number `o + 1`. `None` for an empty table
    /// (or one whose sequence numbers start at 0, which no write has). Not
    /// every offset in the range is in the table (overwritten versions may
    /// have been dropped, and batches span several offsets).
    pub fn changelog_offsets(&self) -> Option<RangeInclusive<u64>> {
        let first = self.seqno_min.0.checked_sub(1)?;
        let last = self.seqno_max.0.checked_sub(1)?;
        (!self.is_empty() && first <= last).then_some(first..=last)
    }

    /// Encodes the properties block's contents.
    pub fn encode(&self) -> Vec<u8> {
        let int = |v: u64| v.to_le_bytes().to_vec();
        let mut pairs: Vec<(&str, Vec<u8>)> = vec![
            (
                names::BLOCK_RESTART_INTERVAL,
                int(self.block_restart_interval),
            ),
            (names::BLOCK_SIZE_BYTES, int(self.block_size_bytes)),
            (names::BLOOM_BITS_PER_KEY, int(self.bloom_bits_per_key)),
            (names::CREATION_TIME_MS, int(self.creation_time_ms)),
            (names::COMPRESSION, self.compression.as_bytes().to_vec()),
            (names::CREATOR, self.creator.as_bytes().to_vec()),
            (names::DATA_BLOCK_COUNT, int(self.data_block_count)),
            (names::DATA_SIZE_BYTES, int(self.data_size_bytes)),
            (names::ENTRY_COUNT, int(self.entry_count)),
            (names::FILTER_SIZE_BYTES, int(self.filter_size_bytes)),
            (names::INDEX_SIZE_BYTES, int(self.index_size_bytes)),
            (names::LARGEST_KEY, self.largest_key.clone()),
            (names::RAW_KEY_SIZE_BYTES, int(self.raw_key_size_bytes)),
            (names::RAW_VALUE_SIZE_BYTES, int(self.raw_value_size_bytes)),
            (names::SEQNO_MAX, int(self.seqno_max.0)),
            (names::SEQNO_MIN, int(self.seqno_min.0)),
            (names::SMALLEST_KEY, self.smallest_key.clone()),
            (names::TOMBSTONE_COUNT, int(self.tombstone_count)),
        ];
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let mut builder = BlockBuilder::new(1);
        for (name, value) in &pairs {
            builder.add(name.as_bytes(), value);
        }
        builder.finish()
    }

    /// Decodes a checked properties block and checks that the values agree
    /// with each other.
    ///
    /// # Errors
    /// [`Error::Corruption`] at the block's offset if a required property is
    /// missing or malformed, or the values contradict each other.
    pub fn decode(block: &Block) -> Result<TableProperties> {
        let mut props = TableProperties::default();
        let mut seen = 0usize;
        let mut bad: Option<String> = None;
        block.for_each_entry(|name, value| match props.set(name, value) {
            Ok(true) => seen += 1,
            Ok(false) => {}
            Err(what) => {
                bad.get_or_insert(what);
            }
        });
        let corrupt = |what: String| Err(block.origin().corruption(0, what));
        if let Some(what) = bad {
            return corrupt(what);
        }
        if seen != REQUIRED_COUNT {
            return corrupt(format!(
                "{} of {REQUIRED_COUNT} required properties missing",
                REQUIRED_COUNT - seen
            ));
        }
        if let Err(what) = props.check() {
            return corrupt(what);
        }
        Ok(props)
    }

    /// Sets one property; `Ok(false)` for a name this build does not know.
    fn set(&mut self, name: &[u8], value: &Bytes) -> Result<bool, String> {
        let name = std::str::from_utf8(name).unwrap_or("");
        let slot = match name {
            names::SMALLEST_KEY => return Ok(set_bytes(&mut self.smallest_key, value)),
            names::LARGEST_KEY => return Ok(set_bytes(&mut self.largest_key, value)),
            names::CREATOR => {
                let text =
                    std::str::from_utf8(value).map_err(|_| "creator is not UTF-8".to_string())?;
                self.creator = text.to_string();
                return Ok(true);
            }
            names::COMPRESSION => {
                let text = std::str::from_utf8(value)
                    .map_err(|_| "compression is not UTF-8".to_string())?;
                self.compression = text.to_string();
                // Optional: not counted among the required properties.
                return Ok(false);
            }
            names::SEQNO_MIN => &mut self.seqno_min.0,
            names::SEQNO_MAX => &mut self.seqno_max.0,
            _ => match self.int_slot(name) {
                Some(slot) => slot,
                None => return Ok(false),
            },
        };
        let raw: [u8; 8] = value[..]
            .try_into()
            .map_err(|_| format!("property {name} has {} bytes, not 8", value.len()))?;
        *slot = u64::from_le_bytes(raw);
        Ok(true)
    }

    fn int_slot(&mut self, name: &str) -> Option<&mut u64> {
        Some(match name {
            names::BLOCK_RESTART_INTERVAL => &mut self.block_restart_interval,
            names::BLOCK_SIZE_BYTES => &mut self.block_size_bytes,
            names::BLOOM_BITS_PER_KEY => &mut self.bloom_bits_per_key,
            names::CREATION_TIME_MS => &mut self.creation_time_ms,
            names::DATA_BLOCK_COUNT => &mut self.data_block_count,
            names::DATA_SIZE_BYTES => &mut self.data_size_bytes,
            names::ENTRY_COUNT => &mut self.entry_count,
            names::FILTER_SIZE_BYTES => &mut self.filter_size_bytes,
            names::INDEX_SIZE_BYTES => &mut self.index_size_bytes,
            names::RAW_KEY_SIZE_BYTES => &mut self.raw_key_size_bytes,
            names::RAW_VALUE_SIZE_BYTES => &mut self.raw_value_size_bytes,
            names::TOMBSTONE_COUNT => &mut self.tombstone_count,
            _ => return None,
        })
    }

    /// Checks that the values agree with each other.
    fn check(&self) -> Result<(), String> {
        if self.tombstone_count > self.entry_count {
            return Err("more tombstones than entries".into());
        }
        if self.data_block_count > self.entry_count {
            return Err("more data blocks than entries".into());
        }
        if self.is_empty() {
            let blank = self.smallest_key.is_empty()
                && self.largest_key.is_empty()
                && self.data_block_count == 0;
            return if blank {
                Ok(())
            } else {
                Err("empty table with a key range".into())
            };
        }
        let (Some(smallest), Some(largest)) = (self.smallest(), self.largest()) else {
            return Err("malformed smallest or largest key".into());
        };
        if smallest.cmp_internal(&largest).is_gt() || self.data_block_count == 0 {
            return Err("smallest key is after the largest key, or no data blocks".into());
        }
        if self.seqno_min > self.seqno_max || self.seqno_max > SeqNo::MAX {
            return Err(format!(
                "bad seqno range {}..={}",
                self.seqno_min.0, self.seqno_max.0
            ));
        }
        Ok(())
    }
}

fn set_bytes(slot: &mut Vec<u8>, value: &Bytes) -> bool {
    slot.clear();
    slot.extend_from_slice(value);
    true
}

/// Number of names in [`names`].
const REQUIRED_COUNT: usize = 17;

/// Builds a Corruption for a property that disagrees with the file layout.
pub(crate) fn mismatch(path: &Path, offset: u64, what: &str, recorded: u64, actual: u64) -> Error {
    Error::corruption(
        path,
        offset,
        format!("properties record {what} = {recorded}, but the table has {actual}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, encoded_key};
    use crate::sst::block::{BlockBuilder, BlockKind, BlockOrigin};

    fn origin() -> BlockOrigin {
        BlockOrigin::for_test(500)
    }

    fn sample() -> TableProperties {
        let smallest = encoded_key(b"a", 3, ValueKind::Put);
        let largest = encoded_key(b"z", 9, ValueKind::Delete);
        TableProperties {
            entry_count: 10,
            tombstone_count: 2,
            data_block_count: 1,
            data_size_bytes: 200,
            index_size_bytes: 30,
            filter_size_bytes: 15,
            raw_key_size_bytes: 90,
            raw_value_size_bytes: 100,
            smallest_key: smallest,
            largest_key: largest,
            seqno_min: SeqNo(3),
            seqno_max: SeqNo(12),
            creation_time_ms: 1_700_000_000_000,
            creator: "varve test".into(),
            compression: "none".into(),
            block_size_bytes: 4096,
            block_restart_interval: 16,
            bloom_bits_per_key: 10,
        }
    }

    fn decode(contents: Vec<u8>) -> Result<TableProperties> {
        let block = Block::decode(Bytes::from(contents), BlockKind::Properties, origin())?;
        TableProperties::decode(&block)
    }

    #[test]
    fn roundtrip() {
        let props = sample();
        assert_eq!(decode(props.encode()).unwrap(), props);
        assert_eq!(props.changelog_offsets(), Some(2..=11));
        assert_eq!(TableProperties::default().changelog_offsets(), None);
    }

    #[test]
    fn changelog_offsets_of_inverted_seqnos_is_none() {
        // Decoded from a file, the seqnos may be anything: no underflow.
        let mut props = sample();
        (props.seqno_min, props.seqno_max) = (SeqNo(5), SeqNo(0));
        assert_eq!(props.changelog_offsets(), None);
        (props.seqno_min, props.seqno_max) = (SeqNo(9), SeqNo(4));
        assert_eq!(props.changelog_offsets(), None);
    }

    #[test]
    fn every_encoded_name_is_known_and_required() {
        let names = names_in(&sample().encode());
        // Every name but the optional compression is required.
        assert_eq!(names.len(), REQUIRED_COUNT + 1);
        let mut props = TableProperties::default();
        for name in names {
            let required = name != names::COMPRESSION.as_bytes();
            let set = props.set(&name, &Bytes::from_static(&[b'0'; 8]));
            assert_eq!(set, Ok(required), "{}", String::from_utf8_lossy(&name));
        }
    }

    fn names_in(contents: &[u8]) -> Vec<Vec<u8>> {
        let block = Block::decode(
            Bytes::copy_from_slice(contents),
            BlockKind::Properties,
            origin(),
        )
        .unwrap();
        let mut out = Vec::new();
        block.for_each_entry(|name, _| out.push(name.to_vec()));
        out
    }

    #[test]
    fn unknown_names_are_skipped_and_missing_ones_are_corruption() {
        let mut builder = BlockBuilder::new(1);
        let block = Block::decode(
            Bytes::from(sample().encode()),
            BlockKind::Properties,
            origin(),
        )
        .unwrap();
        let mut entries = Vec::new();
        block.for_each_entry(|name, value| entries.push((name.to_vec(), value.to_vec())));
        entries.push((b"zzz.future".to_vec(), b"anything".to_vec()));
        for (name, value) in &entries {
            builder.add(name, value);
        }
        assert_eq!(decode(builder.finish()).unwrap(), sample());
        for (name, value) in entries.iter().skip(1) {
            builder.add(name, value);
        }
        let err = decode(builder.finish()).unwrap_err();
        assert!(
            matches!(err, Error::Corruption { offset: 500, .. }),
            "{err}"
        );
    }

    #[test]
    fn contradictions_are_corruption() {
        let mut cases = Vec::new();
        let mut p = sample();
        p.tombstone_count = 11;
        cases.push(p);
        let mut p = sample();
        p.seqno_min = SeqNo(13);
        cases.push(p);
        let mut p = sample();
        std::mem::swap(&mut p.smallest_key, &mut p.largest_key);
        cases.push(p);
        let mut p = sample();
        p.smallest_key = b"short".to_vec();
        cases.push(p);
        let mut p = sample();
        p.entry_count = 0;
        p.tombstone_count = 0;
        cases.push(p);
        for props in cases {
            assert!(
                decode(props.encode()).unwrap_err().is_corruption(),
                "{props:?}"
            );
        }
    }
}
