//! The per-table Bloom filter over user keys, and the 64-bit hash it uses.
//!
//! A filter lets [`Table::get`](super::Table::get) skip a table that cannot
//! hold a key without reading a data block. It is built over *user* keys
//! (every version of a key shares one entry), with `k` probes derived from
//! one 64-bit hash by double hashing: probe `i` tests bit
//! `(h1 + i * h2) mod m`.
//!
//! Encoding (see `docs/format/sst.md`):
//! `filter_block := bit_array[n] num_probes:u8 filter_kind:u8`. A filter
//! with an empty bit array (filtering disabled) matches every key.

use std::path::Path;

use bytes::Bytes;

use super::format::{
    FILTER_BITS_MIN, FILTER_KIND_BLOOM_V1, FILTER_PROBES_MAX, FILTER_TRAILER_SIZE,
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

/// The bit positions probed for `hash` in a filter of `bits` bits.
fn probes(hash: u64, bits: u64, num_probes: u8) -> impl Iterator<Item = u64> {
    let h1 = hash;
    let h2 = hash.rotate_left(32) | 1;
    (0..u64::from(num_probes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

/// The probe count that minimises false positives for `bits_per_key`:
/// `round(bits_per_key × ln 2)`, clamped to `1..=30`.
pub fn probes_for(bits_per_key: u32) -> u8 {
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round();
    k.clamp(1.0, f64::from(FILTER_PROBES_MAX)) as u8
}

/// Collects user-key hashes while a table is built, then encodes the filter.
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
        usize::try_from(self.bit_count() / 8).unwrap_or(usize::MAX) + FILTER_TRAILER_SIZE
    }

    fn bit_count(&self) -> u64 {
        if self.bits_per_key == 0 {
            return 0;
        }
        let wanted = (self.hashes.len() as u64).saturating_mul(u64::from(self.bits_per_key));
        wanted.max(FILTER_BITS_MIN).div_ceil(8) * 8
    }

    /// Encodes the filter block's contents.
    pub fn finish(&self) -> Vec<u8> {
        let bits = self.bit_count();
        let num_probes = if bits == 0 {
            0
        } else {
            probes_for(self.bits_per_key)
        };
        let len = usize::try_from(bits / 8).unwrap_or(usize::MAX);
        let mut out = vec![0u8; len];
        for &hash in &self.hashes {
            for bit in probes(hash, bits, num_probes) {
                out[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        out.push(num_probes);
        out.push(FILTER_KIND_BLOOM_V1);
        out
    }
}

/// A decoded Bloom filter.
#[derive(Clone, Debug)]
pub struct BloomFilter {
    bits: Bytes,
    num_probes: u8,
}

impl BloomFilter {
    /// Decodes a filter block's contents, which were read from byte
    /// `file_offset` of `path`.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the trailer is missing, the kind unknown, or
    /// the probe count out of range.
    pub fn decode(contents: Bytes, path: &Path, file_offset: u64) -> Result<BloomFilter> {
        let corrupt = |what: String| Err(Error::corruption(path, file_offset, what));
        let Some(bits_len) = contents.len().checked_sub(FILTER_TRAILER_SIZE) else {
            return corrupt(format!(
                "filter block of {} bytes has no trailer",
                contents.len()
            ));
        };
        let (num_probes, kind) = (contents[bits_len], contents[bits_len + 1]);
        if kind != FILTER_KIND_BLOOM_V1 {
            return corrupt(format!("unknown filter kind {kind}"));
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
        Ok(BloomFilter {
            bits: contents.slice(..bits_len),
            num_probes,
        })
    }

    /// Whether `user_key` may be in the table; `false` means it certainly
    /// is not.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.may_contain_hash(hash64(user_key))
    }

    /// [`may_contain`](Self::may_contain) for the key whose [`hash64`] is
    /// `hash`.
    pub fn may_contain_hash(&self, hash: u64) -> bool {
        if self.bits.is_empty() {
            return true;
        }
        let bits = self.bits.len() as u64 * 8;
        probes(hash, bits, self.num_probes)
            .all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// The size of the bit array in bytes (0 when filtering is disabled).
    pub fn size_bytes(&self) -> usize {
        self.bits.len()
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
        BloomFilter::decode(Bytes::from(encoded), Path::new("t"), 0).unwrap()
    }

    #[test]
    fn hash_is_stable() {
        // Pinned values: filters on disk depend on them.
        assert_eq!(hash64(b""), 0x82bf_89bd_e022_6159);
        assert_eq!(hash64(b"varve"), 0xfa85_a5e4_ccda_406b);
        assert_eq!(hash64(b"0123456789abcdef!"), 0xd3a2_52cd_c7bc_a1cb);
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
    fn false_positive_rate_near_one_percent_and_no_false_negatives() {
        let key = |i: u32| format!("user-key-{i:08}").into_bytes();
        let filter = build(10, (0..10_000).map(key));
        assert_eq!(filter.num_probes(), 7);
        for i in 0..10_000 {
            assert!(filter.may_contain(&key(i)), "false negative for key {i}");
        }
        let false_positives = (10_000..110_000)
            .filter(|&i| filter.may_contain(&key(i)))
            .count();
        let rate = false_positives as f64 / 100_000.0;
        assert!(rate < 0.015, "false-positive rate {rate}");
        assert!(
            rate > 0.003,
            "false-positive rate {rate} is implausibly low"
        );
    }

    #[test]
    fn empty_filter_rejects_and_disabled_filter_accepts() {
        let empty = build(10, std::iter::empty());
        assert_eq!(empty.size_bytes(), 8);
        assert!(!empty.may_contain(b"anything"));
        let disabled = build(0, (0..10).map(|i| vec![i]));
        assert_eq!(disabled.size_bytes(), 0);
        assert!(disabled.may_contain(b"anything"));
    }

    #[test]
    fn damaged_trailers_are_corruption() {
        let path = Path::new("t");
        for bad in [
            &[][..],
            &[1][..],
            &[0, 0, 2][..],
            &[0, 0, 1][..],
            &[0, 31, 1][..],
            &[3, 1][..],
        ] {
            let err = BloomFilter::decode(Bytes::copy_from_slice(bad), path, 7).unwrap_err();
            assert!(
                matches!(err, Error::Corruption { offset: 7, .. }),
                "{bad:?}: {err}"
            );
        }
    }
}
