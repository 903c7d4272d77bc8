use sluice_proto::{AppId, ErrorCode, ProtoError};
use sluice_spill::SpillError;

/// Why a request failed. Each maps to the [`ErrorCode`] sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("protocol error: {0}")]
    Proto(#[from] ProtoError),
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("unknown application {0}")]
    UnknownApp(AppId),
    #[error("shuffle mismatch: {0}")]
    ShuffleMismatch(String),
    #[error("invalid data: {0}")]
    InvalidData(String),
    #[error("map {map_id} is already committed")]
    AlreadyCommitted { map_id: u64 },
    #[error("storage: {0}")]
    Storage(#[from] SpillError),
    #[error("busy: {0}")]
    Busy(String),
    #[error("server is draining before shutdown; push to another server")]
    Draining,
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("stream closed by peer: {0}")]
    Stream(String),
    #[error("the reader took no data for {0:?} (limits.stall_timeout); stream reset")]
    Stalled(std::time::Duration),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("deleted: {0}")]
    Deleted(String),
}

impl RequestError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Proto(e) => e.code(),
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::UnknownApp(_) => ErrorCode::UnknownApp,
            Self::ShuffleMismatch(_) => ErrorCode::ShuffleMismatch,
            Self::InvalidData(_) => ErrorCode::InvalidData,
            Self::AlreadyCommitted { .. } => ErrorCode::AlreadyCommitted,
            Self::Storage(SpillError::QuotaExceeded { .. }) => ErrorCode::QuotaExceeded,
            Self::Storage(SpillError::DiskFull { .. }) => ErrorCode::DiskFull,
            Self::Storage(SpillError::Deleted(_)) | Self::Deleted(_) => ErrorCode::Deleted,
            Self::Storage(_) => ErrorCode::Storage,
            Self::Busy(_) => ErrorCode::Unavailable,
            Self::Draining => ErrorCode::Draining,
            Self::Limit(_) | Self::Stalled(_) => ErrorCode::LimitExceeded,
            Self::Stream(_) => ErrorCode::BadRequest,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("recovering {path}: {message}")]
    Recovery {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("binding the admin endpoint to {addr}: {source}")]
    BindAdmin {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
