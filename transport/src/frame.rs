//! Frames over quinn streams, the same for both ends. Decoding is `sluice-proto`'s.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use sluice_proto::{FrameHeader, Limits, Message, ProtoError, FRAME_HEADER_LEN};

/// Most bytes a frame's buffer is allocated ahead of what has arrived: a peer that
/// announces a large frame and sends little makes the reader hold at most this much
/// more than it sent.
const BODY_AHEAD: usize = 4 << 20;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not a valid frame (too large, unknown type, malformed body).
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("connection lost: {0}")]
    ConnectionLost(quinn::ConnectionError),
    /// The peer reset the stream with this application error code.
    #[error("stream reset by the peer (code {0})")]
    Reset(u64),
    #[error("stream ended {read} bytes into a {len}-byte frame")]
    EndedMidFrame { read: usize, len: usize },
    /// No byte of a frame in progress arrived for this long.
    #[error("no byte of a {len}-byte frame arrived for {after:?} ({read} read)")]
    Stalled {
        read: usize,
        len: usize,
        after: Duration,
    },
    /// Anything else a stream can report (closed, stopped, 0-RTT refused).
    #[error("stream: {0}")]
    Stream(String),
}

impl From<quinn::ReadError> for FrameError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => Self::ConnectionLost(c),
            quinn::ReadError::Reset(code) => Self::Reset(code.into_inner()),
            other => Self::Stream(other.to_string()),
        }
    }
}

impl From<quinn::WriteError> for FrameError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => Self::ConnectionLost(c),
            quinn::WriteError::Stopped(code) => Self::Reset(code.into_inner()),
            other => Self::Stream(other.to_string()),
        }
    }
}

/// Reads one frame. `Ok(None)` if the stream ended cleanly before a frame began. The
/// length is checked against `limits` before anything is allocated, and the body's
/// buffer then grows with the bytes that arrive (at most [`BODY_AHEAD`] ahead).
pub async fn read_message(
    recv: &mut RecvStream,
    limits: &Limits,
) -> Result<Option<Message>, FrameError> {
    let Some(header) = read_header(recv, limits).await? else {
        return Ok(None);
    };
    let len = header.body_len as usize;
    let mut body = Vec::with_capacity(len.min(BODY_AHEAD));
    read_body(recv, &mut body, len, None).await?;
    Ok(Some(header.decode_body(Bytes::from(body))?))
}

/// Reads one frame whose bytes are first reserved: once the header passed `limits`,
/// `reserve(len)` is awaited (it may wait for room) before any of the body is read, and
/// its result comes back with the message, to be dropped when the message's bytes are
/// no longer held. The body is then read into one allocation of exactly its length. A
/// frame whose bytes stop arriving for `stall` fails with [`FrameError::Stalled`].
pub async fn read_message_reserved<R, Fut>(
    recv: &mut RecvStream,
    limits: &Limits,
    stall: Duration,
    reserve: impl FnOnce(u32) -> Fut,
) -> Result<Option<(Message, R)>, FrameError>
where
    Fut: Future<Output = Result<R, FrameError>>,
{
    let Some(header) = read_header(recv, limits).await? else {
        return Ok(None);
    };
    let reservation = reserve(header.body_len).await?;
    let len = header.body_len as usize;
    let mut body = Vec::with_capacity(len);
    read_body(recv, &mut body, len, Some(stall)).await?;
    Ok(Some((header.decode_body(Bytes::from(body))?, reservation)))
}

async fn read_header(
    recv: &mut RecvStream,
    limits: &Limits,
) -> Result<Option<FrameHeader>, FrameError> {
    let mut head = [0u8; FRAME_HEADER_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => Ok(Some(FrameHeader::decode(head, limits)?)),
        Err(quinn::ReadExactError::FinishedEarly(0)) => Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(read)) => Err(FrameError::EndedMidFrame {
            read,
            len: FRAME_HEADER_LEN,
        }),
        Err(quinn::ReadExactError::ReadError(e)) => Err(e.into()),
    }
}

/// Appends the `len` bytes of a frame's body to `body`, each chunk within `stall`.
async fn read_body(
    recv: &mut RecvStream,
    body: &mut Vec<u8>,
    len: usize,
    stall: Option<Duration>,
) -> Result<(), FrameError> {
    while body.len() < len {
        let chunk = recv.read_chunk(len - body.len(), true);
        let chunk = match stall {
            Some(after) => {
                tokio::time::timeout(after, chunk)
                    .await
                    .map_err(|_| FrameError::Stalled {
                        read: body.len(),
                        len,
                        after,
                    })?
            }
            None => chunk.await,
        };
        match chunk? {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                return Err(FrameError::EndedMidFrame {
                    read: body.len(),
                    len,
                })
            }
        }
    }
    Ok(())
}

/// Writes one message; a bulk payload goes out without being copied into the frame.
pub async fn write_message(send: &mut SendStream, msg: &Message) -> Result<(), FrameError> {
    let head = msg.encode_head();
    match msg.trailing_payload() {
        Some(payload) => {
            let mut chunks = [Bytes::from(head), payload.clone()];
            send.write_all_chunks(&mut chunks).await?;
        }
        None => send.write_all(&head).await?,
    }
    Ok(())
}
