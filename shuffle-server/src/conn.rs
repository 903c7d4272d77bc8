//! One QUIC connection: the handshake on its first stream, then one task per request
//! stream.
//!
//! Until the token is accepted a connection is *pending*: it counts against
//! `limits.max_pending_connections` (the accept loop refuses more at once), may open one
//! stream, may have 64 KiB of unread data in flight (the transport config's pre-auth
//! window) and its `Hello` may be at most [`HELLO_MAX_LEN`] bytes. The token raises the
//! stream count and the window to their configured values.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{Connection, RecvStream, SendStream, VarInt};
use sluice_proto::session::accept_hello;
use sluice_proto::{ErrorCode, Limits, Message, PROTOCOL_VERSION};

use crate::activity::Active;
use crate::allowance::ConnectionAllowance;
use crate::ctx::Ctx;
use crate::error::RequestError;
use crate::fetch::handle_fetch;
use crate::io::{write_message, FrameReader};
use crate::metrics as m;
use crate::push::handle_push;
use crate::replica::handle_replica;

/// How long a push waits for its commit acknowledgement to be received.
const ACK_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an error reply may take to be written before its stream is reset.
const ERROR_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `Hello` frame: a token, a version and a client name need no more.
pub(crate) const HELLO_MAX_LEN: u32 = 16 << 10;
/// Unread bytes a pending connection may have in flight, all streams together.
pub(crate) const PENDING_RECEIVE_WINDOW: u32 = 64 << 10;

/// Serves a connection until it closes. `pending` counts it until its token is
/// accepted (or it is refused).
pub(crate) async fn serve(ctx: Arc<Ctx>, incoming: quinn::Incoming, pending: Active) {
    let remote = incoming.remote_address();
    let deadline = Instant::now() + ctx.conn.handshake_timeout;
    let conn = match tokio::time::timeout_at(deadline.into(), incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "QUIC handshake failed");
            return;
        }
        Err(_) => {
            ctx.quiet_log
                .note(|suppressed| tracing::info!(%remote, suppressed, "QUIC handshake timed out"));
            return;
        }
    };
    // Counted from the token check on, so unauthenticated peers hold no slot.
    let active = match tokio::time::timeout_at(deadline.into(), handshake(&ctx, &conn)).await {
        Ok(Ok(active)) => active,
        Ok(Err((code, reason))) => {
            metrics::counter!(m::ERRORS, "kind" => code.name()).increment(1);
            tracing::info!(%remote, ?code, %reason, "connection refused");
            conn.close(VarInt::from(code.to_u16()), reason.as_bytes());
            return;
        }
        Err(_) => {
            ctx.quiet_log.note(|suppressed| {
                tracing::info!(%remote, suppressed, "no Hello before the handshake timeout")
            });
            conn.close(
                VarInt::from(ErrorCode::BadRequest.to_u16()),
                b"handshake timeout",
            );
            return;
        }
    };
    drop(pending);
    metrics::counter!(m::CONNECTIONS_ACCEPTED).increment(1);
    tracing::debug!(%remote, "connection ready");
    let frames = FrameReader {
        allowance: ConnectionAllowance::new(
            ctx.limits.max_frame_len,
            ctx.conn.memory,
            ctx.memory.clone(),
        ),
        limits: ctx.limits,
        stall: ctx.conn.stall_timeout,
    };
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let (ctx, frames) = (ctx.clone(), frames.clone());
                let stream = ctx.activity.streams.enter();
                tokio::spawn(async move {
                    serve_stream(ctx, frames, send, recv).await;
                    drop(stream);
                });
            }
            Err(e) => {
                tracing::debug!(%remote, error = %e, "connection closed");
                drop(active);
                return;
            }
        }
    }
}

/// The first stream must carry a valid `Hello`. Any refusal (a malformed frame, a
/// wrong token, a full server) is sent on that stream as a typed `Error` and returned,
/// so the caller closes the connection with it. On success the connection gets its
/// configured streams and window.
async fn handshake(ctx: &Ctx, conn: &Connection) -> Result<Active, (ErrorCode, String)> {
    let (mut send, mut recv) = conn
        .accept_bi()
        .await
        .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
    let hello_limits = Limits {
        max_frame_len: HELLO_MAX_LEN,
        ..ctx.limits
    };
    let hello = match sluice_transport::read_message(&mut recv, &hello_limits).await {
        Ok(Some(hello)) => Ok(hello),
        Ok(None) => Err((ErrorCode::BadRequest, "no Hello".to_string())),
        Err(e) => {
            let e = RequestError::from(e);
            Err((e.code(), e.to_string()))
        }
    };
    let verdict = hello.and_then(|hello| {
        accept_hello(&hello, &ctx.token)?;
        let (active, open) = ctx.activity.connections.enter_counted();
        if open > ctx.conn.max_connections {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "too many connections (limits.max_connections = {})",
                    ctx.conn.max_connections
                ),
            ));
        }
        Ok(active)
    });
    let reply = match &verdict {
        Ok(_) => {
            conn.set_max_concurrent_bi_streams(VarInt::from_u32(ctx.conn.max_streams));
            conn.set_receive_window(VarInt::from_u32(ctx.conn.receive_window));
            Message::HelloOk {
                version: PROTOCOL_VERSION,
                server: format!("sluice-server {}", env!("CARGO_PKG_VERSION")),
            }
        }
        Err((code, message)) => Message::error(*code, message.clone()),
    };
    let written = write_message(&mut send, &reply).await;
    let _ = send.finish();
    if verdict.is_err() {
        // Give the refusal a moment to reach the client before the connection closes.
        let _ = recv.stop(VarInt::from_u32(0));
        let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
    }
    let active = verdict?;
    written.map_err(|e| (e.code(), e.to_string()))?;
    Ok(active)
}

async fn serve_stream(
    ctx: Arc<Ctx>,
    frames: FrameReader,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let result = match frames.read(&mut recv).await {
        Ok(Some((first, charge))) => {
            drop(charge); // a request's opening is decoded: its frame is not needed
            dispatch(&ctx, &frames, first, &mut send, &mut recv).await
        }
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
    frames: &FrameReader,
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
            handle_push(ctx, frames, start, send, recv).await?;
            // The push counts as open until the client has its ack, so a drain that
            // ends with no open pushes never cuts an acknowledgement off.
            let _ = send.finish();
            let _ = tokio::time::timeout(ACK_DELIVERY_TIMEOUT, send.stopped()).await;
            Ok(())
        }
        Message::ReplicaStart(start) => {
            let _active = ctx.activity.pushes.enter();
            if ctx.activity.draining() {
                return Err(RequestError::Draining);
            }
            handle_replica(ctx, frames, start, send, recv).await?;
            let _ = send.finish();
            let _ = tokio::time::timeout(ACK_DELIVERY_TIMEOUT, send.stopped()).await;
            Ok(())
        }
        Message::FetchRequest(request) => {
            let started = Instant::now();
            handle_fetch(ctx, &frames.allowance, request, send).await?;
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
