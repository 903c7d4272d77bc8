//! The network's limit: a raw quinn bulk transfer over one connection on loopback, with
//! the transport settings Sluice uses, but none of its protocol: the sender writes
//! shared 1 MiB chunks (no copy), the receiver counts and drops them. Also plain tokio
//! TCP (no encryption), for reference.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use sluice_transport::{tls, TransportTuning};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

fn ends(server_tuning: &TransportTuning, client_tuning: &TransportTuning) -> Result<Ends, Error> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der())?;
    let crypto = tls::server_crypto(vec![cert_der.clone()], key, b"bulk")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(server_tuning.transport_config()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let crypto = tls::client_crypto(roots, b"bulk")?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(client_tuning.transport_config()));
    Ok(Ends { server, client })
}

/// GB/s of moving `bytes` (rounded down to a multiple of `streams`) over one connection
/// on `streams` concurrent streams; every stream's byte count is checked.
pub async fn quinn_transfer(
    server_tuning: &TransportTuning,
    client_tuning: &TransportTuning,
    bytes: u64,
    streams: u32,
    direction: Direction,
) -> Result<f64, Error> {
    let Ends { server, client } = ends(server_tuning, client_tuning)?;
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let server_ep = server_tuning.endpoint(loopback, Some(server))?;
    let server_addr = server_ep.local_addr()?;
    let serving = tokio::spawn(serve(server_ep.clone()));
    let client_ep = client_tuning.endpoint(loopback, None)?;
    let conn = client_ep
        .connect_with(client, server_addr, "localhost")?
        .await?;

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
    let gbps = (per_stream * streams as u64) as f64 / 1e9 / start.elapsed().as_secs_f64();
    conn.close(0u32.into(), b"done");
    client_ep.wait_idle().await;
    server_ep.close(0u32.into(), b"done");
    serving.abort();
    Ok(gbps)
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

/// GB/s of moving `bytes` over one loopback TCP connection (no TLS), 1 MiB writes.
pub async fn tcp_transfer(bytes: u64) -> Result<f64, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            match socket.read(&mut buf).await? {
                0 => break,
                n => got += n as u64,
            }
        }
        socket.write_all(b"k").await?;
        Ok::<_, std::io::Error>(got)
    });
    let chunk = vec![0x5au8; CHUNK];
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        socket.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    socket.shutdown().await?;
    let mut ack = [0u8; 1];
    socket.read_exact(&mut ack).await?;
    let gbps = bytes as f64 / 1e9 / start.elapsed().as_secs_f64();
    let got = receiver.await??;
    if got != bytes {
        return Err(format!("received {got} of {bytes} bytes").into());
    }
    Ok(gbps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_byte_arrives_in_both_directions() {
        // 3 streams: the per-stream share is rounded and each stream's count checked.
        for direction in [Direction::Push, Direction::Fetch] {
            let gbps = quinn_transfer(
                &TransportTuning::SERVER,
                &TransportTuning::CLIENT,
                8 << 20,
                3,
                direction,
            )
            .await
            .unwrap();
            assert!(gbps > 0.0, "{direction:?}");
        }
        assert!(tcp_transfer(8 << 20).await.unwrap() > 0.0);
    }
}
