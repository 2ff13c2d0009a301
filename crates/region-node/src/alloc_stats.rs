//! Feature `alloc-stats` (diagnostics, never in production builds): the
//! global allocator counts live blocks by requested size, so a memory
//! question ("what does one idle WebSocket hold?") is answered by counting
//! instead of guessing from RSS.
//!
//! With `LARDER_ALLOC_STATS=PREFIX` set, a thread writes the live blocks
//! (size, count, bytes; largest total first) to `PREFIX.1`, `PREFIX.2`, …
//! each time the live total has moved by more than [`DUMP_STEP_BYTES`] and
//! then held still for [`STILL_TICKS`] ticks: once the node has settled
//! before a benchmark connects, and again after. Diff two dumps to see what
//! the connections hold.
//!
//! With `LARDER_ALLOC_TRACE_SIZE=N` as well, every [`TRACE_EVERY`]th
//! allocation of exactly N bytes (up to [`TRACE_SAMPLES`] at a time) keeps
//! its backtrace while it lives, and each dump writes the backtraces of
//! those still alive to `PREFIX.K.traces`: who holds blocks of that size
//! (short-lived ones are gone by then).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Sizes up to this are counted one by one; larger ones by power of two.
const EXACT: usize = 64 * 1024;
const SLOTS: usize = EXACT + 1 + 64;
const DUMP_STEP_BYTES: i64 = 1024 * 1024;
const TICK: Duration = Duration::from_millis(50);
/// Ticks the total must stay within [`STILL_BYTES`] before a dump.
const STILL_TICKS: u32 = 4;
const STILL_BYTES: i64 = 64 * 1024;
const TRACE_EVERY: usize = 97;
const TRACE_SAMPLES: usize = 32;

static LIVE_BLOCKS: [AtomicI64; SLOTS] = [const { AtomicI64::new(0) }; SLOTS];
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static TRACE_SIZE: AtomicUsize = AtomicUsize::new(0);
static TRACE_SEEN: AtomicUsize = AtomicUsize::new(0);
/// Sampled live blocks of the traced size: address and backtrace.
static TRACED: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());

thread_local! {
    /// Set while this thread captures a backtrace: its own allocations
    /// must not start another.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

fn slot(size: usize) -> usize {
    if size <= EXACT {
        size
    } else {
        EXACT + 1 + size.ilog2() as usize
    }
}

/// `A`, counting what it hands out.
pub struct Counting<A>(pub A);

impl<A> Counting<A> {
    fn add(ptr: *mut u8, size: usize) {
        LIVE_BLOCKS[slot(size)].fetch_add(1, Relaxed);
        LIVE_BYTES.fetch_add(size as i64, Relaxed);
        if size == TRACE_SIZE.load(Relaxed) {
            let n = TRACE_SEEN.fetch_add(1, Relaxed);
            if n % TRACE_EVERY == TRACE_EVERY - 1 {
                guarded(|| {
                    let bt = std::backtrace::Backtrace::force_capture().to_string();
                    if let Ok(mut traced) = TRACED.lock() {
                        if traced.len() < TRACE_SAMPLES {
                            traced.push((ptr as usize, bt));
                        }
                    }
                });
            }
        }
    }

    fn sub(ptr: *mut u8, size: usize) {
        LIVE_BLOCKS[slot(size)].fetch_sub(1, Relaxed);
        LIVE_BYTES.fetch_sub(size as i64, Relaxed);
        if size == TRACE_SIZE.load(Relaxed) {
            guarded(|| {
                if let Ok(mut traced) = TRACED.lock() {
                    traced.retain(|(p, _)| *p != ptr as usize);
                }
            });
        }
    }
}

/// Runs `f` unless this thread is already inside it: what `f` allocates
/// and frees itself is not traced (nor could take the lock again).
fn guarded(f: impl FnOnce()) {
    let _ = TRACING.try_with(|t| {
        if !t.replace(true) {
            f();
            t.set(false);
        }
    });
}

// SAFETY: every call is passed to `A` unchanged; the counters only observe.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc(layout);
        if !p.is_null() {
            Self::add(p, layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc_zeroed(layout);
        if !p.is_null() {
            Self::add(p, layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::sub(ptr, layout.size());
        self.0.dealloc(ptr, layout);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        if !p.is_null() {
            Self::sub(ptr, layout.size());
            Self::add(p, new_size);
        }
        p
    }
}

/// Starts the dump thread if `LARDER_ALLOC_STATS` is set.
pub fn start() {
    if let Some(n) = std::env::var("LARDER_ALLOC_TRACE_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        TRACE_SIZE.store(n, Relaxed);
    }
    let Ok(prefix) = std::env::var("LARDER_ALLOC_STATS") else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("alloc-stats".into())
        .spawn(move || dump_when_settled(&prefix));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "alloc-stats thread not started");
    }
}

fn dump_when_settled(prefix: &str) {
    let mut dumped = 0i64;
    let mut previous = 0i64;
    let mut still = 0u32;
    let mut seq = 0u32;
    loop {
        std::thread::sleep(TICK);
        let now = LIVE_BYTES.load(Relaxed);
        still = if (now - previous).abs() < STILL_BYTES {
            still + 1
        } else {
            0
        };
        previous = now;
        if still >= STILL_TICKS && (now - dumped).abs() > DUMP_STEP_BYTES {
            seq += 1;
            let path = format!("{prefix}.{seq}");
            match dump(&path) {
                Ok(()) => tracing::info!(path = %path, live_bytes = now, "alloc-stats dump"),
                Err(e) => tracing::warn!(path = %path, error = %e, "alloc-stats dump failed"),
            }
            dumped = now;
        }
    }
}

fn dump(path: &str) -> std::io::Result<()> {
    let mut rows: Vec<(usize, i64, i64)> = LIVE_BLOCKS
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let n = n.load(Relaxed);
            // Above EXACT a slot is a power of two: report its lower bound.
            let size = if i <= EXACT { i } else { 1 << (i - EXACT - 1) };
            (n != 0).then_some((size, n, n * size as i64))
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "live_bytes {}", LIVE_BYTES.load(Relaxed))?;
    for (size, n, bytes) in rows {
        writeln!(out, "{size} {n} {bytes}")?;
    }
    out.flush()?;
    let size = TRACE_SIZE.load(Relaxed);
    if size != 0 {
        let mut traces = String::new();
        guarded(|| {
            if let Ok(traced) = TRACED.lock() {
                for (_, bt) in traced.iter() {
                    traces.push_str(&format!("--- live {size}-byte block from\n{bt}\n"));
                }
            }
        });
        std::fs::write(format!("{path}.traces"), traces)?;
    }
    Ok(())
}
