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

/// One block of memory obtained from the global allocator.
struct Chunk {
    start: NonNull<u8>,
    layout: Layout,
}

/// A bump allocator. Not thread-safe by itself: the skiplist keeps it under
/// its writer mutex. Memory it hands out stays valid, at a fixed address,
/// until the arena is dropped.
pub(crate) struct Arena {
    chunks: Vec<Chunk>,
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
            free_start: None,
            free_len_bytes: 0,
        }
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
            _ => {
                self.free_len_bytes = CHUNK_SIZE_BYTES;
                self.new_chunk(CHUNK_SIZE_BYTES)
            }
        };
        self.free_len_bytes -= size_bytes;
        // SAFETY: `start .. start + size_bytes` lies within the current
        // chunk (`size_bytes` <= the free length before the subtraction),
        // so the new start is in bounds or one past the end of the chunk.
        self.free_start = Some(unsafe { start.add(size_bytes) });
        start
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
        self.chunks.push(Chunk { start, layout });
        start
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        for chunk in &self.chunks {
            // SAFETY: each chunk was allocated by `alloc::alloc` with exactly
            // this layout and is freed once, here. Whoever borrowed memory
            // from the arena (the skiplist) is being dropped with it.
            unsafe { alloc::dealloc(chunk.start.as_ptr(), chunk.layout) };
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
}
