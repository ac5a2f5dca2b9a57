//! A hint to the processor to start loading a cache line that the caller
//! will read soon: a loop over records scattered through memory (a
//! restore's sorted run, the memtable's key filter) issues it a few steps
//! ahead, so the loads overlap instead of stalling one after another.

/// Hints the processor to load the cache line holding `at`. Does nothing
/// on targets without a prefetch instruction we use.
#[inline]
pub(crate) fn prefetch_read(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch is a hint that reads no memory the program
        // sees and cannot fault, whatever the address; SSE is part of
        // every x86-64 processor.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}
