//! Sluice block format.
//!
//! A *block* is the unit the server stores and serves: a fixed 48-byte [`BlockHeader`]
//! followed by a body that holds one Arrow IPC record batch (plus its dictionaries),
//! compressed with a [`Codec`]. The header names the map attempt the rows came from, so
//! blocks of different attempts never mix, and carries two crc32c checksums (header and
//! body) so that readers and the recovery scan can reject torn or corrupted data.
//!
//! Nothing here trusts a length field: every length is checked against [`DecodeLimits`]
//! and against the bytes actually present before anything is allocated.
//!
//! It owns the block header, the codecs, crc32c and the Arrow IPC encoding and its
//! structural checks of untrusted input. It must not do I/O or know where blocks are
//! stored (that is `sluice-spill`'s) or who sent them.
#![forbid(unsafe_code)]

mod block;
mod codec;
mod error;
mod header;
mod ipc;
mod ipc_check;

pub use block::{decode_block, encode_block, BlockMeta, BlockView};
pub use codec::{Codec, CodecConfig};
pub use error::FormatError;
pub use header::{BlockHeader, HEADER_LEN, MAGIC, VERSION};
pub use ipc::{decode_schema, encode_batch, encode_schema, BatchDecoder};
pub use ipc_check::MAX_BATCH_ROWS;

/// Upper bounds applied while decoding untrusted blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted uncompressed body, in bytes.
    pub max_raw_len: u32,
    /// Largest accepted stored (compressed) body, in bytes.
    pub max_stored_len: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_raw_len: 256 << 20,
            max_stored_len: 256 << 20,
        }
    }
}
