//! Where the e2e shuffle's CPU goes: per stage of the push and of the fetch, in CPU
//! seconds per GB of input. The stages are timed in the process (`sluice-stages`, on the
//! thread that runs each); the storage backend's threads (the io_uring thread and the
//! kernel's io-wq workers) are read from /proc; what is left of the process's CPU is
//! the transport at both ends (QUIC, TLS, the frames' copies) and the glue around it,
//! so the rows add up to the total.

use sluice_stages::Stage;

use crate::report::usage;

/// The process's CPU at one moment, by where it went.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    process: f64,
    stages: [f64; Stage::ALL.len()],
    io_threads: f64,
}

impl Sample {
    /// This sample, less `secs` of process CPU that belongs to no stage of Sluice's
    /// (the benchmark's own checks).
    pub fn less(mut self, secs: f64) -> Self {
        self.process -= secs;
        self
    }
}

pub fn sample() -> Sample {
    Sample {
        process: usage().cpu_secs,
        stages: sluice_stages::snapshot(),
        io_threads: io_thread_secs(),
    }
}

/// CPU seconds of the threads that write and read the files: the ring thread and the
/// kernel's io_uring workers (named `iou-wrk-*`), from `/proc/self/task`.
fn io_thread_secs() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut secs = 0.0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm != "sluice-uring" && !comm.starts_with("iou-wrk") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is 3rd, utime 14th, stime 15th.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        secs += (tick(11) + tick(12)) / ticks;
    }
    secs
}

/// One row of a breakdown: a stage's name and its CPU seconds per GB of input.
pub type Row = (&'static str, f64);

/// The push's breakdown between two samples.
pub fn push(a: &Sample, b: &Sample, gb: f64) -> Vec<Row> {
    breakdown(
        a,
        b,
        gb,
        &[
            ("client encode", Stage::ClientEncode),
            ("server decode + checks", Stage::ServerDecode),
            ("split", Stage::Split),
            ("block encode (IPC)", Stage::BlockEncode),
            ("compression", Stage::Compress),
            ("append (submit)", Stage::Append),
        ],
        "disk write (io threads)",
    )
}

/// The fetch's breakdown between two samples.
pub fn fetch(a: &Sample, b: &Sample, gb: f64) -> Vec<Row> {
    breakdown(
        a,
        b,
        gb,
        &[
            ("read", Stage::Read),
            ("checksum", Stage::Checksum),
            ("decompression", Stage::Decompress),
            ("decode (IPC)", Stage::Decode),
        ],
        "disk read (io threads)",
    )
}

fn breakdown(
    a: &Sample,
    b: &Sample,
    gb: f64,
    stages: &[(&'static str, Stage)],
    io_name: &'static str,
) -> Vec<Row> {
    let mut rows: Vec<Row> = stages
        .iter()
        .map(|&(name, s)| (name, (b.stages[s as usize] - a.stages[s as usize]) / gb))
        .collect();
    rows.push((io_name, (b.io_threads - a.io_threads) / gb));
    let total = (b.process - a.process) / gb;
    let counted: f64 = rows.iter().map(|r| r.1).sum();
    rows.push(("transport, both ends, and the rest", total - counted));
    rows.push(("total", total));
    rows
}
