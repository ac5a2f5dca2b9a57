//! The memtable's key filter: a Bloom filter over the user keys inserted,
//! so that a point lookup for a key the memtable does not hold skips the
//! skiplist search (a dozen or more cache misses) after one or a few
//! cache-line reads.
//!
//! It is *blocked*: a key's probes all fall in one 64-byte block (512
//! bits), so testing a key touches one cache line per stage. It grows in
//! *stages*: stage `s` is sized for `BASE_KEYS * 4^s` keys at about
//! `BITS_PER_KEY` bits each and is allocated when the keys inserted so far
//! fill the stages before it. A key goes into the stage current when it
//! is inserted, so a lookup tests every allocated stage. A small memtable
//! (for example one of many sharing a write budget) pays a few KiB, a
//! 64 MiB one of 400,000 entries 2.4 MiB (under 4 % of its size). Keys
//! beyond the last stage's share go into the last stage, which fills up:
//! lookups then pass more often, never wrongly fail.
//!
//! Bits are only ever set, by the one writer the skiplist's mutex admits,
//! before the entry is linked into the skiplist; a reader that can see the
//! entry (through the sequence number published after the insert)
//! therefore sees its bits. The writer prefetches the key's block before
//! it searches the skiplist, so the block's cache miss overlaps the
//! search. It lives in memory only: nothing of it is stored.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::sst::filter::{block_probe, locate_block};

/// Keys the first stage is sized for: 448 bytes, small beside even the
/// smallest memtable (4 KiB).
const BASE_KEYS: usize = 256;
/// Bits per key each stage is sized for: about 0.3 % false positives per
/// full stage, so a lookup that tests every stage of a 400,000-entry
/// memtable passes about 1.3 % of absent keys.
const BITS_PER_KEY: usize = 14;
/// Stages; the last is sized for `BASE_KEYS * 4^(STAGES - 1)` (268M)
/// keys, so only a memtable of many GiB fills it.
const STAGES: usize = 11;
/// Probes per key, all in one block (at most seven: one word of probe
/// bits).
const PROBES: u8 = 7;
/// Words (of 64 bits) per block: one 64-byte cache line.
const BLOCK_WORDS: usize = 8;

/// A growing blocked Bloom filter over 64-bit key hashes
/// ([`hash64`](crate::sst::filter::hash64) of the user key).
pub(crate) struct KeyFilter {
    stages: [OnceLock<Box<[AtomicU64]>>; STAGES],
    /// Keys inserted (with repeats): chooses the stage. Written by the one
    /// inserter, read by [`prefetch`](KeyFilter::prefetch).
    inserted: AtomicUsize,
}

impl KeyFilter {
    pub(crate) fn new() -> KeyFilter {
        KeyFilter {
            stages: std::array::from_fn(|_| OnceLock::new()),
            inserted: AtomicUsize::new(0),
        }
    }

    /// Asks the processor to bring the block `hash` goes into next into
    /// the cache, so that [`insert`](Self::insert) finds it there. Only a
    /// hint: it reads nothing and changes nothing.
    pub(crate) fn prefetch(&self, hash: u64) {
        let stage = stage_for(self.inserted.load(Ordering::Relaxed));
        let Some(words) = self.stages[stage].get() else {
            return;
        };
        let (block, _) = locate(hash, words.len() / BLOCK_WORDS);
        prefetch_line(&words[block]);
    }

    /// Adds the key with hash `hash`. Returns the bytes it allocated for a
    /// new stage (0 almost always), for the memtable to count.
    ///
    /// Inserts must not run concurrently (the memtable makes them under
    /// its skiplist's writer mutex): a bit is set by a load and a store,
    /// not a read-modify-write, so two writers could lose each other's
    /// bits. Readers may run alongside.
    pub(crate) fn insert(&self, hash: u64) -> usize {
        let inserted = self.inserted.load(Ordering::Relaxed);
        self.inserted
            .store(inserted.saturating_add(1), Ordering::Relaxed);
        let stage = stage_for(inserted);
        let mut allocated = 0;
        let words = self.stages[stage].get_or_init(|| {
            let words = stage_blocks(stage) * BLOCK_WORDS;
            allocated = words * size_of::<AtomicU64>();
            (0..words).map(|_| AtomicU64::new(0)).collect()
        });
        let (block, probes) = locate(hash, words.len() / BLOCK_WORDS);
        for (word, mask) in probe_masks(probes) {
            let word = &words[block + word];
            let bits = word.load(Ordering::Relaxed);
            if bits & mask != mask {
                word.store(bits | mask, Ordering::Relaxed);
            }
        }
        allocated
    }

    /// Whether the key with hash `hash` may have been inserted: `false`
    /// only if it certainly was not.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        // Newest first: most keys are in the latest, largest stages.
        for words in self.stages.iter().rev().filter_map(OnceLock::get) {
            let (block, probes) = locate(hash, words.len() / BLOCK_WORDS);
            let hit = probe_masks(probes)
                .into_iter()
                .all(|(word, mask)| words[block + word].load(Ordering::Relaxed) & mask == mask);
            if hit {
                return true;
            }
        }
        false
    }
}

/// Hints the processor to load `word`'s cache line.
#[inline]
fn prefetch_line(word: &AtomicU64) {
    crate::prefetch::prefetch_read(word.as_ptr().cast::<u8>().cast_const());
}

/// The stage the `n`th key inserted (from 0) goes into.
fn stage_for(n: usize) -> usize {
    let mut end = 0usize;
    for stage in 0..STAGES {
        end = end.saturating_add(BASE_KEYS << (2 * stage));
        if n < end {
            return stage;
        }
    }
    STAGES - 1
}

/// Blocks in stage `stage`.
fn stage_blocks(stage: usize) -> usize {
    ((BASE_KEYS << (2 * stage)) * BITS_PER_KEY).div_ceil(BLOCK_WORDS * 64)
}

/// The first word of `hash`'s block among `blocks`, and the 64 bits its
/// probes are drawn from: placed as in a table's blocked filter.
fn locate(hash: u64, blocks: usize) -> (usize, u64) {
    let (block, probes) = locate_block(hash, blocks);
    (block * BLOCK_WORDS, probes)
}

/// The bits to test or set, as one mask per word of the block: the
/// positions of the key's probes within its 512-bit block.
fn probe_masks(probes: u64) -> [(usize, u64); BLOCK_WORDS] {
    let mut masks: [(usize, u64); BLOCK_WORDS] = std::array::from_fn(|word| (word, 0));
    for i in 0..PROBES {
        let bit = block_probe(probes, i);
        masks[(bit / 64) as usize].1 |= 1 << (bit % 64);
    }
    masks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sst::filter::hash64;

    fn key(i: u64) -> Vec<u8> {
        format!("key{i:012}").into_bytes()
    }

    #[test]
    fn empty_filter_contains_nothing() {
        let filter = KeyFilter::new();
        assert!(!filter.may_contain(hash64(b"a")));
        assert!(!filter.may_contain(0));
    }

    #[test]
    fn no_false_negatives_and_few_false_positives_across_stages() {
        for count in [1u64, 100, 2048, 2049, 30_000, 400_000] {
            let filter = KeyFilter::new();
            let mut allocated = 0;
            for i in 0..count {
                allocated += filter.insert(hash64(&key(i)));
            }
            for i in 0..count {
                assert!(
                    filter.may_contain(hash64(&key(i))),
                    "lost key {i} of {count}"
                );
            }
            let probes = 100_000u64;
            let false_positives = (count..count + probes)
                .filter(|&i| filter.may_contain(hash64(&key(i))))
                .count();
            let rate = false_positives as f64 / probes as f64;
            // A full stage's rate is about 0.3 %; a lookup tests each.
            assert!(rate < 0.02, "{count} keys: false-positive rate {rate}");
            let stages = stage_for(count as usize - 1) + 1;
            let expected: usize = (0..stages).map(|s| stage_blocks(s) * 64).sum();
            assert_eq!(allocated, expected, "{count} keys");
        }
    }

    #[test]
    fn stages_grow_by_four() {
        assert_eq!(stage_for(0), 0);
        assert_eq!(stage_for(BASE_KEYS - 1), 0);
        assert_eq!(stage_for(BASE_KEYS), 1);
        assert_eq!(stage_for(BASE_KEYS * 5 - 1), 1);
        assert_eq!(stage_for(BASE_KEYS * 5), 2);
        assert_eq!(stage_for(usize::MAX), STAGES - 1);
        assert_eq!(stage_blocks(0) * 64, BASE_KEYS * BITS_PER_KEY / 8);
        assert_eq!(stage_blocks(1), 4 * stage_blocks(0));
    }
}
