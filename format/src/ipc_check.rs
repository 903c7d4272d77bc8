//! Structural checks of untrusted Arrow IPC bodies before arrow-ipc decodes them.
//!
//! arrow-ipc verifies the flatbuffer but slices buffers at the offsets it names without
//! bounds checks (a panic, found by this crate's property tests), and trusts row counts.
//! This pass rejects such messages with an error first.

use crate::error::FormatError;

/// Most rows one decoded batch may claim (bounds allocations sized by row counts).
pub const MAX_BATCH_ROWS: i64 = 1 << 24;
/// Most rows a batch may claim per byte of its message (metadata and body), beyond
/// [`FREE_ROWS`]: any column but a Null-typed one takes at least a bit per row, so real
/// data never claims more. Without it, a batch of Null-typed columns (or of none)
/// could claim millions of rows in a few bytes and make the reader work and allocate
/// for each.
pub const ROWS_PER_BYTE: i64 = 8;
/// Rows any batch may claim whatever its size (a batch of no columns still has rows).
pub const FREE_ROWS: i64 = 1024;

fn shape(reason: &'static str) -> FormatError {
    FormatError::IpcShape(reason)
}

/// Checks every message of an IPC message sequence: framing, verified flatbuffer,
/// buffers inside the body, bounded row counts, no IPC-level compression.
pub(crate) fn check_messages(mut bytes: &[u8]) -> Result<(), FormatError> {
    while !bytes.is_empty() {
        let word = |b: &[u8], at: usize| -> Result<u32, FormatError> {
            b.get(at..at + 4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .ok_or(shape("truncated message prefix"))
        };
        let mut at = 0;
        if word(bytes, 0)? == 0xffff_ffff {
            at = 4;
        }
        let meta_len = word(bytes, at)? as usize;
        at += 4;
        if meta_len == 0 {
            return Err(shape("end-of-stream marker inside a body"));
        }
        let meta = bytes
            .get(at..at + meta_len)
            .ok_or(shape("truncated message metadata"))?;
        let message =
            arrow_ipc::root_as_message(meta).map_err(|_| shape("invalid message flatbuffer"))?;
        let body_len =
            usize::try_from(message.bodyLength()).map_err(|_| shape("negative body length"))?;
        let rest = &bytes[at + meta_len..];
        if body_len > rest.len() {
            return Err(shape("message body extends past the payload"));
        }
        let batch = match message.header_type() {
            arrow_ipc::MessageHeader::RecordBatch => message.header_as_record_batch(),
            arrow_ipc::MessageHeader::DictionaryBatch => {
                message.header_as_dictionary_batch().and_then(|d| d.data())
            }
            _ => return Err(shape("unexpected message type in a batch body")),
        }
        .ok_or(shape("message without a batch header"))?;
        check_batch(&batch, body_len as u64)?;
        let size = (meta_len + body_len) as i64;
        if batch.length() > size.saturating_mul(ROWS_PER_BYTE).saturating_add(FREE_ROWS) {
            return Err(shape("batch claims more rows than its bytes can hold"));
        }
        bytes = &rest[body_len..];
    }
    Ok(())
}

fn check_batch(batch: &arrow_ipc::RecordBatch<'_>, body_len: u64) -> Result<(), FormatError> {
    if !(0..=MAX_BATCH_ROWS).contains(&batch.length()) {
        return Err(shape("batch row count out of range"));
    }
    if batch.compression().is_some() {
        return Err(shape("IPC-level compression is not used by Sluice"));
    }
    for node in batch.nodes().iter().flatten() {
        if !(0..=MAX_BATCH_ROWS).contains(&node.length())
            || !(0..=node.length()).contains(&node.null_count())
        {
            return Err(shape("field node length out of range"));
        }
    }
    for buffer in batch.buffers().iter().flatten() {
        let (offset, length) = (buffer.offset(), buffer.length());
        let end = offset.checked_add(length);
        if offset < 0 || length < 0 || end.is_none_or(|e| e as u64 > body_len) {
            return Err(shape("buffer outside the message body"));
        }
    }
    Ok(())
}
