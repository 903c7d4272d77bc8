//! Moving frames over quinn streams. All decoding is in sluice-proto.

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use sluice_proto::{FrameHeader, Limits, Message, FRAME_HEADER_LEN};

use crate::error::RequestError;

/// Most bytes a frame's buffer is allocated ahead of what has arrived (frames up to
/// this size are read into one allocation).
const BODY_AHEAD: usize = 4 << 20;

/// Reads one frame. `Ok(None)` if the stream ended cleanly before a frame began.
pub(crate) async fn read_message(
    recv: &mut RecvStream,
    limits: &Limits,
) -> Result<Option<Message>, RequestError> {
    let mut head = [0u8; FRAME_HEADER_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(RequestError::Stream(e.to_string())),
    }
    // The length is checked against the limit, and the buffer then grows with the
    // bytes that arrive: a client that announces a large frame and sends little makes
    // the server hold at most `BODY_AHEAD` bytes more than it sent.
    let header = FrameHeader::decode(head, limits)?;
    let len = header.body_len as usize;
    let mut body = Vec::with_capacity(len.min(BODY_AHEAD));
    while body.len() < len {
        match recv.read_chunk(len - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(RequestError::Stream(format!(
                    "stream ended {} bytes into a {len}-byte frame",
                    body.len()
                )))
            }
            Err(e) => return Err(RequestError::Stream(e.to_string())),
        }
    }
    Ok(Some(header.decode_body(Bytes::from(body))?))
}

/// Writes one message; a bulk payload goes out without being copied into the frame.
pub(crate) async fn write_message(
    send: &mut SendStream,
    msg: &Message,
) -> Result<(), RequestError> {
    let head = msg.encode_head();
    let result = match msg.trailing_payload() {
        Some(payload) => {
            let mut chunks = [Bytes::from(head), payload.clone()];
            send.write_all_chunks(&mut chunks).await
        }
        None => send.write_all(&head).await,
    };
    result.map_err(|e| RequestError::Stream(e.to_string()))
}
