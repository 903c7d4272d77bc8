use crate::codec::{decompress, Codec, CodecConfig};
use crate::error::FormatError;
use crate::header::{BlockHeader, HEADER_LEN};
use crate::DecodeLimits;

/// Identity of a block's rows: which map attempt produced them, and where in its
/// sequence the block stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMeta {
    pub map_id: u64,
    pub map_index: u32,
    pub attempt: u32,
    pub seq: u32,
    pub rows: u32,
}

/// Compresses `raw` (an Arrow IPC body) and appends a complete block (header + body) to
/// `out`. Returns the header that was written.
pub fn encode_block(
    meta: BlockMeta,
    raw: &[u8],
    codec: &CodecConfig,
    out: &mut Vec<u8>,
) -> Result<BlockHeader, FormatError> {
    let raw_len = u32::try_from(raw.len()).map_err(|_| FormatError::TooLarge {
        what: "block body",
        len: raw.len() as u64,
        limit: u32::MAX as u64,
    })?;
    let header_at = out.len();
    out.resize(header_at + HEADER_LEN, 0);
    let used = codec.compress_into(raw, out)?;
    let body = &out[header_at + HEADER_LEN..];
    let header = BlockHeader {
        codec: used,
        map_id: meta.map_id,
        map_index: meta.map_index,
        attempt: meta.attempt,
        seq: meta.seq,
        rows: meta.rows,
        raw_len,
        // Never larger than raw_len (see compress_into), so it fits.
        stored_len: body.len() as u32,
        body_crc: crc32c::crc32c(body),
    };
    out[header_at..header_at + HEADER_LEN].copy_from_slice(&header.encode());
    Ok(header)
}

/// A checked block: header plus the stored (still compressed) body.
#[derive(Debug, Clone, Copy)]
pub struct BlockView<'a> {
    pub header: BlockHeader,
    pub stored_body: &'a [u8],
}

impl<'a> BlockView<'a> {
    /// Parses a block at the start of `bytes`, checking header, limits, presence of the
    /// body and its checksum. Does not decompress.
    pub fn parse(bytes: &'a [u8], limits: &DecodeLimits) -> Result<Self, FormatError> {
        let header = BlockHeader::decode(bytes)?;
        check_limit("stored body", header.stored_len, limits.max_stored_len)?;
        check_limit("raw body", header.raw_len, limits.max_raw_len)?;
        if header.codec == Codec::None && header.stored_len != header.raw_len {
            return Err(FormatError::LengthMismatch {
                expected: header.raw_len,
                actual: header.stored_len as usize,
            });
        }
        let end = header.block_len();
        let stored_body = bytes.get(HEADER_LEN..end).ok_or(FormatError::Truncated {
            needed: end,
            available: bytes.len(),
        })?;
        let computed = crc32c::crc32c(stored_body);
        if computed != header.body_crc {
            return Err(FormatError::BodyChecksum {
                stored: header.body_crc,
                computed,
            });
        }
        Ok(Self {
            header,
            stored_body,
        })
    }

    /// Decompresses the body (exactly `raw_len` bytes).
    pub fn decompress(&self) -> Result<Vec<u8>, FormatError> {
        decompress(self.header.codec, self.stored_body, self.header.raw_len)
    }

    /// Re-creates the view of a block that [`BlockView::parse`] already accepted,
    /// without computing its checksums again (lengths and limits are still checked).
    pub fn of_parsed(
        header: BlockHeader,
        block: &'a [u8],
        limits: &DecodeLimits,
    ) -> Result<Self, FormatError> {
        check_limit("stored body", header.stored_len, limits.max_stored_len)?;
        check_limit("raw body", header.raw_len, limits.max_raw_len)?;
        let stored_body =
            block
                .get(HEADER_LEN..header.block_len())
                .ok_or(FormatError::Truncated {
                    needed: header.block_len(),
                    available: block.len(),
                })?;
        Ok(Self {
            header,
            stored_body,
        })
    }
}

/// Parses, verifies and decompresses one block. Returns the header and the raw body.
pub fn decode_block(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(BlockHeader, Vec<u8>), FormatError> {
    let view = BlockView::parse(bytes, limits)?;
    Ok((view.header, view.decompress()?))
}

fn check_limit(what: &'static str, len: u32, limit: u32) -> Result<(), FormatError> {
    if len > limit {
        return Err(FormatError::TooLarge {
            what,
            len: len as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}
