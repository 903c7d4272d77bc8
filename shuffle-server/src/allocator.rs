//! The allocator settings the server ships with. The binary (and `sluice-bench`, which
//! embeds the server) allocate through mimalloc; every pushed frame, block and fetched
//! block is a buffer of a MiB or so that lives for milliseconds. mimalloc by default
//! gives freed memory back to the kernel ("purges" it) after a second, so under a steady
//! stream the same memory is unmapped and faulted in (and zeroed by the kernel) again
//! and again. A purge delay of 10 s keeps it for reuse while data flows and still gives
//! it back once the server is idle: `sluice-bench` measured 151,000–206,000 page faults
//! per GB pushed with mimalloc's defaults against about 100 with this, and 5–15% less
//! CPU per GB (BENCHMARKS.md, "Allocation").

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_e`, the same in v2
/// and v3; libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays mapped before mimalloc returns it to the kernel.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// Applies the settings; call first thing in `main` of a program whose global
/// allocator is mimalloc (in any other program it changes nothing that is used).
pub fn tune() {
    // SAFETY: mi_option_set only stores a value in mimalloc's option table; it has no
    // preconditions and may be called at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
}
