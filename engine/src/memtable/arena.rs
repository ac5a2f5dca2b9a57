//! A bump allocator for skiplist nodes: memory is handed out from large
//! chunks and only returned, all at once, when the arena drops.
//!
//! Nodes of a memtable are never freed one by one, so an arena costs
//! nothing in flexibility and buys one allocation per node instead of
//! several, nodes packed densely, and a drop that frees a few chunks rather
//! than walking every node.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Alignment of every allocation (enough for `u64` and pointers).
pub(crate) const ARENA_ALIGN: usize = 8;

/// Size of an ordinary chunk.
const CHUNK_SIZE_BYTES: usize = 64 * 1024;

/// Requests above this get a chunk of their own, so that a large entry
/// does not waste the rest of the current chunk.
const LARGE_ALLOCATION_BYTES: usize = CHUNK_SIZE_BYTES / 4;

/// Size of a chunk backed by transparent huge pages (one 2 MiB page on
/// x86-64 and most aarch64 kernels).
const HUGE_CHUNK_BYTES: usize = 2 * 1024 * 1024;

/// One block of memory: from the global allocator, or an anonymous
/// mapping advised to be backed by huge pages.
enum Chunk {
    Heap {
        start: NonNull<u8>,
        layout: Layout,
    },
    /// Held only to be unmapped when the arena drops.
    Mapped(#[allow(dead_code)] memmap2::MmapMut),
}

/// A bump allocator. Not thread-safe by itself: the skiplist keeps it under
/// its writer mutex. Memory it hands out stays valid, at a fixed address,
/// until the arena is dropped.
pub(crate) struct Arena {
    chunks: Vec<Chunk>,
    /// Whether ordinary chunks are huge-page mappings (see
    /// [`Arena::with_huge_pages`]).
    huge_pages: bool,
    /// Bytes of the heap chunks so far.
    heap_bytes: usize,
    /// Free space at the end of the current ordinary chunk: its start and
    /// length. Empty before the first allocation.
    free_start: Option<NonNull<u8>>,
    free_len_bytes: usize,
}

// SAFETY: an `Arena` exclusively owns its chunks, like a `Vec<Box<[u8]>>`;
// the raw pointers are not shared with any other owner, so moving the arena
// to another thread (and freeing the chunks there) is sound.
unsafe impl Send for Arena {}

impl Arena {
    /// An empty arena; the first allocation creates the first chunk.
    pub(crate) fn new() -> Arena {
        Arena {
            chunks: Vec::new(),
            huge_pages: false,
            heap_bytes: 0,
            free_start: None,
            free_len_bytes: 0,
        }
    }

    /// An empty arena whose ordinary chunks, once it holds 2 MiB of heap
    /// chunks, are 2 MiB anonymous mappings advised to be backed by transparent huge pages
    /// (`MADV_HUGEPAGE`), so that a walk over nodes scattered through
    /// many megabytes needs one TLB entry per 2 MiB instead of one per
    /// 4 KiB page: a skiplist search touches a dozen nodes at random
    /// addresses, and with small pages most of them also miss the TLB.
    /// The first 2 MiB stay in small heap chunks, so that a memtable that
    /// holds little never pins a huge page (hundreds of small stores on
    /// one write budget would otherwise each hold 2 MiB more than they
    /// are charged), and the unused tail of the last huge chunk is at
    /// most as large as what the arena holds. Where the kernel has
    /// no huge pages to give (or `enabled` is `never`) the mappings are
    /// ordinary pages and only the advice is lost.
    pub(crate) fn with_huge_pages() -> Arena {
        let mut arena = Arena::new();
        arena.huge_pages = true;
        arena
    }

    /// Returns `size_bytes` (non-zero) of uninitialised memory aligned to
    /// [`ARENA_ALIGN`], valid until the arena drops.
    pub(crate) fn allocate(&mut self, size_bytes: usize) -> NonNull<u8> {
        assert!(size_bytes > 0, "arena allocations must not be empty");
        let size_bytes = size_bytes.next_multiple_of(ARENA_ALIGN);
        if size_bytes > LARGE_ALLOCATION_BYTES {
            return self.new_chunk(size_bytes);
        }
        let start = match self.free_start {
            Some(start) if size_bytes <= self.free_len_bytes => start,
            _ => self.new_ordinary_chunk(),
        };
        self.free_len_bytes -= size_bytes;
        // SAFETY: `start .. start + size_bytes` lies within the current
        // chunk (`size_bytes` <= the free length before the subtraction),
        // so the new start is in bounds or one past the end of the chunk.
        self.free_start = Some(unsafe { start.add(size_bytes) });
        start
    }

    /// Starts a new current chunk and returns its start, with
    /// `free_len_bytes` set to its length.
    fn new_ordinary_chunk(&mut self) -> NonNull<u8> {
        if self.huge_pages
            && self.heap_bytes >= HUGE_CHUNK_BYTES
            && let Some(start) = self.new_huge_chunk()
        {
            self.free_len_bytes = HUGE_CHUNK_BYTES;
            return start;
        }
        self.free_len_bytes = CHUNK_SIZE_BYTES;
        self.new_chunk(CHUNK_SIZE_BYTES)
    }

    /// A 2 MiB anonymous mapping advised for huge pages, or `None` if the
    /// mapping fails (the caller falls back to the heap, which reports
    /// exhaustion the usual way).
    fn new_huge_chunk(&mut self) -> Option<NonNull<u8>> {
        let mut map = memmap2::MmapOptions::new()
            .len(HUGE_CHUNK_BYTES)
            .map_anon()
            .ok()?;
        // The advice is a hint: without it the chunk is still good memory.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let start = NonNull::new(map.as_mut_ptr())?;
        self.chunks.push(Chunk::Mapped(map));
        Some(start)
    }

    fn new_chunk(&mut self, size_bytes: usize) -> NonNull<u8> {
        let layout = match Layout::from_size_align(size_bytes, ARENA_ALIGN) {
            Ok(layout) => layout,
            Err(_) => panic!("arena allocation of {size_bytes} bytes is too large"),
        };
        // SAFETY: `layout` has a non-zero size (`allocate` rejects 0 and
        // chunks are at least that large).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(start) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        self.heap_bytes += size_bytes;
        self.chunks.push(Chunk::Heap { start, layout });
        start
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in &self.chunks {
            if let Chunk::Heap { start, layout } = chunk {
                // SAFETY: each heap chunk was allocated by `alloc::alloc`
                // with exactly this layout and is freed once, here. Whoever
                // borrowed memory from the arena (the skiplist) is being
                // dropped with it. Mapped chunks unmap when `chunks` drops.
                unsafe { alloc::dealloc(start.as_ptr(), *layout) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_and_disjoint() {
        let mut arena = Arena::new();
        let sizes = [1, 7, 8, 9, 100, LARGE_ALLOCATION_BYTES + 1, 3, 40_000];
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (i, &size) in sizes.iter().cycle().take(40).enumerate() {
            let start = arena.allocate(size);
            assert_eq!(start.as_ptr() as usize % ARENA_ALIGN, 0);
            // SAFETY: the arena just handed out `size` writable bytes.
            unsafe { start.as_ptr().write_bytes(i as u8, size) };
            spans.push((start.as_ptr() as usize, size));
        }
        spans.sort_unstable();
        for pair in spans.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "overlap: {pair:?}");
        }
    }

    #[test]
    fn huge_page_arenas_start_small_and_then_map_huge_chunks() {
        let mut arena = Arena::with_huge_pages();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        // 2 MiB in heap chunks first, then 2 MiB mappings.
        let size = 1000;
        let small_chunks = HUGE_CHUNK_BYTES / CHUNK_SIZE_BYTES;
        let count = (2 * HUGE_CHUNK_BYTES + 2 * HUGE_CHUNK_BYTES) / size;
        for i in 0..count {
            let start = arena.allocate(size);
            assert_eq!(start.as_ptr() as usize % ARENA_ALIGN, 0);
            // SAFETY: the arena just handed out `size` writable bytes.
            unsafe { start.as_ptr().write_bytes(i as u8, size) };
            spans.push((start.as_ptr() as usize, i));
        }
        assert!(
            arena.chunks[..small_chunks]
                .iter()
                .all(|chunk| matches!(chunk, Chunk::Heap { .. })),
            "the first 2 MiB are heap chunks"
        );
        assert!(arena.chunks.len() >= small_chunks + 2);
        assert!(
            arena.chunks[small_chunks..]
                .iter()
                .all(|chunk| matches!(chunk, Chunk::Mapped(map) if map.len() == HUGE_CHUNK_BYTES)),
            "every chunk after them is a huge mapping"
        );
        // Every allocation still holds what was written to it.
        for &(addr, i) in &spans {
            // SAFETY: `addr` is one of the arena's live allocations.
            let first = unsafe { *(addr as *const u8) };
            assert_eq!(first, i as u8);
        }
        spans.sort_unstable();
        for pair in spans.windows(2) {
            assert!(pair[0].0 + size <= pair[1].0, "overlap: {pair:?}");
        }
    }
}
