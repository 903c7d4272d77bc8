//! Prefetch hints for the gathers: the partition buffers' tails they will write, and
//! the next column they will read.
//!
//! At a few hundred partitions a batch appends ~40 rows to each of P x columns buffers,
//! and each append starts on lines that are not in cache. The hardware prefetcher cannot
//! follow thousands of short streams, so the gathers stalled on every line they wrote.
//! Asking for the next partitions' lines with write intent overlaps those misses with
//! the current gather: +8% at P = 200 (`sluice-bench --mode split`, alternating runs).

/// How many partitions ahead of the gather a destination is prefetched (times the
/// batches appended together, which give a partition one run each).
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

/// Most lines of the next column prefetched per run. Spread thinner than this, the
/// prefetches keep the fill buffers busy without stalling the gather; in bigger bursts
/// (few, long runs, as at P = 16) they stall it, and a plain pass (`warm`) is faster.
const MAX_LINES_PER_RUN: usize = 32;

/// The next column's bytes, prefetched a few lines per run while the current column is
/// gathered: loading a column that is not in cache then overlaps with the gather before
/// it instead of taking a pass of its own (+3% at P = 200, `sluice-bench --mode split`
/// alternating with and without in one process).
pub(crate) struct NextColumn<'a> {
    parts: Vec<&'a [u8]>,
    part: usize,
    at: usize,
    per_run: usize,
}

impl<'a> NextColumn<'a> {
    /// Spreads prefetching `parts` over `runs` calls of [`Self::step`], or does nothing
    /// if that takes more than [`MAX_LINES_PER_RUN`] per call.
    pub(crate) fn new(parts: Vec<&'a [u8]>, runs: usize) -> Self {
        let lines: usize = parts.iter().map(|p| p.len().div_ceil(LINE)).sum();
        let per_run = lines.div_ceil(runs.max(1));
        if per_run > MAX_LINES_PER_RUN {
            return Self::none();
        }
        Self {
            parts,
            part: 0,
            at: 0,
            per_run,
        }
    }

    /// Nothing to prefetch.
    pub(crate) fn none() -> Self {
        Self {
            parts: Vec::new(),
            part: 0,
            at: 0,
            per_run: 0,
        }
    }

    /// Whether the column is being prefetched (and needs no pass of its own).
    pub(crate) fn is_active(&self) -> bool {
        !self.parts.is_empty()
    }

    /// Prefetches the next few lines; called once per run.
    #[inline]
    pub(crate) fn step(&mut self) {
        self.lines(self.per_run);
    }

    /// Prefetches whatever is left (after a gather that took fewer steps).
    pub(crate) fn finish(&mut self) {
        self.lines(usize::MAX);
    }

    fn lines(&mut self, mut n: usize) {
        while n > 0 && self.part < self.parts.len() {
            let bytes = self.parts[self.part];
            if self.at >= bytes.len() {
                self.part += 1;
                self.at = 0;
                continue;
            }
            read(bytes[self.at..].as_ptr());
            self.at += LINE;
            n -= 1;
        }
    }
}

/// Hints the CPU to bring the line at `p` into cache for reading.
#[inline(always)]
fn read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: as in `tail`, a prefetch is a hint that touches no memory.
        #[allow(unsafe_code)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.cast())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
