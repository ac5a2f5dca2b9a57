//! A concurrent ordered skiplist of internal entries: one writer at a time,
//! any number of lock-free readers.
//!
//! The design is LevelDB's (`db/skiplist.h`):
//!
//! - Inserts are serialised by an internal mutex, which also guards the
//!   arena, the height generator and the splice (where the last insert
//!   went, so that the next one near it starts there). Readers never take
//!   it and never block the writer.
//! - A node is fully written (key, value, and its own next pointers) before
//!   it is published by `Release` stores into its predecessors' next
//!   pointers, level 0 first. Readers load next pointers with `Acquire`, so
//!   a reader that sees a node sees all of it.
//! - Nodes are never unlinked or changed (except their next pointers, which
//!   are atomics) and are freed only with the whole list, so a node found
//!   in a live list stays valid for the list's life.
//!
//! A node is one block in the list's node [`Arena`]; its value is a block
//! of its own in a second arena, the value arena:
//!
//! ```text
//! node  := header tower key
//! header:= value:*u8 seqno:u64 key_len:u32 value_len:u32 height:u8 kind:u8 pad   (32 bytes)
//! tower := next:AtomicPtr * height          next node at each level, or null
//! ```
//!
//! One block per node means one cache miss per node a search visits, where
//! separately boxed nodes, towers and keys cost up to three. Measured on
//! 100,000 random inserts, gets and a scan (cachegrind, 2 MiB last-level
//! cache): 36% fewer instructions and 60% fewer last-level misses than the
//! boxed layout. On a million entries (wall clock, busy machine) inserts
//! and scans ran about twice as fast and gets 1.6 times as fast.
//!
//! A search that compares the next node at one level also asks the
//! processor to start loading the node after the current one a level down
//! (where it goes next whenever it descends, about once a level): the two
//! cache misses then overlap instead of following each other. Measured
//! with `varve-bench` fillrandom of 3M keys, one run, builds alternating:
//! one store 201 / 241 K -> 210 / 264 K puts/s, 32 partitions on one
//! budget 153 / 161 K -> 176 / 190 K, whose inserts walk twice the memory
//! (at 10M keys one store 3-7 % faster, the partitions within their
//! noise; `benches/results/2-core-vm-10m-partitions/`).
//!
//! Values live apart because a search reads keys and links only: with
//! 16-byte keys and 100-byte values a node is then about 60 bytes instead
//! of 150, so the part of a memtable searches walk is less than half its
//! size and more of it stays in the processor's caches.
//!
//! All `unsafe` of the memtable lives in this file and `arena.rs`.

use std::cmp::Ordering as KeyOrdering;
use std::marker::PhantomData;
use std::mem;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::arena::{ARENA_ALIGN, Arena};
use crate::key::{InternalKeyRef, SeqNo, ValueKind};
use crate::prefetch::prefetch_read;

/// The tallest a node's tower can be. With a branching factor of 4 this
/// keeps searches logarithmic up to about 4^12 ≈ 16 million entries.
pub(crate) const MAX_HEIGHT: usize = 12;

/// One in `BRANCHING` nodes at level `i` also appears at level `i + 1`.
const BRANCHING: u64 = 4;

/// The fixed part of a node; the tower and key follow it, the value is
/// in the value arena.
#[repr(C)]
struct Header {
    /// The value's bytes (`value_len` of them) in the value arena; dangling
    /// for an empty value.
    value: NonNull<u8>,
    seqno: SeqNo,
    key_len: u32,
    value_len: u32,
    height: u8,
    kind: ValueKind,
}

type Link = AtomicPtr<Header>;

const HEADER_SIZE: usize = mem::size_of::<Header>();
const LINK_SIZE: usize = mem::size_of::<Link>();
const _: () = assert!(HEADER_SIZE == 32);
const _: () = assert!(HEADER_SIZE.is_multiple_of(mem::align_of::<Link>()));
const _: () = assert!(mem::align_of::<Header>() <= ARENA_ALIGN);
const _: () = assert!(mem::align_of::<Link>() <= ARENA_ALIGN);

/// Size of a node with `height` links and a key of `key_len` bytes.
fn node_size_bytes(height: usize, key_len: usize) -> usize {
    HEADER_SIZE + height * LINK_SIZE + key_len
}

/// A node of a skiplist that lives for `'a`.
///
/// Invariant: `start` points to a fully written node (header, `height`
/// initialised links, key and value) in the arena of a list that outlives
/// `'a`. Made only by [`Node::from_start`].
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    start: NonNull<Header>,
    list: PhantomData<&'a SkipList>,
}

impl<'a> Node<'a> {
    /// # Safety
    /// `start` must point to a fully written node whose writes happen
    /// before this call (same thread, or published with `Release` and seen
    /// with `Acquire`), in a list that outlives `'a`.
    unsafe fn from_start(start: NonNull<Header>) -> Node<'a> {
        Node {
            start,
            list: PhantomData,
        }
    }

    fn header(self) -> &'a Header {
        // SAFETY: by the invariant the header is written, lives for `'a`,
        // and is never written again.
        unsafe { self.start.as_ref() }
    }

    fn link(self, level: usize) -> &'a Link {
        assert!(level < usize::from(self.header().height));
        // SAFETY: the node's block holds `height` initialised links right
        // after the header (see `write_node`); `level < height`, so the
        // link is in bounds, aligned, and lives for `'a`. Links are only
        // ever accessed atomically.
        unsafe {
            &*self
                .start
                .cast::<u8>()
                .add(HEADER_SIZE + level * LINK_SIZE)
                .cast::<Link>()
                .as_ptr()
        }
    }

    /// The node's user key.
    fn user_key(self) -> &'a [u8] {
        let header = self.header();
        let offset = node_size_bytes(usize::from(header.height), 0);
        // SAFETY: the block holds `key_len` written bytes after the tower
        // (see `write_node`); they live for `'a` and are never written
        // again.
        unsafe {
            slice::from_raw_parts(
                self.start.cast::<u8>().add(offset).as_ptr(),
                header.key_len as usize,
            )
        }
    }

    /// The node's internal key.
    pub(crate) fn key(self) -> InternalKeyRef<'a> {
        let header = self.header();
        InternalKeyRef {
            user_key: self.user_key(),
            seqno: header.seqno,
            kind: header.kind,
        }
    }

    /// The node's value (empty for a delete).
    pub(crate) fn value(self) -> &'a [u8] {
        let header = self.header();
        // SAFETY: `value` points to `value_len` bytes written before the
        // node (see `write_node`), in the value arena of the same list,
        // which lives as long; they are never written again. An empty
        // value's pointer is dangling but aligned, valid for 0 bytes.
        unsafe { slice::from_raw_parts(header.value.as_ptr(), header.value_len as usize) }
    }

    /// Compares this node's key with `target` in internal-key order.
    fn cmp_key(self, target: &InternalKeyRef<'_>) -> KeyOrdering {
        self.key().cmp_internal(target)
    }

    /// The next node at `level`, or `None` at the end of the list.
    fn next(self, level: usize) -> Option<Node<'a>> {
        let next = NonNull::new(self.link(level).load(Ordering::Acquire))?;
        // SAFETY: a non-null link points to a node of the same list that
        // `insert` wrote completely before storing the pointer with
        // `Release`; this `Acquire` load makes those writes visible. The
        // list outlives `'a` as it outlives `self`.
        Some(unsafe { Node::from_start(next) })
    }
}

/// State only the writer touches.
struct Writer {
    /// Nodes: headers, towers and keys.
    arena: Arena,
    /// Values, apart from the nodes searches walk.
    values: Arena,
    rng: XorShift64,
    splice: Splice,
}

/// Where the last insert went: at every level, the node before the last
/// inserted key and the node after it (null for the end), as RocksDB's
/// `InlineSkipList` remembers it. When the level-0 pair still brackets
/// the next key, that key is linked there without a walk, so ascending
/// keys (a fill in key order, or a batch of sorted keys) insert in
/// constant time; any other key walks from the head as before, and the
/// walk rewrites the splice.
///
/// Invariant (the writer mutex guards it): for each level `i`, `prev[i]`
/// is a node of the list (or the head) whose link at `i` was `next[i]`
/// when the splice was last written, and the pairs are nested: `prev[i +
/// 1]` is `prev[i]` or before it, `next[i + 1]` is `next[i]` or after it.
/// Above the list's height every pair is (head, null). As only the writer
/// links nodes and it rewrites the splice on every insert, each pair is
/// still adjacent when read; `insert` checks that anyway, and walks from
/// the head if it is not.
struct Splice {
    prev: [NonNull<Header>; MAX_HEIGHT],
    next: [*mut Header; MAX_HEIGHT],
}

/// A concurrent ordered skiplist of internal entries.
pub(crate) struct SkipList {
    /// Sentinel before the first entry: empty key, `MAX_HEIGHT` links.
    head: NonNull<Header>,
    /// Height of the tallest tower so far (at least 1). Read `Relaxed`: a
    /// reader that sees a stale, smaller height merely searches from a lower
    /// level; one that sees a newer, larger height finds null (end) at the
    /// head's new levels until the writer links them.
    height: AtomicUsize,
    /// Number of entries linked so far.
    len: AtomicUsize,
    writer: Mutex<Writer>,
}

// SAFETY: the list owns its nodes (through the arena, which is `Send`).
// Nodes hold plain data that is never written after publication, plus
// links that are atomics, so they may be read from any thread and the list
// may be dropped on any thread.
unsafe impl Send for SkipList {}
// SAFETY: shared access writes nodes only under the writer mutex, and only
// nodes not yet published or the atomic links of published ones; readers
// use `Acquire` loads that pair with the writer's `Release` stores.
unsafe impl Sync for SkipList {}

impl SkipList {
    /// An empty list whose tower heights come from a generator seeded with
    /// `seed` (any value; the sequence is deterministic per seed).
    pub(crate) fn new(seed: u64) -> SkipList {
        let mut arena = Arena::with_huge_pages();
        let mut values = Arena::new();
        let head = write_node(
            &mut arena,
            &mut values,
            &InternalKeyRef::seek_key(b"", SeqNo(0)),
            b"",
            MAX_HEIGHT,
        );
        SkipList {
            head,
            height: AtomicUsize::new(1),
            len: AtomicUsize::new(0),
            writer: Mutex::new(Writer {
                arena,
                values,
                rng: XorShift64::new(seed),
                splice: Splice {
                    prev: [head; MAX_HEIGHT],
                    next: [ptr::null_mut(); MAX_HEIGHT],
                },
            }),
        }
    }

    fn head(&self) -> Node<'_> {
        // SAFETY: `new` wrote the head before `self` existed; it lives in
        // `self`'s arena as long as `self`.
        unsafe { Node::from_start(self.head) }
    }

    fn is_head(&self, node: Node<'_>) -> bool {
        node.start == self.head
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// [`insert_then`](Self::insert_then) with nothing to run.
    #[cfg(test)]
    pub(crate) fn insert(&self, key: &InternalKeyRef<'_>, value: &[u8]) -> usize {
        self.insert_then(key, value, || {})
    }

    /// Inserts an entry and returns the arena memory it takes, in bytes
    /// (header, tower and key, and the value, each rounded up to the
    /// alignment). `before_link` runs under the writer mutex once the node
    /// is written and before any reader can reach it: what it writes (the
    /// memtable's key filter) is visible to every reader that finds the
    /// node, and no other insert runs meanwhile.
    ///
    /// Waits for any concurrent insert; never waits for readers.
    ///
    /// # Panics
    /// If an entry with the same user key and sequence number is already
    /// present (sequence numbers are unique, so that is a caller bug), or if
    /// the key or the value is 4 GiB or longer.
    pub(crate) fn insert_then(
        &self,
        key: &InternalKeyRef<'_>,
        value: &[u8],
        before_link: impl FnOnce(),
    ) -> usize {
        let mut writer = self.writer.lock();
        let writer = &mut *writer;
        self.fix_splice(&mut writer.splice, key);
        let splice = &mut writer.splice;
        // SAFETY: the splice holds nodes of this list (its invariant), and
        // null for the end.
        let (before, after) = unsafe {
            (
                Node::from_start(splice.prev[0]),
                NonNull::new(splice.next[0]).map(|next| Node::from_start(next)),
            )
        };
        self.assert_not_present(key, before, after);

        let height = writer.rng.random_height();
        // Levels above the old height keep the head as their predecessor
        // and the end as their successor, as the splice already says.
        self.height.fetch_max(height, Ordering::Relaxed);
        let start = write_node(&mut writer.arena, &mut writer.values, key, value, height);
        // SAFETY: `write_node` just wrote the node on this thread, in this
        // list's arena.
        let node = unsafe { Node::from_start(start) };
        for level in 0..height {
            node.link(level)
                .store(splice.next[level], Ordering::Relaxed);
        }
        before_link();
        for level in 0..height {
            // SAFETY: a node of this list, by the splice's invariant.
            let node_before = unsafe { Node::from_start(splice.prev[level]) };
            node_before
                .link(level)
                .store(start.as_ptr(), Ordering::Release);
            // The new node is now the one before the next key up here;
            // the one after it is unchanged.
            splice.prev[level] = start;
        }
        self.len.fetch_add(1, Ordering::Release);
        node_size_bytes(height, key.user_key.len()).next_multiple_of(ARENA_ALIGN)
            + value.len().next_multiple_of(ARENA_ALIGN)
    }

    /// Moves the splice to `key`: afterwards, at every level, `prev` goes
    /// before `key` and `next` (if any) does not, and the two are adjacent.
    ///
    /// If the level-0 pair still brackets `key` (an ascending key, or one
    /// right after the last), nothing is walked. Otherwise the walk starts
    /// from the head, as without a splice: climbing level by level to a
    /// pair that brackets the key (as RocksDB does) costs up to two
    /// comparisons a level, which for random keys measured 10% more
    /// instructions per put than the plain walk.
    fn fix_splice(&self, splice: &mut Splice, key: &InternalKeyRef<'_>) {
        let goes_before = |node: Node<'_>| node.cmp_key(key) == KeyOrdering::Less;
        // SAFETY: nodes of this list, by the splice's invariant.
        let (prev, next) = unsafe {
            (
                Node::from_start(splice.prev[0]),
                NonNull::new(splice.next[0]).map(|next| Node::from_start(next)),
            )
        };
        let brackets = prev.link(0).load(Ordering::Relaxed) == splice.next[0]
            && (self.is_head(prev) || goes_before(prev))
            && !next.is_some_and(goes_before);
        if brackets {
            return;
        }
        // Otherwise from the head, at every level of the list; above its
        // height the pair stays (head, end), which brackets every key.
        self.descend(goes_before, |level, node, next| {
            splice.prev[level] = node.start;
            splice.next[level] = next.map_or(ptr::null_mut(), |next| next.start.as_ptr());
        });
    }

    fn assert_not_present(
        &self,
        key: &InternalKeyRef<'_>,
        before: Node<'_>,
        after: Option<Node<'_>>,
    ) {
        let same_version = |node: Node<'_>| {
            let found = node.key();
            found.user_key == key.user_key && found.seqno == key.seqno
        };
        let duplicate =
            after.is_some_and(same_version) || (!self.is_head(before) && same_version(before));
        assert!(
            !duplicate,
            "memtable already holds a version of this key with seqno {}",
            key.seqno.0
        );
    }

    /// The first entry whose key is `>= target`.
    pub(crate) fn find_greater_or_equal(&self, target: &InternalKeyRef<'_>) -> Option<Node<'_>> {
        self.descend(
            |node| node.cmp_key(target) == KeyOrdering::Less,
            |_, _, _| {},
        )
        .1
    }

    /// The last entry whose key is `< target`.
    pub(crate) fn find_less_than(&self, target: &InternalKeyRef<'_>) -> Option<Node<'_>> {
        let (node, _) = self.descend(
            |node| node.cmp_key(target) == KeyOrdering::Less,
            |_, _, _| {},
        );
        self.entry(node)
    }

    /// The last entry whose key is `<= target`.
    pub(crate) fn find_less_or_equal(&self, target: &InternalKeyRef<'_>) -> Option<Node<'_>> {
        let (node, _) = self.descend(
            |node| node.cmp_key(target) != KeyOrdering::Greater,
            |_, _, _| {},
        );
        self.entry(node)
    }

    /// The first entry.
    pub(crate) fn first(&self) -> Option<Node<'_>> {
        self.head().next(0)
    }

    /// The last entry.
    pub(crate) fn last(&self) -> Option<Node<'_>> {
        let (node, _) = self.descend(|_| true, |_, _, _| {});
        self.entry(node)
    }

    /// `None` for the head sentinel, the node otherwise.
    fn entry<'a>(&self, node: Node<'a>) -> Option<Node<'a>> {
        (!self.is_head(node)).then_some(node)
    }

    /// Walks down from the top level, moving right while the next node
    /// `goes_before` the target (a predicate true for a prefix of the list).
    /// Calls `record(level, node, next)` with the last node visited at each
    /// level and the node after it there.
    ///
    /// Returns the last node that goes before the target (possibly the
    /// head) and the level-0 node after it, as seen during the walk: that
    /// node was checked to not go before the target, even if an insert has
    /// since linked a new node between the two.
    fn descend<'a>(
        &'a self,
        goes_before: impl Fn(Node<'a>) -> bool,
        mut record: impl FnMut(usize, Node<'a>, Option<Node<'a>>),
    ) -> (Node<'a>, Option<Node<'a>>) {
        let mut node = self.head();
        let mut level = self.height.load(Ordering::Relaxed) - 1;
        // The node last found not to go before the target: often the next
        // node one level down too, and then it need not be compared again.
        let mut rejected = None;
        loop {
            let next = node.next(level);
            let next_start = next.map(|next| next.start);
            // While `next` is compared, start loading the node after
            // `node` one level down: where the search descends (about once
            // a level) that is the next node it compares, and the two
            // cache misses then overlap instead of following each other.
            if level > 0 {
                let below = node.link(level - 1).load(Ordering::Relaxed);
                if !below.is_null() && next_start.is_none_or(|n| n.as_ptr() != below) {
                    prefetch_read(below.cast::<u8>());
                }
            }
            match next {
                Some(next) if next_start != rejected && goes_before(next) => node = next,
                _ => {
                    rejected = next_start;
                    record(level, node, next);
                    if level == 0 {
                        return (node, next);
                    }
                    level -= 1;
                }
            }
        }
    }
}

/// Writes a node into the arena: header, `height` null links, key, value.
/// It is not yet linked into any list.
///
/// # Panics
/// If the key or the value is 4 GiB or longer.
fn write_node(
    arena: &mut Arena,
    values: &mut Arena,
    key: &InternalKeyRef<'_>,
    value: &[u8],
    height: usize,
) -> NonNull<Header> {
    let value_start = if value.is_empty() {
        NonNull::dangling()
    } else {
        let start = values.allocate(value.len());
        // SAFETY: `start` is a fresh, exclusively owned block of at least
        // `value.len()` bytes, which no one else sees yet.
        unsafe { ptr::copy_nonoverlapping(value.as_ptr(), start.as_ptr(), value.len()) };
        start
    };
    let header = Header {
        value: value_start,
        seqno: key.seqno,
        key_len: length_u32(key.user_key.len(), "key"),
        value_len: length_u32(value.len(), "value"),
        height: height_u8(height),
        kind: key.kind,
    };
    let start = arena.allocate(node_size_bytes(height, key.user_key.len()));
    // SAFETY: `start` is a fresh, exclusively owned block of
    // `node_size_bytes(height, key_len)` bytes aligned to `ARENA_ALIGN`
    // (enough for `Header` and `Link`, asserted at compile time), so each
    // write below is in bounds, aligned, and to memory no one else sees.
    unsafe {
        start.cast::<Header>().write(header);
        let links = start.add(HEADER_SIZE).cast::<Link>();
        for level in 0..height {
            links.add(level).write(Link::new(ptr::null_mut()));
        }
        let data = start.add(node_size_bytes(height, 0));
        ptr::copy_nonoverlapping(key.user_key.as_ptr(), data.as_ptr(), key.user_key.len());
    }
    start.cast()
}

fn length_u32(len: usize, what: &str) -> u32 {
    match u32::try_from(len) {
        Ok(len) => len,
        Err(_) => panic!("memtable {what} of {len} bytes is too large (limit 4 GiB)"),
    }
}

fn height_u8(height: usize) -> u8 {
    assert!((1..=MAX_HEIGHT).contains(&height));
    height as u8
}

/// A cursor over a skiplist that owns a share of it, so it is `'static`.
pub(crate) struct SkipListIter {
    list: Arc<SkipList>,
    /// The current entry, a node of `list`; `None` when not positioned.
    node: Option<NonNull<Header>>,
}

// SAFETY: the cursor is an `Arc<SkipList>` (Send + Sync) plus a pointer to
// a node of that list, used only to read it. The `Arc` keeps the node
// alive, and nodes may be read from any thread.
unsafe impl Send for SkipListIter {}

impl SkipListIter {
    /// An unpositioned cursor over `list`.
    pub(crate) fn new(list: Arc<SkipList>) -> SkipListIter {
        SkipListIter { list, node: None }
    }

    /// The current entry, if positioned.
    pub(crate) fn current(&self) -> Option<Node<'_>> {
        // SAFETY: `node` was taken from a `Node` of `self.list`, so it is
        // fully written and visible to this thread (moving the cursor to
        // another thread synchronises); `self.list` keeps it alive for at
        // least as long as `&self`.
        self.node.map(|start| unsafe { Node::from_start(start) })
    }

    fn start_of(node: Option<Node<'_>>) -> Option<NonNull<Header>> {
        node.map(|node| node.start)
    }

    /// Positions at the first entry.
    pub(crate) fn seek_to_first(&mut self) {
        self.node = Self::start_of(self.list.first());
    }

    /// Positions at the last entry.
    pub(crate) fn seek_to_last(&mut self) {
        self.node = Self::start_of(self.list.last());
    }

    /// Positions at the first entry `>= target`.
    pub(crate) fn seek(&mut self, target: &InternalKeyRef<'_>) {
        self.node = Self::start_of(self.list.find_greater_or_equal(target));
    }

    /// Positions at the last entry `<= target`.
    pub(crate) fn seek_for_prev(&mut self, target: &InternalKeyRef<'_>) {
        self.node = Self::start_of(self.list.find_less_or_equal(target));
    }

    /// Moves to the next entry; stays unpositioned if not positioned.
    pub(crate) fn next(&mut self) {
        self.node = Self::start_of(self.current().and_then(|node| node.next(0)));
    }

    /// Moves to the previous entry (an `O(log n)` search, as nodes have no
    /// back links); stays unpositioned if not positioned.
    pub(crate) fn prev(&mut self) {
        let prev = self
            .current()
            .and_then(|node| self.list.find_less_than(&node.key()));
        self.node = Self::start_of(prev);
    }
}

/// Marsaglia's xorshift64: small, fast, and good enough for tower heights.
struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    fn new(seed: u64) -> XorShift64 {
        // Spread the seed (splitmix64 finaliser) and avoid the all-zero
        // state, from which xorshift never leaves.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift64 { state: z.max(1) }
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A height in `1..=MAX_HEIGHT`, each level kept with probability
    /// `1 / BRANCHING`.
    fn random_height(&mut self) -> usize {
        let mut height = 1;
        while height < MAX_HEIGHT && self.next_u64().is_multiple_of(BRANCHING) {
            height += 1;
        }
        height
    }
}

#[cfg(test)]
mod tests {
    //! Small sizes, so that these also run under Miri:
    //! `cargo +nightly miri test -p varve-db memtable::skiplist`.

    use std::cmp::Reverse;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;
    use std::thread;

    use proptest::prelude::*;

    use super::*;

    const ENTRIES: u64 = if cfg!(miri) { 60 } else { 2_000 };

    fn key(user_key: &[u8], seqno: u64) -> InternalKeyRef<'_> {
        InternalKeyRef::seek_key(user_key, SeqNo(seqno))
    }

    /// Inserts `count` entries, keys `i * 7 mod 1009` (scattered), seqno `i`.
    fn filled(count: u64) -> SkipList {
        let list = SkipList::new(1);
        for i in 0..count {
            let user_key = ((i * 7) % 1009).to_be_bytes();
            list.insert(&key(&user_key, i), &i.to_le_bytes());
        }
        list
    }

    fn forward(list: &SkipList) -> Vec<(Vec<u8>, SeqNo)> {
        let mut out = Vec::new();
        let mut node = list.first();
        while let Some(current) = node {
            out.push((current.key().user_key.to_vec(), current.key().seqno));
            node = current.next(0);
        }
        out
    }

    fn assert_sorted(entries: &[(Vec<u8>, SeqNo)]) {
        for pair in entries.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert_eq!(
                key(&a.0, a.1.0).cmp_internal(&key(&b.0, b.1.0)),
                KeyOrdering::Less
            );
        }
    }

    #[test]
    fn walks_in_order_at_every_level() {
        let list = filled(ENTRIES);
        let entries = forward(&list);
        assert_eq!(entries.len() as u64, ENTRIES);
        assert_eq!(list.len() as u64, ENTRIES);
        assert_sorted(&entries);
        for level in 1..MAX_HEIGHT {
            let mut node = list.head().next(level);
            while let Some(current) = node {
                node = current.next(level);
                if let Some(next) = node {
                    assert_eq!(current.cmp_key(&next.key()), KeyOrdering::Less);
                }
            }
        }
    }

    #[test]
    fn finds_neighbours_of_a_target() {
        let list = filled(ENTRIES);
        let entries = forward(&list);
        let (mid_key, mid_seqno) = &entries[entries.len() / 2];
        let target = key(mid_key, mid_seqno.0);
        assert_eq!(
            list.find_greater_or_equal(&target).map(Node::key),
            Some(target)
        );
        assert_eq!(
            list.find_less_or_equal(&target).map(Node::key),
            Some(target)
        );
        let before = &entries[entries.len() / 2 - 1];
        let found = list.find_less_than(&target).map(|node| node.key());
        assert_eq!(found, Some(key(&before.0, before.1.0)));
        let last = entries.last().map(|(k, s)| key(k, s.0));
        assert_eq!(list.last().map(Node::key), last);
        assert!(list.find_less_than(&key(b"", u64::MAX)).is_none());
        assert!(list.find_greater_or_equal(&key(&[0xff; 9], 0)).is_none());
    }

    #[test]
    fn values_round_trip() {
        let list = filled(ENTRIES);
        let mut node = list.first();
        while let Some(current) = node {
            let seqno = current.key().seqno.0;
            assert_eq!(current.value(), seqno.to_le_bytes());
            node = current.next(0);
        }
    }

    #[test]
    fn cursor_moves_both_ways() {
        let list = Arc::new(filled(ENTRIES));
        let expected = forward(&list);
        let mut cursor = SkipListIter::new(Arc::clone(&list));
        let mut backward = Vec::new();
        cursor.seek_to_last();
        while let Some(node) = cursor.current() {
            backward.push((node.key().user_key.to_vec(), node.key().seqno));
            cursor.prev();
        }
        backward.reverse();
        assert_eq!(backward, expected);
        drop(list);
        cursor.seek_to_first();
        cursor.next();
        let second = cursor.current().map(|node| node.key().seqno);
        assert_eq!(second, Some(expected[1].1));
    }

    #[test]
    fn heights_are_geometric() {
        let mut rng = XorShift64::new(0);
        let draws = if cfg!(miri) { 1_000 } else { 100_000 };
        let mut counts = [0usize; MAX_HEIGHT + 1];
        for _ in 0..draws {
            counts[rng.random_height()] += 1;
        }
        assert_eq!(counts[0], 0);
        // About 3/4 of towers have height 1, 3/16 height 2.
        let ones = counts[1] as f64 / draws as f64;
        let twos = counts[2] as f64 / draws as f64;
        assert!((0.70..0.80).contains(&ones), "height 1 share {ones}");
        assert!((0.15..0.23).contains(&twos), "height 2 share {twos}");
    }

    /// How the model test orders its inserts.
    #[derive(Clone, Copy, Debug)]
    enum InsertOrder {
        Ascending,
        Descending,
        Shuffled,
        /// Ascending runs of a few keys, each starting anywhere: a splice
        /// that is right for a while, then far off.
        Runs,
    }

    fn insert_order() -> impl Strategy<Value = InsertOrder> {
        prop_oneof![
            Just(InsertOrder::Ascending),
            Just(InsertOrder::Descending),
            Just(InsertOrder::Shuffled),
            Just(InsertOrder::Runs),
        ]
    }

    /// Keys from a small alphabet so that user keys repeat with different
    /// seqnos, and so that probes hit and miss.
    fn model_entries() -> impl Strategy<Value = (Vec<(Vec<u8>, u64)>, InsertOrder, u64)> {
        let entry = (prop::collection::vec(0u8..4, 0..4), 0u64..6);
        (
            prop::collection::btree_set(entry, 0..300),
            insert_order(),
            any::<u64>(),
        )
            .prop_map(|(set, order, seed)| (set.into_iter().collect(), order, seed))
    }

    /// `entries` (sorted, distinct) rearranged into `order`.
    fn arrange(
        mut entries: Vec<(Vec<u8>, u64)>,
        order: InsertOrder,
        seed: u64,
    ) -> Vec<(Vec<u8>, u64)> {
        let mut rng = XorShift64::new(seed);
        // The list orders by user key, then seqno descending.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        match order {
            InsertOrder::Ascending => entries,
            InsertOrder::Descending => entries.into_iter().rev().collect(),
            InsertOrder::Shuffled => {
                shuffle(&mut rng, &mut entries);
                entries
            }
            InsertOrder::Runs => {
                let mut runs: Vec<Vec<_>> = entries.chunks(5).map(<[_]>::to_vec).collect();
                shuffle(&mut rng, &mut runs);
                runs.into_iter().flatten().collect()
            }
        }
    }

    /// Fisher-Yates, from `rng`.
    fn shuffle<T>(rng: &mut XorShift64, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    /// Every level is sorted, and each level's nodes are also on the level
    /// below (a node is on levels `0..height`).
    fn assert_towers(list: &SkipList) {
        for level in 0..MAX_HEIGHT {
            let mut node = list.head().next(level);
            let mut below = list.head().next(0);
            while let Some(current) = node {
                assert!(usize::from(current.header().height) > level);
                while below.is_some_and(|b| b.start != current.start) {
                    below = below.and_then(|b| b.next(0));
                }
                assert!(
                    below.is_some(),
                    "node at level {level} missing from level 0"
                );
                node = current.next(level);
                if let Some(next) = node {
                    assert_eq!(current.cmp_key(&next.key()), KeyOrdering::Less);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn matches_btreemap_in_any_insert_order(
            (entries, order, seed) in model_entries(),
            probes in prop::collection::vec((prop::collection::vec(0u8..4, 0..4), 0u64..7), 0..20),
        ) {
            let list = SkipList::new(seed);
            let mut model = BTreeMap::new();
            for (user_key, seqno) in arrange(entries, order, seed) {
                let value = [user_key.as_slice(), &seqno.to_le_bytes()].concat();
                list.insert(&key(&user_key, seqno), &value);
                model.insert((user_key, Reverse(seqno)), value);
            }
            assert_towers(&list);
            prop_assert_eq!(list.len(), model.len());
            let mut walked = Vec::new();
            let mut node = list.first();
            while let Some(current) = node {
                let found = current.key();
                walked.push(((found.user_key.to_vec(), Reverse(found.seqno.0)), current.value().to_vec()));
                node = current.next(0);
            }
            let expected: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(walked, expected);
            for (user_key, seqno) in probes {
                let bound = (user_key.clone(), Reverse(seqno));
                let got = list
                    .find_greater_or_equal(&key(&user_key, seqno))
                    .map(|node| (node.key().user_key.to_vec(), node.key().seqno.0));
                let want = model.range(bound..).next().map(|((k, s), _)| (k.clone(), s.0));
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn readers_run_beside_the_writer() {
        let list = Arc::new(SkipList::new(2));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let list = Arc::clone(&list);
                let done = Arc::clone(&done);
                thread::spawn(move || {
                    let mut last_len = 0;
                    while !done.load(Ordering::Acquire) {
                        let entries = forward(&list);
                        assert_sorted(&entries);
                        assert!(entries.len() >= last_len);
                        last_len = entries.len();
                    }
                })
            })
            .collect();
        for i in 0..ENTRIES {
            let user_key = ((i * 7) % 1009).to_be_bytes();
            list.insert(&key(&user_key, i), b"v");
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            reader.join().expect("reader panicked");
        }
        assert_eq!(forward(&list).len() as u64, ENTRIES);
    }
}
