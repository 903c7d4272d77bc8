//! The HTTP admin endpoint (localhost by default):
//! - `GET /metrics`: Prometheus text format;
//! - `GET /status`: JSON [`Status`];
//! - `GET /healthz`: 200, or 503 while draining (so load balancers stop routing);
//! - `DELETE /apps/<app>` with `Authorization: Bearer <admin token>`: removes an
//!   application and its files.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sluice_proto::AppId;
use tokio::net::TcpListener;

use crate::ctx::Ctx;
use crate::metrics as m;
use crate::status::Status;

type Reply = Response<Full<Bytes>>;

/// Serves admin requests until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<Ctx>, token: Arc<Vec<u8>>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (ctx, token) = (ctx.clone(), token.clone());
        let service = hyper::service::service_fn(move |req| {
            let (ctx, token) = (ctx.clone(), token.clone());
            async move { Ok::<_, Infallible>(route(&ctx, &token, req).await) }
        });
        tokio::spawn(async move {
            // A client that trickles its headers is dropped rather than held open.
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
}

async fn route(ctx: &Arc<Ctx>, token: &[u8], req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => metrics(ctx),
        (&Method::GET, "/status") => {
            // Reads every shuffle's partition table: off the runtime's threads.
            let c = ctx.clone();
            match tokio::task::spawn_blocking(move || Status::of(&c)).await {
                Ok(status) => json(StatusCode::OK, &status),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        (&Method::GET, "/healthz") if ctx.activity.draining() => {
            text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::DELETE, p) if p.starts_with("/apps/") => {
            delete_app(ctx, token, &req, &p["/apps/".len()..]).await
        }
        (_, "/metrics" | "/status" | "/healthz") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn metrics(ctx: &Ctx) -> Reply {
    let Some(handle) = m::prometheus() else {
        return text(
            StatusCode::NOT_FOUND,
            "metrics go to the embedding program's own recorder\n",
        );
    };
    refresh_gauges(ctx);
    let mut reply = text(StatusCode::OK, handle.render());
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    reply
}

/// Sets the state gauges from the live server.
fn refresh_gauges(ctx: &Ctx) {
    let quota = ctx.registry.disk_quota();
    let apps = ctx.registry.apps();
    let shuffles: usize = apps.iter().map(|a| a.shuffle_count()).sum();
    metrics::gauge!(m::MEMORY_USED).set(ctx.memory.used() as f64);
    metrics::gauge!(m::MEMORY_BUDGET).set(ctx.memory.limit() as f64);
    metrics::gauge!(m::DISK_USED).set(quota.used() as f64);
    if let Some(limit) = quota.limit() {
        metrics::gauge!(m::DISK_QUOTA).set(limit as f64);
    }
    metrics::gauge!(m::CONNECTIONS_ACTIVE).set(ctx.activity.connections.get() as f64);
    metrics::gauge!(m::CONNECTIONS_PENDING).set(ctx.activity.pending.get() as f64);
    metrics::gauge!(m::STREAMS_ACTIVE).set(ctx.activity.streams.get() as f64);
    metrics::gauge!(m::PUSHES_ACTIVE).set(ctx.activity.pushes.get() as f64);
    metrics::gauge!(m::APPS).set(apps.len() as f64);
    metrics::gauge!(m::SHUFFLES).set(shuffles as f64);
    metrics::gauge!(m::DRAINING).set(if ctx.activity.draining() { 1.0 } else { 0.0 });
    let stages = sluice_stages::snapshot();
    for (stage, secs) in sluice_stages::Stage::ALL.iter().zip(stages) {
        metrics::gauge!(m::STAGE_CPU, "stage" => stage.name()).set(secs);
    }
    metrics::gauge!(m::INFO, "version" => env!("CARGO_PKG_VERSION"), "backend" => ctx.backend.name())
        .set(1.0);
}

async fn delete_app(ctx: &Arc<Ctx>, token: &[u8], req: &Request<Incoming>, id: &str) -> Reply {
    let presented = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => return text(StatusCode::UNAUTHORIZED, "admin token required\n"),
        Some(t) if !sluice_proto::session::secrets_match(t.as_bytes(), token) => {
            return text(StatusCode::FORBIDDEN, "wrong admin token\n")
        }
        Some(_) => {}
    }
    let id = match AppId::new(id) {
        Ok(id) => id,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let Some(app) = ctx.registry.remove_app_unchecked(&id) else {
        return text(StatusCode::NOT_FOUND, format!("unknown application {id}\n"));
    };
    tracing::info!(app = %id, "application deleted by the admin endpoint");
    match tokio::task::spawn_blocking(move || app.delete_files()).await {
        Ok(Ok(())) => text(StatusCode::OK, format!("deleted {id}\n")),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body.into())));
    *reply.status_mut() = status;
    reply
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut reply = Response::new(Full::new(Bytes::from(body)));
            *reply.status_mut() = status;
            reply.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            reply
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
