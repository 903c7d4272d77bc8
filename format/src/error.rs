use arrow_schema::ArrowError;

/// Errors from encoding or decoding blocks and Arrow IPC payloads.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("bad block magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("unsupported block format version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    #[error("block header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("block body checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BodyChecksum { stored: u32, computed: u32 },
    #[error("truncated block: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("{what} length {len} exceeds limit {limit}")]
    TooLarge {
        what: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("decompressed body has {actual} bytes, header says {expected}")]
    LengthMismatch { expected: u32, actual: usize },
    #[error("{codec} decompression failed: {message}")]
    Decompress {
        codec: &'static str,
        message: String,
    },
    #[error("{codec} compression failed: {message}")]
    Compress {
        codec: &'static str,
        message: String,
    },
    #[error("invalid zstd level {0} (valid: 1..=22)")]
    InvalidZstdLevel(i32),
    #[error("invalid Arrow IPC payload: {0}")]
    Ipc(#[from] ArrowError),
    #[error("invalid Arrow IPC payload: {0}")]
    IpcShape(&'static str),
}
