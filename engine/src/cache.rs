//! [`BlockCache`]: a sharded cache of decoded data blocks, bounded in bytes.
//!
//! Blocks are keyed by `(store id, table file number, block offset)`: file
//! numbers are never reused within a store, and every store using a cache
//! gets its own id ([`BlockCache::for_another_store`]), so a key never
//! names two blocks even when many stores share the capacity. Each
//! of the 16 shards is a CLOCK cache (an approximation of LRU that needs no
//! list surgery on a hit): a hit sets the entry's reference bit, and
//! eviction sweeps a hand over the entries, clearing set bits and evicting
//! the first entry whose bit is already clear. Index and filter blocks are
//! not cached here: they stay in memory for as long as their table is
//! open, and the number of open tables is bounded separately
//! ([`Options::max_open_tables`](crate::Options::max_open_tables)).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::sst::block::Block;

const SHARD_COUNT: usize = 16;

/// Hit and miss counts and the memory in use of a [`BlockCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Bytes of blocks held now.
    pub usage_bytes: u64,
    /// Lookups that found their block.
    pub hits: u64,
    /// Lookups that had to read the file.
    pub misses: u64,
}

impl CacheStats {
    /// Hits over lookups (0 when there were none).
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// `(store id, file number, block offset)`.
type Key = (u64, u64, u64);

/// A hasher for keys made of integers the store chose itself (file
/// numbers, block offsets, writer ids), not input an adversary controls:
/// a multiply and a fold do, where SipHash, the default, costs more than
/// the rest of a cache lookup.
#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // The multiply leaves its best bits high; the table indexes by the
        // low ones.
        self.0 ^ (self.0 >> 29)
    }
}

/// A `HashMap` keyed by integers, hashed with [`IntHasher`].
pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

type KeyIndex = IntMap<Key, usize>;

struct Slot {
    key: Key,
    block: Arc<Block>,
    charge_bytes: usize,
    referenced: bool,
}

#[derive(Default)]
struct Shard {
    index: KeyIndex,
    slots: Vec<Slot>,
    hand: usize,
    usage_bytes: usize,
    /// Counted here, under the shard's lock, rather than in counters all
    /// readers share, whose cache line would move between cores on every
    /// lookup.
    hits: u64,
    misses: u64,
}

/// A shard on a cache line of its own, so that readers locking
/// neighbouring shards do not contend for one line.
#[repr(align(64))]
#[derive(Default)]
struct PaddedShard(Mutex<Shard>);

impl Shard {
    fn get(&mut self, key: Key) -> Option<Arc<Block>> {
        let Some(&at) = self.index.get(&key) else {
            self.misses += 1;
            return None;
        };
        self.hits += 1;
        let slot = &mut self.slots[at];
        slot.referenced = true;
        Some(Arc::clone(&slot.block))
    }

    fn insert(&mut self, key: Key, block: Arc<Block>, charge_bytes: usize, capacity_bytes: usize) {
        if self.index.contains_key(&key) || charge_bytes > capacity_bytes {
            return;
        }
        while self.usage_bytes + charge_bytes > capacity_bytes && !self.slots.is_empty() {
            self.evict_one();
        }
        self.index.insert(key, self.slots.len());
        self.slots.push(Slot {
            key,
            block,
            charge_bytes,
            referenced: false,
        });
        self.usage_bytes += charge_bytes;
    }

    /// Advances the hand until it evicts an entry. Bounded: one sweep
    /// clears every reference bit, so the second sweep evicts.
    fn evict_one(&mut self) {
        for _ in 0..=2 * self.slots.len() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &mut self.slots[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
                continue;
            }
            self.remove_at(self.hand);
            return;
        }
    }

    fn remove_at(&mut self, at: usize) {
        let slot = self.slots.swap_remove(at);
        self.index.remove(&slot.key);
        self.usage_bytes -= slot.charge_bytes;
        if let Some(moved) = self.slots.get(at) {
            self.index.insert(moved.key, at);
        }
    }

    fn remove_table(&mut self, store_id: u64, file_number: u64) {
        let mut at = 0;
        while at < self.slots.len() {
            let key = self.slots[at].key;
            if key.0 == store_id && key.1 == file_number {
                self.remove_at(at);
            } else {
                at += 1;
            }
        }
    }
}

/// The shards and capacity, shared by every store's handle on one cache.
struct Shards {
    shards: Vec<PaddedShard>,
    shard_capacity_bytes: usize,
    capacity_bytes: usize,
    /// The id the next [`BlockCache::for_another_store`] hands out.
    next_store_id: AtomicU64,
}

/// A sharded, byte-bounded cache of decoded data blocks: one store's
/// handle on it. [`for_another_store`](BlockCache::for_another_store)
/// gives a handle for another store on the same capacity (as RocksDB
/// shares one `Cache` between databases); its blocks are keyed apart, and
/// [`stats`](BlockCache::stats) report the whole cache.
///
/// # Examples
/// ```
/// let cache = varve_db::BlockCache::new(8 << 20);
/// assert_eq!(cache.stats().capacity_bytes, 8 << 20);
/// assert_eq!(cache.stats().hit_ratio(), 0.0);
/// let other = cache.for_another_store();
/// assert_eq!(other.stats().capacity_bytes, 8 << 20);
/// ```
pub struct BlockCache {
    shards: Arc<Shards>,
    store_id: u64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of blocks.
    #[must_use]
    pub fn new(capacity_bytes: usize) -> BlockCache {
        let shards = Shards {
            shards: (0..SHARD_COUNT).map(|_| PaddedShard::default()).collect(),
            shard_capacity_bytes: capacity_bytes / SHARD_COUNT,
            capacity_bytes,
            next_store_id: AtomicU64::new(1),
        };
        BlockCache {
            shards: Arc::new(shards),
            store_id: 0,
        }
    }

    /// A handle on the same cache (same capacity, same blocks) for another
    /// store: its blocks are keyed by a store id of its own, so equal
    /// file numbers of two stores never meet, and
    /// [`remove_table`](BlockCache::remove_table) drops only its own.
    #[must_use]
    pub fn for_another_store(&self) -> BlockCache {
        BlockCache {
            shards: Arc::clone(&self.shards),
            store_id: self.shards.next_store_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn shard(&self, key: Key) -> &Mutex<Shard> {
        // Blocks of one table spread over the shards by offset.
        let mixed =
            (key.0.rotate_left(40) ^ key.1 ^ (key.2 >> 12)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.shards.shards[(mixed >> 60) as usize % SHARD_COUNT].0
    }

    /// The block of table `file_number` at `offset`, if cached.
    pub fn get(&self, file_number: u64, offset: u64) -> Option<Arc<Block>> {
        let key = (self.store_id, file_number, offset);
        self.shard(key).lock().get(key)
    }

    /// Caches `block`, evicting others to stay within capacity. A block
    /// larger than a shard's share of the capacity is not cached.
    pub fn insert(&self, file_number: u64, offset: u64, block: Arc<Block>) {
        let key = (self.store_id, file_number, offset);
        let charge_bytes = block.data().len() + std::mem::size_of::<Slot>();
        self.shard(key)
            .lock()
            .insert(key, block, charge_bytes, self.shards.shard_capacity_bytes);
    }

    /// Drops every block of this store's table `file_number` (the table
    /// was deleted); other stores' blocks stay.
    pub fn remove_table(&self, file_number: u64) {
        for shard in &self.shards.shards {
            shard.0.lock().remove_table(self.store_id, file_number);
        }
    }

    /// Counters and usage of the whole cache (every store sharing it).
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats {
            capacity_bytes: self.shards.capacity_bytes as u64,
            ..CacheStats::default()
        };
        for shard in &self.shards.shards {
            let shard = shard.0.lock();
            stats.usage_bytes += shard.usage_bytes as u64;
            stats.hits += shard.hits;
            stats.misses += shard.misses;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sst::block::{BlockBuilder, BlockKind, BlockOrigin};
    use bytes::Bytes;
    use std::path::Path;

    fn block(size: usize) -> Arc<Block> {
        let mut b = BlockBuilder::new(16);
        let mut key = b"k".to_vec();
        // Trailer: sequence number 1, kind put.
        key.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
        b.add(&key, &vec![7u8; size]);
        let origin = BlockOrigin {
            path: Arc::from(Path::new("t.sst")),
            offset: 0,
        };
        Arc::new(Block::decode(Bytes::from(b.finish()), BlockKind::Data, origin).unwrap())
    }

    #[test]
    fn hits_misses_and_capacity() {
        let cache = BlockCache::new(16 * 10_000);
        assert!(cache.get(1, 0).is_none());
        cache.insert(1, 0, block(1000));
        assert!(cache.get(1, 0).is_some());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
        assert!((stats.hit_ratio() - 0.5).abs() < 1e-9);
        for offset in 0..1000 {
            cache.insert(2, offset * 4096, block(1000));
        }
        assert!(cache.stats().usage_bytes <= 16 * 10_000);
    }

    #[test]
    fn referenced_blocks_survive_a_sweep() {
        let mut shard = Shard::default();
        let cap = 3 * (1000 + 64 + std::mem::size_of::<Slot>());
        for i in 0..3 {
            shard.insert((0, 1, i), block(1000), 1000, cap);
        }
        assert!(shard.get((0, 1, 0)).is_some());
        shard.insert((0, 1, 3), block(1000), 1000, 3000);
        assert!(shard.get((0, 1, 0)).is_some(), "the referenced block stays");
        assert!(shard.get((0, 1, 1)).is_none(), "an unreferenced block went");
    }

    #[test]
    fn remove_table_drops_its_blocks() {
        let cache = BlockCache::new(1 << 20);
        cache.insert(1, 0, block(10));
        cache.insert(1, 4096, block(10));
        cache.insert(2, 0, block(10));
        cache.remove_table(1);
        assert!(cache.get(1, 0).is_none() && cache.get(1, 4096).is_none());
        assert!(cache.get(2, 0).is_some());
        assert!(cache.stats().usage_bytes > 0);
        assert!(BlockCache::new(0).get(1, 0).is_none());
    }

    #[test]
    fn stores_sharing_a_cache_keep_their_blocks_apart() {
        let a = BlockCache::new(1 << 20);
        let b = a.for_another_store();
        a.insert(1, 0, block(10));
        assert!(b.get(1, 0).is_none(), "store b has no table 1 of its own");
        b.insert(1, 0, block(20));
        b.remove_table(1);
        assert!(b.get(1, 0).is_none());
        assert!(a.get(1, 0).is_some(), "b's removal left a's block");
        assert_eq!(a.stats().usage_bytes, b.stats().usage_bytes);
    }

    #[test]
    fn stores_sharing_a_cache_share_its_capacity() {
        let a = BlockCache::new(16 * 10_000);
        let others: Vec<_> = (0..8).map(|_| a.for_another_store()).collect();
        for (i, cache) in others.iter().enumerate() {
            for offset in 0..200 {
                cache.insert(i as u64, offset * 4096, block(1000));
            }
        }
        assert!(a.stats().usage_bytes <= 16 * 10_000);
        assert!(a.stats().usage_bytes > 0);
    }
}
