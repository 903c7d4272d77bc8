//! Server startup and the accept loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Endpoint, VarInt};
use sluice_spill::uring::{UringBackend, UringConfig};
use sluice_spill::{
    BackendKind, DiskQuota, Durability, IoBackend, MemoryBudget, StoreEnv, SyscallBackend,
};
use sluice_transport::TransportTuning;

use crate::activity::Activity;
use crate::config::{BackendName, DurabilityName, ServerConfig};
use crate::ctx::{ConnLimits, Ctx, RateLimitedLog, ShapeLimits};
use crate::error::StartError;
use crate::peers::Peers;
use crate::registry::Registry;
use crate::worker::WorkerPool;

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
    admin_addr: Option<SocketAddr>,
    admin_token_path: PathBuf,
    ctx: Arc<Ctx>,
    /// The accept loop, app expiry, the admin endpoint and metrics upkeep.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a drain found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Pushes still open when the drain timeout ran out (their maps are not committed;
    /// clients push them again elsewhere).
    pub abandoned_pushes: usize,
}

impl Server {
    /// Binds the endpoint and starts serving on the current tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
        config.validate().map_err(StartError::Invalid)?;
        // CPU per stage of the data path, for `sluice_stage_cpu_seconds_total`.
        sluice_stages::enable();
        let codec = config.codec().map_err(StartError::Invalid)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::Io {
            what: "creating data directory",
            path: config.data_dir.clone(),
            source,
        })?;
        let token_path = config.token_path();
        let token = crate::token::load_or_create(&token_path, "cluster token")?;
        let admin_token_path = config.admin_token_path();
        let identity = crate::tls::load_identity(&config)?;
        let cert_pem = identity.cert_pem.clone();
        let cert_pem_path = match &config.tls.cert {
            Some(p) => Some(p.clone()),
            None => Some(config.data_dir.join("tls").join("cert.pem")),
        };
        let crypto = crate::tls::quic_server_config(identity)?;
        let tuning = config.transport.tuning().map_err(StartError::Invalid)?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(transport(&config, &tuning)));
        // Connection attempts waiting to be handled, and what they may buffer: small,
        // since each is either retried, refused or handled at once.
        let pending = config.limits.max_pending_connections as usize;
        server_config
            .max_incoming(pending * 2)
            .incoming_buffer_size(64 << 10)
            .incoming_buffer_size_total(8 << 20);
        let endpoint = tuning
            .endpoint(config.listen, Some(server_config))
            .map_err(|source| StartError::Bind {
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
        let backend = open_backend(&config)?;
        let backend_kind = backend.kind();
        let env = StoreEnv {
            backend,
            quota: DiskQuota::new("server", config.storage.disk_quota.map(|q| q.as_u64())),
            durability: match config.storage.durability {
                DurabilityName::PageCache => Durability::PageCache,
                DurabilityName::Fsync => Durability::Fsync,
            },
            limits: sluice_format::DecodeLimits::default(),
            direct_io: config.storage.direct_io,
        };
        let app_quota = config.storage.app_disk_quota.map(|q| q.as_u64());
        let registry = Registry::new(
            config.data_dir.clone(),
            env,
            app_quota,
            config.limits.max_apps as usize,
        );
        let data_dir = config.data_dir.clone();
        let (registry, report) = tokio::task::spawn_blocking(move || {
            let report = registry.recover();
            (registry, report)
        })
        .await
        .map_err(|e| StartError::Invalid(format!("recovery panicked: {e}")))?;
        let report = report.map_err(|e| StartError::Recovery {
            path: data_dir,
            message: e.to_string(),
        })?;
        tracing::info!(
            apps = report.apps,
            shuffles = report.shuffles,
            committed_maps = report.committed_maps,
            incomplete_maps = report.incomplete_maps,
            skipped = report.skipped,
            "recovered data directory"
        );
        let ctx = Arc::new(Ctx {
            registry,
            pool: WorkerPool::new(workers),
            token: token.clone(),
            limits: config.proto_limits(),
            codec,
            block_size: config.storage.block_size.as_u64() as usize,
            push_buffer_limit: config.storage.push_buffer_limit.as_u64() as usize,
            memory: Arc::new(MemoryBudget::new(config.storage.memory_budget.as_u64())),
            conn: ConnLimits {
                handshake_timeout: config.limits.handshake_timeout,
                stall_timeout: config.limits.stall_timeout,
                max_connections: config.limits.max_connections as usize,
                max_pending: config.limits.max_pending_connections as usize,
                address_validation: config.limits.address_validation,
                max_streams: config.limits.max_streams_per_connection,
                receive_window: tuning.receive_window,
                memory: config
                    .limits
                    .connection_memory
                    .as_u64()
                    .min(config.storage.memory_budget.as_u64()),
            },
            shapes: ShapeLimits {
                max_schema_size: config.limits.max_schema_size.as_u64() as usize,
                max_shuffles_per_app: config.limits.max_shuffles_per_app as usize,
                app_metadata_size: config.limits.app_metadata_size.as_u64() as usize,
            },
            quiet_log: RateLimitedLog::new(Duration::from_secs(10)),
            peers: Peers::new(
                endpoint.clone(),
                peer_config(&config, &cert_pem, &tuning)?,
                token.clone(),
                config.proto_limits(),
                config.limits.stall_timeout,
                config.limits.handshake_timeout,
            ),
            activity: Activity::default(),
            started: Instant::now(),
            backend: backend_kind,
            listen: local_addr,
        });
        let mut tasks = Vec::new();
        let admin_addr = if config.admin.enabled {
            let admin_token = crate::token::load_or_create(&admin_token_path, "admin token")?;
            let (addr, task) = start_admin(&config, ctx.clone(), admin_token).await?;
            tasks.push(task);
            Some(addr)
        } else {
            None
        };
        if let Some(handle) = crate::metrics::prometheus() {
            tasks.push(tokio::spawn(crate::metrics::upkeep(handle)));
        }
        let expiry = config.storage.app_expiry;
        if !expiry.is_zero() {
            tasks.push(tokio::spawn(expire_apps(ctx.clone(), expiry)));
        }
        tasks.push(tokio::spawn(accept(endpoint.clone(), ctx.clone())));
        tracing::info!(
            %local_addr,
            data_dir = %config.data_dir.display(),
            backend = backend_kind.name(),
            "sluice-server listening"
        );
        Ok(ServerHandle {
            endpoint,
            local_addr,
            cert_pem_path,
            cert_pem,
            token,
            token_path,
            admin_addr,
            admin_token_path,
            ctx,
            tasks,
        })
    }
}

async fn start_admin(
    config: &ServerConfig,
    ctx: Arc<Ctx>,
    token: Vec<u8>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), StartError> {
    let addr = config.admin.listen;
    let bind = |source| StartError::BindAdmin { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let task = tokio::spawn(crate::admin::serve(listener, ctx, Arc::new(token)));
    Ok((local, task))
}

/// The configured I/O backend; "auto" falls back to syscalls where io_uring cannot be
/// set up, and says why.
fn open_backend(config: &ServerConfig) -> Result<Arc<dyn IoBackend>, StartError> {
    let uring = || {
        UringBackend::start(UringConfig {
            entries: config.storage.uring_entries,
        })
    };
    Ok(match config.storage.backend {
        BackendName::Syscall => Arc::new(SyscallBackend),
        BackendName::IoUring => Arc::new(uring().map_err(|e| {
            StartError::Invalid(format!(
                "storage.backend = \"io_uring\": cannot set up a ring: {e}"
            ))
        })?),
        BackendName::Auto => match uring() {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring is not available; using the syscall backend");
                Arc::new(SyscallBackend)
            }
        },
    })
}

/// How this server connects to the others it forwards second copies to: TLS trusting
/// `replication.trust_file` (or this server's own certificate), the transport tuning.
fn peer_config(
    config: &ServerConfig,
    cert_pem: &str,
    tuning: &TransportTuning,
) -> Result<quinn::ClientConfig, StartError> {
    use rustls::pki_types::pem::PemObject;
    let pem = match &config.replication.trust_file {
        Some(path) => std::fs::read(path).map_err(|source| StartError::Io {
            what: "reading replication.trust_file",
            path: path.clone(),
            source,
        })?,
        None => cert_pem.as_bytes().to_vec(),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| StartError::Tls(format!("replication trust: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| StartError::Tls(format!("replication trust: {e}")))?;
    }
    let crypto = sluice_transport::tls::client_crypto(roots, sluice_proto::ALPN)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = tuning.transport_config();
    // A dead replica is noticed within peer_timeout, not the clients' idle timeout.
    let timeout = config.replication.peer_timeout;
    transport.max_idle_timeout(timeout.try_into().ok());
    transport.keep_alive_interval(Some(timeout / 4));
    client.transport_config(Arc::new(transport));
    Ok(client)
}

/// Accepts connections. A client whose address is not yet validated gets a stateless
/// Retry (where enabled); past `limits.max_pending_connections` connections without the
/// token, a new one is refused at once. Neither keeps any state.
async fn accept(endpoint: Endpoint, ctx: Arc<Ctx>) {
    while let Some(incoming) = endpoint.accept().await {
        if ctx.conn.address_validation && !incoming.remote_address_validated() {
            if incoming.may_retry() {
                let _ = incoming.retry();
            } else {
                incoming.ignore();
            }
            continue;
        }
        let (pending, count) = ctx.activity.pending.enter_counted();
        if count > ctx.conn.max_pending {
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED).increment(1);
            incoming.refuse();
            continue;
        }
        tokio::spawn(crate::conn::serve(ctx.clone(), incoming, pending));
    }
}

/// Removes applications that have not been heard from for `expiry`.
async fn expire_apps(ctx: Arc<Ctx>, expiry: Duration) {
    let period = (expiry / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        for app in ctx.registry.take_expired(expiry) {
            metrics::counter!(crate::metrics::APPS_EXPIRED).increment(1);
            tracing::info!(app = %app.id(), "application expired; deleting its data");
            let result = tokio::task::spawn_blocking(move || app.delete_files()).await;
            if let Ok(Err(e)) = result {
                tracing::warn!(error = %e, "deleting an expired application");
            }
        }
    }
}

fn transport(config: &ServerConfig, tuning: &TransportTuning) -> quinn::TransportConfig {
    let mut t = tuning.transport_config();
    // Until its token is accepted a connection gets one stream and a small window
    // (`conn::serve` raises both).
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    t.receive_window(VarInt::from_u32(crate::conn::PENDING_RECEIVE_WINDOW));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.max_idle_timeout(config.limits.idle_timeout.try_into().ok());
    t
}

/// A fault below the protocol, for the tests that prove readers catch it.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The index forgets the last block of the map in the partition.
    DropBlock { partition: u32, map_id: u64 },
    /// The index lists the last block of the map in the partition twice.
    DuplicateBlock { partition: u32, map_id: u64 },
}

impl ServerHandle {
    /// Damages a shuffle's index as a bug would; whether there was a block to damage.
    #[cfg(feature = "fault-injection")]
    pub fn inject(&self, app: &str, shuffle_id: u32, fault: Fault) -> bool {
        let Some(app) = self
            .ctx
            .registry
            .apps()
            .into_iter()
            .find(|a| a.id().as_str() == app)
        else {
            return false;
        };
        let Ok(Some(shuffle)) = app.shuffle(shuffle_id) else {
            return false;
        };
        match fault {
            Fault::DropBlock { partition, map_id } => {
                shuffle.store.inject_drop_block(partition, map_id)
            }
            Fault::DuplicateBlock { partition, map_id } => {
                shuffle.store.inject_duplicate_block(partition, map_id)
            }
        }
    }

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

    /// The storage backend in use.
    pub fn backend(&self) -> BackendKind {
        self.ctx.backend
    }

    /// The admin endpoint's address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The file holding the admin token.
    pub fn admin_token_path(&self) -> &PathBuf {
        &self.admin_token_path
    }

    /// What `/status` reports now.
    pub fn status(&self) -> crate::status::Status {
        crate::status::Status::of(&self.ctx)
    }

    /// Refuses new pushes (with the retryable `Draining`) and waits up to `timeout`
    /// for open pushes to commit or fail. Fetches are still served. Follow with
    /// [`shutdown`](Self::shutdown).
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        self.ctx.activity.start_draining();
        let deadline = Instant::now() + timeout;
        let pushes = &self.ctx.activity.pushes;
        while pushes.get() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        DrainReport {
            abandoned_pushes: pushes.get(),
        }
    }

    /// Stops accepting connections, closes the open ones, and waits for the endpoint
    /// to go idle. Every acknowledged commit is already on disk (or fsync'ed, per
    /// `storage.durability`); nothing else needs flushing.
    pub async fn shutdown(self) {
        self.endpoint
            .close(VarInt::from_u32(0), b"server shutting down");
        for task in &self.tasks {
            task.abort();
        }
        self.endpoint.wait_idle().await;
    }
}
