//! The allocator's tuning, for a flat peak memory of `ingest` and the server's `complete`.
//!
//! glibc's malloc gives each thread that contends for the heap an arena of its own (up to eight
//! per core), and raises its mmap threshold to the largest block freed (up to 32 MiB), after
//! which chunk-sized buffers come from those arenas, each of which keeps up to twice that
//! threshold of freed memory. An ingest frees chunks of up to a megabyte on a dozen threads, so
//! the process kept about twice the memory it used (137 MiB resident for a 65 MiB heap on a
//! tree of 75,000 files). Two arenas and a fixed threshold bring it near the heap itself.

/// Arenas malloc may create: the pipeline's threads share two (contention stays low, as a
/// thread holds the heap's lock only for an allocation, never for a chunk's work).
const ARENAS: i32 = 2;

/// Blocks from this size up are mapped on their own and unmapped when freed. The price: each
/// chunk buffer is mapped afresh, about 0.7 s more system time to re-read 1.1 GB. A threshold
/// above the chunk buffers (1.5 or 4 MiB) saved that time but peaked at 92-98 MiB again.
const MMAP_THRESHOLD: i32 = 128 << 10;

/// Set the tuning; call first in `main`, before any thread exists.
#[allow(unsafe_code)]
pub fn bound_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters and is called before any other thread
    // exists; a refused setting (return value 0) leaves malloc's default, which is harmless.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
