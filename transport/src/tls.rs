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

/// The TLS 1.3 server config presenting `certs` (and no 0-RTT, which could be
/// replayed); also what the benchmark's TCP + TLS reference runs with.
pub fn server_tls(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::of)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::of)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.max_early_data_size = 0;
    Ok(tls)
}

/// The TLS 1.3 client config trusting exactly `roots`.
pub fn client_tls(
    roots: rustls::RootCertStore,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::of)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}

/// Server crypto for QUIC (see [`server_tls`]).
pub fn server_crypto(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[u8],
) -> Result<QuicServerConfig, TlsError> {
    QuicServerConfig::try_from(server_tls(certs, key, alpn)?).map_err(TlsError::of)
}

/// Client crypto for QUIC (see [`client_tls`]).
pub fn client_crypto(
    roots: rustls::RootCertStore,
    alpn: &[u8],
) -> Result<QuicClientConfig, TlsError> {
    QuicClientConfig::try_from(client_tls(roots, alpn)?).map_err(TlsError::of)
}
