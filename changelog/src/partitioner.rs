//! Kafka's default partitioner: which partition a keyed record goes to.
//!
//! A record with key `k` goes to partition
//! `to_positive(murmur2(k)) % num_partitions`, exactly as the Java
//! producer's built-in partitioner does for keyed records, so a store
//! partitioned with [`partition_for_key`] lines up with the partitions of
//! a Kafka changelog topic written by Samza or Kafka Streams.

/// Kafka's 32-bit MurmurHash2 (`org.apache.kafka.common.utils.Utils.murmur2`):
/// seed `0x9747b28c`, multiplier `0x5bd1e995`, shift 24, little-endian
/// 4-byte words, the 1–3 tail bytes mixed in as Kafka does, and Java's
/// wrapping `int` arithmetic.
///
/// # Examples
/// ```
/// use varve_changelog::partitioner::murmur2;
/// assert_eq!(murmur2(b"21"), -973932308);
/// assert_eq!(murmur2(b"foobar"), -790332482);
/// ```
#[must_use]
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java's `int length`: arrays are shorter than 2^31, so truncating to
    // 32 bits is what Kafka computes for every key it can hold.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which
/// overflows on `i32::MIN`).
///
/// # Examples
/// ```
/// use varve_changelog::partitioner::to_positive;
/// assert_eq!(to_positive(-1), i32::MAX);
/// assert_eq!(to_positive(i32::MIN), 0);
/// assert_eq!(to_positive(7), 7);
/// ```
#[must_use]
pub fn to_positive(number: i32) -> i32 {
    number & 0x7fff_ffff
}

/// The partition Kafka's default partitioner picks for a record with
/// `key`: `to_positive(murmur2(key)) % num_partitions`.
///
/// # Examples
/// ```
/// use varve_changelog::partitioner::partition_for_key;
/// let p = partition_for_key(b"order:42", 8);
/// assert!(p < 8);
/// assert_eq!(partition_for_key(b"anything", 1), 0);
/// ```
///
/// # Panics
/// If `num_partitions` is 0 (there is no partition to pick; an API misuse).
#[must_use]
pub fn partition_for_key(key: &[u8], num_partitions: u32) -> u32 {
    assert!(num_partitions > 0, "num_partitions must be at least 1");
    // to_positive's result is in [0, 2^31), so it fits a u32 unchanged.
    (to_positive(murmur2(key)) as u32) % num_partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Expected values from Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn matches_kafka_vectors() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                expected,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn every_tail_length_is_mixed() {
        // Keys differing only in a tail byte hash differently (1, 2, 3 tail bytes).
        for len in 5..=7 {
            let a = vec![b'x'; len];
            let mut b = a.clone();
            b[len - 1] = b'y';
            assert_ne!(murmur2(&a), murmur2(&b), "tail length {}", len % 4);
        }
    }

    #[test]
    fn to_positive_clears_only_the_sign_bit() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-973_932_308), -973_932_308 & 0x7fff_ffff);
        assert_eq!(to_positive(i32::MAX), i32::MAX);
    }

    #[test]
    fn partitions_of_kafka_vectors() {
        // to_positive(-790332482) = 1357151166; 1357151166 % 10 = 6.
        assert_eq!(partition_for_key(b"foobar", 10), 6);
        assert_eq!(partition_for_key(b"abc", 3), 479_470_107 % 3);
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_in_range(key in proptest::collection::vec(any::<u8>(), 0..64), n in 1u32..10_000) {
            let p = partition_for_key(&key, n);
            prop_assert!(p < n);
            prop_assert!(to_positive(murmur2(&key)) >= 0);
            prop_assert_eq!(murmur2(&key), murmur2(&key));
        }
    }
}
