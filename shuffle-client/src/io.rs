use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use sluice_proto::{ErrorCode, FrameHeader, Limits, Message, FRAME_HEADER_LEN};

use crate::error::ClientError;

/// Reads one frame; `Ok(None)` if the stream ended before a frame began.
pub(crate) async fn read_message(
    recv: &mut RecvStream,
    limits: &Limits,
) -> Result<Option<Message>, ClientError> {
    let mut head = [0u8; FRAME_HEADER_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(read_error(e)),
    }
    let header = FrameHeader::decode(head, limits)?;
    let mut body = vec![0u8; header.body_len as usize];
    recv.read_exact(&mut body).await.map_err(read_error)?;
    Ok(Some(header.decode_body(Bytes::from(body))?))
}

/// A failed read as a typed error: a stream the server reset carries its error code
/// (it resets instead of replying when the reply could not get through, e.g. to a
/// reader that stalled).
fn read_error(e: quinn::ReadExactError) -> ClientError {
    match e {
        quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e)) => {
            ClientError::connection(e)
        }
        quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code)) => {
            match u16::try_from(code.into_inner()) {
                Ok(code) if code != 0 => ClientError::Server {
                    code: ErrorCode::from_u16(code),
                    message: "the server reset the stream".into(),
                },
                _ => ClientError::Stream(format!("stream reset by the server ({code})")),
            }
        }
        e => ClientError::Stream(e.to_string()),
    }
}

pub(crate) async fn write_message(send: &mut SendStream, msg: &Message) -> Result<(), ClientError> {
    let head = msg.encode_head();
    let result = match msg.trailing_payload() {
        Some(payload) => {
            let mut chunks = [Bytes::from(head), payload.clone()];
            send.write_all_chunks(&mut chunks).await
        }
        None => send.write_all(&head).await,
    };
    result.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(c) => ClientError::connection(c),
        other => ClientError::Stream(other.to_string()),
    })
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
