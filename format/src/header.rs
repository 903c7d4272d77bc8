use crate::codec::Codec;
use crate::error::FormatError;

/// Magic bytes that open every block.
pub const MAGIC: [u8; 4] = *b"SLB1";
/// Current block format version.
pub const VERSION: u8 = 1;
/// Encoded header size in bytes.
pub const HEADER_LEN: usize = 48;

/// Fixed-size block header (little-endian on disk and on the wire).
///
/// Layout: magic[4] version[1] codec[1] flags[2] map_id[8] map_index[4] attempt[4]
/// seq[4] rows[4] raw_len[4] stored_len[4] body_crc[4] header_crc[4].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub codec: Codec,
    /// Spark task attempt id (unique per application).
    pub map_id: u64,
    /// Index of the map task within its stage.
    pub map_index: u32,
    /// Attempt number of the map task.
    pub attempt: u32,
    /// Sequence number of this block within (map attempt, partition).
    pub seq: u32,
    /// Rows in the block.
    pub rows: u32,
    /// Body length before compression.
    pub raw_len: u32,
    /// Body length as stored (after compression).
    pub stored_len: u32,
    /// crc32c of the stored body.
    pub body_crc: u32,
}

impl BlockHeader {
    /// Total encoded length of the block this header opens.
    pub fn block_len(&self) -> usize {
        HEADER_LEN + self.stored_len as usize
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.codec as u8;
        // b[6..8]: flags, reserved (zero).
        b[8..16].copy_from_slice(&self.map_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.map_index.to_le_bytes());
        b[20..24].copy_from_slice(&self.attempt.to_le_bytes());
        b[24..28].copy_from_slice(&self.seq.to_le_bytes());
        b[28..32].copy_from_slice(&self.rows.to_le_bytes());
        b[32..36].copy_from_slice(&self.raw_len.to_le_bytes());
        b[36..40].copy_from_slice(&self.stored_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header (magic, version, codec, header checksum).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FormatError::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            })?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(FormatError::BadMagic(magic));
        }
        let stored = u32_at(b, 44);
        let computed = crc32c::crc32c(&b[..44]);
        if stored != computed {
            return Err(FormatError::HeaderChecksum { stored, computed });
        }
        if b[4] != VERSION {
            return Err(FormatError::UnsupportedVersion(b[4]));
        }
        Ok(Self {
            codec: Codec::from_id(b[5])?,
            map_id: u64::from_le_bytes(b[8..16].try_into().expect("8-byte slice")),
            map_index: u32_at(b, 16),
            attempt: u32_at(b, 20),
            seq: u32_at(b, 24),
            rows: u32_at(b, 28),
            raw_len: u32_at(b, 32),
            stored_len: u32_at(b, 36),
            body_crc: u32_at(b, 40),
        })
    }
}

fn u32_at(b: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
