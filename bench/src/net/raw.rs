//! The network's limit: a raw quinn bulk transfer over one connection (loopback or a
//! veth link), with the transport settings Sluice uses, but none of its protocol: the
//! sender writes shared 1 MiB chunks (no copy), the receiver counts and drops them.
//! Also tokio TCP, plain and under TLS 1.3, for reference.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sluice_transport::{tls, TransportTuning};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::path::NetPath;
use super::Setting;

use crate::BenchError as Error;

const CHUNK: usize = 1 << 20;
const SEND: u8 = 0;
const RECEIVE: u8 = 1;

/// Which way the bytes flow: as a push (client to server) or as a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Push,
    Fetch,
}

/// A self-signed identity and the quinn configurations of both ends.
struct Ends {
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
}

fn identity() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), Error> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der())?;
    Ok((cert.cert.der().clone(), key))
}

fn ends(setting: &Setting) -> Result<Ends, Error> {
    let (cert_der, key) = identity()?;
    // The tuning, plus the knobs only this benchmark turns.
    let transport = |tuning: &TransportTuning| {
        let mut t = tuning.transport_config();
        if let Some(threshold) = setting.ack_eliciting_threshold {
            let mut ack = quinn::AckFrequencyConfig::default();
            ack.ack_eliciting_threshold(threshold.into());
            t.ack_frequency_config(Some(ack));
        }
        if setting.bbr {
            t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
        Arc::new(t)
    };
    let crypto = tls::server_crypto(vec![cert_der.clone()], key, b"bulk")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport(&setting.server));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let crypto = tls::client_crypto(roots, b"bulk")?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport(&setting.client));
    Ok(Ends { server, client })
}

/// One measured transfer: its rate, and what the client's connection saw of the path.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Stream bytes per second.
    pub gbps: f64,
    /// UDP payload bytes per second the client sent (push) or received (fetch): the
    /// stream bytes plus QUIC's headers, tags and retransmissions.
    pub udp_gbps: f64,
    /// The UDP payload size MTU discovery settled at.
    pub mtu: u16,
    /// Packets the client's end declared lost.
    pub lost_packets: u64,
}

/// Moves `bytes` (rounded down to a multiple of the setting's streams) over one
/// connection on that many concurrent streams; every stream's byte count is checked.
pub async fn quinn_transfer(
    path: &NetPath,
    setting: &Setting,
    bytes: u64,
    direction: Direction,
) -> Result<Transfer, Error> {
    let Ends { server, client } = ends(setting)?;
    let server_ep =
        path.server_side(|| setting.server.endpoint(path.server_bind(), Some(server)))??;
    let server_addr = server_ep.local_addr()?;
    let serving = tokio::spawn(serve(server_ep.clone()));
    let client_ep = setting.client.endpoint(path.client_bind(), None)?;
    let conn = client_ep
        .connect_with(client, server_addr, "localhost")?
        .await?;

    let streams = setting.streams;
    let chunk = Bytes::from((0..CHUNK).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>());
    let per_stream = bytes / streams as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (conn, chunk) = (conn.clone(), chunk.clone());
        tasks.push(tokio::spawn(async move {
            let (mut send, mut recv) = conn.open_bi().await?;
            let mut header = vec![if direction == Direction::Push {
                SEND
            } else {
                RECEIVE
            }];
            header.extend_from_slice(&per_stream.to_le_bytes());
            send.write_all(&header).await?;
            match direction {
                Direction::Push => {
                    write_bytes(&mut send, &chunk, per_stream).await?;
                    // The receiver's one-byte answer: every byte has arrived.
                    if recv.read_to_end(1).await? != b"k" {
                        return Err("the receiver counted a different length".into());
                    }
                }
                Direction::Fetch => {
                    send.finish()?;
                    let got = drain(&mut recv).await?;
                    if got != per_stream {
                        return Err(format!("received {got} of {per_stream} bytes").into());
                    }
                }
            }
            Ok::<_, Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let gbps = (per_stream * streams as u64) as f64 / 1e9 / secs;
    let stats = conn.stats();
    let udp = match direction {
        Direction::Push => stats.udp_tx.bytes,
        Direction::Fetch => stats.udp_rx.bytes,
    };
    conn.close(0u32.into(), b"done");
    client_ep.wait_idle().await;
    server_ep.close(0u32.into(), b"done");
    serving.abort();
    Ok(Transfer {
        gbps,
        udp_gbps: udp as f64 / 1e9 / secs,
        mtu: stats.path.current_mtu,
        lost_packets: stats.path.lost_packets,
    })
}

async fn serve(endpoint: Endpoint) -> Result<(), Error> {
    while let Some(incoming) = endpoint.accept().await {
        let conn = incoming.await?;
        tokio::spawn(serve_connection(conn));
    }
    Ok(())
}

async fn serve_connection(conn: Connection) -> Result<(), Error> {
    let chunk = Bytes::from(vec![0x5au8; CHUNK]);
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let chunk = chunk.clone();
        tokio::spawn(async move {
            let mut header = [0u8; 9];
            recv.read_exact(&mut header).await?;
            let len = u64::from_le_bytes(header[1..].try_into().expect("8 bytes"));
            if header[0] == SEND {
                let answer = if drain(&mut recv).await? == len {
                    b"k"
                } else {
                    b"x"
                };
                send.write_all(answer).await?;
                send.finish()?;
            } else {
                write_bytes(&mut send, &chunk, len).await?;
            }
            Ok::<_, Error>(())
        });
    }
    Ok(())
}

async fn write_bytes(send: &mut SendStream, chunk: &Bytes, mut left: u64) -> Result<(), Error> {
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        send.write_chunk(chunk.slice(..n)).await?;
        left -= n as u64;
    }
    send.finish()?;
    Ok(())
}

async fn drain(recv: &mut RecvStream) -> Result<u64, Error> {
    let mut got = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, false).await? {
        got += chunk.bytes.len() as u64;
    }
    Ok(got)
}

/// GB/s of moving `bytes` over one TCP connection, 1 MiB writes: plain, or under TLS
/// 1.3 with the same crypto as QUIC (rustls, ring, AES-128-GCM).
pub async fn tcp_transfer(path: &NetPath, bytes: u64, tls: bool) -> Result<f64, Error> {
    let listener = path.server_side(|| std::net::TcpListener::bind(path.server_bind()))??;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let (acceptor, connector) = if tls {
        let (acceptor, connector) = tls_ends()?;
        (Some(acceptor), Some(connector))
    } else {
        (None, None)
    };
    let receiver = tokio::spawn(async move {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        match acceptor {
            Some(a) => receive(a.accept(socket).await?).await,
            None => receive(socket).await,
        }
    });
    let socket = tokio::net::TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let start = Instant::now();
    match connector {
        Some(c) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            send(c.connect(name, socket).await?, bytes).await?
        }
        None => send(socket, bytes).await?,
    }
    let gbps = bytes as f64 / 1e9 / start.elapsed().as_secs_f64();
    let got = receiver.await??;
    if got != bytes {
        return Err(format!("received {got} of {bytes} bytes").into());
    }
    Ok(gbps)
}

fn tls_ends() -> Result<(tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector), Error> {
    let (cert_der, key) = identity()?;
    let server = tls::server_tls(vec![cert_der.clone()], key, b"bulk")?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let client = tls::client_tls(roots, b"bulk")?;
    Ok((
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    ))
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S, bytes: u64) -> Result<(), Error> {
    let chunk = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        socket.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    socket.shutdown().await?;
    let mut ack = [0u8; 1];
    socket.read_exact(&mut ack).await?;
    Ok(())
}

async fn receive<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S) -> Result<u64, Error> {
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        match socket.read(&mut buf).await? {
            0 => break,
            n => got += n as u64,
        }
    }
    socket.write_all(b"k").await?;
    socket.flush().await?;
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_byte_arrives_in_both_directions() {
        // 3 streams: the per-stream share is rounded and each stream's count checked.
        let path = NetPath::default();
        let mut setting = Setting::default_tuning();
        setting.streams = 3;
        for direction in [Direction::Push, Direction::Fetch] {
            let t = quinn_transfer(&path, &setting, 8 << 20, direction)
                .await
                .unwrap();
            assert!(t.gbps > 0.0 && t.mtu >= 1200, "{direction:?}: {t:?}");
        }
        setting.ack_eliciting_threshold = Some(10);
        quinn_transfer(&path, &setting, 8 << 20, Direction::Push)
            .await
            .unwrap();
        for tls in [false, true] {
            assert!(tcp_transfer(&path, 8 << 20, tls).await.unwrap() > 0.0);
        }
    }
}
