//! One QUIC connection: the handshake on its first stream, then one task per request
//! stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Connection, RecvStream, SendStream, VarInt};
use sluice_proto::session::accept_hello;
use sluice_proto::{ErrorCode, Message, PROTOCOL_VERSION};

use crate::activity::Active;
use crate::ctx::Ctx;
use crate::error::RequestError;
use crate::fetch::handle_fetch;
use crate::io::{read_message, write_message};
use crate::metrics as m;
use crate::push::handle_push;

/// How long a push waits for its commit acknowledgement to be received.
const ACK_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an error reply may take to be written before its stream is reset.
const ERROR_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves a connection until it closes.
pub(crate) async fn serve(ctx: Arc<Ctx>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
    };
    let timeout = ctx.handshake_timeout;
    // Counted from the token check on, so unauthenticated peers hold no slot.
    let _active = match tokio::time::timeout(timeout, handshake(&ctx, &conn)).await {
        Ok(Ok(active)) => active,
        Ok(Err((code, reason))) => {
            metrics::counter!(m::ERRORS, "kind" => code.name()).increment(1);
            tracing::info!(%remote, ?code, %reason, "connection refused");
            conn.close(VarInt::from(code.to_u16()), reason.as_bytes());
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "handshake timed out");
            conn.close(
                VarInt::from(ErrorCode::BadRequest.to_u16()),
                b"handshake timeout",
            );
            return;
        }
    };
    metrics::counter!(m::CONNECTIONS_ACCEPTED).increment(1);
    tracing::debug!(%remote, "connection ready");
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let ctx = ctx.clone();
                let active = ctx.activity.streams.enter();
                tokio::spawn(async move {
                    serve_stream(ctx, send, recv).await;
                    drop(active);
                });
            }
            Err(e) => {
                tracing::debug!(%remote, error = %e, "connection closed");
                return;
            }
        }
    }
}

/// The first stream must carry a valid `Hello`. On refusal the reason is sent on that
/// stream and returned, so the caller closes the connection with it.
async fn handshake(ctx: &Ctx, conn: &Connection) -> Result<Active, (ErrorCode, String)> {
    let io = |e: RequestError| (e.code(), e.to_string());
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
    let hello = read_message(&mut recv, &ctx.limits)
        .await
        .map_err(io)?
        .ok_or((ErrorCode::BadRequest, "no Hello".to_string()))?;
    let verdict = accept_hello(&hello, &ctx.token).and_then(|()| {
        let (active, open) = ctx.activity.connections.enter_counted();
        if open > ctx.max_connections {
            Err((
                ErrorCode::LimitExceeded,
                format!(
                    "too many connections (limits.max_connections = {})",
                    ctx.max_connections
                ),
            ))
        } else {
            Ok(active)
        }
    });
    let reply = match &verdict {
        Ok(_) => Message::HelloOk {
            version: PROTOCOL_VERSION,
            server: format!("sluice-server {}", env!("CARGO_PKG_VERSION")),
        },
        Err((code, message)) => Message::error(*code, message.clone()),
    };
    write_message(&mut send, &reply).await.map_err(io)?;
    let _ = send.finish();
    if verdict.is_err() {
        // Give the refusal a moment to reach the client before the connection closes.
        let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
    }
    verdict
}

async fn serve_stream(ctx: Arc<Ctx>, mut send: SendStream, mut recv: RecvStream) {
    let result = match read_message(&mut recv, &ctx.limits).await {
        Ok(Some(first)) => dispatch(&ctx, first, &mut send, &mut recv).await,
        Ok(None) => return,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        let code = e.code();
        metrics::counter!(m::ERRORS, "kind" => code.name()).increment(1);
        match code {
            ErrorCode::Internal | ErrorCode::Storage => {
                tracing::warn!(error = %e, "request failed")
            }
            _ => tracing::debug!(error = %e, "request refused"),
        }
        let reply = Message::error(code, e.to_string());
        // A reader that stalled would stall the error too: reset instead. Any other
        // error reply gets a bounded wait for the same reason.
        let delivered = !matches!(e, RequestError::Stalled(_))
            && tokio::time::timeout(ERROR_DELIVERY_TIMEOUT, write_message(&mut send, &reply))
                .await
                .is_ok();
        if !delivered {
            let _ = send.reset(VarInt::from(code.to_u16()));
        }
        // Whatever the client still sends on this stream is not read.
        let _ = recv.stop(VarInt::from(code.to_u16()));
    }
    let _ = send.finish();
}

async fn dispatch(
    ctx: &Arc<Ctx>,
    first: Message,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Result<(), RequestError> {
    match first {
        Message::RegisterApp { app, secret } => {
            // Writes the app's metadata file (fsync'ed in fsync mode): off the runtime.
            let c = ctx.clone();
            tokio::task::spawn_blocking(move || c.registry.register(app, secret))
                .await
                .map_err(|e| RequestError::Internal(e.to_string()))??;
            write_message(send, &Message::Ok).await
        }
        Message::PushStart(start) => {
            // Counted before the check, so a drain that saw no pushes sees this one
            // refused.
            let _active = ctx.activity.pushes.enter();
            if ctx.activity.draining() {
                return Err(RequestError::Draining);
            }
            handle_push(ctx, start, send, recv).await?;
            // The push counts as open until the client has its ack, so a drain that
            // ends with no open pushes never cuts an acknowledgement off.
            let _ = send.finish();
            let _ = tokio::time::timeout(ACK_DELIVERY_TIMEOUT, send.stopped()).await;
            Ok(())
        }
        Message::FetchRequest(request) => {
            let started = Instant::now();
            handle_fetch(ctx, request, send).await?;
            metrics::counter!(m::FETCHES).increment(1);
            metrics::histogram!(m::FETCH_SECONDS).record(started.elapsed());
            Ok(())
        }
        Message::DeleteShuffle {
            app,
            secret,
            shuffle_id,
        } => {
            let app = ctx.registry.app(&app, &secret)?;
            if let Some(shuffle) = app.remove_shuffle(shuffle_id)? {
                tokio::task::spawn_blocking(move || shuffle.delete_files())
                    .await
                    .map_err(|e| RequestError::Internal(e.to_string()))??;
            }
            write_message(send, &Message::Ok).await
        }
        Message::DeleteApp { app, secret } => {
            let app = ctx.registry.remove_app(&app, &secret)?;
            tokio::task::spawn_blocking(move || app.delete_files())
                .await
                .map_err(|e| RequestError::Internal(e.to_string()))??;
            write_message(send, &Message::Ok).await
        }
        other => Err(RequestError::Proto(sluice_proto::ProtoError::Unexpected {
            got: other.kind(),
            state: "awaiting a request",
        })),
    }
}
