//! On-disk framing of a block in a partition file.
//!
//! Each record is a 16-byte prefix (magic, the push epoch, the block length, a crc32c of
//! those 12 bytes), the block itself (which carries its own header and body checksums),
//! and zero padding to an 8-byte boundary. The epoch tells a committed push's blocks from
//! those of an abandoned push of the same map id; alignment lets recovery find the next
//! record after a torn or never-written one by probing 8-byte positions.

/// Opens every record.
pub const RECORD_MAGIC: [u8; 4] = *b"SLR1";
/// Bytes before the block.
pub const PREFIX_LEN: usize = 16;
/// Records start at multiples of this.
pub const ALIGN: u64 = 8;

/// A record's prefix, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPrefix {
    pub epoch: u32,
    pub block_len: u32,
}

/// Length of a record holding a block of `block_len` bytes, padding included.
pub fn record_len(block_len: u32) -> u64 {
    (PREFIX_LEN as u64 + block_len as u64).next_multiple_of(ALIGN)
}

/// Starts a record in `out` (which must be empty): the block is appended after this.
pub fn begin_record(out: &mut Vec<u8>) {
    debug_assert!(out.is_empty(), "a record starts an empty buffer");
    out.clear();
    out.resize(PREFIX_LEN, 0);
}

/// Completes the record in `out` (prefix, then the block appended since
/// [`begin_record`]): fills in the prefix and pads. Returns the block's length.
pub fn finish_record(out: &mut Vec<u8>, epoch: u32) -> Option<u32> {
    let block_len = u32::try_from(out.len().checked_sub(PREFIX_LEN)?).ok()?;
    out[..PREFIX_LEN].copy_from_slice(&encode_prefix(RecordPrefix { epoch, block_len }));
    out.resize(record_len(block_len) as usize, 0);
    Some(block_len)
}

pub fn encode_prefix(p: RecordPrefix) -> [u8; PREFIX_LEN] {
    let mut b = [0u8; PREFIX_LEN];
    b[0..4].copy_from_slice(&RECORD_MAGIC);
    b[4..8].copy_from_slice(&p.epoch.to_le_bytes());
    b[8..12].copy_from_slice(&p.block_len.to_le_bytes());
    let crc = crc32c::crc32c(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The prefix at the start of `bytes`, if it is one (magic and checksum match).
pub fn parse_prefix(bytes: &[u8]) -> Option<RecordPrefix> {
    let b = bytes.get(..PREFIX_LEN)?;
    if b[0..4] != RECORD_MAGIC {
        return None;
    }
    let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if crc32c::crc32c(&b[..12]) != word(12) {
        return None;
    }
    Some(RecordPrefix {
        epoch: word(4),
        block_len: word(8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_pads_a_block() {
        let mut out = Vec::new();
        begin_record(&mut out);
        out.extend_from_slice(b"eleven byte");
        assert_eq!(finish_record(&mut out, 7), Some(11));
        assert_eq!(out.len(), 32); // 16 + 11, padded to 8
        assert_eq!(
            parse_prefix(&out),
            Some(RecordPrefix {
                epoch: 7,
                block_len: 11
            })
        );
        assert_eq!(&out[16..27], b"eleven byte");
        assert!(out[27..].iter().all(|&b| b == 0));
    }

    #[test]
    fn rejects_damaged_prefixes() {
        let good = encode_prefix(RecordPrefix {
            epoch: 1,
            block_len: 100,
        });
        for i in 0..PREFIX_LEN {
            let mut bad = good;
            bad[i] ^= 0x40;
            assert_eq!(parse_prefix(&bad), None, "flipped byte {i}");
        }
        assert_eq!(parse_prefix(&good[..15]), None);
        assert_eq!(parse_prefix(&[0u8; 16]), None);
    }
}
