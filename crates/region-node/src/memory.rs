//! Giving start-up's freed memory back to the kernel.
//!
//! Why: recovery reads the newest snapshot whole (~170 MB with ~300k
//! orders in memory), decodes it and replays the log's tail. The
//! allocator (mimalloc, `main.rs`) keeps most of what those temporaries
//! freed for later reuse, which a steady node never needs: the history
//! bench measured resident memory 270–350 MB above the live heap right
//! after start-up (BENCHMARKS.md, "Bounded memory").

/// Asks the allocator to return every freed page it holds to the kernel.
/// Cheap to call once; a no-op for memory another allocator owns.
pub fn return_freed_pages() {
    // SAFETY: `mi_collect` takes no pointer and may be called from any
    // thread at any time; `force` only makes it purge eagerly.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
