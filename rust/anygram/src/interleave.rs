//! Memory-level parallelism for loops of independent lookups in mapped files.
//!
//! A query's reads land at unrelated places of a large file, so each one is a
//! cache (and often TLB) miss, and a loop that waits for one before starting the
//! next pays a full memory latency per item. Hinting the reads a few items ahead
//! lets the misses of several items overlap; the hint never changes a result.

/// How many items ahead a loop hints its reads: enough to keep about as many
/// misses in flight as a core's line-fill buffers hold.
pub const AHEAD: usize = 12;

/// Hints that the bytes of `bytes` starting at `at` will be read soon (no-op past
/// the end, and on targets without a prefetch instruction).
#[inline(always)]
pub fn prefetch(bytes: &[u8], at: usize) {
    if let Some(byte) = bytes.get(at) {
        prefetch_ptr(byte as *const u8);
    }
}

#[inline(always)]
fn prefetch_ptr(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults or reads memory visibly.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(ptr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
