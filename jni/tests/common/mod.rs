//! Servers on their own runtimes (a test stops one as a machine would lose it), the
//! session Spark would open to them, and records in Java's layouts.
#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::sync::Arc;

use sluice_jni::error::BridgeError;
use sluice_jni::native::{MapWriter, Session, SessionConfig};

pub struct Running {
    pub runtime: tokio::runtime::Runtime,
    /// `None` once stopped.
    pub server: Option<sluice_server::ServerHandle>,
    pub addr: std::net::SocketAddr,
}

/// A server whose data directory is `<dir>/data`.
pub fn start(dir: &Path) -> Running {
    run(|| sluice_testkit::server::start(dir, tweak))
}

/// A second server of the cluster of the one started on `first_dir` (same certificate
/// and token), so each can keep the other's second copies.
pub fn start_peer(dir: &Path, first_dir: &Path) -> Running {
    run(|| sluice_testkit::server::start_peer(dir, first_dir, tweak))
}

fn tweak(config: &mut sluice_server::ServerConfig) {
    config.worker_threads = 1;
    // Small blocks, so a map's partition spans many and a fetch can be cut mid-map.
    config.storage.block_size = bytesize::ByteSize::kib(64);
}

fn run<F: std::future::Future<Output = sluice_server::ServerHandle>>(
    start: impl FnOnce() -> F,
) -> Running {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(start());
    Running {
        addr: server.local_addr(),
        server: Some(server),
        runtime,
    }
}

impl Running {
    /// The server as Spark's conf lists it.
    pub fn name(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    pub fn handle(&self) -> &sluice_server::ServerHandle {
        self.server.as_ref().expect("the server runs")
    }

    /// Stops the server: its connections close at once, as when its process dies.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

pub const APP: &str = "app-jni";

/// The session Spark opens, with the servers' token and certificate under `dir`.
pub fn session(
    dir: &Path,
    servers: Vec<String>,
    replication: u32,
) -> Result<Arc<Session>, BridgeError> {
    Session::open(SessionConfig {
        servers,
        token_file: dir.join("data/cluster-token"),
        trust_file: dir.join("data/tls/cert.pem"),
        app: APP.into(),
        secret: "a-test-app-secret".into(),
        replication,
        idle_timeout: std::time::Duration::from_secs(20),
        connect_timeout: std::time::Duration::from_secs(10),
    })
    .map(Arc::new)
}

/// The records of a fetched batch, read back from the layout Java receives (count,
/// lengths, bytes), as the bridge writes it into Java's array.
pub fn parse(batch: &arrow_array::RecordBatch) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    let body = sluice_jni::records::java_layout(batch, &mut bytes).unwrap();
    bytes.extend_from_slice(body);
    let word = |at: usize| i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let n = word(0);
    let mut at = 4 + 4 * n;
    (0..n)
        .map(|i| {
            let len = word(4 + 4 * i);
            at += len;
            bytes[at - len..at].to_vec()
        })
        .collect()
}

pub fn record(i: usize) -> Vec<u8> {
    format!("record-{i}-{}", "é".repeat(i % 5)).into_bytes()
}

/// Writes `records` (each with its partition) in Java's push layout.
pub fn write(w: &mut MapWriter, records: &[(u32, Vec<u8>)]) -> Result<(), BridgeError> {
    let (mut pids, mut ends, mut data) = (Vec::new(), Vec::new(), Vec::new());
    for (p, r) in records {
        data.extend_from_slice(r);
        ends.push(data.len() as i32);
        pids.push(*p as i32);
    }
    w.write(&pids, &ends, &data)
}
