//! A client for the admin endpoint: what `sluice-server status` and `delete-app` use.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// An admin request that got no HTTP reply.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("connecting to the admin endpoint {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin endpoint {addr}: {message}")]
    Http { addr: SocketAddr, message: String },
    #[error("admin endpoint {addr}: no reply within {0:?}", TIMEOUT)]
    Timeout { addr: SocketAddr },
}

/// An HTTP reply: status code and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminReply {
    pub status: u16,
    pub body: String,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request (`token`, if given, as a bearer token) and reads the whole reply.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Result<AdminReply, AdminClientError> {
    tokio::time::timeout(TIMEOUT, exchange(addr, method, path, token))
        .await
        .map_err(|_| AdminClientError::Timeout { addr })?
}

async fn exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Result<AdminReply, AdminClientError> {
    let http = |e: &dyn std::fmt::Display| AdminClientError::Http {
        addr,
        message: e.to_string(),
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| AdminClientError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(&e))?;
    let driver = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string());
    if let Some(token) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| http(&e))?;
    let reply = sender.send_request(req).await.map_err(|e| http(&e))?;
    let status = reply.status().as_u16();
    let body = reply
        .into_body()
        .collect()
        .await
        .map_err(|e| http(&e))?
        .to_bytes();
    driver.abort();
    Ok(AdminReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
