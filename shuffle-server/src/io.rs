//! The server's end of framed streams (the I/O itself is `sluice-transport`'s).

use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use sluice_proto::{Limits, Message};
use sluice_transport::FrameError;

use crate::allowance::{ConnectionAllowance, FrameCharge};
use crate::error::RequestError;

impl From<FrameError> for RequestError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Proto(e) => Self::Proto(e),
            e @ FrameError::Stalled { .. } => {
                Self::Limit(format!("{e} (limits.stall_timeout); stream reset"))
            }
            other => Self::Stream(other.to_string()),
        }
    }
}

/// Writes one message; a bulk payload goes out without being copied into the frame.
pub(crate) async fn write_message(
    send: &mut SendStream,
    msg: &Message,
) -> Result<(), RequestError> {
    Ok(sluice_transport::write_message(send, msg).await?)
}

/// How a connection's request streams read frames: each frame reserved whole from the
/// connection's allowance before its body is read, and its bytes arriving within the
/// stall timeout.
#[derive(Debug, Clone)]
pub(crate) struct FrameReader {
    pub allowance: Arc<ConnectionAllowance>,
    pub limits: Limits,
    pub stall: Duration,
}

impl FrameReader {
    /// Reads one frame and the charge that holds its bytes. `Ok(None)` if the stream
    /// ended cleanly before a frame began.
    pub async fn read(
        &self,
        recv: &mut RecvStream,
    ) -> Result<Option<(Message, FrameCharge)>, RequestError> {
        let allowance = &self.allowance;
        let reserve = |len| async move { Ok(allowance.reserve_frame(len).await) };
        Ok(
            sluice_transport::read_message_reserved(recv, &self.limits, self.stall, reserve)
                .await?,
        )
    }
}
