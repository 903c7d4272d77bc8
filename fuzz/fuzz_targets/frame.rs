//! A byte stream read as a server reads a request stream: frame after frame, each
//! header checked against the limits before its body is taken. Every frame that
//! decodes must re-encode to exactly its own bytes (one encoding per message).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_proto::{encode_frame, FrameHeader, Limits, FRAME_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut rest = data;
    while rest.len() >= FRAME_HEADER_LEN {
        let head: [u8; FRAME_HEADER_LEN] = rest[..FRAME_HEADER_LEN].try_into().unwrap();
        let Ok(header) = FrameHeader::decode(head, &limits) else {
            return;
        };
        let len = header.body_len as usize;
        let body = &rest[FRAME_HEADER_LEN..];
        if body.len() < len {
            return; // a truncated frame: the reader reports end of stream
        }
        if let Ok(message) = header.decode_body(Bytes::copy_from_slice(&body[..len])) {
            assert_eq!(
                encode_frame(&message),
                &rest[..FRAME_HEADER_LEN + len],
                "{message:?} re-encodes differently"
            );
        }
        rest = &body[len..];
    }
});
