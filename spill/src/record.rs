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
/// Records start at multiples of this (of [`DIRECT_ALIGN`] in direct-I/O mode).
pub const ALIGN: u64 = 8;

use crate::direct::{align_slack, WriteBuf, DIRECT_ALIGN};

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

/// A record being built: the prefix, then the block appended through
/// [`RecordBuf::block_mut`], then padding added by [`RecordBuf::finish`]. The record
/// starts at a [`DIRECT_ALIGN`] boundary of its buffer, so a direct write can send the
/// buffer as it is instead of copying it.
#[derive(Debug)]
pub struct RecordBuf {
    bytes: Vec<u8>,
    /// Where the record starts (the bytes before only align it).
    start: usize,
}

impl RecordBuf {
    /// A record with room for a block of about `block_hint` bytes (more is allowed; a
    /// buffer that has to grow loses its alignment and is copied for direct writes).
    pub fn new(block_hint: usize) -> Self {
        let room = (PREFIX_LEN + block_hint).next_multiple_of(DIRECT_ALIGN);
        let mut bytes: Vec<u8> = Vec::with_capacity(room + DIRECT_ALIGN);
        let start = align_slack(bytes.as_ptr());
        bytes.resize(start + PREFIX_LEN, 0);
        Self { bytes, start }
    }

    /// The buffer the block is appended to (only appending keeps the record valid).
    pub fn block_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Bytes of the block appended so far.
    pub fn block_len(&self) -> usize {
        self.bytes.len() - self.start - PREFIX_LEN
    }

    /// Completes the record: fills in the prefix and pads to [`ALIGN`]. Returns the
    /// block's length (`None` past 4 GiB).
    pub fn finish(&mut self, epoch: u32) -> Option<u32> {
        let block_at = self.start + PREFIX_LEN;
        let block_len = u32::try_from(self.bytes.len().checked_sub(block_at)?).ok()?;
        self.bytes[self.start..block_at]
            .copy_from_slice(&encode_prefix(RecordPrefix { epoch, block_len }));
        self.bytes
            .resize(self.start + record_len(block_len) as usize, 0);
        Some(block_len)
    }

    /// The record's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// The bytes to write, `span` long: zero padding after the record. Aligned for
    /// direct I/O when `aligned`; in place when the buffer allows, else copied.
    pub(crate) fn into_write_buf(mut self, span: usize, aligned: bool) -> WriteBuf {
        let in_place = !aligned
            || (self.bytes.as_ptr().addr() + self.start).is_multiple_of(DIRECT_ALIGN)
                && self.start + span <= self.bytes.capacity();
        if in_place {
            self.bytes.resize(self.start + span, 0);
            WriteBuf::from_parts(self.bytes, self.start)
        } else {
            WriteBuf::aligned_copy(self.as_slice(), span)
        }
    }
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
        let mut rec = RecordBuf::new(11);
        rec.block_mut().extend_from_slice(b"eleven byte");
        assert_eq!(rec.finish(7), Some(11));
        let out = rec.as_slice();
        assert_eq!(out.as_ptr().addr() % DIRECT_ALIGN, 0);
        assert_eq!(out.len(), 32); // 16 + 11, padded to 8
        assert_eq!(
            parse_prefix(out),
            Some(RecordPrefix {
                epoch: 7,
                block_len: 11
            })
        );
        assert_eq!(&out[16..27], b"eleven byte");
        assert!(out[27..].iter().all(|&b| b == 0));
    }

    #[test]
    fn direct_writes_use_the_buffer_in_place_unless_it_grew() {
        let mut fits = RecordBuf::new(100);
        fits.block_mut().extend_from_slice(&[5; 100]);
        fits.finish(1).unwrap();
        let record = fits.as_slice().to_vec();
        let at = fits.as_slice().as_ptr();
        let buf = fits.into_write_buf(DIRECT_ALIGN, true);
        assert_eq!(buf.as_slice().as_ptr(), at, "no copy");
        assert_eq!(&buf.as_slice()[..record.len()], &record[..]);
        assert!(buf.as_slice()[record.len()..].iter().all(|&b| b == 0));

        let mut grew = RecordBuf::new(10);
        grew.block_mut().extend_from_slice(&[6; 3 * DIRECT_ALIGN]);
        grew.finish(1).unwrap();
        let record = grew.as_slice().to_vec();
        let span = record.len().next_multiple_of(DIRECT_ALIGN);
        let buf = grew.into_write_buf(span, true);
        assert_eq!(buf.as_slice().as_ptr().addr() % DIRECT_ALIGN, 0);
        assert_eq!(buf.len(), span);
        assert_eq!(&buf.as_slice()[..record.len()], &record[..]);
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
