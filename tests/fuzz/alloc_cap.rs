//! The global allocator of the fuzz runner: the system allocator, noting any single allocation
//! over the cap of the input being run (see [`cap_for`]) made by the thread that runs it, so
//! that a decoder that sizes a buffer from a length it was told rather than the bytes it has is
//! caught even when the machine could have served it. A request over [`REFUSE`] is refused
//! outright (the process then aborts naming its size), so that a garbled 64-bit length cannot
//! take the machine's memory first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Every input may allocate this much at once, whatever its length.
const BASE_CAP: usize = 8 << 20;
/// And this many times its length.
const PER_INPUT_BYTE: usize = 32;
/// Larger requests fail at once.
const REFUSE: usize = 4 << 30;

thread_local! {
    /// Largest allocation on this thread since [`reset_largest`].
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Largest allocation over the cap on this thread since [`reset`]; 0: none.
    static OVER_CAP: Cell<usize> = const { Cell::new(0) };
    /// The cap of the input this thread runs.
    static CAP: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The system allocator with the cap.
pub struct CappedAllocator;

fn note(size: usize) -> bool {
    if size > REFUSE {
        return false;
    }
    if CAP.try_with(Cell::get).is_ok_and(|cap| size > cap) {
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

/// The largest single allocation an input of `len` bytes may cause: a decoder allocates in
/// proportion to the bytes it has, not to the lengths they claim.
pub fn cap_for(len: usize) -> usize {
    BASE_CAP.max(len.saturating_mul(PER_INPUT_BYTE))
}

/// Forget this thread's allocations over the cap, and set the cap for the next input.
pub fn reset(cap: usize) {
    OVER_CAP.with(|c| c.set(0));
    CAP.with(|c| c.set(cap));
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
