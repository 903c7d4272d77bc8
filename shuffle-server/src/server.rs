//! Server startup and the accept loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, VarInt};
use sluice_format::CodecConfig;
use sluice_proto::Limits;

use crate::config::ServerConfig;
use crate::error::StartError;
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
    pub handshake_timeout: Duration,
}

/// Entry point: `Server::start(config)`.
#[derive(Debug)]
pub struct Server;

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    endpoint: Endpoint,
    local_addr: SocketAddr,
    cert_pem_path: Option<PathBuf>,
    cert_pem: String,
    token: Vec<u8>,
    token_path: PathBuf,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds the endpoint and starts serving on the current tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
        config.validate().map_err(StartError::Invalid)?;
        let codec = config.codec().map_err(StartError::Invalid)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::Io {
            what: "creating data directory",
            path: config.data_dir.clone(),
            source,
        })?;
        let token_path = config.token_path();
        let token = crate::token::load_or_create(&token_path)?;
        let identity = crate::tls::load_identity(&config)?;
        let cert_pem = identity.cert_pem.clone();
        let cert_pem_path = match &config.tls.cert {
            Some(p) => Some(p.clone()),
            None => Some(config.data_dir.join("tls").join("cert.pem")),
        };
        let crypto = crate::tls::quic_server_config(identity)?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(transport(&config)));
        let endpoint =
            Endpoint::server(server_config, config.listen).map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = endpoint.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let workers = match config.worker_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let ctx = Arc::new(Ctx {
            registry: Registry::new(config.data_dir.clone()),
            pool: WorkerPool::new(workers),
            token: token.clone(),
            limits: config.proto_limits(),
            codec,
            block_size: config.storage.block_size.as_u64() as usize,
            push_buffer_limit: config.storage.push_buffer_limit.as_u64() as usize,
            handshake_timeout: config.limits.handshake_timeout,
        });
        let accept_endpoint = endpoint.clone();
        let accept_task = tokio::spawn(async move {
            while let Some(incoming) = accept_endpoint.accept().await {
                tokio::spawn(crate::conn::serve(ctx.clone(), incoming));
            }
        });
        tracing::info!(%local_addr, data_dir = %config.data_dir.display(), "sluice-server listening");
        Ok(ServerHandle {
            endpoint,
            local_addr,
            cert_pem_path,
            cert_pem,
            token,
            token_path,
            accept_task,
        })
    }
}

fn transport(config: &ServerConfig) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let streams = VarInt::from_u32(config.limits.max_streams_per_connection);
    t.max_concurrent_bidi_streams(streams);
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.max_idle_timeout(config.limits.idle_timeout.try_into().ok());
    // Windows sized for bulk transfer on fast links (bandwidth-delay product plus slack).
    t.stream_receive_window(VarInt::from_u32(16 << 20));
    t.receive_window(VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    t
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's certificate chain in PEM: what clients pin or trust.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Where the certificate is stored (generated or configured).
    pub fn certificate_path(&self) -> Option<&PathBuf> {
        self.cert_pem_path.as_ref()
    }

    /// The cluster token clients must present.
    pub fn token(&self) -> &[u8] {
        &self.token
    }

    pub fn token_path(&self) -> &PathBuf {
        &self.token_path
    }

    /// Stops accepting connections, closes the open ones, and waits for the endpoint
    /// to go idle.
    pub async fn shutdown(self) {
        self.endpoint
            .close(VarInt::from_u32(0), b"server shutting down");
        self.accept_task.abort();
        self.endpoint.wait_idle().await;
    }
}
