use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sluice_format::DecodeLimits;
use sluice_proto::Limits;

use crate::error::ClientError;
use sluice_transport::TransportTuning;

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The server's own certificate (PEM), pinned: typically the self-signed one the
    /// server generated in its data directory.
    PinnedPem(String),
    /// A file of PEM CA certificates (or the pinned server certificate itself).
    CaFile(PathBuf),
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub trust: Trust,
    /// The cluster token.
    pub token: Vec<u8>,
    /// Name the server's certificate must be valid for.
    pub server_name: String,
    /// Frame limits; `max_frame_len` also bounds the size of one pushed batch frame, so
    /// it must not exceed the server's.
    pub limits: Limits,
    pub decode_limits: DecodeLimits,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Name reported to the server in the handshake.
    pub client_name: String,
    /// UDP socket, segmentation offload, datagram size and flow-control windows.
    pub transport: TransportTuning,
}

impl ClientConfig {
    pub fn new(trust: Trust, token: impl Into<Vec<u8>>) -> Self {
        Self {
            trust,
            token: token.into(),
            server_name: "localhost".into(),
            limits: Limits {
                max_frame_len: 16 << 20,
                ..Limits::default()
            },
            decode_limits: DecodeLimits::default(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            client_name: format!("sluice-client {}", env!("CARGO_PKG_VERSION")),
            transport: TransportTuning::CLIENT,
        }
    }

    /// The quinn client configuration (TLS trust, ALPN, transport) this config describes,
    /// for callers that drive their own endpoint.
    pub fn quic_client_config(&self) -> Result<quinn::ClientConfig, ClientError> {
        let pem = match &self.trust {
            Trust::PinnedPem(pem) => pem.as_bytes().to_vec(),
            Trust::CaFile(path) => std::fs::read(path)
                .map_err(|e| ClientError::Tls(format!("reading {}: {e}", path.display())))?,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ClientError::Tls(format!("bad certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("unusable certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Tls("no certificate to trust".into()));
        }
        let crypto = sluice_transport::tls::client_crypto(roots, sluice_proto::ALPN)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = self.transport.transport_config();
        transport.max_idle_timeout(self.idle_timeout.try_into().ok());
        transport.keep_alive_interval(Some(self.idle_timeout / 4));
        config.transport_config(Arc::new(transport));
        Ok(config)
    }
}
