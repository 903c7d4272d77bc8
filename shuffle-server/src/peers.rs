//! The sending end of a second copy: connections to the other servers, and the forward
//! of a map's stored blocks to the first of its replica candidates that takes them.
//!
//! The copy travels after the push's own blocks are written and before its commit:
//! the blocks are read back from this server's files (fresh, so from the page cache)
//! and sent as stored. The writer's bytes cross the network once, and the replica
//! neither decodes nor splits nor compresses (ARCHITECTURE.md, "Replication").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use sluice_proto::{Limits, Message, PartitionSum, PushStart, PROTOCOL_VERSION};

use crate::error::RequestError;
use crate::io::write_message;
use crate::metrics as m;
use crate::registry::Shuffle;

/// Blocks read from disk at a time while forwarding.
const READ_CHUNK_BYTES: u64 = 4 << 20;

/// Connections to the other servers, one per address, made on first use.
#[derive(Debug)]
pub(crate) struct Peers {
    endpoint: Endpoint,
    config: quinn::ClientConfig,
    token: Vec<u8>,
    limits: Limits,
    /// How long a forward may wait for one frame to move.
    stall: Duration,
    /// How long a connection to a peer may take (`limits.handshake_timeout`).
    connect_timeout: Duration,
    conns: Mutex<HashMap<String, Connection>>,
    /// Peers a connection to failed, until when they are not tried again (so a server
    /// that is down costs one connect timeout per `DOWN_FOR`, not one per commit).
    down: Mutex<HashMap<String, Instant>>,
}

/// How long a peer that could not be reached is skipped.
const DOWN_FOR: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn peer_error(addr: &str, what: impl std::fmt::Display) -> RequestError {
    RequestError::Stream(format!("replica {addr}: {what}"))
}

/// A map's blocks to forward: the push that stored them.
pub(crate) struct CopyOf<'a> {
    pub start: &'a PushStart,
    pub shuffle: &'a Arc<Shuffle>,
    pub epoch: u32,
    pub partitions: &'a [u32],
    pub sums: &'a [PartitionSum],
}

impl Peers {
    pub fn new(
        endpoint: Endpoint,
        config: quinn::ClientConfig,
        token: Vec<u8>,
        limits: Limits,
        stall: Duration,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            endpoint,
            config,
            token,
            limits,
            stall,
            connect_timeout,
            conns: Mutex::default(),
            down: Mutex::default(),
        }
    }

    /// Forwards the copy to the first candidate that commits it; returns that
    /// candidate, or `None` (logged and counted) if none did.
    pub async fn replicate(&self, copy: &CopyOf<'_>, candidates: &[String]) -> Option<String> {
        for addr in candidates {
            match self.forward(addr, copy).await {
                Ok(()) => {
                    metrics::counter!(m::REPLICAS, "outcome" => "stored").increment(1);
                    return Some(addr.clone());
                }
                Err(e) => {
                    tracing::warn!(replica = %addr, error = %e, "second copy failed; trying the next candidate");
                    lock(&self.conns).remove(addr);
                }
            }
        }
        metrics::counter!(m::REPLICAS, "outcome" => "degraded").increment(1);
        tracing::warn!(
            map_id = copy.start.map.map_id,
            candidates = candidates.len(),
            "no replica took the map: committed with one copy"
        );
        None
    }

    async fn forward(&self, addr: &str, copy: &CopyOf<'_>) -> Result<(), RequestError> {
        let conn = self.connection(addr).await?;
        let register = Message::RegisterApp {
            app: copy.start.app.clone(),
            secret: copy.start.secret.clone(),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| peer_error(addr, e))?;
        self.write(&mut send, &register).await?;
        let _ = send.finish();
        self.expect(addr, &mut recv, |m| matches!(m, Message::Ok))
            .await?;

        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| peer_error(addr, e))?;
        let mut start = copy.start.clone();
        start.replicas.clear();
        self.write(&mut send, &Message::ReplicaStart(start)).await?;
        for &partition in copy.partitions {
            let epoch = copy.epoch;
            let entries = copy.shuffle.store.blocks(partition, |e| e.epoch == epoch);
            for chunk in crate::fetch::chunks(&entries, READ_CHUNK_BYTES) {
                let (store, chunk) = (copy.shuffle.clone(), chunk.to_vec());
                let blocks =
                    tokio::task::spawn_blocking(move || store.store.read(partition, &chunk))
                        .await
                        .map_err(|e| RequestError::Internal(e.to_string()))??;
                for block in blocks {
                    let msg = Message::ReplicaBlock {
                        partition,
                        block: Bytes::from(block),
                    };
                    self.write(&mut send, &msg).await?;
                }
            }
        }
        let end = Message::ReplicaEnd {
            sums: copy.sums.to_vec(),
        };
        self.write(&mut send, &end).await?;
        let _ = send.finish();
        self.expect(addr, &mut recv, |m| {
            matches!(m, Message::PushCommitted { .. })
        })
        .await
    }

    async fn write(&self, send: &mut SendStream, msg: &Message) -> Result<(), RequestError> {
        tokio::time::timeout(self.stall, write_message(send, msg))
            .await
            .map_err(|_| RequestError::Stalled(self.stall))?
    }

    /// Reads the reply; an error reply or any other message fails the forward.
    async fn expect(
        &self,
        addr: &str,
        recv: &mut RecvStream,
        ok: impl Fn(&Message) -> bool,
    ) -> Result<(), RequestError> {
        let read = sluice_transport::read_message(recv, &self.limits);
        let reply = tokio::time::timeout(self.stall, read)
            .await
            .map_err(|_| RequestError::Stalled(self.stall))?
            .map_err(|e| peer_error(addr, e))?;
        match reply {
            Some(m) if ok(&m) => Ok(()),
            Some(Message::Error { code, message }) => {
                Err(peer_error(addr, format!("{code:?}: {message}")))
            }
            other => Err(peer_error(
                addr,
                format!("unexpected reply {:?}", other.map(|m| m.kind())),
            )),
        }
    }

    /// The connection to `addr`, connecting and saying Hello if there is none open.
    async fn connection(&self, addr: &str) -> Result<Connection, RequestError> {
        if let Some(c) = lock(&self.conns).get(addr) {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        if lock(&self.down)
            .get(addr)
            .is_some_and(|until| Instant::now() < *until)
        {
            return Err(peer_error(addr, "unreachable moments ago"));
        }
        let connected = self.connect(addr).await;
        if connected.is_err() {
            lock(&self.down).insert(addr.to_string(), Instant::now() + DOWN_FOR);
        }
        connected
    }

    async fn connect(&self, addr: &str) -> Result<Connection, RequestError> {
        let socket = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| peer_error(addr, e))?
            .next()
            .ok_or_else(|| peer_error(addr, "no address"))?;
        let host = addr.rsplit_once(':').map_or(addr, |h| h.0);
        let host = host.trim_matches(['[', ']']);
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), socket, host)
            .map_err(|e| peer_error(addr, e))?;
        let conn = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| peer_error(addr, "connect timed out"))?
            .map_err(|e| peer_error(addr, e))?;
        let hello = Message::Hello {
            version: PROTOCOL_VERSION,
            token: Bytes::copy_from_slice(&self.token),
            client: format!("sluice-server {} (peer)", env!("CARGO_PKG_VERSION")),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| peer_error(addr, e))?;
        self.write(&mut send, &hello).await?;
        let _ = send.finish();
        self.expect(addr, &mut recv, |m| matches!(m, Message::HelloOk { .. }))
            .await?;
        lock(&self.conns).insert(addr.to_string(), conn.clone());
        Ok(conn)
    }
}
