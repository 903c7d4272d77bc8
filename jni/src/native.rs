//! What the Spark plugin does natively, free of JNI types: a session of connections to
//! the Sluice servers, map writers and fetches.

use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_client::{
    AppCredentials, BlockingClient, BlockingFetchStream, BlockingPushStream, ClientConfig,
    ClientError, ErrorCode, FetchRequest, MapAttempt, MapFilter, Partitioning, PushRequest, Trust,
};

use crate::error::BridgeError;
use crate::records::{batch_from_java, batch_to_java, schema, PID_COLUMN};

/// How a session reaches the servers.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `host:port` of every server, in the order Spark's conf lists them.
    pub servers: Vec<String>,
    pub token_file: PathBuf,
    /// PEM certificates to trust: the servers' own (pinned) or their CA.
    pub trust_file: PathBuf,
    pub app: String,
    pub secret: String,
}

struct Server {
    name: String,
    addr: SocketAddr,
    /// Connected on first use; dropped after a connection failure so the next call
    /// reconnects.
    client: Mutex<Option<Arc<BlockingClient>>>,
    /// Set when a connect fails: calls fail fast until then instead of each waiting
    /// for the connect timeout (writers move on to the next server).
    unreachable: Down,
    /// Set when a push is refused because the server is draining: new pushes go
    /// elsewhere until then (fetches still go to it: a draining server serves them).
    draining: Down,
}

/// "Do not try this server until a deadline", with the reason.
#[derive(Clone, Default)]
struct Down(Arc<Mutex<Option<(Instant, String)>>>);

impl Down {
    fn mark(&self, why: &ClientError) {
        *lock(&self.0) = Some((Instant::now() + DOWN_FOR, why.to_string()));
    }

    fn check(&self, addr: SocketAddr, what: &str) -> Result<(), ClientError> {
        match lock(&self.0).as_ref() {
            Some((until, why)) if Instant::now() < *until => Err(ClientError::Connect {
                addr,
                message: format!("{what} moments ago ({why})"),
            }),
            _ => Ok(()),
        }
    }
}

/// Silence after which a connection counts as lost.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server that refused a connection is treated as down.
const DOWN_FOR: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Connections of one JVM (driver or executor) to the servers, for one application.
pub struct Session {
    servers: Vec<Server>,
    config: ClientConfig,
    app: AppCredentials,
}

fn client_error(server: &str, source: ClientError) -> BridgeError {
    BridgeError::Client {
        server: server.to_string(),
        source,
    }
}

impl Session {
    pub fn open(c: SessionConfig) -> Result<Self, BridgeError> {
        if c.servers.is_empty() {
            return Err(BridgeError::Config(
                "spark.sluice.servers lists no server".into(),
            ));
        }
        let token = std::fs::read(&c.token_file).map_err(|e| {
            BridgeError::Config(format!(
                "reading the token file {}: {e}",
                c.token_file.display()
            ))
        })?;
        let token = String::from_utf8_lossy(&token).trim().as_bytes().to_vec();
        let mut config = ClientConfig::new(Trust::CaFile(c.trust_file.clone()), token);
        // A server that dies mid-fetch is noticed after this long (keep-alives run at a
        // quarter of it), and the reader reports a fetch failure.
        config.idle_timeout = IDLE_TIMEOUT;
        let app = AppCredentials::new(c.app.as_str(), c.secret.into_bytes())
            .map_err(|e| BridgeError::Config(format!("application id {:?}: {e}", c.app)))?;
        let servers = c
            .servers
            .iter()
            .map(|name| {
                let addr = name
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        BridgeError::Config(format!("cannot resolve server {name:?}"))
                    })?;
                Ok(Server {
                    name: name.clone(),
                    addr,
                    client: Mutex::new(None),
                    unreachable: Down::default(),
                    draining: Down::default(),
                })
            })
            .collect::<Result<_, BridgeError>>()?;
        Ok(Self {
            servers,
            config,
            app,
        })
    }

    fn server(&self, i: i32) -> Result<&Server, BridgeError> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.servers.get(i))
            .ok_or_else(|| BridgeError::InvalidArgument(format!("no server {i}")))
    }

    /// The server's client, connecting (and registering the app) on first use.
    fn client(&self, s: &Server) -> Result<Arc<BlockingClient>, ClientError> {
        let mut slot = lock(&s.client);
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        s.unreachable.check(s.addr, "unreachable")?;
        let mut config = self.config.clone();
        // Verify the certificate against the host name the conf uses for the server.
        let host = s.name.rsplit_once(':').map_or(&*s.name, |h| h.0);
        config.server_name = host.trim_matches(['[', ']']).to_string();
        let connected = BlockingClient::connect(s.addr, &config)
            .and_then(|c| c.register_app(&self.app).map(|()| Arc::new(c)));
        match connected {
            Ok(client) => {
                *slot = Some(client.clone());
                Ok(client)
            }
            Err(e) => {
                if matches!(e, ClientError::Connect { .. } | ClientError::Connection(_)) {
                    s.unreachable.mark(&e);
                }
                Err(e)
            }
        }
    }

    /// Runs `f` with the server's client. A cached connection that turns out to be
    /// lost is replaced once (only for requests that are safe to repeat).
    fn call<T>(
        &self,
        server: i32,
        f: impl Fn(&BlockingClient) -> Result<T, ClientError>,
    ) -> Result<T, BridgeError> {
        let s = self.server(server)?;
        let mut retry = lock(&s.client).is_some();
        loop {
            match self.client(s).and_then(|c| f(&c)) {
                Ok(v) => return Ok(v),
                Err(ClientError::Connection(_)) if retry => {
                    *lock(&s.client) = None;
                    retry = false;
                }
                Err(e) => {
                    if matches!(e, ClientError::Connection(_)) {
                        *lock(&s.client) = None;
                    }
                    return Err(client_error(&s.name, e));
                }
            }
        }
    }

    pub fn push(
        &self,
        server: i32,
        shuffle_id: u32,
        num_partitions: u32,
        map: MapAttempt,
    ) -> Result<MapWriter, BridgeError> {
        let request = PushRequest {
            app: self.app.clone(),
            shuffle_id,
            map,
            num_partitions,
            partitioning: Partitioning::PartitionIdColumn { column: PID_COLUMN },
            schema: schema(),
            replicas: Vec::new(),
        };
        let s = self.server(server)?;
        s.draining
            .check(s.addr, "draining")
            .map_err(|e| client_error(&s.name, e))?;
        let stream = self.call(server, |c| c.push(request.clone()))?;
        Ok(MapWriter {
            server: s.name.clone(),
            draining: s.draining.clone(),
            stream: Some(stream),
            num_partitions,
        })
    }

    pub fn fetch(
        &self,
        server: i32,
        shuffle_id: u32,
        partitions: Range<u32>,
        map_ids: Vec<u64>,
    ) -> Result<Fetch, BridgeError> {
        let request = FetchRequest::partitions(self.app.clone(), shuffle_id, partitions)
            .with_maps(MapFilter::MapIds(map_ids));
        let stream = self.call(server, |c| c.fetch(request.clone()))?;
        Ok(Fetch {
            server: self.server(server)?.name.clone(),
            stream,
        })
    }

    /// Deletes the shuffle on every server; all are tried, the first failure is returned.
    pub fn delete_shuffle(&self, shuffle_id: u32) -> Result<(), BridgeError> {
        self.on_every_server(|c| c.delete_shuffle(&self.app, shuffle_id))
    }

    pub fn delete_app(&self) -> Result<(), BridgeError> {
        self.on_every_server(|c| c.delete_app(&self.app))
    }

    fn on_every_server(
        &self,
        f: impl Fn(&BlockingClient) -> Result<(), ClientError>,
    ) -> Result<(), BridgeError> {
        let results: Vec<_> = (0..self.servers.len() as i32)
            .map(|i| self.call(i, &f))
            .collect();
        results.into_iter().collect()
    }
}

/// One map attempt's push.
pub struct MapWriter {
    server: String,
    draining: Down,
    /// `None` once committed or failed.
    stream: Option<BlockingPushStream>,
    num_partitions: u32,
}

impl MapWriter {
    fn note(&self, e: &ClientError) {
        if e.code() == Some(ErrorCode::Draining) {
            self.draining.mark(e);
        }
    }

    fn stream(&mut self) -> Result<&mut BlockingPushStream, BridgeError> {
        self.stream
            .as_mut()
            .ok_or_else(|| BridgeError::InvalidArgument("the push has ended".into()))
    }

    /// Sends records (see `records.rs` for the layout).
    pub fn write(
        &mut self,
        pids: Vec<i32>,
        ends: &[i32],
        data: Vec<u8>,
    ) -> Result<(), BridgeError> {
        let batch = batch_from_java(pids, ends, data, self.num_partitions)?;
        let server = self.server.clone();
        let result = self.stream()?.send(&batch);
        result.map_err(|e| {
            self.stream = None;
            self.note(&e);
            client_error(&server, e)
        })
    }

    /// Commits; returns the stored bytes of each partition.
    pub fn commit(&mut self) -> Result<Vec<i64>, BridgeError> {
        let stream = self
            .stream
            .take()
            .ok_or_else(|| BridgeError::InvalidArgument("the push has ended".into()))?;
        let ack = stream.commit().map_err(|e| {
            self.note(&e);
            client_error(&self.server, e)
        })?;
        Ok(ack
            .partition_bytes
            .iter()
            .map(|&b| i64::try_from(b).unwrap_or(i64::MAX))
            .collect())
    }
}

/// One fetch from one server.
pub struct Fetch {
    server: String,
    stream: BlockingFetchStream,
}

impl Fetch {
    /// The next batch's records in the layout Java reads, or `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<Vec<u8>>, BridgeError> {
        match self.stream.next_batch() {
            Ok(Some((_, batch))) => batch_to_java(&batch).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(client_error(&self.server, e)),
        }
    }
}
