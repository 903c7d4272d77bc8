//! Benchmark results: one record per measured number, printed as a table and written as
//! JSON (`--json PATH`): `{mode, case, metric, value, unit}` plus, where measured, `peer`
//! and `limit` (the other side's value in the same unit) and the ratios, oriented so
//! that higher is better for Sluice.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub mode: &'static str,
    pub case: String,
    pub metric: &'static str,
    pub value: f64,
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_peer: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_limit: Option<f64>,
}

impl Record {
    pub fn new(
        mode: &'static str,
        case: impl Into<String>,
        metric: &'static str,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            mode,
            case: case.into(),
            metric,
            value,
            unit,
            peer: None,
            limit: None,
            ratio_to_peer: None,
            ratio_to_limit: None,
        }
    }

    /// A throughput peer: ratio = ours / theirs.
    pub fn with_peer(mut self, peer: f64) -> Self {
        self.peer = Some(peer);
        self.ratio_to_peer = Some(self.value / peer);
        self
    }

    /// A time peer (lower is better): ratio = theirs / ours.
    pub fn with_time_peer(mut self, peer: f64) -> Self {
        self.peer = Some(peer);
        self.ratio_to_peer = Some(peer / self.value);
        self
    }

    /// A throughput limit: ratio = ours / limit (at most about 1).
    pub fn with_limit(mut self, limit: f64) -> Self {
        self.limit = Some(limit);
        self.ratio_to_limit = Some(self.value / limit);
        self
    }
}

pub fn write_json(path: &Path, records: &[Record]) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(records).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Median of `runs` measurements of `f` (seconds).
pub fn median_secs(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    let times: Vec<f64> = (0..runs.max(1)).map(|_| f()).collect();
    median(&times)
}

/// The median of measurements (of at least one).
pub fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

/// CPU time (user + system, all threads) and peak resident memory of this process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu_secs: f64,
    pub peak_rss_bytes: u64,
    /// Minor page faults: fresh memory the kernel mapped (and zeroed) for the process.
    pub page_faults: u64,
}

pub fn usage() -> Usage {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which
    // points to owned, properly aligned memory; RUSAGE_SELF is always valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Usage {
        cpu_secs: secs(ru.ru_utime) + secs(ru.ru_stime),
        // Linux reports kilobytes.
        peak_rss_bytes: ru.ru_maxrss as u64 * 1024,
        page_faults: ru.ru_minflt as u64,
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal (so logs and CI
/// output stay clean). Finish it with `finish_and_clear`.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:<24} [{bar:32}] {pos}/{len} {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
