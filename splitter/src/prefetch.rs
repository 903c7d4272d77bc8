//! Write prefetch of partition buffers' tails, a few runs ahead of their gathers.
//!
//! At a few hundred partitions a batch appends ~40 rows to each of P x columns buffers,
//! and each append starts on lines that are not in cache. The hardware prefetcher cannot
//! follow thousands of short streams, so the gathers stalled on every line they wrote.
//! Asking for the next runs' lines with write intent overlaps those misses with the
//! current gather: +7% at P = 200 (`sluice-bench --mode split`, alternating runs).

/// How many runs ahead of the gather a destination is prefetched.
pub(crate) const AHEAD: usize = 4;

/// At most this many bytes of a destination are prefetched: the first lines of a long
/// run, after which the hardware prefetcher has caught on.
const MAX_BYTES: usize = 512;

const LINE: usize = 64;

/// Hints the CPU to bring the `bytes` after `v`'s last element into cache for writing.
/// Nothing is read or written: the addresses may lie past the allocation.
#[inline(always)]
pub(crate) fn tail<T>(v: &[T], bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        let start = v.as_ptr().wrapping_add(v.len()).cast::<i8>();
        for at in (0..bytes.min(MAX_BYTES)).step_by(LINE) {
            // SAFETY: a prefetch never faults and has no effect on memory, whatever the
            // address; SSE, which it needs, is part of the x86_64 baseline.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_ET0>(start.wrapping_add(at))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, bytes);
}
