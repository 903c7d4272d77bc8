//! What the Spark plugin does natively, free of JNI types: a session of connections to
//! the Sluice servers (here), map writers (`writer.rs`) and fetches that move to a
//! map's second copy when the first fails (`fetch.rs`).

mod fetch;
mod writer;

pub use fetch::Fetch;
pub use writer::{Committed, MapWriter};

use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_client::{
    AppCredentials, BlockingClient, ClientConfig, ClientError, MapAttempt, Partitioning,
    PushRequest, Trust,
};

use crate::error::BridgeError;
use crate::records::{schema, PID_COLUMN};

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
    /// Copies of each map output: 1, or 2 (a second copy on another server).
    pub replication: u32,
    /// Silence after which a connection counts as lost (keep-alives run at a quarter
    /// of it): how long a reader waits on a server that died before it moves to the
    /// map's other copy or reports a fetch failure.
    pub idle_timeout: Duration,
    /// How long connecting to a server may take.
    pub connect_timeout: Duration,
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
    replication: u32,
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
        if c.idle_timeout < Duration::from_secs(1) || c.connect_timeout < Duration::from_millis(100)
        {
            return Err(BridgeError::Config(format!(
                "spark.sluice.network.idleTimeout must be at least 1s and \
                 spark.sluice.network.connectTimeout at least 100ms, not {:?} and {:?}",
                c.idle_timeout, c.connect_timeout
            )));
        }
        config.idle_timeout = c.idle_timeout;
        config.connect_timeout = c.connect_timeout;
        let app = AppCredentials::new(c.app.as_str(), c.secret.into_bytes())
            .map_err(|e| BridgeError::Config(format!("application id {:?}: {e}", c.app)))?;
        if !(1..=2).contains(&c.replication) {
            return Err(BridgeError::Config(format!(
                "spark.sluice.replication must be 1 or 2, not {}",
                c.replication
            )));
        }
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
            replication: c.replication,
        })
    }

    /// The servers that may keep the second copy of a map pushed to `primary`, in the
    /// order the primary tries them (see [`replica_order`]); none with replication 1.
    fn replicas_for(&self, primary: usize) -> Vec<String> {
        if self.replication < 2 {
            return Vec::new();
        }
        let names: Vec<&str> = self.servers.iter().map(|s| s.name.as_str()).collect();
        replica_order(&names, primary)
            .into_iter()
            .map(|i| names[i].to_string())
            .collect()
    }

    /// The index of the server named `name`.
    fn index_of(&self, name: &str) -> Option<i32> {
        self.servers
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as i32)
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
        self: &Arc<Self>,
        server: i32,
        shuffle_id: u32,
        num_partitions: u32,
        map: MapAttempt,
    ) -> Result<MapWriter, BridgeError> {
        let s = self.server(server)?;
        let request = PushRequest {
            app: self.app.clone(),
            shuffle_id,
            map,
            num_partitions,
            partitioning: Partitioning::PartitionIdColumn { column: PID_COLUMN },
            schema: schema(),
            replicas: self.replicas_for(server as usize),
        };
        s.draining
            .check(s.addr, "draining")
            .map_err(|e| client_error(&s.name, e))?;
        let stream = self.call(server, |c| c.push(request.clone()))?;
        Ok(MapWriter::new(self.clone(), server, stream, num_partitions))
    }

    /// A fetch of `map_ids` from `primary`, which moves to `replica` (the server holding
    /// their second copies, if any) when the primary fails or lacks a map.
    pub fn fetch(
        self: &Arc<Self>,
        primary: i32,
        replica: Option<i32>,
        shuffle_id: u32,
        partitions: Range<u32>,
        map_ids: Vec<u64>,
    ) -> Result<Fetch, BridgeError> {
        self.server(primary)?;
        if let Some(r) = replica {
            self.server(r)?;
        }
        Fetch::open(
            self.clone(),
            [Some(primary), replica],
            shuffle_id,
            partitions,
            map_ids,
        )
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

/// The other servers of `names` (as "host:port") in the order a map pushed to
/// `primary` tries them for its second copy: those on other hosts first, so a lost host
/// keeps one copy, then those on the primary's host; each group in list order after
/// the primary, so the copies of different primaries spread over the cluster.
fn replica_order(names: &[&str], primary: usize) -> Vec<usize> {
    let host = |i: usize| names[i].rsplit_once(':').map_or(names[i], |(h, _)| h);
    let n = names.len();
    let (away, near): (Vec<usize>, Vec<usize>) = (1..n)
        .map(|k| (primary + k) % n)
        .partition(|&i| host(i) != host(primary));
    away.into_iter().chain(near).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_copies_go_to_other_hosts_first() {
        let names = ["h1:7000", "h1:7001", "h2:7000", "h3:7000", "[::1]:7000"];
        assert_eq!(replica_order(&names, 0), vec![2, 3, 4, 1]);
        assert_eq!(replica_order(&names, 1), vec![2, 3, 4, 0]);
        assert_eq!(replica_order(&names, 3), vec![4, 0, 1, 2]);
        assert_eq!(replica_order(&names, 4), vec![0, 1, 2, 3]);
        assert_eq!(replica_order(&names[..1], 0), Vec::<usize>::new());
        // All on one host (the loopback tests): the next servers in the list.
        assert_eq!(replica_order(&["h:1", "h:2", "h:3"], 1), vec![2, 0]);
    }
}
