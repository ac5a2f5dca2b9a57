//! Blocks: the sorted, prefix-compressed key/value runs that data, index and
//! properties blocks share.
//!
//! ```text
//! block   := entry* restart:u32le[num_restarts] num_restarts:u32le
//! entry   := shared:varint32 unshared:varint32 value_len:varint32
//!            key_delta[unshared] value[value_len]
//! ```
//!
//! An entry's key is the first `shared` bytes of the previous key followed
//! by `key_delta`. Every `restart_interval` entries a *restart point*
//! stores its key whole (`shared == 0`) and records its offset in the
//! restart array, so a reader can binary-search restart points and step
//! backwards without decoding the block from the start.
//!
//! [`Block::decode`] checks the whole structure once, when the block is
//! read; iterators then only re-check what they decode.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::format::{RESTART_ENTRY_SIZE, get_u32_le, get_varint32, put_varint32};
use crate::error::{Error, Result};
use crate::key::{InternalKeyRef, ValueKind};

/// Builds one block's contents.
#[derive(Debug)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    since_restart: usize,
    last_key: Vec<u8>,
    entry_count: usize,
}

impl BlockBuilder {
    /// A builder that starts a restart point every `restart_interval`
    /// entries.
    ///
    /// # Panics
    /// If `restart_interval` is 0.
    pub fn new(restart_interval: usize) -> Self {
        assert!(
            restart_interval >= 1,
            "block restart interval must be at least 1"
        );
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            restart_interval,
            since_restart: 0,
            last_key: Vec::new(),
            entry_count: 0,
        }
    }

    /// Appends an entry. The caller keeps keys sorted.
    ///
    /// # Panics
    /// If the key or value is longer than `u32::MAX` bytes or the block
    /// would grow past `u32::MAX` bytes.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.entry_count == 0 || self.since_restart == self.restart_interval {
            assert!(
                u32::try_from(self.buf.len()).is_ok(),
                "block larger than 4 GiB"
            );
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            common_prefix_len(&self.last_key, key)
        };
        assert!(u32::try_from(key.len()).is_ok(), "key longer than 4 GiB");
        assert!(
            u32::try_from(value.len()).is_ok(),
            "value longer than 4 GiB"
        );
        put_varint32(&mut self.buf, shared as u32);
        put_varint32(&mut self.buf, (key.len() - shared) as u32);
        put_varint32(&mut self.buf, value.len() as u32);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.since_restart += 1;
        self.entry_count += 1;
    }

    /// The size the finished block will have.
    pub fn estimated_size_bytes(&self) -> usize {
        self.buf.len() + (self.restarts.len() + 1) * RESTART_ENTRY_SIZE
    }

    /// Whether no entry was added since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.entry_count == 0
    }

    /// The number of entries added since the last [`finish`](Self::finish).
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// The last key added.
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends the restart array, returns the block's contents and resets
    /// the builder for the next block.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for restart in &self.restarts {
            out.extend_from_slice(&restart.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.restarts.clear();
        self.since_restart = 0;
        self.last_key.clear();
        self.entry_count = 0;
        out
    }
}

/// How many leading bytes `a` and `b` share.
pub(super) fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// What a block holds, which decides how its keys and values are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Internal keys and values; a delete's value is empty.
    Data,
    /// Internal keys (the last key of each data block) and block handles.
    Index,
    /// Property names (strictly increasing bytes) and values.
    Properties,
}

/// Where a block came from, for error messages.
#[derive(Clone, Debug)]
pub struct BlockOrigin {
    /// The table file.
    pub path: Arc<Path>,
    /// Byte offset of the block in the file.
    pub offset: u64,
}

impl BlockOrigin {
    /// A block at `offset` of a table named `t.sst`, for tests.
    #[cfg(test)]
    pub(crate) fn for_test(offset: u64) -> BlockOrigin {
        BlockOrigin {
            path: Arc::from(Path::new("t.sst")),
            offset,
        }
    }

    /// A corruption error at `offset_in_block` bytes into the block.
    pub fn corruption(&self, offset_in_block: usize, what: impl Into<String>) -> Error {
        Error::corruption(
            self.path.as_ref(),
            self.offset + offset_in_block as u64,
            what,
        )
    }
}

/// The decoded header of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// Bytes shared with the previous key.
    pub shared: usize,
    /// Length of the key delta.
    pub unshared: usize,
    /// Length of the value.
    pub value_len: usize,
    /// Offset of the key delta in the block.
    pub delta_offset: usize,
}

impl EntryHeader {
    /// Offset of the value in the block.
    pub fn value_offset(&self) -> usize {
        self.delta_offset + self.unshared
    }

    /// Offset just past the entry.
    pub fn end(&self) -> usize {
        self.value_offset() + self.value_len
    }
}

/// Decodes the header of the entry at `offset`, which must end by `limit`
/// (the start of the restart array); `None` if it is malformed or overruns.
pub fn decode_entry(data: &[u8], offset: usize, limit: usize) -> Option<EntryHeader> {
    let entry = data.get(offset..limit)?;
    // Most entries have three one-byte lengths (a short key suffix and a
    // value under 128 bytes): read them at once, as LevelDB does.
    if let [shared, unshared, value_len, ..] = *entry
        && (shared | unshared | value_len) < 0x80
    {
        let (shared, unshared, value_len) = (
            usize::from(shared),
            usize::from(unshared),
            usize::from(value_len),
        );
        let rest = entry.len() - 3;
        return (rest >= unshared && rest - unshared >= value_len).then_some(EntryHeader {
            shared,
            unshared,
            value_len,
            delta_offset: offset + 3,
        });
    }
    decode_entry_varint_by_varint(data, offset, limit)
}

/// [`decode_entry`] without the one-byte fast path: each length read as
/// a varint.
fn decode_entry_varint_by_varint(data: &[u8], offset: usize, limit: usize) -> Option<EntryHeader> {
    let mut at = offset;
    let mut next = || -> Option<usize> {
        let (value, n) = get_varint32(data.get(at..limit)?)?;
        at += n;
        Some(value as usize)
    };
    let (shared, unshared, value_len) = (next()?, next()?, next()?);
    let header = EntryHeader {
        shared,
        unshared,
        value_len,
        delta_offset: at,
    };
    (limit - at >= unshared && limit - at - unshared >= value_len).then_some(header)
}

/// A block read from a table, checked and immutable. Shared by iterators
/// (and, later, a block cache) through `Arc<Block>`.
#[derive(Debug)]
pub struct Block {
    data: Bytes,
    restarts_offset: usize,
    num_restarts: usize,
    origin: BlockOrigin,
    entry_count: usize,
    first_key: Vec<u8>,
    last_key: Vec<u8>,
}

impl Block {
    /// Checks `contents` (without trailer) as a block of `kind` and wraps
    /// it: the restart array fits, restart offsets increase and land on
    /// entries with `shared == 0`, every entry lies within the block with a
    /// shared prefix no longer than the previous key, and keys strictly
    /// increase (internal order for data and index blocks; data blocks
    /// must not be empty).
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the first bad byte.
    pub fn decode(contents: Bytes, kind: BlockKind, origin: BlockOrigin) -> Result<Block> {
        let (restarts_offset, num_restarts) = check_restarts(&contents, &origin)?;
        let layout = Layout {
            data: &contents,
            restarts_offset,
            num_restarts,
            origin: &origin,
        };
        let summary = layout.check_entries(kind)?;
        if kind == BlockKind::Data && summary.entry_count == 0 {
            return Err(origin.corruption(0, "empty data block"));
        }
        Ok(Block {
            data: contents,
            restarts_offset,
            num_restarts,
            origin,
            entry_count: summary.entry_count,
            first_key: summary.first_key,
            last_key: summary.last_key,
        })
    }

    /// The block's contents (without trailer).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Offset of the restart array; entries occupy `0..restarts_offset`.
    pub fn restarts_offset(&self) -> usize {
        self.restarts_offset
    }

    /// Number of restart points.
    pub fn num_restarts(&self) -> usize {
        self.num_restarts
    }

    /// Offset of restart point `index`.
    ///
    /// # Panics
    /// If `index >= num_restarts()`.
    pub fn restart(&self, index: usize) -> usize {
        assert!(index < self.num_restarts);
        let at = self.restarts_offset + index * RESTART_ENTRY_SIZE;
        get_u32_le(&self.data, at).map_or(usize::MAX, |v| v as usize)
    }

    /// Where the block came from.
    pub fn origin(&self) -> &BlockOrigin {
        &self.origin
    }

    /// Number of entries.
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// The first key (empty for an empty block).
    pub fn first_key(&self) -> &[u8] {
        &self.first_key
    }

    /// The last key (empty for an empty block).
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Calls `f(key, value)` for every entry in order. The block was checked
    /// when decoded, so this cannot fail.
    pub fn for_each_entry(&self, mut f: impl FnMut(&[u8], &Bytes)) {
        let mut key = Vec::new();
        let mut offset = 0;
        while let Some(entry) = decode_entry(&self.data, offset, self.restarts_offset) {
            key.truncate(entry.shared);
            key.extend_from_slice(&self.data[entry.delta_offset..entry.value_offset()]);
            f(&key, &self.data.slice(entry.value_offset()..entry.end()));
            offset = entry.end();
        }
    }
}

/// A block's layout while it is being checked.
struct Layout<'a> {
    data: &'a [u8],
    restarts_offset: usize,
    num_restarts: usize,
    origin: &'a BlockOrigin,
}

/// What checking a block's entries learned.
struct Summary {
    entry_count: usize,
    first_key: Vec<u8>,
    last_key: Vec<u8>,
}

impl Layout<'_> {
    fn restart(&self, index: usize) -> usize {
        get_u32_le(self.data, self.restarts_offset + index * RESTART_ENTRY_SIZE)
            .map_or(usize::MAX, |v| v as usize)
    }

    /// Walks every entry once; bounded by the block size because each entry
    /// takes at least three bytes.
    fn check_entries(&self, kind: BlockKind) -> Result<Summary> {
        let mut summary = Summary {
            entry_count: 0,
            first_key: Vec::new(),
            last_key: Vec::new(),
        };
        let mut key: Vec<u8> = Vec::new();
        let (mut offset, mut next_restart) = (0, 0);
        while offset < self.restarts_offset {
            let corrupt = |what: &str| Err(self.origin.corruption(offset, what));
            let Some(entry) = decode_entry(self.data, offset, self.restarts_offset) else {
                return corrupt("entry overruns the block");
            };
            if next_restart < self.num_restarts && self.restart(next_restart) == offset {
                next_restart += 1;
                if entry.shared != 0 {
                    return corrupt("entry at a restart point shares a prefix");
                }
            } else if next_restart < self.num_restarts && self.restart(next_restart) < offset {
                return corrupt("restart point is not at an entry boundary");
            }
            if entry.shared > key.len() {
                return corrupt("shared prefix longer than the previous key");
            }
            std::mem::swap(&mut key, &mut summary.last_key);
            key.clear();
            key.extend_from_slice(&summary.last_key[..entry.shared]);
            key.extend_from_slice(&self.data[entry.delta_offset..entry.value_offset()]);
            let value = &self.data[entry.value_offset()..entry.end()];
            if let Err(what) =
                check_entry(kind, &summary.last_key, &key, value, summary.entry_count)
            {
                return corrupt(what);
            }
            if summary.entry_count == 0 {
                summary.first_key.clone_from(&key);
            }
            summary.entry_count += 1;
            offset = entry.end();
        }
        if next_restart != self.num_restarts {
            let what = "restart point is not at an entry boundary";
            return Err(self.origin.corruption(self.restarts_offset, what));
        }
        summary.last_key = key;
        Ok(summary)
    }
}

/// Checks the restart array: returns `(restarts_offset, num_restarts)`.
fn check_restarts(data: &[u8], origin: &BlockOrigin) -> Result<(usize, usize)> {
    let Some(count_at) = data.len().checked_sub(RESTART_ENTRY_SIZE) else {
        return Err(origin.corruption(
            0,
            format!("block of {} bytes has no restart count", data.len()),
        ));
    };
    let num_restarts = get_u32_le(data, count_at).map_or(usize::MAX, |v| v as usize);
    let array_size = num_restarts.checked_mul(RESTART_ENTRY_SIZE);
    let Some(restarts_offset) = array_size.and_then(|size| count_at.checked_sub(size)) else {
        let what = format!(
            "{num_restarts} restart points do not fit in a block of {} bytes",
            data.len()
        );
        return Err(origin.corruption(count_at, what));
    };
    if num_restarts == 0 && restarts_offset != 0 {
        return Err(origin.corruption(count_at, "block has entries but no restart point"));
    }
    let mut previous = None;
    for index in 0..num_restarts {
        let at = restarts_offset + index * RESTART_ENTRY_SIZE;
        let restart = get_u32_le(data, at).map_or(usize::MAX, |v| v as usize);
        let in_order = match previous {
            None => restart == 0,
            Some(previous) => restart > previous,
        };
        if !in_order || restart >= restarts_offset {
            return Err(origin.corruption(
                at,
                format!("restart offset {restart} out of order or range"),
            ));
        }
        previous = Some(restart);
    }
    Ok((restarts_offset, num_restarts))
}

/// Checks one decoded entry against the rules of `kind`.
fn check_entry(
    kind: BlockKind,
    previous: &[u8],
    key: &[u8],
    value: &[u8],
    index: usize,
) -> Result<(), &'static str> {
    if kind == BlockKind::Properties {
        if index > 0 && previous >= key {
            return Err("property names out of order");
        }
        return Ok(());
    }
    let Some(decoded) = InternalKeyRef::decode(key) else {
        return Err("malformed internal key");
    };
    if index > 0 {
        let Some(previous) = InternalKeyRef::decode(previous) else {
            return Err("malformed internal key");
        };
        if previous.cmp_internal(&decoded) != Ordering::Less {
            return Err("keys out of order");
        }
    }
    if kind == BlockKind::Data && decoded.kind == ValueKind::Delete && !value.is_empty() {
        return Err("tombstone with a value");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::encoded_key;

    fn origin() -> BlockOrigin {
        BlockOrigin::for_test(1000)
    }

    fn ikey(user_key: &[u8], seqno: u64) -> Vec<u8> {
        encoded_key(user_key, seqno, ValueKind::Put)
    }

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    fn build(interval: usize, n: usize) -> (Vec<u8>, Pairs) {
        let mut builder = BlockBuilder::new(interval);
        let entries: Vec<_> = (0..n)
            .map(|i| {
                (
                    ikey(format!("key{i:05}").as_bytes(), 7),
                    format!("value{i}").into_bytes(),
                )
            })
            .collect();
        for (k, v) in &entries {
            builder.add(k, v);
        }
        let estimate = builder.estimated_size_bytes();
        let contents = builder.finish();
        assert_eq!(contents.len(), estimate);
        assert!(builder.is_empty());
        (contents, entries)
    }

    #[test]
    fn roundtrip_across_restart_boundaries() {
        for interval in [1, 2, 3, 16] {
            for n in [1, 2, 15, 16, 17, 33, 100] {
                let (contents, entries) = build(interval, n);
                let block =
                    Block::decode(Bytes::from(contents), BlockKind::Data, origin()).unwrap();
                assert_eq!(block.num_restarts(), n.div_ceil(interval));
                assert_eq!(block.entry_count(), n);
                let mut seen = Vec::new();
                block.for_each_entry(|k, v| seen.push((k.to_vec(), v.to_vec())));
                assert_eq!(seen, entries);
                assert_eq!(block.first_key(), entries[0].0.as_slice());
                assert_eq!(block.last_key(), entries[n - 1].0.as_slice());
            }
        }
    }

    #[test]
    fn keys_are_prefix_compressed() {
        let (compressed, entries) = build(16, 64);
        let (whole, _) = build(1, 64);
        assert!(compressed.len() < whole.len());
        // Entry 1 shares "key0000" + nothing else of the trailer-bearing key.
        let first = decode_entry(&compressed, 0, compressed.len()).unwrap();
        assert_eq!(first.shared, 0);
        let second = decode_entry(&compressed, first.end(), compressed.len()).unwrap();
        assert_eq!(second.shared, 7);
        assert_eq!(second.unshared, entries[1].0.len() - 7);
    }

    proptest::proptest! {
        #[test]
        fn the_one_byte_fast_path_decodes_as_the_varints_do(
            // Bytes biased to small lengths and continuation bits alike.
            data in proptest::collection::vec(
                proptest::prop_oneof![0u8..8, 120u8..136, proptest::num::u8::ANY],
                0..24,
            ),
            offset in 0usize..26,
            limit in 0usize..26,
        ) {
            proptest::prop_assert_eq!(
                decode_entry(&data, offset, limit),
                decode_entry_varint_by_varint(&data, offset, limit)
            );
        }
    }

    #[test]
    fn empty_block_is_four_zero_bytes() {
        let contents = BlockBuilder::new(16).finish();
        assert_eq!(contents, [0, 0, 0, 0]);
        let block =
            Block::decode(Bytes::from(contents.clone()), BlockKind::Index, origin()).unwrap();
        assert_eq!(block.entry_count(), 0);
        let err = Block::decode(Bytes::from(contents), BlockKind::Data, origin()).unwrap_err();
        assert!(err.is_corruption());
    }

    #[test]
    fn structural_damage_is_corruption() {
        let (good, _) = build(4, 10);
        let len = good.len();
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut set = |what, at: usize, bytes: &[u8]| {
            let mut bad = good.clone();
            bad[at..at + bytes.len()].copy_from_slice(bytes);
            cases.push((what, bad));
        };
        set("restart count too big", len - 4, &1000u32.to_le_bytes());
        set("restart count huge", len - 4, &u32::MAX.to_le_bytes());
        set("first restart not zero", len - 16, &1u32.to_le_bytes());
        set("restart off boundary", len - 12, &5u32.to_le_bytes());
        set("restart past entries", len - 8, &(len as u32).to_le_bytes());
        set("shared at restart", 0, &[3]);
        set("unshared too long", 1, &[0x7f]);
        set("value too long", 2, &[0x7f]);
        set("varint runs on", 0, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        cases.push(("too short", vec![1, 0]));
        cases.push((
            "no restart with entries",
            [&good[..10], &[0, 0, 0, 0][..]].concat(),
        ));
        for (what, bad) in cases {
            let result = Block::decode(Bytes::from(bad), BlockKind::Data, origin());
            assert!(
                result.as_ref().is_err_and(Error::is_corruption),
                "{what}: {result:?}"
            );
        }
    }

    #[test]
    fn out_of_order_keys_and_valued_tombstones_are_corruption() {
        let mut builder = BlockBuilder::new(16);
        builder.add(&ikey(b"b", 1), b"");
        builder.add(&ikey(b"a", 1), b"");
        let bad = builder.finish();
        assert!(Block::decode(Bytes::from(bad), BlockKind::Data, origin()).is_err());

        let tombstone = encoded_key(b"a", 1, ValueKind::Delete);
        builder.add(&tombstone, b"oops");
        let bad = builder.finish();
        assert!(Block::decode(Bytes::from(bad), BlockKind::Data, origin()).is_err());

        builder.add(b"name-b", b"1");
        builder.add(b"name-a", b"2");
        let bad = builder.finish();
        assert!(Block::decode(Bytes::from(bad), BlockKind::Properties, origin()).is_err());
    }
}
