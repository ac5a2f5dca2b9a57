//! The decoded index: one entry per data block, held in memory while a
//! table is open.
//!
//! On disk the index is a block (restart interval 1) whose keys are the
//! last internal key of each data block and whose values are varint block
//! handles. It is decoded once when the table opens, and checked: handles
//! must tile the data region exactly, in order, with no gaps.
//!
//! A lookup binary-searches the keys. To keep most steps off the keys
//! themselves (a cache miss and a byte comparison each), the index also
//! holds, per block, the eight bytes of its user key that follow the
//! prefix every key of the table shares, as one big-endian `u64` in a
//! dense array: a step compares two integers, and only a tie compares
//! the keys.

use std::cmp::Ordering;

use super::block::{Block, common_prefix_len};
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
    /// Length of the prefix every entry's user key shares.
    shared_len: usize,
    /// Per entry, [`window`] of its user key after `shared_len` bytes.
    windows: Vec<u64>,
}

/// The eight bytes of `bytes` from `at` as a big-endian integer, zero
/// past its end. For keys `a < b` sharing their first `at` bytes,
/// `window(a, at) <= window(b, at)`: a tie says nothing, a difference
/// orders them.
fn window(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    if let Some(tail) = bytes.get(at..) {
        let n = tail.len().min(8);
        raw[..n].copy_from_slice(&tail[..n]);
    }
    u64::from_be_bytes(raw)
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
            None => {
                index.build_windows();
                Ok(index)
            }
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

    /// Sets `shared_len` and `windows`. The keys are sorted (the block's
    /// checks make sure), so the prefix the first and last share is every
    /// key's.
    fn build_windows(&mut self) {
        let n = self.entries.len();
        self.shared_len = match n.checked_sub(1) {
            Some(last) => common_prefix_len(self.key(0).user_key, self.key(last).user_key),
            None => 0,
        };
        self.windows = (0..n)
            .map(|i| window(self.key(i).user_key, self.shared_len))
            .collect();
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
        let Some(first) = self.entries.first() else {
            return 0;
        };
        let shared = &self.user_keys[first.user_key_start..][..self.shared_len];
        // A target that does not start with the shared prefix sorts before
        // or after every key (a strict prefix of it sorts before).
        let head = &target.user_key[..target.user_key.len().min(self.shared_len)];
        match head.cmp(shared) {
            Ordering::Less => return 0,
            Ordering::Greater => return high,
            Ordering::Equal => {}
        }
        let target_window = window(target.user_key, self.shared_len);
        while low < high {
            let mid = low + (high - low) / 2;
            let ord = match self.windows[mid].cmp(&target_window) {
                Ordering::Equal => self.key(mid).cmp_internal(target),
                decided => decided,
            };
            if ord == Ordering::Less {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// Bytes held in memory, roughly.
    pub(crate) fn memory_size_bytes(&self) -> usize {
        self.user_keys.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.windows.capacity() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use varve_changelog::testing::Rng;

    use super::*;

    /// An index over blocks whose last user keys are `keys` (sorted), each
    /// at sequence number 5.
    fn index(keys: &[&[u8]]) -> Index {
        let mut index = Index::default();
        for (i, key) in keys.iter().enumerate() {
            let handle = BlockHandle {
                offset: i as u64 * 100,
                size_bytes: 95,
            };
            index.push(InternalKeyRef::seek_key(key, SeqNo(5)), handle);
        }
        index.build_windows();
        index
    }

    /// `find` by a plain scan: the first block whose last key is `>= target`.
    fn scan(index: &Index, target: &InternalKeyRef<'_>) -> usize {
        (0..index.len())
            .find(|&i| index.key(i).cmp_internal(target) != Ordering::Less)
            .unwrap_or(index.len())
    }

    #[test]
    fn find_agrees_with_a_scan_for_keys_around_and_beyond_the_shared_prefix() {
        let sets: [&[&[u8]]; 5] = [
            &[b"user:0001", b"user:0005", b"user:0009"],
            &[b"k", b"k\0", b"k\0\0", b"k\x01"],
            &[
                b"prefix-aaaaaaaa-1",
                b"prefix-aaaaaaaa-2",
                b"prefix-aaaaaaab",
            ],
            &[b"", b"a", b"b"],
            &[b"same"],
        ];
        let targets: [&[u8]; 17] = [
            b"",
            b"k",
            b"k\0",
            b"k\0\0\0",
            b"k\x01",
            b"k\xff",
            b"j\xff",
            b"l",
            b"user:",
            b"user:0005",
            b"user:0006",
            b"user:9",
            b"usea",
            b"prefix-aaaaaaaa-",
            b"prefix-aaaaaaaa-2x",
            b"prefix-aaaaaaab\0",
            b"same",
        ];
        for keys in sets {
            let index = index(keys);
            for target in targets {
                for seqno in [9, 5, 1] {
                    let t = InternalKeyRef::seek_key(target, SeqNo(seqno));
                    assert_eq!(
                        index.find(&t),
                        scan(&index, &t),
                        "{keys:?} {target:?}@{seqno}"
                    );
                }
            }
        }
        assert_eq!(
            Index::default().find(&InternalKeyRef::seek_key(b"x", SeqNo(1))),
            0
        );
    }

    /// Up to `max_len` bytes of an alphabet rich in edge cases.
    fn random_key(rng: &mut Rng, max_len: u64) -> Vec<u8> {
        let alphabet = [0u8, 1, b'a', 0xff];
        let len = rng.below(max_len + 1);
        (0..len).map(|_| alphabet[rng.below(4) as usize]).collect()
    }

    #[test]
    fn find_agrees_with_a_scan_on_random_short_keys() {
        let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
        for _ in 0..500 {
            let prefix = random_key(&mut rng, 10);
            let mut keys: Vec<Vec<u8>> = (0..1 + rng.below(12))
                .map(|_| [prefix.clone(), random_key(&mut rng, 12)].concat())
                .collect();
            keys.sort();
            keys.dedup();
            let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let index = index(&refs);
            for _ in 0..40 {
                let target = if rng.below(2) == 0 {
                    [prefix.clone(), random_key(&mut rng, 12)].concat()
                } else {
                    random_key(&mut rng, 22)
                };
                let t = InternalKeyRef::seek_key(&target, SeqNo(rng.below(10)));
                assert_eq!(index.find(&t), scan(&index, &t), "{keys:?} {target:?}");
            }
        }
    }
}
