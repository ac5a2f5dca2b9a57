//! The decoded index: one entry per data block, held in memory while a
//! table is open.
//!
//! On disk the index is a block (restart interval 1) whose keys are the
//! last internal key of each data block and whose values are varint block
//! handles. It is decoded once when the table opens, and checked: handles
//! must tile the data region exactly, in order, with no gaps.

use std::cmp::Ordering;

use super::block::Block;
use super::format::BlockHandle;
use crate::error::Result;
use crate::key::{InternalKeyRef, SeqNo, ValueKind};

#[derive(Clone, Copy, Debug)]
struct Entry {
    user_key_start: usize,
    user_key_end: usize,
    seqno: SeqNo,
    kind: ValueKind,
    handle: BlockHandle,
}

/// The data blocks of a table and their last keys, in order.
#[derive(Debug, Default)]
pub(crate) struct Index {
    user_keys: Vec<u8>,
    entries: Vec<Entry>,
}

impl Index {
    /// Decodes a checked index block whose data blocks must exactly cover
    /// `0..data_end` of the file.
    pub(crate) fn decode(block: &Block, data_end: u64) -> Result<Index> {
        let mut index = Index::default();
        let mut expected_offset = Some(0u64);
        let mut bad: Option<&'static str> = None;
        block.for_each_entry(|key, value| {
            if bad.is_some() {
                return;
            }
            let (Some(key), Some(handle)) = (
                InternalKeyRef::decode(key),
                BlockHandle::decode_varint(value),
            ) else {
                bad = Some("malformed index entry");
                return;
            };
            if expected_offset != Some(handle.offset) {
                bad = Some("data block handles do not tile the data region");
                return;
            }
            expected_offset = handle.end_with_trailer();
            index.push(key, handle);
        });
        if bad.is_none() && expected_offset != Some(data_end) {
            bad = Some("data block handles do not end where the filter block starts");
        }
        match bad {
            Some(what) => Err(block.origin().corruption(0, what)),
            None => Ok(index),
        }
    }

    fn push(&mut self, key: InternalKeyRef<'_>, handle: BlockHandle) {
        let user_key_start = self.user_keys.len();
        self.user_keys.extend_from_slice(key.user_key);
        self.entries.push(Entry {
            user_key_start,
            user_key_end: self.user_keys.len(),
            seqno: key.seqno,
            kind: key.kind,
            handle,
        });
    }

    /// Number of data blocks.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The last key of data block `i`.
    pub(crate) fn key(&self, i: usize) -> InternalKeyRef<'_> {
        let entry = &self.entries[i];
        InternalKeyRef {
            user_key: &self.user_keys[entry.user_key_start..entry.user_key_end],
            seqno: entry.seqno,
            kind: entry.kind,
        }
    }

    /// The handle of data block `i`.
    pub(crate) fn handle(&self, i: usize) -> BlockHandle {
        self.entries[i].handle
    }

    /// All data block handles, in file order.
    pub(crate) fn handles(&self) -> Vec<BlockHandle> {
        self.entries.iter().map(|e| e.handle).collect()
    }

    /// The first data block whose last key is `>= target` (the only block
    /// that can hold the first entry `>= target`), or `len()` if none.
    pub(crate) fn find(&self, target: &InternalKeyRef<'_>) -> usize {
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.key(mid).cmp_internal(target) == Ordering::Less {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// Bytes held in memory, roughly.
    pub(crate) fn memory_size_bytes(&self) -> usize {
        self.user_keys.capacity() + self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}
