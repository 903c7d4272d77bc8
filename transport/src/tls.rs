//! TLS for QUIC: TLS 1.3 only, with ring, and the `sluice/1` ALPN on both ends.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

impl TlsError {
    fn of(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// The crypto both ends use: ring, TLS 1.3 only.
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Server crypto presenting `certs` (and no 0-RTT, which could be replayed).
pub fn server_crypto(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<QuicServerConfig, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::of)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::of)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.max_early_data_size = 0;
    QuicServerConfig::try_from(tls).map_err(TlsError::of)
}

/// Client crypto trusting exactly `roots`.
pub fn client_crypto(
    roots: rustls::RootCertStore,
    alpn: &[u8],
) -> Result<QuicClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::of)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    QuicClientConfig::try_from(tls).map_err(TlsError::of)
}
