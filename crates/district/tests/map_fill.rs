//! The state's maps come from the vendored imbl (`vendor/imbl`, patched in
//! by the workspace's `[patch.crates-io]`), whose B-tree keeps nodes full
//! when keys arrive in order. Without the patch every such node is half
//! full, and the hot window's maps take ~20 % more memory
//! (BENCHMARKS.md, "Full B-tree nodes"). This guards the patch's presence:
//! dropping it (or an imbl upgrade that loses it) fails here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counted;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a
// counter is added.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counted = Counted;

#[test]
fn a_map_filled_in_key_order_keeps_its_nodes_full() {
    const ENTRIES: u64 = 10_000;
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let map: imbl::OrdMap<u64, u64> = (0..ENTRIES).map(|k| (k, k)).collect();
    let bytes = LIVE_BYTES.load(Ordering::Relaxed) - before;

    // A node is ~1.6 KiB here (64 key slots of 16 bytes, 65 child
    // pointers, its counts): full leaves need ~159 of them, half-full ones
    // ~313 (upstream imbl measured 661 KB).
    assert_eq!(map.len(), ENTRIES as usize);
    assert!(
        bytes < 350_000,
        "{bytes} bytes for {ENTRIES} entries: are the nodes half full (is vendor/imbl patched in)?"
    );
}
