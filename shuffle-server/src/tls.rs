//! TLS for the QUIC endpoint: a configured certificate, or a self-signed one generated
//! on first start and kept in the data directory.

use std::fs;
use std::path::Path;

use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ServerConfig;
use crate::error::StartError;

/// The certificate chain and key the server presents.
pub(crate) struct Identity {
    /// The chain as PEM text, for clients to pin.
    pub cert_pem: String,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn read(path: &Path) -> Result<Vec<u8>, StartError> {
    fs::read(path).map_err(|source| StartError::Io {
        what: "reading",
        path: path.to_path_buf(),
        source,
    })
}

fn parse_pem(cert_pem: &[u8], key_pem: &[u8], origin: &Path) -> Result<Identity, StartError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Tls(format!("certificate in {}: {e}", origin.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "no certificate in {}",
            origin.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| StartError::Tls(format!("private key for {}: {e}", origin.display())))?;
    let cert_pem = String::from_utf8_lossy(cert_pem).into_owned();
    Ok(Identity {
        cert_pem,
        certs,
        key,
    })
}

/// Loads the configured identity, or the generated one from `<data_dir>/tls/`
/// (generating it if absent).
pub(crate) fn load_identity(config: &ServerConfig) -> Result<Identity, StartError> {
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        return parse_pem(&read(cert)?, &read(key)?, cert);
    }
    let dir = config.data_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return parse_pem(&read(&cert_path)?, &read(&key_path)?, &cert_path);
    }
    let generated = rcgen::generate_simple_self_signed(config.tls.server_names.clone())
        .map_err(|e| StartError::Tls(format!("generating a certificate: {e}")))?;
    let cert_pem = generated.cert.pem();
    let key_pem = generated.signing_key.serialize_pem();
    write_private(&dir, &key_path, key_pem.as_bytes())?;
    write_private(&dir, &cert_path, cert_pem.as_bytes())?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate");
    parse_pem(cert_pem.as_bytes(), key_pem.as_bytes(), &cert_path)
}

fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what| {
        move |source| StartError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    fs::create_dir_all(dir).map_err(io("creating directory"))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("creating"))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io("writing"))
}

/// QUIC server crypto: TLS 1.3 with the `sluice/1` ALPN.
pub(crate) fn quic_server_config(identity: Identity) -> Result<QuicServerConfig, StartError> {
    sluice_transport::tls::server_crypto(identity.certs, identity.key, sluice_proto::ALPN)
        .map_err(|e| StartError::Tls(e.to_string()))
}
