use sluice_format::FormatError;
use sluice_proto::{ErrorCode, IdError, ProtoError};

/// Everything that can go wrong talking to a Sluice server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused or failed the request (or closed the connection with a reason).
    #[error("server error {code:?}: {message}")]
    Server { code: ErrorCode, message: String },
    #[error("connecting to {addr}: {message}")]
    Connect {
        addr: std::net::SocketAddr,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("connection lost: {0}")]
    Connection(String),
    #[error("stream failed: {0}")]
    Stream(String),
    #[error("protocol error: {0}")]
    Proto(#[from] ProtoError),
    #[error("corrupt or invalid block: {0}")]
    Format(#[from] FormatError),
    #[error(transparent)]
    Id(#[from] IdError),
    /// The fetch named map outputs this server does not hold (lost or never pushed).
    #[error("server does not hold map outputs {0:?}")]
    MissingMaps(Vec<u64>),
    #[error("a single row does not fit in a {limit}-byte frame")]
    RowTooLarge { limit: u32 },
    #[error("fetched rows ({received}) differ from the server's count ({expected})")]
    RowCountMismatch { expected: u64, received: u64 },
    /// What arrived differs from what the writer pushed: a block lost, repeated or out
    /// of order, or rows that differ from the writer's count. The map should be read
    /// from another copy, or recomputed.
    #[error("integrity: {0}")]
    Integrity(String),
    #[error("the runtime: {0}")]
    Runtime(String),
}

impl ClientError {
    /// The server's error code, if the server reported one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Server { code, .. } => code.is_retryable(),
            Self::Connection(_) | Self::Connect { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn connection(e: quinn::ConnectionError) -> Self {
        match e {
            quinn::ConnectionError::ApplicationClosed(close) => Self::Server {
                code: ErrorCode::from_u16(close.error_code.into_inner().min(u16::MAX as u64) as u16),
                message: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            other => Self::Connection(other.to_string()),
        }
    }
}
