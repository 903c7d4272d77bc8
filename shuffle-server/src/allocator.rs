//! The allocator settings the server ships with. The binary (and `sluice-bench`, which
//! embeds the server) allocate through mimalloc; every pushed frame, block and fetched
//! block is a buffer of a MiB or so that lives for milliseconds. mimalloc by default
//! gives freed memory back to the kernel ("purges" it) after a second, so the same
//! memory is unmapped and faulted in (and zeroed by the kernel) again and again.
//!
//! Freed memory here stays mapped for 100 s: a purge delay of 10 s times an arena
//! multiplier of 10 (mimalloc v3 purges all of its memory through arenas, at the
//! product of the two; v2's multiplier default was this 10).
//! - A steady stream reuses its memory either way: `sluice-bench` measured
//!   151,000–206,000 page faults per GB pushed with mimalloc's defaults against about
//!   100 with a 10 s delay (BENCHMARKS.md, "Allocation").
//! - Spark jobs push in bursts, a query's stages apart: with 10 s, TPC-H (SF1) faulted
//!   116,000–128,000 pages per server and run, and 25,000–26,000 with 100 s, for 0.4 s to
//!   4.4 s less server CPU per run.
//! - The memory still goes back to the kernel once the server has been idle that long;
//!   while it works, the pushes it holds are bounded by `storage.memory_budget`.

/// mimalloc's `mi_option_purge_delay` and `mi_option_arena_purge_mult` (their positions
/// in `mi_option_e`, the same in v2 and v3; libmimalloc-sys names no constants for
/// them).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ARENA_PURGE_MULT: libmimalloc_sys::mi_option_t = 24;
/// How long freed memory stays mapped before mimalloc returns it to the kernel, as
/// mimalloc takes it: a delay and the multiplier arenas apply to it.
pub const PURGE_DELAY_MS: std::ffi::c_long = 10_000;
pub const ARENA_PURGE_MULT: std::ffi::c_long = 10;

/// Applies the settings; call first thing in `main` of a program whose global
/// allocator is mimalloc (in any other program it changes nothing that is used).
pub fn tune() {
    // SAFETY: mi_option_set only stores a value in mimalloc's option table; it has no
    // preconditions and may be called at any time, from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_PURGE_MULT, ARENA_PURGE_MULT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option positions are mimalloc's: a wrong one would set another option.
    #[test]
    fn tune_sets_the_purge_delay_and_the_arena_multiplier() {
        tune();
        // SAFETY: mi_option_get only reads mimalloc's option table.
        let (delay, mult) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_PURGE_MULT),
            )
        };
        assert_eq!((delay, mult), (PURGE_DELAY_MS, ARENA_PURGE_MULT));
        // The neighbours keep mimalloc's defaults (use_numa_nodes 0, arena_reserve 1 GiB
        // in KiB), so the positions did not shift.
        // SAFETY: as above.
        let (numa, reserve) = unsafe {
            (
                libmimalloc_sys::mi_option_get(16),
                libmimalloc_sys::mi_option_get(23),
            )
        };
        assert_eq!((numa, reserve), (0, 1 << 20));
    }
}
