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
//!
//! Transparent huge pages are off for the process. mimalloc asks for them on its arenas
//! (`madvise(MADV_HUGEPAGE)`), so the first touch of any 2 MiB range, and the first
//! touch after a purge, zeroes all of it, whatever the allocation used. The heap of a
//! server that Spark pushes to in bursts grows in steps; with 4 KiB pages it touches only
//! what it uses. Measured, alternating (BENCHMARKS.md, "Allocation"): TPC-H server CPU
//! median 17.0 s against 18.3 s over four pairs (three lower), each server's resident
//! memory lower; e2e push CPU equal (3 pairs) and peak RSS 1.63 GB against 1.86 GB.

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
/// allocator is mimalloc (in any other program only the huge-page setting is used).
/// The error is the kernel's refusal to turn transparent huge pages off (the purge
/// settings always apply); the caller logs it once logging is up.
pub fn tune() -> std::io::Result<()> {
    // SAFETY: mi_option_set only stores a value in mimalloc's option table; it has no
    // preconditions and may be called at any time, from any thread.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_PURGE_MULT, ARENA_PURGE_MULT);
    }
    // The flag belongs to the whole address space (and is checked at each fault), so
    // it also covers the arena mimalloc reserved before `main`.
    rustix::thread::disable_transparent_huge_pages(true).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option positions are mimalloc's: a wrong one would set another option.
    #[test]
    fn tune_sets_the_purge_delay_and_the_arena_multiplier() {
        tune().expect("the kernel takes PR_SET_THP_DISABLE");
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

    #[test]
    fn tune_turns_transparent_huge_pages_off_for_the_process() {
        tune().expect("the kernel takes PR_SET_THP_DISABLE");
        let off = rustix::thread::transparent_huge_pages_are_disabled().expect("readable");
        assert!(off, "transparent huge pages are still allowed");
        // Other threads share the address space, so they see it too.
        let seen = std::thread::spawn(rustix::thread::transparent_huge_pages_are_disabled)
            .join()
            .expect("thread")
            .expect("readable");
        assert!(seen);
    }
}
