//! The server's end of framed streams (the I/O itself is `sluice-transport`'s).

use quinn::{RecvStream, SendStream};
use sluice_proto::{Limits, Message};
use sluice_transport::FrameError;

use crate::error::RequestError;

impl From<FrameError> for RequestError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Proto(e) => Self::Proto(e),
            other => Self::Stream(other.to_string()),
        }
    }
}

/// Reads one frame. `Ok(None)` if the stream ended cleanly before a frame began.
pub(crate) async fn read_message(
    recv: &mut RecvStream,
    limits: &Limits,
) -> Result<Option<Message>, RequestError> {
    Ok(sluice_transport::read_message(recv, limits).await?)
}

/// Writes one message; a bulk payload goes out without being copied into the frame.
pub(crate) async fn write_message(
    send: &mut SendStream,
    msg: &Message,
) -> Result<(), RequestError> {
    Ok(sluice_transport::write_message(send, msg).await?)
}
