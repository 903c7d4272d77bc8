//! What every connection and request shares: the registry, the worker pool, the
//! memory budget, the limits and the live counts. Built once by `Server::start`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_format::CodecConfig;
use sluice_proto::Limits;
use sluice_spill::{BackendKind, MemoryBudget};

use crate::activity::Activity;
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
    pub handshake_timeout: Duration,
    pub fetch_stall_timeout: Duration,
    pub max_connections: usize,
    pub activity: Activity,
    pub started: Instant,
    pub backend: BackendKind,
    pub listen: SocketAddr,
}
