//! Framing: `[u32 body length][u8 message type][body]`, little-endian.

use bytes::{BufMut, Bytes};

use crate::message::Message;
use crate::{Limits, ProtoError};

/// Bytes in a frame header.
pub const FRAME_HEADER_LEN: usize = 5;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub body_len: u32,
}

impl FrameHeader {
    /// Decodes and checks a header against the limits: the body length is known to be
    /// acceptable before the caller allocates for it.
    pub fn decode(bytes: [u8; FRAME_HEADER_LEN], limits: &Limits) -> Result<Self, ProtoError> {
        let body_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if body_len > limits.max_frame_len {
            return Err(ProtoError::FrameTooLarge {
                len: body_len,
                limit: limits.max_frame_len,
            });
        }
        Ok(Self {
            kind: bytes[4],
            body_len,
        })
    }

    /// Decodes the frame body that follows this header.
    pub fn decode_body(&self, body: Bytes) -> Result<Message, ProtoError> {
        Message::decode(self.kind, body)
    }
}

/// Encodes a message as a complete frame.
pub fn encode_frame(message: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + message.encoded_len_hint());
    out.put_u32_le(0);
    out.put_u8(message.kind() as u8);
    message.encode_body(&mut out);
    let body_len = (out.len() - FRAME_HEADER_LEN) as u32;
    out[..4].copy_from_slice(&body_len.to_le_bytes());
    out
}
