//! The per-table Bloom filter over user keys, and the 64-bit hash it uses.
//!
//! A filter lets [`Table::get`](super::Table::get) skip a table that cannot
//! hold a key without reading a data block. It is built over *user* keys
//! (every version of a key shares one entry), with `k` probes derived from
//! one 64-bit hash.
//!
//! Two kinds exist (see `docs/format/sst.md`):
//! - kind 2, written since table format version 2, is *blocked*: all of a
//!   key's probes fall in one 64-byte block of the bit array, so a lookup
//!   reads one cache line (and the filter is kept 64-byte aligned in
//!   memory so that a block is exactly one line);
//! - kind 1, of format version 1 tables (still read), spreads probe `i`
//!   over the whole array by double hashing: bit `(h1 + i * h2) mod m`.
//!
//! Encoding: `filter_block := bit_array[n] num_probes:u8 filter_kind:u8`.
//! A filter with an empty bit array (filtering disabled) matches every key.

use std::path::Path;

use bytes::Bytes;

use super::format::{
    FILTER_BLOCK_SIZE, FILTER_KIND_BLOCKED, FILTER_KIND_BLOOM_V1, FILTER_PROBES_MAX,
    FILTER_TRAILER_SIZE,
};
use crate::error::{Error, Result};

const PRIME_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_3: u64 = 0x1656_67B1_9E37_79F9;
const SEED: u64 = 0x7661_7276_6573_7374;

/// The 64-bit hash of the filter (on disk: filters built with it are
/// stored, so it must never change; a new hash needs a new filter kind).
///
/// One lane of xxHash64-style rounds over 8-byte little-endian words (the
/// tail zero-padded, the length mixed into the seed), then the MurmurHash3
/// 64-bit finalizer.
///
/// # Examples
/// ```
/// use varve_db::internals::sst::filter::hash64;
/// assert_ne!(hash64(b"apple"), hash64(b"apples"));
/// ```
pub fn hash64(data: &[u8]) -> u64 {
    let mut h = SEED ^ (data.len() as u64).wrapping_mul(PRIME_1);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(word);
        h = round(h, u64::from_le_bytes(raw));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut raw = [0u8; 8];
        raw[..tail.len()].copy_from_slice(tail);
        h = round(h, u64::from_le_bytes(raw));
    }
    finalize(h)
}

fn round(h: u64, word: u64) -> u64 {
    let k = word
        .wrapping_mul(PRIME_2)
        .rotate_left(31)
        .wrapping_mul(PRIME_1);
    (h ^ k)
        .rotate_left(27)
        .wrapping_mul(PRIME_1)
        .wrapping_add(PRIME_3)
}

fn finalize(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// The bit positions a kind-1 filter of `bits` bits probes for `hash`.
fn spread_probes(hash: u64, bits: u64, num_probes: u8) -> impl Iterator<Item = u64> {
    let h1 = hash;
    let h2 = hash.rotate_left(32) | 1;
    (0..u64::from(num_probes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

/// Probes drawn from one 64-bit word of probe bits: seven 9-bit fields.
const PROBES_PER_WORD: u8 = 7;
/// Bits in a block of a blocked filter.
const BLOCK_BITS: u64 = FILTER_BLOCK_SIZE as u64 * 8;

/// Where a blocked filter of `blocks` blocks puts the key whose hash is
/// `hash`: the block's index (`< blocks`, from the high 32 bits of the
/// hash by multiply-shift, no division) and a word of probe bits (a remix
/// of the whole hash) to draw in-block bit positions from with
/// [`block_probe`]. On disk for kind-2 filters: must never change.
pub(crate) fn locate_block(hash: u64, blocks: usize) -> (usize, u64) {
    let block = (u128::from(hash >> 32) * blocks as u128) >> 32;
    let mut probes = hash ^ (hash >> 29);
    probes = probes.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    probes ^= probes >> 32;
    // `hash >> 32 < 2^32`, so `block < blocks` and the cast is lossless.
    (block as usize, probes)
}

/// The bit position (`0..512`) of probe `i` within the key's block, where
/// `probes` is the word from [`locate_block`] remixed once for every seven
/// probes before `i` (see [`next_probe_word`]).
pub(crate) fn block_probe(probes: u64, i: u8) -> u64 {
    (probes >> (9 * u32::from(i % PROBES_PER_WORD))) & (BLOCK_BITS - 1)
}

/// The probe word for probes `7j..7j+7` from the one for `7(j-1)..`.
fn next_probe_word(probes: u64) -> u64 {
    let mixed = (probes ^ (probes >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^ (mixed >> 29)
}

/// Calls `visit` with the in-block bit position of each of a key's
/// `num_probes` probes, in order, until it returns `false`; returns
/// whether every call returned `true`.
fn each_block_probe(mut probes: u64, num_probes: u8, mut visit: impl FnMut(u64) -> bool) -> bool {
    for i in 0..num_probes {
        if i > 0 && i % PROBES_PER_WORD == 0 {
            probes = next_probe_word(probes);
        }
        if !visit(block_probe(probes, i)) {
            return false;
        }
    }
    true
}

/// The probe count that minimises false positives for `bits_per_key`:
/// `round(bits_per_key × ln 2)`, clamped to `1..=30`.
pub fn probes_for(bits_per_key: u32) -> u8 {
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round();
    k.clamp(1.0, f64::from(FILTER_PROBES_MAX)) as u8
}

/// Collects user-key hashes while a table is built, then encodes a
/// blocked (kind 2) filter.
#[derive(Debug)]
pub struct FilterBuilder {
    bits_per_key: u32,
    hashes: Vec<u64>,
}

impl FilterBuilder {
    /// A builder spending `bits_per_key` bits per distinct key; 0 disables
    /// filtering (the encoded filter then matches every key).
    pub fn new(bits_per_key: u32) -> Self {
        FilterBuilder {
            bits_per_key,
            hashes: Vec::new(),
        }
    }

    /// Adds a user key. Adding the same key twice in a row adds it once.
    pub fn add_key(&mut self, user_key: &[u8]) {
        if self.bits_per_key == 0 {
            return;
        }
        let hash = hash64(user_key);
        if self.hashes.last() != Some(&hash) {
            self.hashes.push(hash);
        }
    }

    /// The size in bytes the encoded filter will have.
    pub fn estimated_size_bytes(&self) -> usize {
        self.block_count() * FILTER_BLOCK_SIZE + FILTER_TRAILER_SIZE
    }

    /// Blocks of the bit array: enough for `bits_per_key` bits per key,
    /// at least one.
    fn block_count(&self) -> usize {
        if self.bits_per_key == 0 {
            return 0;
        }
        let wanted = (self.hashes.len() as u64).saturating_mul(u64::from(self.bits_per_key));
        let blocks = wanted.div_ceil(BLOCK_BITS).max(1);
        usize::try_from(blocks).unwrap_or(usize::MAX / FILTER_BLOCK_SIZE)
    }

    /// Encodes the filter block's contents.
    pub fn finish(&self) -> Vec<u8> {
        let blocks = self.block_count();
        let num_probes = if blocks == 0 {
            0
        } else {
            probes_for(self.bits_per_key)
        };
        let mut out = vec![0u8; blocks * FILTER_BLOCK_SIZE];
        for &hash in &self.hashes {
            let (block, probes) = locate_block(hash, blocks);
            let line = &mut out[block * FILTER_BLOCK_SIZE..][..FILTER_BLOCK_SIZE];
            each_block_probe(probes, num_probes, |bit| {
                line[(bit / 8) as usize] |= 1 << (bit % 8);
                true
            });
        }
        out.push(num_probes);
        out.push(FILTER_KIND_BLOCKED);
        out
    }
}

/// One block of a blocked filter, aligned so that it is one cache line.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
struct Line([u8; FILTER_BLOCK_SIZE]);

const _: () = assert!(size_of::<Line>() == FILTER_BLOCK_SIZE);

/// The bit array of a decoded filter.
#[derive(Clone, Debug)]
enum Bits {
    /// Filtering was disabled: every key may be present.
    Disabled,
    /// Kind 1: probes spread over the whole array.
    Spread(Bytes),
    /// Kind 2: each key's probes in one of these blocks.
    Blocked(Box<[Line]>),
}

/// A decoded Bloom filter.
#[derive(Clone, Debug)]
pub struct BloomFilter {
    bits: Bits,
    num_probes: u8,
}

impl BloomFilter {
    /// Decodes a filter block's contents, which were read from byte
    /// `file_offset` of `path`, a table of format `version`: version 1
    /// tables hold kind-1 filters, version 2 tables kind-2 filters.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the trailer is missing, the kind not the
    /// version's, the probe count out of range, or a blocked filter's bit
    /// array not a whole number of blocks.
    pub fn decode(
        contents: Bytes,
        path: &Path,
        file_offset: u64,
        version: u32,
    ) -> Result<BloomFilter> {
        let corrupt = |what: String| Err(Error::corruption(path, file_offset, what));
        let Some(bits_len) = contents.len().checked_sub(FILTER_TRAILER_SIZE) else {
            return corrupt(format!(
                "filter block of {} bytes has no trailer",
                contents.len()
            ));
        };
        let (num_probes, kind) = (contents[bits_len], contents[bits_len + 1]);
        let expected = if version == 1 {
            FILTER_KIND_BLOOM_V1
        } else {
            FILTER_KIND_BLOCKED
        };
        if kind != expected {
            return corrupt(format!(
                "filter kind {kind} in a format version {version} table (expected {expected})"
            ));
        }
        let probes_ok = if bits_len == 0 {
            num_probes == 0
        } else {
            (1..=FILTER_PROBES_MAX).contains(&num_probes)
        };
        if !probes_ok {
            return corrupt(format!(
                "filter of {bits_len} bytes has {num_probes} probes"
            ));
        }
        let bits = if bits_len == 0 {
            Bits::Disabled
        } else if kind == FILTER_KIND_BLOOM_V1 {
            Bits::Spread(contents.slice(..bits_len))
        } else {
            if bits_len % FILTER_BLOCK_SIZE != 0 {
                return corrupt(format!(
                    "blocked filter of {bits_len} bytes is not a whole number of {FILTER_BLOCK_SIZE}-byte blocks"
                ));
            }
            let lines = contents[..bits_len]
                .chunks_exact(FILTER_BLOCK_SIZE)
                .map(|chunk| {
                    let mut line = Line([0; FILTER_BLOCK_SIZE]);
                    line.0.copy_from_slice(chunk);
                    line
                })
                .collect();
            Bits::Blocked(lines)
        };
        Ok(BloomFilter { bits, num_probes })
    }

    /// Whether `user_key` may be in the table; `false` means it certainly
    /// is not.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.may_contain_hash(hash64(user_key))
    }

    /// [`may_contain`](Self::may_contain) for the key whose [`hash64`] is
    /// `hash`.
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        match &self.bits {
            Bits::Disabled => true,
            Bits::Spread(bits) => {
                let m = bits.len() as u64 * 8;
                spread_probes(hash, m, self.num_probes)
                    .all(|bit| bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
            }
            Bits::Blocked(lines) => {
                let (block, probes) = locate_block(hash, lines.len());
                let line = &lines[block].0;
                each_block_probe(probes, self.num_probes, |bit| {
                    line[(bit / 8) as usize] & (1 << (bit % 8)) != 0
                })
            }
        }
    }

    /// The size of the bit array in bytes (0 when filtering is disabled).
    pub fn size_bytes(&self) -> usize {
        match &self.bits {
            Bits::Disabled => 0,
            Bits::Spread(bits) => bits.len(),
            Bits::Blocked(lines) => lines.len() * FILTER_BLOCK_SIZE,
        }
    }

    /// The number of probes per key.
    pub fn num_probes(&self) -> u8 {
        self.num_probes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(bits_per_key: u32, keys: impl Iterator<Item = Vec<u8>>) -> BloomFilter {
        let mut builder = FilterBuilder::new(bits_per_key);
        for key in keys {
            builder.add_key(&key);
        }
        let encoded = builder.finish();
        assert_eq!(encoded.len(), builder.estimated_size_bytes());
        BloomFilter::decode(Bytes::from(encoded), Path::new("t"), 0, 2).unwrap()
    }

    /// A kind-1 filter as format version 1 writers encoded it.
    fn build_v1(bits_per_key: u32, keys: impl Iterator<Item = Vec<u8>>) -> BloomFilter {
        let hashes: Vec<u64> = keys.map(|k| hash64(&k)).collect();
        let bits = (hashes.len() as u64 * u64::from(bits_per_key))
            .max(FILTER_BITS_MIN_V1)
            .div_ceil(8)
            * 8;
        let k = probes_for(bits_per_key);
        let mut out = vec![0u8; (bits / 8) as usize];
        for &hash in &hashes {
            for bit in spread_probes(hash, bits, k) {
                out[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        out.extend([k, FILTER_KIND_BLOOM_V1]);
        BloomFilter::decode(Bytes::from(out), Path::new("t"), 0, 1).unwrap()
    }

    const FILTER_BITS_MIN_V1: u64 = 64;

    fn key(i: u32) -> Vec<u8> {
        format!("user-key-{i:08}").into_bytes()
    }

    /// The share of 100,000 keys never added that `filter` passes, after
    /// checking that it passes every one of the `added` keys.
    fn false_positive_rate(filter: &BloomFilter, added: u32) -> f64 {
        for i in 0..added {
            assert!(filter.may_contain(&key(i)), "false negative for key {i}");
        }
        let passed = (added..added + 100_000)
            .filter(|&i| filter.may_contain(&key(i)))
            .count();
        passed as f64 / 100_000.0
    }

    #[test]
    fn hash_is_stable() {
        // Pinned values: filters on disk depend on them.
        assert_eq!(hash64(b""), 0x82bf_89bd_e022_6159);
        assert_eq!(hash64(b"varve"), 0xfa85_a5e4_ccda_406b);
        assert_eq!(hash64(b"0123456789abcdef!"), 0xd3a2_52cd_c7bc_a1cb);
    }

    #[test]
    fn blocked_placement_is_stable() {
        // Pinned as in docs/format/sst.md: kind-2 filters on disk depend on it.
        let (block, probes) = locate_block(hash64(b"varve"), 1000);
        let bits: Vec<u64> = (0..7).map(|i| block_probe(probes, i)).collect();
        assert_eq!((block, probes), (978, 0x23a7_11c6_ce54_5e63));
        assert_eq!(bits, [99, 47, 405, 217, 284, 312, 142]);
        assert_eq!(next_probe_word(probes), 0x935b_909b_f8e0_e381);
    }

    #[test]
    fn hash_depends_on_length_and_every_byte() {
        assert_ne!(hash64(b"a"), hash64(b"a\0"));
        let base = b"the quick brown fox".to_vec();
        for i in 0..base.len() {
            let mut changed = base.clone();
            changed[i] ^= 1;
            assert_ne!(hash64(&base), hash64(&changed));
        }
    }

    #[test]
    fn both_kinds_pass_about_one_percent_at_ten_bits_and_never_miss_a_key() {
        let keys = || (0..10_000).map(key);
        // (kind, filter, bit array bytes, false-positive rate bounds)
        let cases = [
            (2, build(10, keys()), 12_544, 0.003..0.015),
            (2, build(20, keys()), 25_024, 0.0..0.001),
            (1, build_v1(10, keys()), 12_500, 0.003..0.015),
        ];
        for (kind, filter, size, rates) in cases {
            assert_eq!(filter.size_bytes(), size, "kind {kind}");
            let rate = false_positive_rate(&filter, 10_000);
            assert!(
                rates.contains(&rate),
                "kind {kind}: false-positive rate {rate}"
            );
        }
    }

    #[test]
    fn probe_counts_follow_bits_per_key_beyond_one_probe_word() {
        assert_eq!(build(10, (0..10).map(key)).num_probes(), 7);
        assert_eq!(build(20, (0..10).map(key)).num_probes(), 14);
        assert_eq!(build_v1(10, (0..10).map(key)).num_probes(), 7);
    }

    #[test]
    fn empty_filter_rejects_and_disabled_filter_accepts() {
        let empty = build(10, std::iter::empty());
        assert_eq!(empty.size_bytes(), FILTER_BLOCK_SIZE);
        assert!(!empty.may_contain(b"anything"));
        let disabled = build(0, (0..10).map(|i| vec![i]));
        assert_eq!(disabled.size_bytes(), 0);
        assert!(disabled.may_contain(b"anything"));
    }

    #[test]
    fn damaged_trailers_are_corruption() {
        let path = Path::new("t");
        let block = |extra: usize, trailer: [u8; 2]| {
            let mut out = vec![0u8; FILTER_BLOCK_SIZE + extra];
            out.extend(trailer);
            out
        };
        for (version, bad) in [
            (2, vec![]),
            (2, vec![1]),
            (1, vec![0, 0, 2]),
            (1, vec![0, 0, 1]),
            (1, vec![0, 31, 1]),
            (1, vec![3, 1]),
            (2, block(0, [7, 1])),
            (2, block(0, [0, 2])),
            (2, block(0, [31, 2])),
            (2, block(1, [7, 2])),
            (2, block(63, [7, 2])),
            (2, vec![3, 2]),
        ] {
            let err = BloomFilter::decode(Bytes::from(bad.clone()), path, 7, version).unwrap_err();
            assert!(
                matches!(err, Error::Corruption { offset: 7, .. }),
                "{version} {bad:?}: {err}"
            );
        }
    }
}
