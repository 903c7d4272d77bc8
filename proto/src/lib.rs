//! Sluice wire protocol, free of I/O.
//!
//! Every request runs on its own QUIC bidirectional stream as a sequence of length-prefixed
//! [frames](frame). The first stream of a connection carries the [`Message::Hello`]
//! handshake (protocol version and cluster token); nothing else is served before it
//! succeeds. The state machines in [`session`] say which message may come next; the I/O
//! layers (server, client) only move bytes.
//!
//! Decoding is total: any byte sequence yields a message or a [`ProtoError`], never a
//! panic, and no allocation is sized by an unchecked length field.
//!
//! It owns the messages, their codecs, the limits and the stream state machines. It
//! must not do I/O, depend on tokio, quinn or any storage, or use `unsafe`: the QUIC
//! side is `sluice-transport`'s, and what a request means is the server's.
#![forbid(unsafe_code)]

pub mod descriptor;
pub mod frame;
pub mod ids;
pub mod message;
pub mod session;
mod wire;

pub use descriptor::ShuffleDescriptor;
pub use frame::{encode_frame, FrameHeader, FRAME_HEADER_LEN};
pub use ids::{AppId, IdError};
pub use message::{
    ErrorCode, FetchRequest, MapAttempt, MapFilter, MapSum, Message, MessageKind, PartitionSum,
    Partitioning, PushStart, RangeOrder,
};

/// ALPN protocol id negotiated by TLS.
pub const ALPN: &[u8] = b"sluice/1";
/// Protocol version sent in `Hello`.
pub const PROTOCOL_VERSION: u16 = 2;

/// Bounds applied to every frame received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body accepted, in bytes.
    pub max_frame_len: u32,
    /// Largest partition count a shuffle may declare.
    pub max_partitions: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_len: 64 << 20,
            max_partitions: 1 << 20,
        }
    }
}

/// Protocol violations and malformed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    FrameTooLarge { len: u32, limit: u32 },
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after message")]
    TrailingBytes(usize),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("unexpected {got:?} while {state}")]
    Unexpected {
        got: MessageKind,
        state: &'static str,
    },
    #[error(transparent)]
    Id(#[from] IdError),
}

impl ProtoError {
    /// The error code reported to the peer for this violation.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::BadRequest,
        }
    }
}
