//! A global allocator that counts the current thread's allocations and live heap
//! bytes, for tests that check a path allocates nothing or measure what an item
//! costs. A test binary installs it with
//! `#[global_allocator] static GLOBAL: alloc_count::Counting = alloc_count::Counting;`
//! (included with `#[path = "util/alloc_count.rs"] mod alloc_count;`: the allocator
//! must be chosen per binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator, counting each allocation (a `realloc` counts as
/// one) and the live bytes of the current thread.
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn note(allocs: u64, bytes: isize) {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + allocs));
    let _ = LIVE.try_with(|c| c.set(c.get() + bytes));
}

// SAFETY: every method hands its caller's contract on to `System` unchanged and only
// counts on the side, in thread-local `Cell`s touched without allocating.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(1, layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(1, layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, -(layout.size() as isize));
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(1, new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// How many allocations this thread has made so far.
#[allow(dead_code)] // not every binary that installs the allocator asks both
pub fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

/// The heap bytes this thread has allocated and not freed (can be negative: memory
/// another thread allocated and this one freed).
#[allow(dead_code)]
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}
