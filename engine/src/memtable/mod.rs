//! The memtable: recent writes, in memory, in internal-key order.
//!
//! A [`MemTable`] is a concurrent skiplist (`skiplist.rs`, LevelDB's
//! design) of internal entries: user key, sequence number, kind, value. One
//! write at a time goes in (inserts take an internal mutex); any number of
//! readers and iterators run alongside without locks and never block the
//! writer. Entries are never removed: a memtable is filled, frozen, flushed
//! to a table, and dropped whole, so its nodes live in an arena
//! (`arena.rs`) that is freed all at once. A key filter (`filter.rs`, an
//! in-memory Bloom filter over the user keys) lets a get for a key the
//! memtable does not hold skip the skiplist search.

mod arena;
mod filter;
mod skiplist;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::error::Result;
use crate::iter::InternalIterator;
use crate::key::{InternalKeyRef, SeqNo, ValueKind};
use crate::shared::WriteBufferManager;
use crate::sst::filter::hash64;
use filter::KeyFilter;
use skiplist::{SkipList, SkipListIter};

/// The sequence number of the write at changelog `offset` (`offset + 1`),
/// or `None` if it would exceed [`SeqNo::MAX`]: the offset lies beyond
/// the engine's sequence-number range. Every path that takes offsets from
/// a file (replay at open, a standby's copy) checks them with this before
/// [`MemTable::insert`], whose bound is an assertion.
///
/// # Examples
/// ```
/// use varve_db::internals::key::SeqNo;
/// use varve_db::internals::memtable::seqno_of_offset;
/// assert_eq!(seqno_of_offset(0), Some(SeqNo(1)));
/// assert_eq!(seqno_of_offset(SeqNo::MAX.0 - 1), Some(SeqNo::MAX));
/// assert_eq!(seqno_of_offset(SeqNo::MAX.0), None);
/// assert_eq!(seqno_of_offset(u64::MAX), None);
/// ```
#[must_use]
pub fn seqno_of_offset(offset: u64) -> Option<SeqNo> {
    offset
        .checked_add(1)
        .filter(|&seqno| seqno <= SeqNo::MAX.0)
        .map(SeqNo)
}

/// `min_seqno` before the first insert.
const NO_MIN_SEQNO: u64 = u64::MAX;

/// An in-memory, ordered, multi-version table of recent writes.
///
/// Safe to share between threads (`Send + Sync`): inserts are serialised
/// internally; reads and iterators never wait. Each `(user_key, seqno)`
/// pair may be inserted once.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use varve_db::internals::iter::InternalIterator;
/// use varve_db::internals::key::{SeqNo, ValueKind};
/// use varve_db::internals::memtable::MemTable;
///
/// let table = Arc::new(MemTable::new(1));
/// table.insert(b"apple", SeqNo(1), ValueKind::Put, b"red");
/// table.insert(b"apple", SeqNo(5), ValueKind::Put, b"green");
/// table.insert(b"pear", SeqNo(7), ValueKind::Delete, b"");
///
/// // The newest version visible at a snapshot.
/// let (seqno, kind, value) = table.get(b"apple", SeqNo(4)).unwrap();
/// assert_eq!((seqno, kind, value), (SeqNo(1), ValueKind::Put, &b"red"[..]));
/// assert_eq!(table.get(b"apple", SeqNo(9)).unwrap().2, &b"green"[..]);
/// assert_eq!(table.get(b"pear", SeqNo(9)).unwrap().1, ValueKind::Delete);
/// assert!(table.get(b"plum", SeqNo(9)).is_none());
///
/// // Every version, newest first within a key.
/// let mut iter = table.iter();
/// iter.seek_to_first();
/// let mut seen = Vec::new();
/// while iter.valid() {
///     seen.push((iter.key().user_key.to_vec(), iter.key().seqno));
///     iter.next();
/// }
/// assert_eq!(
///     seen,
///     [(b"apple".to_vec(), SeqNo(5)), (b"apple".to_vec(), SeqNo(1)), (b"pear".to_vec(), SeqNo(7))]
/// );
/// assert_eq!(table.len(), 3);
/// assert_eq!((table.min_seqno(), table.max_seqno()), (Some(SeqNo(1)), Some(SeqNo(7))));
/// ```
pub struct MemTable {
    id: u64,
    list: Arc<SkipList>,
    /// The user keys inserted, so a get for another key skips the list.
    filter: KeyFilter,
    size_bytes: AtomicUsize,
    /// Smallest seqno inserted, or `NO_MIN_SEQNO`.
    min_seqno: AtomicU64,
    /// Largest seqno inserted plus one, or 0 before the first insert.
    /// (Seqnos are at most 56 bits, so the `+ 1` cannot overflow.)
    max_seqno_end: AtomicU64,
    /// The shared write-buffer budget its bytes are charged to, if any;
    /// released when the memtable drops.
    budget: Option<Arc<WriteBufferManager>>,
    /// Switched (made immutable): its bytes count as immutable.
    immutable: AtomicBool,
    /// The size at which its charge was given back early
    /// ([`MemTable::release_budget`]), or `usize::MAX`.
    released_at: AtomicUsize,
}

impl MemTable {
    /// An empty memtable named `id` (chosen by the caller, e.g. to order
    /// memtables or name the table it is flushed to).
    pub fn new(id: u64) -> MemTable {
        MemTable::charged_to(id, None)
    }

    /// An empty memtable whose bytes are charged to `budget` (if given)
    /// as they are inserted and released when it drops.
    ///
    /// # Examples
    /// ```
    /// use std::sync::Arc;
    /// use varve_db::internals::key::{SeqNo, ValueKind};
    /// use varve_db::internals::memtable::MemTable;
    ///
    /// let budget = Arc::new(varve_db::WriteBufferManager::new(1 << 20));
    /// let table = MemTable::charged_to(1, Some(budget.clone()));
    /// table.insert(b"k", SeqNo(1), ValueKind::Put, b"v");
    /// assert_eq!(budget.usage_bytes(), table.approximate_size_bytes());
    /// drop(table);
    /// assert_eq!(budget.usage_bytes(), 0);
    /// ```
    pub fn charged_to(id: u64, budget: Option<Arc<WriteBufferManager>>) -> MemTable {
        MemTable {
            id,
            list: Arc::new(SkipList::new(id)),
            filter: KeyFilter::new(),
            size_bytes: AtomicUsize::new(0),
            min_seqno: AtomicU64::new(NO_MIN_SEQNO),
            max_seqno_end: AtomicU64::new(0),
            budget,
            immutable: AtomicBool::new(false),
            released_at: AtomicUsize::new(usize::MAX),
        }
    }

    /// Gives its bytes back to the budget now, before it drops: the
    /// memtable of a failed store, which no flush will ever free, must not
    /// hold the other stores' writers. Bytes inserted later are given back
    /// when it drops. Idempotent.
    pub(crate) fn release_budget(&self) {
        let Some(budget) = &self.budget else { return };
        let size = self.approximate_size_bytes();
        if self
            .released_at
            .compare_exchange(usize::MAX, size, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            budget.release(size, self.immutable.load(Ordering::Acquire));
        }
    }

    /// Marks the memtable immutable (it was switched): its bytes move to
    /// the immutable share of its budget. Idempotent.
    pub fn mark_immutable(&self) {
        if self.immutable.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(budget) = &self.budget
            && self.released_at.load(Ordering::Acquire) == usize::MAX
        {
            budget.mark_immutable(self.approximate_size_bytes());
        }
    }

    /// The id given to [`MemTable::new`].
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Inserts one version of `user_key`. `value` should be empty for a
    /// [`ValueKind::Delete`].
    ///
    /// Waits for a concurrent insert, never for readers. The seqno bounds
    /// are updated before the entry becomes visible, so every entry a
    /// reader sees lies within [`min_seqno`](Self::min_seqno) ..=
    /// [`max_seqno`](Self::max_seqno); the size and length are updated just
    /// after.
    ///
    /// # Panics
    /// If `seqno` exceeds [`SeqNo::MAX`], if a version of `user_key` with
    /// this `seqno` is already present (seqnos are unique), or if the key or
    /// the value is 4 GiB or longer.
    pub fn insert(&self, user_key: &[u8], seqno: SeqNo, kind: ValueKind, value: &[u8]) {
        assert!(
            seqno <= SeqNo::MAX,
            "seqno {} exceeds the maximum {}",
            seqno.0,
            SeqNo::MAX.0
        );
        self.min_seqno.fetch_min(seqno.0, Ordering::Relaxed);
        self.max_seqno_end.fetch_max(seqno.0 + 1, Ordering::Relaxed);
        let key = InternalKeyRef {
            user_key,
            seqno,
            kind,
        };
        // The filter's block is fetched while the list is searched; its
        // bits are set before the entry is linked, so a reader that sees
        // the entry sees them, and under the list's writer mutex.
        let hash = hash64(user_key);
        self.filter.prefetch(hash);
        let mut filter_bytes = 0;
        let list_bytes = self
            .list
            .insert_then(&key, value, || filter_bytes = self.filter.insert(hash));
        let entry_size_bytes = list_bytes + filter_bytes;
        self.size_bytes
            .fetch_add(entry_size_bytes, Ordering::Relaxed);
        if let Some(budget) = &self.budget {
            budget.charge(entry_size_bytes);
        }
    }

    /// The newest version of `user_key` with a seqno `<= snapshot`, as
    /// `(seqno, kind, value)`; the value is empty for a delete and is
    /// borrowed from the table, not copied.
    pub fn get(&self, user_key: &[u8], snapshot: SeqNo) -> Option<(SeqNo, ValueKind, &[u8])> {
        self.get_hashed(user_key, hash64(user_key), snapshot)
    }

    /// [`get`](Self::get) with the key's hash given: `key_hash` must be
    /// [`hash64`]`(user_key)`, the hash table filters use too, so one get
    /// hashes its key once.
    ///
    /// # Examples
    /// ```
    /// use varve_db::internals::key::{SeqNo, ValueKind};
    /// use varve_db::internals::memtable::MemTable;
    /// use varve_db::internals::sst::filter::hash64;
    ///
    /// let table = MemTable::new(1);
    /// table.insert(b"apple", SeqNo(1), ValueKind::Put, b"red");
    /// let found = table.get_hashed(b"apple", hash64(b"apple"), SeqNo::MAX);
    /// assert_eq!(found, Some((SeqNo(1), ValueKind::Put, &b"red"[..])));
    /// assert_eq!(table.get_hashed(b"plum", hash64(b"plum"), SeqNo::MAX), None);
    /// ```
    pub fn get_hashed(
        &self,
        user_key: &[u8],
        key_hash: u64,
        snapshot: SeqNo,
    ) -> Option<(SeqNo, ValueKind, &[u8])> {
        if !self.filter.may_contain(key_hash) {
            return None;
        }
        let node = self
            .list
            .find_greater_or_equal(&InternalKeyRef::seek_key(user_key, snapshot))?;
        let key = node.key();
        (key.user_key == user_key).then(|| (key.seqno, key.kind, node.value()))
    }

    /// Memory taken by the entries, in bytes: keys, values, per-node
    /// overhead (a 32-byte header and 8 bytes per skiplist level; a node
    /// and its value are each rounded up to 8 bytes) and the key filter
    /// (about 14 bits per entry, allocated in growing stages). Grows with
    /// every insert. Leaves out the unused tails of the arenas' 64 KiB
    /// chunks.
    pub fn approximate_size_bytes(&self) -> usize {
        self.size_bytes.load(Ordering::Relaxed)
    }

    /// Number of entries (versions, not distinct keys).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether nothing has been inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest seqno inserted, or `None` if empty.
    pub fn min_seqno(&self) -> Option<SeqNo> {
        let min = self.min_seqno.load(Ordering::Relaxed);
        (min != NO_MIN_SEQNO).then_some(SeqNo(min))
    }

    /// The largest seqno inserted, or `None` if empty.
    pub fn max_seqno(&self) -> Option<SeqNo> {
        let end = self.max_seqno_end.load(Ordering::Relaxed);
        end.checked_sub(1).map(SeqNo)
    }

    /// An iterator over every entry, unpositioned. It shares ownership of
    /// the entries, so it may outlive `self` and move between threads; it
    /// sees entries inserted after it was made as it reaches them.
    pub fn iter(self: &Arc<Self>) -> MemTableIterator {
        MemTableIterator {
            cursor: SkipListIter::new(Arc::clone(&self.list)),
        }
    }
}

impl Drop for MemTable {
    fn drop(&mut self) {
        let Some(budget) = &self.budget else { return };
        let size = self.approximate_size_bytes();
        match *self.released_at.get_mut() {
            usize::MAX => budget.release(size, self.immutable.load(Ordering::Acquire)),
            // Given back early: only what was inserted since, which never
            // counted as immutable.
            at => budget.release(size.saturating_sub(at), false),
        }
    }
}

/// An [`InternalIterator`] over a [`MemTable`], made by [`MemTable::iter`].
///
/// `next` is O(1); `prev` is a search (O(log n)), as entries have no back
/// links. It never fails: [`status`](InternalIterator::status) is always
/// `Ok`.
pub struct MemTableIterator {
    cursor: SkipListIter,
}

impl MemTableIterator {
    fn current(&self) -> skiplist::Node<'_> {
        match self.cursor.current() {
            Some(node) => node,
            None => panic!("MemTableIterator read while not positioned at an entry"),
        }
    }
}

impl InternalIterator for MemTableIterator {
    fn valid(&self) -> bool {
        self.cursor.current().is_some()
    }

    fn seek_to_first(&mut self) {
        self.cursor.seek_to_first();
    }

    fn seek_to_last(&mut self) {
        self.cursor.seek_to_last();
    }

    fn seek(&mut self, target: &InternalKeyRef<'_>) {
        self.cursor.seek(target);
    }

    fn seek_for_prev(&mut self, target: &InternalKeyRef<'_>) {
        self.cursor.seek_for_prev(target);
    }

    /// Moves to the next entry; if not positioned, stays so.
    fn next(&mut self) {
        self.cursor.next();
    }

    /// Moves to the previous entry; if not positioned, stays so.
    fn prev(&mut self) {
        self.cursor.prev();
    }

    /// # Panics
    /// If the iterator is not [`valid`](InternalIterator::valid).
    fn key(&self) -> InternalKeyRef<'_> {
        self.current().key()
    }

    /// # Panics
    /// If the iterator is not [`valid`](InternalIterator::valid).
    fn value(&self) -> &[u8] {
        self.current().value()
    }

    fn status(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;
    use std::thread;
    use std::time::Instant;

    use proptest::prelude::*;

    use super::*;

    /// Entries as `(user_key, seqno, kind, value)`.
    type Entry = (Vec<u8>, u64, ValueKind, Vec<u8>);

    fn table_with(entries: &[(&[u8], u64, ValueKind, &[u8])]) -> Arc<MemTable> {
        let table = Arc::new(MemTable::new(7));
        for &(user_key, seqno, kind, value) in entries {
            table.insert(user_key, SeqNo(seqno), kind, value);
        }
        table
    }

    fn entry(iter: &MemTableIterator) -> Entry {
        let key = iter.key();
        (
            key.user_key.to_vec(),
            key.seqno.0,
            key.kind,
            iter.value().to_vec(),
        )
    }

    fn collect_forward(iter: &mut MemTableIterator) -> Vec<Entry> {
        iter.seek_to_first();
        collect(iter, MemTableIterator::next)
    }

    fn collect_backward(iter: &mut MemTableIterator) -> Vec<Entry> {
        iter.seek_to_last();
        collect(iter, MemTableIterator::prev)
    }

    /// The entries from the iterator's position on, stepping with `step`.
    fn collect(iter: &mut MemTableIterator, step: fn(&mut MemTableIterator)) -> Vec<Entry> {
        let mut out = Vec::new();
        while iter.valid() {
            out.push(entry(iter));
            step(iter);
        }
        out
    }

    fn put(user_key: &[u8], seqno: u64, value: &[u8]) -> Entry {
        (user_key.to_vec(), seqno, ValueKind::Put, value.to_vec())
    }

    fn sample() -> Arc<MemTable> {
        table_with(&[
            (b"b", 3, ValueKind::Put, b"b3"),
            (b"a", 1, ValueKind::Put, b"a1"),
            (b"b", 8, ValueKind::Delete, b""),
            (b"a", 5, ValueKind::Put, b"a5"),
            (b"c", 2, ValueKind::Put, b"c2"),
        ])
    }

    #[test]
    fn get_returns_newest_version_visible_at_snapshot() {
        let table = sample();
        let get = |user_key: &[u8], snapshot| {
            table
                .get(user_key, SeqNo(snapshot))
                .map(|(seqno, kind, value)| (seqno.0, kind, value.to_vec()))
        };
        assert_eq!(get(b"a", 0), None);
        assert_eq!(get(b"a", 1), Some((1, ValueKind::Put, b"a1".to_vec())));
        assert_eq!(get(b"a", 4), Some((1, ValueKind::Put, b"a1".to_vec())));
        assert_eq!(get(b"a", 5), Some((5, ValueKind::Put, b"a5".to_vec())));
        assert_eq!(
            get(b"a", u64::MAX),
            Some((5, ValueKind::Put, b"a5".to_vec()))
        );
        assert_eq!(get(b"b", 7), Some((3, ValueKind::Put, b"b3".to_vec())));
        assert_eq!(get(b"b", 8), Some((8, ValueKind::Delete, Vec::new())));
        assert_eq!(get(b"c", 1), None);
        assert_eq!(get(b"", 9), None);
        assert_eq!(get(b"ab", 9), None);
        assert_eq!(get(b"d", 9), None);
    }

    #[test]
    fn iterates_forward_and_backward_in_internal_key_order() {
        let table = sample();
        let expected = vec![
            put(b"a", 5, b"a5"),
            put(b"a", 1, b"a1"),
            (b"b".to_vec(), 8, ValueKind::Delete, Vec::new()),
            put(b"b", 3, b"b3"),
            put(b"c", 2, b"c2"),
        ];
        let mut iter = table.iter();
        assert!(!iter.valid());
        assert_eq!(collect_forward(&mut iter), expected);
        let mut backward = collect_backward(&mut iter);
        backward.reverse();
        assert_eq!(backward, expected);
        assert!(iter.status().is_ok());
    }

    #[test]
    fn empty_table_iterates_nothing() {
        let table = Arc::new(MemTable::new(0));
        let mut iter = table.iter();
        assert!(collect_forward(&mut iter).is_empty());
        assert!(collect_backward(&mut iter).is_empty());
        iter.seek(&InternalKeyRef::seek_key(b"a", SeqNo(1)));
        assert!(!iter.valid());
        iter.seek_for_prev(&InternalKeyRef::seek_key(b"a", SeqNo(1)));
        assert!(!iter.valid());
        assert!(table.is_empty());
        assert_eq!(table.approximate_size_bytes(), 0);
        assert_eq!((table.min_seqno(), table.max_seqno()), (None, None));
    }

    #[test]
    fn seek_finds_first_entry_at_or_after_target() {
        let table = sample();
        let mut iter = table.iter();
        let seek = |iter: &mut MemTableIterator, user_key: &[u8], seqno| {
            iter.seek(&InternalKeyRef::seek_key(user_key, SeqNo(seqno)));
            iter.valid()
                .then(|| (iter.key().user_key.to_vec(), iter.key().seqno.0))
        };
        assert_eq!(seek(&mut iter, b"", 0), Some((b"a".to_vec(), 5)));
        assert_eq!(seek(&mut iter, b"a", 9), Some((b"a".to_vec(), 5)));
        assert_eq!(seek(&mut iter, b"a", 5), Some((b"a".to_vec(), 5)));
        assert_eq!(seek(&mut iter, b"a", 4), Some((b"a".to_vec(), 1)));
        assert_eq!(seek(&mut iter, b"a", 0), Some((b"b".to_vec(), 8)));
        assert_eq!(seek(&mut iter, b"bb", 9), Some((b"c".to_vec(), 2)));
        assert_eq!(seek(&mut iter, b"c", 1), None);
        // The kind breaks ties: Put sorts before Delete at equal seqno.
        let delete_b8 = InternalKeyRef {
            user_key: b"b",
            seqno: SeqNo(8),
            kind: ValueKind::Delete,
        };
        iter.seek(&delete_b8);
        assert_eq!(iter.key(), delete_b8);
    }

    #[test]
    fn seek_for_prev_finds_last_entry_at_or_before_target() {
        let table = sample();
        let mut iter = table.iter();
        let seek_for_prev = |iter: &mut MemTableIterator, user_key: &[u8], seqno| {
            iter.seek_for_prev(&InternalKeyRef::seek_key(user_key, SeqNo(seqno)));
            iter.valid()
                .then(|| (iter.key().user_key.to_vec(), iter.key().seqno.0))
        };
        assert_eq!(seek_for_prev(&mut iter, b"a", 9), None);
        assert_eq!(seek_for_prev(&mut iter, b"a", 5), Some((b"a".to_vec(), 5)));
        assert_eq!(seek_for_prev(&mut iter, b"a", 2), Some((b"a".to_vec(), 5)));
        assert_eq!(seek_for_prev(&mut iter, b"a", 1), Some((b"a".to_vec(), 1)));
        assert_eq!(seek_for_prev(&mut iter, b"b", 9), Some((b"a".to_vec(), 1)));
        // (b, 8, Put) sorts just before (b, 8, Delete).
        assert_eq!(seek_for_prev(&mut iter, b"b", 8), Some((b"a".to_vec(), 1)));
        assert_eq!(seek_for_prev(&mut iter, b"b", 7), Some((b"b".to_vec(), 8)));
        assert_eq!(seek_for_prev(&mut iter, b"z", 0), Some((b"c".to_vec(), 2)));
        iter.prev();
        assert_eq!(
            (iter.key().user_key, iter.key().seqno),
            (&b"b"[..], SeqNo(3))
        );
        iter.next();
        iter.next();
        assert!(!iter.valid());
        iter.next();
        assert!(!iter.valid());
    }

    #[test]
    fn tracks_len_size_and_seqno_bounds() {
        let table = sample();
        assert_eq!(table.len(), 5);
        assert!(!table.is_empty());
        assert_eq!(table.id(), 7);
        assert_eq!(
            (table.min_seqno(), table.max_seqno()),
            (Some(SeqNo(1)), Some(SeqNo(8)))
        );
        let data_bytes = 5 + 2 + 2 + 2 + 2;
        assert!(table.approximate_size_bytes() > data_bytes + 5 * 16);
        let before = table.approximate_size_bytes();
        table.insert(&[0; 100], SeqNo(0), ValueKind::Put, &[1; 1000]);
        assert!(table.approximate_size_bytes() >= before + 1100);
        assert_eq!(table.min_seqno(), Some(SeqNo(0)));
        table.insert(b"max", SeqNo::MAX, ValueKind::Put, b"");
        assert_eq!(table.max_seqno(), Some(SeqNo::MAX));
    }

    #[test]
    fn iterator_outlives_the_table_handle() {
        let table = table_with(&[(b"k", 1, ValueKind::Put, b"value")]);
        let mut iter = table.iter();
        iter.seek_to_first();
        assert_eq!(iter.value_bytes(), &b"value"[..]);
        drop(table);
        // The iterator keeps the entries alive.
        assert_eq!(iter.value(), b"value");
    }

    #[test]
    fn large_entries_round_trip() {
        let big_key = vec![0xab; 70_000];
        let big_value: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let table = table_with(&[
            (b"small", 1, ValueKind::Put, b"s"),
            (&big_key, 2, ValueKind::Put, &big_value),
            (b"tail", 3, ValueKind::Put, b"t"),
        ]);
        let (_, _, value) = table.get(&big_key, SeqNo(9)).expect("big entry");
        assert_eq!(value, &big_value[..]);
        assert_eq!(
            table.get(b"tail", SeqNo(9)).map(|found| found.2),
            Some(&b"t"[..])
        );
        assert!(table.approximate_size_bytes() > big_key.len() + big_value.len());
    }

    #[test]
    #[should_panic(expected = "already holds a version")]
    fn inserting_the_same_seqno_twice_panics() {
        let table = table_with(&[(b"k", 1, ValueKind::Put, b"v")]);
        table.insert(b"k", SeqNo(1), ValueKind::Delete, b"");
    }

    #[test]
    #[should_panic(expected = "exceeds the maximum")]
    fn seqno_beyond_max_panics() {
        MemTable::new(0).insert(b"k", SeqNo(SeqNo::MAX.0 + 1), ValueKind::Put, b"");
    }

    #[test]
    #[should_panic(expected = "not positioned")]
    fn reading_an_unpositioned_iterator_panics() {
        let table = Arc::new(MemTable::new(0));
        let _ = table.iter().key();
    }

    #[test]
    fn is_send_sync_and_iterator_is_static_send() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_static_send<T: Send + 'static>() {}
        assert_send_sync::<MemTable>();
        assert_static_send::<MemTableIterator>();
    }

    // ---- model test ------------------------------------------------------

    type Model = BTreeMap<(Vec<u8>, Reverse<u64>), (ValueKind, Vec<u8>)>;

    fn model_entries<'a>(
        iter: impl Iterator<Item = (&'a (Vec<u8>, Reverse<u64>), &'a (ValueKind, Vec<u8>))>,
    ) -> Vec<Entry> {
        iter.map(|((user_key, Reverse(seqno)), (kind, value))| {
            (user_key.clone(), *seqno, *kind, value.clone())
        })
        .collect()
    }

    fn model_get(
        model: &Model,
        user_key: &[u8],
        snapshot: u64,
    ) -> Option<(u64, ValueKind, Vec<u8>)> {
        let ((found, Reverse(seqno)), (kind, value)) = model
            .range((user_key.to_vec(), Reverse(snapshot))..)
            .next()?;
        (found == user_key).then(|| (*seqno, *kind, value.clone()))
    }

    fn small_key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, 1, b'a', 0xff]), 0..4)
    }

    fn kind() -> impl Strategy<Value = ValueKind> {
        prop::sample::select(vec![ValueKind::Put, ValueKind::Delete])
    }

    /// Writes with distinct seqnos, inserted in a random seqno order.
    fn writes() -> impl Strategy<Value = Vec<Entry>> {
        (0usize..120).prop_flat_map(|count| {
            let seqnos = Just((0..count as u64).map(|s| s * 3).collect::<Vec<_>>()).prop_shuffle();
            let rows = prop::collection::vec(
                (
                    small_key(),
                    kind(),
                    prop::collection::vec(any::<u8>(), 0..6),
                ),
                count,
            );
            (seqnos, rows).prop_map(|(seqnos, rows)| {
                seqnos
                    .into_iter()
                    .zip(rows)
                    .map(|(seqno, (user_key, kind, value))| (user_key, seqno, kind, value))
                    .collect()
            })
        })
    }

    fn build(writes: &[Entry]) -> (Arc<MemTable>, Model) {
        let table = Arc::new(MemTable::new(3));
        let mut model = Model::new();
        for (user_key, seqno, kind, value) in writes {
            table.insert(user_key, SeqNo(*seqno), *kind, value);
            model.insert((user_key.clone(), Reverse(*seqno)), (*kind, value.clone()));
        }
        (table, model)
    }

    fn probes() -> impl Strategy<Value = Vec<(Vec<u8>, u64)>> {
        prop::collection::vec((small_key(), 0u64..400), 0..40)
    }

    proptest! {
        #[test]
        fn matches_btreemap_model(writes in writes(), probes in probes()) {
            let (table, model) = build(&writes);
            let mut iter = table.iter();
            prop_assert_eq!(collect_forward(&mut iter), model_entries(model.iter()));
            prop_assert_eq!(collect_backward(&mut iter), model_entries(model.iter().rev()));
            prop_assert_eq!(table.len(), model.len());

            for (user_key, snapshot) in &probes {
                let got = table
                    .get(user_key, SeqNo(*snapshot))
                    .map(|(seqno, kind, value)| (seqno.0, kind, value.to_vec()));
                prop_assert_eq!(got, model_get(&model, user_key, *snapshot));

                // seek to (k, s, Put): the first entry with (k', s') >= (k, s).
                let bound = (user_key.clone(), Reverse(*snapshot));
                iter.seek(&InternalKeyRef::seek_key(user_key, SeqNo(*snapshot)));
                let expected = model_entries(model.range(bound.clone()..).take(1));
                prop_assert_eq!(iter.valid().then(|| entry(&iter)), expected.into_iter().next());

                // seek_for_prev to (k, s, Delete): the last with (k', s') <= (k, s).
                iter.seek_for_prev(&InternalKeyRef {
                    user_key,
                    seqno: SeqNo(*snapshot),
                    kind: ValueKind::Delete,
                });
                let expected = model_entries(model.range(..=bound).rev().take(1));
                prop_assert_eq!(iter.valid().then(|| entry(&iter)), expected.into_iter().next());
            }
        }
    }

    // ---- concurrency -----------------------------------------------------

    /// A deterministic key for write `i`, spread over the key space.
    fn scattered_key(i: u64) -> [u8; 8] {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes()
    }

    /// Scans forward, checks order, and returns the number of entries.
    fn scan_sorted(table: &Arc<MemTable>) -> usize {
        let mut iter = table.iter();
        iter.seek_to_first();
        let mut count = 0;
        let mut last: Option<(Vec<u8>, SeqNo)> = None;
        while iter.valid() {
            let key = iter.key();
            if let Some((user_key, seqno)) = &last {
                let before = InternalKeyRef::seek_key(user_key, *seqno);
                assert_eq!(before.cmp_internal(&key), std::cmp::Ordering::Less);
            }
            last = Some((key.user_key.to_vec(), key.seqno));
            count += 1;
            iter.next();
        }
        count
    }

    #[test]
    fn readers_see_a_sorted_growing_table_while_one_writer_inserts() {
        const WRITES: u64 = if cfg!(miri) { 300 } else { 50_000 };
        let table = Arc::new(MemTable::new(11));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let table = Arc::clone(&table);
                let done = Arc::clone(&done);
                thread::spawn(move || {
                    let mut last_count = 0;
                    let mut scans = 0;
                    while !done.load(Ordering::Acquire) {
                        let count = scan_sorted(&table);
                        assert!(
                            count >= last_count,
                            "count fell from {last_count} to {count}"
                        );
                        last_count = count;
                        scans += 1;
                    }
                    assert_eq!(scan_sorted(&table), WRITES as usize);
                    scans
                })
            })
            .collect();
        for i in 0..WRITES {
            // Every 4th write adds a newer version of an earlier key.
            let user_key = scattered_key(if i % 4 == 3 { i / 2 } else { i });
            table.insert(&user_key, SeqNo(i), ValueKind::Put, &i.to_le_bytes());
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            assert!(reader.join().expect("reader panicked") >= 1);
        }
        assert_eq!(table.len(), WRITES as usize);
    }

    /// The engine publishes a write's sequence number after its insert; a
    /// reader that loads the published number must find every key up to
    /// it, through the key filter, as its stages are allocated and filled.
    #[test]
    fn gets_find_every_published_key_while_one_writer_inserts() {
        const WRITES: u64 = if cfg!(miri) { 300 } else { 200_000 };
        let table = Arc::new(MemTable::new(12));
        let published = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..2u64)
            .map(|reader| {
                let table = Arc::clone(&table);
                let published = Arc::clone(&published);
                thread::spawn(move || {
                    let mut probe = reader;
                    let mut gets = 0u64;
                    loop {
                        let end = published.load(Ordering::Acquire);
                        if end > 0 {
                            // The newest key, and one spread over the rest.
                            for i in [end - 1, probe % end] {
                                let key = scattered_key(i);
                                let found = table.get(&key, SeqNo(end));
                                assert!(found.is_some(), "key {i} of {end} published: not found");
                                gets += 1;
                            }
                        }
                        if end == WRITES {
                            return gets;
                        }
                        probe = probe
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                    }
                })
            })
            .collect();
        for i in 0..WRITES {
            table.insert(&scattered_key(i), SeqNo(i + 1), ValueKind::Put, b"v");
            published.store(i + 1, Ordering::Release);
        }
        for reader in readers {
            assert!(reader.join().expect("reader panicked") > 0);
        }
        let absent = (WRITES..WRITES + 10_000)
            .filter(|&i| table.get(&scattered_key(i), SeqNo::MAX).is_some())
            .count();
        assert_eq!(absent, 0, "absent keys found");
    }

    // ---- micro benchmark -------------------------------------------------

    /// Not a benchmark harness, just a rough number in the test output
    /// (`cargo test --release -p varve-db micro -- --nocapture`).
    #[test]
    fn micro_insert_get_scan_timing() {
        const ENTRIES: u64 = if cfg!(miri) { 100 } else { 100_000 };
        let table = Arc::new(MemTable::new(5));
        let started = Instant::now();
        for i in 0..ENTRIES {
            table.insert(&scattered_key(i), SeqNo(i), ValueKind::Put, &[0; 16]);
        }
        let insert_ns = started.elapsed().as_nanos() / u128::from(ENTRIES);
        let started = Instant::now();
        for i in 0..ENTRIES {
            assert!(table.get(&scattered_key(i), SeqNo::MAX).is_some());
        }
        let get_ns = started.elapsed().as_nanos() / u128::from(ENTRIES);
        let started = Instant::now();
        assert_eq!(scan_sorted(&table), ENTRIES as usize);
        let scan_ns = started.elapsed().as_nanos() / u128::from(ENTRIES);
        println!(
            "memtable, {ENTRIES} entries of 8+16 bytes: insert {insert_ns} ns, get {get_ns} ns, \
             scan {scan_ns} ns per entry; {} bytes charged per entry",
            table.approximate_size_bytes() / ENTRIES as usize
        );
    }
}
