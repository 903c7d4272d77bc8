//! Where the CPU of a push and of a fetch goes: each stage of the data path (the
//! client's encode, the server's decode, the split, block encode, compression, ...)
//! accumulates the CPU time of the threads that run it, process-wide.
//!
//! A stage is timed with the thread's CPU clock around it. Stages nest: a stage timed
//! inside another (compression inside the split's block callback) pauses the outer
//! one, so every nanosecond is counted once and the stages add up to the CPU of what
//! they enclose. Counting is off until [`enable`]d (the server enables it at start; a
//! client alone, as in a Spark executor, pays nothing): then each stage costs two reads
//! of the thread clock.
//!
//! It owns only this accounting. It must not know what the stages do; the benchmark
//! reads [`snapshot`]s, and the server exports them as metrics.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::time::{clock_gettime, ClockId};

/// A stage of the push or fetch path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Client: encoding a pushed batch to Arrow IPC.
    ClientEncode,
    /// Server: checking and decoding a pushed batch.
    ServerDecode,
    /// Server: partition ids, the counting sort and the gathers into buffers.
    Split,
    /// Server: encoding a block's rows to Arrow IPC.
    BlockEncode,
    /// Server: compressing a block, its header and checksums.
    Compress,
    /// Server: handing a record to the storage backend (quotas, offsets, submission).
    Append,
    /// Server: reading stored blocks for a fetch.
    Read,
    /// Client: checking a fetched block's header and crc32c.
    Checksum,
    /// Client: decompressing a fetched block.
    Decompress,
    /// Client: decoding a block's Arrow IPC into a batch.
    Decode,
}

impl Stage {
    /// Every stage, in data-path order.
    pub const ALL: [Stage; 10] = [
        Stage::ClientEncode,
        Stage::ServerDecode,
        Stage::Split,
        Stage::BlockEncode,
        Stage::Compress,
        Stage::Append,
        Stage::Read,
        Stage::Checksum,
        Stage::Decompress,
        Stage::Decode,
    ];

    /// A stable snake_case name (a metric label).
    pub fn name(self) -> &'static str {
        match self {
            Stage::ClientEncode => "client_encode",
            Stage::ServerDecode => "server_decode",
            Stage::Split => "split",
            Stage::BlockEncode => "block_encode",
            Stage::Compress => "compress",
            Stage::Append => "append",
            Stage::Read => "read",
            Stage::Checksum => "checksum",
            Stage::Decompress => "decompress",
            Stage::Decode => "decode",
        }
    }

    /// Starts timing this stage on the current thread; the time stops when the guard
    /// is dropped. A no-op unless counting is [`enable`]d.
    #[must_use = "the stage is timed until the guard is dropped"]
    pub fn start(self) -> Timed {
        if !ENABLED.load(Ordering::Relaxed) {
            return Timed { active: false };
        }
        let now = thread_nanos();
        STACK.with_borrow_mut(|stack| {
            if let Some(outer) = stack.last_mut() {
                add(outer.0, now.saturating_sub(outer.1));
            }
            stack.push((self, now));
        });
        Timed { active: true }
    }

    /// Times `f` as this stage.
    pub fn time<T>(self, f: impl FnOnce() -> T) -> T {
        let _timed = self.start();
        f()
    }
}

/// Times a stage until dropped.
#[derive(Debug)]
pub struct Timed {
    active: bool,
}

impl Drop for Timed {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let now = thread_nanos();
        STACK.with_borrow_mut(|stack| {
            if let Some((stage, since)) = stack.pop() {
                add(stage, now.saturating_sub(since));
            }
            // The enclosing stage resumes now.
            if let Some(outer) = stack.last_mut() {
                outer.1 = now;
            }
        });
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; Stage::ALL.len()] = [const { AtomicU64::new(0) }; Stage::ALL.len()];

thread_local! {
    /// The stages open on this thread, innermost last, each with when it (re)started.
    static STACK: RefCell<Vec<(Stage, u64)>> = const { RefCell::new(Vec::new()) };
}

fn add(stage: Stage, nanos: u64) {
    NANOS[stage as usize].fetch_add(nanos, Ordering::Relaxed);
}

fn thread_nanos() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Turns counting on for the whole process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// CPU seconds each stage has taken so far, in [`Stage::ALL`] order.
pub fn snapshot() -> [f64; Stage::ALL.len()] {
    std::array::from_fn(|i| NANOS[i].load(Ordering::Relaxed) as f64 / 1e9)
}

/// CPU seconds of the calling thread so far.
pub fn thread_cpu_secs() -> f64 {
    thread_nanos() as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(millis: u64) {
        let start = thread_nanos();
        while thread_nanos() - start < millis * 1_000_000 {
            std::hint::black_box(0);
        }
    }

    #[test]
    fn nested_stages_count_each_nanosecond_once() {
        enable();
        let before = snapshot();
        {
            let _split = Stage::Split.start();
            spin(30);
            {
                let _compress = Stage::Compress.start();
                spin(20);
            }
            spin(10);
        }
        let after = snapshot();
        let took = |s: Stage| after[s as usize] - before[s as usize];
        let (split, compress) = (took(Stage::Split), took(Stage::Compress));
        assert!((0.039..0.060).contains(&split), "split {split}");
        assert!((0.019..0.035).contains(&compress), "compress {compress}");
    }
}
