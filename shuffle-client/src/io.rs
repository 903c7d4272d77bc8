//! The client's end of framed streams (the I/O itself is `sluice-transport`'s).

use quinn::RecvStream;
use sluice_proto::{ErrorCode, Limits, Message};
use sluice_transport::FrameError;

use crate::error::ClientError;

pub(crate) use sluice_transport::read_message;

impl From<FrameError> for ClientError {
    /// A stream the server reset carries its error code: the server resets instead of
    /// replying when the reply cannot get through (e.g. to a reader that stalled).
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Proto(e) => Self::Proto(e),
            FrameError::ConnectionLost(c) => Self::connection(c),
            FrameError::Reset(code) => match u16::try_from(code) {
                Ok(code) if code != 0 => Self::Server {
                    code: ErrorCode::from_u16(code),
                    message: "the server reset the stream".into(),
                },
                _ => Self::Stream(format!("stream reset by the server ({code})")),
            },
            other => Self::Stream(other.to_string()),
        }
    }
}

pub(crate) async fn write_message(
    send: &mut quinn::SendStream,
    msg: &Message,
) -> Result<(), ClientError> {
    Ok(sluice_transport::write_message(send, msg).await?)
}

/// Reads the single reply of a request stream, turning `Error` into `ClientError::Server`.
pub(crate) async fn read_reply(
    recv: &mut RecvStream,
    limits: &Limits,
) -> Result<Message, ClientError> {
    match read_message(recv, limits).await? {
        Some(Message::Error { code, message }) => Err(ClientError::Server { code, message }),
        Some(reply) => Ok(reply),
        None => Err(ClientError::Stream(
            "server closed the stream without a reply".into(),
        )),
    }
}
