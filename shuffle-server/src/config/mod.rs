//! Typed server configuration. Every key is optional; `config/sluice-server.example.toml`
//! documents each one with its default, and is also where `sluice-server --help` takes
//! its option descriptions from. Layers (file < CLI flags < environment) are merged in
//! [`layers`].

pub mod layers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use sluice_format::{Codec, CodecConfig};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// UDP address the QUIC endpoint binds to.
    pub listen: SocketAddr,
    /// Directory for data files, the generated certificate and the cluster token.
    pub data_dir: PathBuf,
    /// File holding the cluster token; generated (mode 0600) if missing.
    /// Default: `<data_dir>/cluster-token`.
    pub cluster_token_file: Option<PathBuf>,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub transport: TransportConfig,
    pub replication: ReplicationConfig,
    /// Threads that split and compress (0: one per core).
    pub worker_threads: usize,
    /// On SIGTERM, how long open pushes may take to finish before the server exits.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    pub admin: AdminConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// PEM certificates (or their CA) of the other servers, which this server connects
    /// to when a push names them as replicas. Default: this server's own certificate
    /// (right when every server presents the same certificate or one signed by it).
    pub trust_file: Option<PathBuf>,
    /// Silence after which a replica's connection counts as lost (keep-alives run at a
    /// quarter of it), so a commit waits at most this long on a dead replica before it
    /// tries the next one. Default 10s.
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            trust_file: None,
            peer_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the HTTP admin endpoint (`/metrics`, `/status`, `/healthz`, app deletion).
    pub enabled: bool,
    /// TCP address of the admin endpoint.
    pub listen: SocketAddr,
    /// File holding the admin token (needed to delete an application); generated (mode
    /// 0600) if missing. Default: `<data_dir>/admin-token`.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: a level ("info") or directives ("info,sluice_server=debug").
    pub level: String,
    /// "text" or "json" (one object per line).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain. With `key`; if both are absent a self-signed certificate is
    /// generated on first start and kept in `<data_dir>/tls/`.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// Names (DNS names or IP addresses) the generated certificate is valid for.
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Uncompressed size at which a (partition, map attempt) buffer becomes a block.
    #[serde(serialize_with = "exact_size")]
    pub block_size: ByteSize,
    /// Most (uncompressed) bytes one push may hold in buffers; above it the push's
    /// largest buffers are written out until half of it is left.
    #[serde(serialize_with = "exact_size")]
    pub push_buffer_limit: ByteSize,
    /// Memory for all pushes together, in allocated bytes (buffers plus blocks not yet
    /// written). Above 75% pushes write out their largest buffers; at the limit they
    /// stop reading from the network until usage is below 50%.
    #[serde(serialize_with = "exact_size")]
    pub memory_budget: ByteSize,
    /// Block codec: "none", "lz4" or "zstd".
    pub codec: CodecName,
    /// zstd level (1..=22), used when `codec = "zstd"`.
    pub zstd_level: i32,
    /// I/O backend: "auto" (io_uring where the kernel allows it, otherwise plain
    /// syscalls, with a log line saying why), "io_uring" (fail to start without it) or
    /// "syscall".
    pub backend: BackendName,
    /// io_uring submission queue entries: the most writes in flight at once.
    pub uring_entries: u32,
    /// When a commit is acknowledged: "page-cache" (written to the kernel; survives a
    /// server crash) or "fsync" (fdatasync of the map's files and the commit log first;
    /// survives a machine crash).
    pub durability: DurabilityName,
    /// Write blocks with O_DIRECT (each record padded to 4 KiB): no copy into the page
    /// cache and no writeback later. Falls back to buffered writes, with a log line,
    /// where the file system refuses O_DIRECT.
    pub direct_io: bool,
    /// Most bytes of data files on this server (unset: no limit).
    #[serde(
        serialize_with = "exact_size_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub disk_quota: Option<ByteSize>,
    /// Most bytes of data files per application (unset: no limit).
    #[serde(
        serialize_with = "exact_size_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub app_disk_quota: Option<ByteSize>,
    /// An application that sends no request (a push, a fetch, or a `RegisterApp`
    /// heartbeat) for this long is removed with its data. "0s" disables expiry.
    #[serde(with = "humantime_serde")]
    pub app_expiry: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum BackendName {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "io_uring")]
    IoUring,
    #[serde(rename = "syscall")]
    Syscall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilityName {
    PageCache,
    Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecName {
    None,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest protocol frame accepted (a pushed batch must fit in one frame).
    #[serde(serialize_with = "exact_size")]
    pub max_frame_size: ByteSize,
    /// Largest partition count a shuffle may declare.
    pub max_partitions: u32,
    /// Time a new connection has to complete the handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A stream that stops moving for this long is reset: a fetch whose reader takes
    /// no block, or a frame whose bytes stop arriving (a stalled or hostile client must
    /// not hold a server task and buffers forever).
    #[serde(with = "humantime_serde", alias = "fetch_stall_timeout")]
    pub stall_timeout: Duration,
    /// Concurrent request streams per connection.
    pub max_streams_per_connection: u32,
    /// Concurrent client connections; more are closed with `LimitExceeded`.
    pub max_connections: u32,
    /// Connections that have not yet shown the token (handshakes in progress
    /// included); more are refused at once.
    pub max_pending_connections: u32,
    /// QUIC address validation (Retry): a client proves it receives at its address
    /// before the server keeps any state for its connection.
    pub address_validation: bool,
    /// Most bytes one connection's requests may hold in per-partition tables of open
    /// pushes and in fetch read-ahead (besides one frame of `max_frame_size`); a push
    /// beyond it is refused with `LimitExceeded`, a fetch waits. At most the memory
    /// budget (a larger value counts as the budget).
    #[serde(serialize_with = "exact_size")]
    pub connection_memory: ByteSize,
    /// Largest schema (and range bounds) a push may declare.
    #[serde(serialize_with = "exact_size")]
    pub max_schema_size: ByteSize,
    /// Shuffles per application; a push to a new one beyond it gets `LimitExceeded`.
    pub max_shuffles_per_app: u32,
    /// Most bytes of shuffle shapes (schemas and range bounds) one application's
    /// shuffles keep in memory; a push to a new shuffle beyond it gets `LimitExceeded`.
    #[serde(serialize_with = "exact_size")]
    pub app_metadata_size: ByteSize,
    /// Registered applications; `RegisterApp` beyond it gets `LimitExceeded`.
    pub max_apps: u32,
}

/// QUIC transport tuning (see `sluice_transport::TransportTuning`, which both ends share).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// `SO_RCVBUF` / `SO_SNDBUF` of the UDP socket ("0B": the OS default).
    #[serde(serialize_with = "exact_size")]
    pub udp_socket_buffer: ByteSize,
    /// Generic segmentation offload (several datagrams per send call).
    pub segmentation_offload: bool,
    /// Largest UDP payload sent or accepted; MTU discovery probes up to it.
    pub max_udp_payload: u16,
    /// Unread bytes a client may send ahead on one stream.
    #[serde(serialize_with = "exact_size")]
    pub stream_receive_window: ByteSize,
    /// Unread bytes a client may send ahead on one connection.
    #[serde(serialize_with = "exact_size")]
    pub receive_window: ByteSize,
    /// Unacknowledged bytes the server may have in flight per connection.
    #[serde(serialize_with = "exact_size")]
    pub send_window: ByteSize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7337".parse().expect("valid address"),
            data_dir: PathBuf::from("sluice-data"),
            cluster_token_file: None,
            tls: TlsConfig::default(),
            storage: StorageConfig::default(),
            limits: LimitsConfig::default(),
            transport: TransportConfig::default(),
            replication: ReplicationConfig::default(),
            worker_threads: 0,
            drain_timeout: Duration::from_secs(30),
            admin: AdminConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:7338".parse().expect("valid address"),
            token_file: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            server_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            block_size: ByteSize::mib(1),
            push_buffer_limit: ByteSize::mib(32),
            memory_budget: ByteSize::gib(1),
            codec: CodecName::Lz4,
            zstd_level: 1,
            backend: BackendName::Auto,
            uring_entries: 256,
            durability: DurabilityName::PageCache,
            direct_io: false,
            disk_quota: None,
            app_disk_quota: None,
            app_expiry: Duration::from_secs(3600),
        }
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        let t = sluice_transport::TransportTuning::SERVER;
        Self {
            udp_socket_buffer: ByteSize::b(t.udp_socket_buffer as u64),
            segmentation_offload: t.segmentation_offload,
            max_udp_payload: t.max_udp_payload,
            stream_receive_window: ByteSize::b(t.stream_receive_window.into()),
            receive_window: ByteSize::b(t.receive_window.into()),
            send_window: ByteSize::b(t.send_window),
        }
    }
}

impl TransportConfig {
    /// The tuning these settings name, or the key that is out of range.
    pub fn tuning(&self) -> Result<sluice_transport::TransportTuning, String> {
        let window = |key: &str, size: ByteSize| {
            let n = size.as_u64();
            if (64 << 10..=1 << 30).contains(&n) {
                Ok(n as u32)
            } else {
                Err(format!("transport.{key}: {n} not in 64 KiB..1 GiB"))
            }
        };
        let buffer = self.udp_socket_buffer.as_u64();
        if buffer > 1 << 30 {
            return Err(format!("transport.udp_socket_buffer: {buffer} over 1 GiB"));
        }
        let tuning = sluice_transport::TransportTuning {
            udp_socket_buffer: buffer as usize,
            segmentation_offload: self.segmentation_offload,
            max_udp_payload: self.max_udp_payload,
            stream_receive_window: window("stream_receive_window", self.stream_receive_window)?,
            receive_window: window("receive_window", self.receive_window)?,
            send_window: window("send_window", self.send_window)?.into(),
        };
        tuning.check().map_err(|e| format!("transport.{e}"))?;
        Ok(tuning)
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_frame_size: ByteSize::mib(64),
            max_partitions: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            stall_timeout: Duration::from_secs(60),
            max_streams_per_connection: 256,
            max_connections: 4096,
            max_pending_connections: 256,
            address_validation: true,
            connection_memory: ByteSize::mib(128),
            max_schema_size: ByteSize::mib(4),
            max_shuffles_per_app: 4096,
            app_metadata_size: ByteSize::mib(64),
            max_apps: 10_000,
        }
    }
}

/// Sizes print exactly (`ByteSize`'s own form rounds to one decimal), so
/// `--print-config` output reads back as the same configuration.
fn exact_size<S: serde::Serializer>(size: &ByteSize, s: S) -> Result<S::Ok, S::Error> {
    let n = size.as_u64();
    let text = [("GiB", 30), ("MiB", 20), ("KiB", 10)]
        .iter()
        .find(|(_, shift)| n != 0 && n.is_multiple_of(1u64 << shift))
        .map_or(format!("{n}B"), |(unit, shift)| {
            format!("{}{unit}", n >> shift)
        });
    s.serialize_str(&text)
}

fn exact_size_opt<S: serde::Serializer>(size: &Option<ByteSize>, s: S) -> Result<S::Ok, S::Error> {
    match size {
        Some(size) => exact_size(size, s),
        None => s.serialize_none(),
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `origin` says where the value came from: "config file <path>", "flag --<name>",
    /// "environment variable <NAME>", or "configuration" for the merged result.
    #[error("invalid {origin}: {message}")]
    Invalid { origin: String, message: String },
}

impl ServerConfig {
    /// Defaults for a server embedded in a test or benchmark: data in `data_dir`, QUIC
    /// and admin endpoints on loopback ports the OS picks.
    pub fn embedded(data_dir: PathBuf) -> Self {
        let mut config = Self {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            data_dir,
            ..Self::default()
        };
        config.admin.listen = "127.0.0.1:0".parse().expect("valid address");
        config
    }

    /// Reads and validates a TOML configuration file (no flags or environment).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        layers::load(Some(path), &[])
    }

    /// Parses and validates TOML text; the error names the offending key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.codec()?;
        self.transport.tuning()?;
        let frame = self.limits.max_frame_size.as_u64();
        if !(1024..=u32::MAX as u64).contains(&frame) {
            return Err(format!(
                "limits.max_frame_size: {frame} not in 1 KiB..4 GiB"
            ));
        }
        let block = self.storage.block_size.as_u64();
        if !(1024..=256 << 20).contains(&block) {
            return Err(format!("storage.block_size: {block} not in 1 KiB..256 MiB"));
        }
        if self.storage.memory_budget.as_u64() < 4 * block {
            return Err("storage.memory_budget: must be at least 4 x storage.block_size".into());
        }
        if self.storage.push_buffer_limit.as_u64() < block {
            return Err("storage.push_buffer_limit: must be at least storage.block_size".into());
        }
        if !(1..=32768).contains(&self.storage.uring_entries) {
            return Err("storage.uring_entries: must be in 1..=32768".into());
        }
        if self.replication.peer_timeout < Duration::from_secs(1) {
            return Err("replication.peer_timeout: must be at least 1s".into());
        }
        if self.limits.stall_timeout < Duration::from_secs(1) {
            return Err("limits.stall_timeout: must be at least 1s".into());
        }
        if self.limits.max_pending_connections == 0 {
            return Err("limits.max_pending_connections: must be at least 1".into());
        }
        if self.limits.connection_memory.as_u64() < 1 << 20 {
            return Err("limits.connection_memory: must be at least 1 MiB".into());
        }
        if self.limits.max_shuffles_per_app == 0 {
            return Err("limits.max_shuffles_per_app: must be at least 1".into());
        }
        if self.limits.max_partitions == 0 {
            return Err("limits.max_partitions: must be at least 1".into());
        }
        if self.limits.max_connections == 0 {
            return Err("limits.max_connections: must be at least 1".into());
        }
        if self.limits.max_apps == 0 {
            return Err("limits.max_apps: must be at least 1".into());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(format!("log.level: {e}"));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err("tls.cert and tls.key: set both or neither".into());
        }
        Ok(())
    }

    pub fn codec(&self) -> Result<CodecConfig, String> {
        let codec = match self.storage.codec {
            CodecName::None => Codec::None,
            CodecName::Lz4 => Codec::Lz4,
            CodecName::Zstd => Codec::Zstd,
        };
        CodecConfig::new(codec, self.storage.zstd_level)
            .map_err(|e| format!("storage.zstd_level: {e}"))
    }

    pub fn token_path(&self) -> PathBuf {
        self.cluster_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cluster-token"))
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.admin
            .token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin-token"))
    }

    pub(crate) fn proto_limits(&self) -> sluice_proto::Limits {
        sluice_proto::Limits {
            max_frame_len: self.limits.max_frame_size.as_u64() as u32,
            max_partitions: self.limits.max_partitions,
        }
    }
}
