//! What every connection and request shares: the registry, the worker pool, the
//! memory budget, the limits and the live counts. Built once by `Server::start`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_format::CodecConfig;
use sluice_proto::Limits;
use sluice_spill::{BackendKind, MemoryBudget};

use crate::activity::Activity;
use crate::peers::Peers;
use crate::registry::Registry;
use crate::worker::WorkerPool;

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub registry: Registry,
    pub pool: WorkerPool,
    pub token: Vec<u8>,
    pub limits: Limits,
    pub codec: CodecConfig,
    pub block_size: usize,
    pub push_buffer_limit: usize,
    pub memory: Arc<MemoryBudget>,
    pub conn: ConnLimits,
    /// Shape limits for shuffles.
    pub shapes: ShapeLimits,
    pub activity: Activity,
    /// Lines about peers that never finished a handshake, at most one per period.
    pub quiet_log: RateLimitedLog,
    /// Connections to the other servers, for second copies.
    pub peers: Peers,
    pub started: Instant,
    pub backend: BackendKind,
    pub listen: SocketAddr,
}

/// What a connection may do and hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub handshake_timeout: Duration,
    pub stall_timeout: Duration,
    pub max_connections: usize,
    pub max_pending: usize,
    pub address_validation: bool,
    pub max_streams: u32,
    /// The connection receive window once the token is accepted.
    pub receive_window: u32,
    /// Bytes of request state one connection may hold (`limits.connection_memory`).
    pub memory: u64,
}

/// What a push may declare a shuffle to be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShapeLimits {
    pub max_schema_size: usize,
    pub max_shuffles_per_app: usize,
    pub app_metadata_size: usize,
}

/// A log line that would repeat for every peer of a kind (a scan, a flood) is written
/// at most once per period, with the number of those it stood for.
#[derive(Debug)]
pub(crate) struct RateLimitedLog {
    period: Duration,
    last: std::sync::Mutex<Option<Instant>>,
    suppressed: std::sync::atomic::AtomicU64,
}

impl RateLimitedLog {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: std::sync::Mutex::new(None),
            suppressed: Default::default(),
        }
    }

    /// Calls `log` with the number of lines skipped since the last, or counts this one.
    pub fn note(&self, log: impl FnOnce(u64)) {
        use std::sync::atomic::Ordering;
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.period) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        drop(last);
        log(self.suppressed.swap(0, Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limited_log_writes_once_per_period_with_the_count_it_stood_for() {
        let log = RateLimitedLog::new(Duration::from_millis(200));
        let mut lines = Vec::new();
        for _ in 0..5 {
            log.note(|skipped| lines.push(skipped));
        }
        std::thread::sleep(Duration::from_millis(250));
        log.note(|skipped| lines.push(skipped));
        assert_eq!(lines, [0, 4]);
    }
}
