//! A global allocator that can count live heap bytes.
//!
//! Counting is off unless [`start_counting`] is called, so the throughput
//! and latency benches pay one relaxed load per allocation. The memory
//! probes turn it on in a child process of their own to report exact heap
//! bytes per room next to the resident-set growth.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicI64 = AtomicI64::new(0);

/// Size classes of 16 bytes up to 16 KiB; the last class holds everything larger.
const CLASSES: usize = 1025;
static BY_CLASS: [AtomicI64; CLASSES] = [const { AtomicI64::new(0) }; CLASSES];

fn class(size: usize) -> usize {
    size.div_ceil(16).min(CLASSES - 1)
}

/// The system allocator, optionally counting live bytes.
pub struct CountingAlloc;

/// From now on, count allocations and frees.
pub fn start_counting() {
    COUNTING.store(true, Ordering::SeqCst);
}

/// Stops counting (readings taken afterwards are stale).
pub fn stop_counting() {
    COUNTING.store(false, Ordering::SeqCst);
}

/// Live bytes allocated minus freed since counting started. Only differences
/// between two readings are meaningful.
pub fn live_bytes() -> i64 {
    LIVE.load(Ordering::SeqCst)
}

/// Live allocations per size class: `(upper bound in bytes, count)`, for
/// classes whose count is not zero. Allocations over 16 KiB share one class,
/// reported with the bound `usize::MAX`.
pub fn live_by_size() -> Vec<(usize, i64)> {
    BY_CLASS
        .iter()
        .enumerate()
        .map(|(i, c)| (if i == CLASSES - 1 { usize::MAX } else { i * 16 }, c.load(Ordering::SeqCst)))
        .filter(|&(_, n)| n != 0)
        .collect()
}

#[inline]
fn count(size: usize, sign: i64) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(sign * size as i64, Ordering::Relaxed);
        BY_CLASS[class(size)].fetch_add(sign, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counters never
// touch the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size(), 1);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(layout.size(), -1);
            count(new_size, 1);
        }
        p
    }
}
