//! The QUIC side of Sluice's protocol, one copy for the server, the client and the
//! benchmark: endpoints made with one [`TransportTuning`], the TLS 1.3 crypto both ends
//! use ([`tls`]), and framed stream I/O ([`read_message`], [`write_message`]) whose reads
//! never allocate ahead of the bytes that arrived by more than a bounded amount.
//!
//! It owns no protocol logic: what a frame holds and which message may come next are
//! `sluice-proto`'s (which stays free of I/O); what a request means is the server's and
//! the client's. Nothing here knows about applications, shuffles or storage.

mod frame;
pub mod tls;
mod tuning;

pub use frame::{read_message, read_message_reserved, write_message, FrameError};
pub use tuning::TransportTuning;
