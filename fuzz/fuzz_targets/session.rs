//! Frames fed to the protocol's state machines: the server's push session, the
//! client's fetch session and the handshake check. Any order of any messages must give
//! steps or typed errors, and a fetch session that reports done must have seen totals
//! equal to what arrived (the session checks them itself).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_proto::session::{accept_hello, FetchSession, PushSession};
use sluice_proto::{FrameHeader, Limits, Message, FRAME_HEADER_LEN};

fn messages(mut rest: &[u8]) -> Vec<Message> {
    let limits = Limits::default();
    let mut out = Vec::new();
    while rest.len() >= FRAME_HEADER_LEN {
        let head: [u8; FRAME_HEADER_LEN] = rest[..FRAME_HEADER_LEN].try_into().unwrap();
        let Ok(header) = FrameHeader::decode(head, &limits) else {
            break;
        };
        let body = &rest[FRAME_HEADER_LEN..];
        let len = (header.body_len as usize).min(body.len());
        if let Ok(m) = header.decode_body(Bytes::copy_from_slice(&body[..len])) {
            out.push(m);
        }
        rest = &body[len..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let messages = messages(rest);
    let mut push = PushSession::new(1 + u32::from(selector) * 1000);
    let start = u32::from(selector % 8);
    let mut fetch = FetchSession::new(start, start + u32::from(selector >> 3));
    for m in messages {
        let _ = accept_hello(&m, b"cluster-token");
        let _ = push.on_message(m.clone());
        let _ = fetch.on_message(m);
    }
});
