//! The global allocator of the fuzz runner: the system allocator, noting any single allocation
//! over [`CAP`] made by the thread that runs a target, so that a decoder that sizes a buffer
//! from an unchecked length is caught even when the machine could have served it. A request
//! over [`REFUSE`] is refused outright (the process then aborts naming its size), so that a
//! garbled 64-bit length cannot take the machine's memory first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Largest single allocation a target may make for any input.
pub const CAP: usize = 64 << 20;
/// Larger requests fail at once.
const REFUSE: usize = 4 << 30;

thread_local! {
    /// Largest allocation on this thread since [`reset_largest`].
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Largest allocation over [`CAP`] on this thread since [`reset`]; 0: none.
    static OVER_CAP: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator with the cap.
pub struct CappedAllocator;

fn note(size: usize) -> bool {
    if size > REFUSE {
        return false;
    }
    if size > CAP {
        let _ = OVER_CAP.try_with(|c| c.set(c.get().max(size)));
    }
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
    true
}

// SAFETY: every call is passed on to `System` unchanged, or refused with a null pointer, which
// the `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Forget this thread's allocations over the cap.
pub fn reset() {
    OVER_CAP.with(|c| c.set(0));
}

/// The largest allocation over the cap on this thread since [`reset`] (0: none).
pub fn take_over_cap() -> usize {
    OVER_CAP.with(|c| c.replace(0))
}

/// The largest single allocation on this thread since [`reset_largest`].
pub fn largest() -> usize {
    LARGEST.with(Cell::get)
}

/// Start counting [`largest`] afresh.
pub fn reset_largest() {
    LARGEST.with(|c| c.set(0));
}
