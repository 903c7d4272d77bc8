//! One way to start a server in-process: [`start`] on a directory the test owns, or a
//! [`TestServer`] that owns its temp dir; the client config that trusts it, app
//! credentials, and the client-side helpers that push [`every_type`] batches and fetch
//! them back, grouped for comparison with the reference split.
//!
//! [`every_type`]: crate::every_type

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::RecordBatch;
use sluice_client::{
    AppCredentials, Client, ClientConfig, ClientError, CommitAck, FetchRequest, MapAttempt,
    MapFilter, Partitioning, PushRequest, Trust,
};
use sluice_server::{Server, ServerConfig, ServerHandle};

use crate::every_type::{concat, schema, KEYS};

/// Starts a server with two workers whose data directory is `<dir>/data` (a restart
/// when it holds data), after `tweak` changed its config.
pub async fn start(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut config = ServerConfig {
        worker_threads: 2,
        ..ServerConfig::embedded(dir.join("data"))
    };
    tweak(&mut config);
    Server::start(config).await.unwrap()
}

/// Starts a server on `dir` as a peer of the one started on `first_dir`: it presents
/// that server's certificate and accepts its cluster token, as the servers of one
/// cluster do, so each reaches the other (replicas) and one client trusts both.
pub async fn start_peer(
    dir: &Path,
    first_dir: &Path,
    tweak: impl FnOnce(&mut ServerConfig),
) -> ServerHandle {
    let first = first_dir.join("data");
    start(dir, |config| {
        config.tls.cert = Some(first.join("tls/cert.pem"));
        config.tls.key = Some(first.join("tls/key.pem"));
        config.cluster_token_file = Some(first.join("cluster-token"));
        tweak(config);
    })
    .await
}

/// A client config that trusts exactly this certificate and sends this cluster token.
pub fn client_config(cert_pem: &str, token: &[u8]) -> ClientConfig {
    ClientConfig::new(Trust::PinnedPem(cert_pem.to_string()), token.to_vec())
}

/// A client connected to `server`.
pub async fn connect(server: &ServerHandle) -> Client {
    let config = client_config(server.certificate_pem(), server.token());
    Client::connect(server.local_addr(), &config).await.unwrap()
}

/// The credentials of app `name` (its secret, derived from the name, is long enough
/// for a new registration).
pub fn app(name: &str) -> AppCredentials {
    AppCredentials::new(
        name,
        format!("secret-of-{name}-and-long-enough").into_bytes(),
    )
    .unwrap()
}

/// A server on a temp dir it owns, with 64 KiB blocks (see [`start_server_at`]).
pub struct TestServer {
    pub handle: ServerHandle,
    pub dir: tempfile::TempDir,
}

pub async fn start_server() -> TestServer {
    start_server_with(|_| {}).await
}

pub async fn start_server_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start_server_at(tempfile::tempdir().unwrap(), tweak).await
}

/// Starts a server whose data directory is `<dir>/data` (a restart when it holds data).
pub async fn start_server_at(
    dir: tempfile::TempDir,
    tweak: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let handle = start(dir.path(), |config| {
        // Small blocks so that multi-block partitions are exercised.
        config.storage.block_size = bytesize::ByteSize::kib(64);
        tweak(config);
    })
    .await;
    TestServer { handle, dir }
}

impl TestServer {
    pub fn client_config(&self) -> ClientConfig {
        client_config(self.handle.certificate_pem(), self.handle.token())
    }

    /// Shuts the server down and starts a new one on the same data directory.
    pub async fn restart(self, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        self.handle.shutdown().await;
        start_server_at(self.dir, tweak).await
    }

    pub async fn client(&self) -> Client {
        connect(&self.handle).await
    }
}

/// Pushes one map attempt hashed on `KEYS`; panics on any error.
pub async fn push_map(
    client: &Client,
    app: &AppCredentials,
    shuffle_id: u32,
    map: MapAttempt,
    n: u32,
    batches: &[RecordBatch],
) -> CommitAck {
    let request = PushRequest {
        app: app.clone(),
        shuffle_id,
        map,
        num_partitions: n,
        partitioning: Partitioning::Hash {
            columns: KEYS.to_vec(),
        },
        schema: schema(),
        replicas: Vec::new(),
    };
    try_push(client, request, batches).await.unwrap()
}

/// Pushes `batches` and commits; the error the server gives, if any.
pub async fn try_push(
    client: &Client,
    request: PushRequest,
    batches: &[RecordBatch],
) -> Result<CommitAck, ClientError> {
    let mut push = client.push(request).await?;
    for b in batches {
        push.send(b).await?;
    }
    push.commit().await
}

/// Fetches and groups the decoded rows by (partition, map id), in arrival order.
pub async fn fetch_grouped(
    client: &Client,
    request: FetchRequest,
) -> Result<BTreeMap<(u32, u64), RecordBatch>, ClientError> {
    let mut stream = client.fetch(request).await?;
    let mut groups: BTreeMap<(u32, u64), Vec<RecordBatch>> = BTreeMap::new();
    while let Some(block) = stream.next_block().await? {
        let batch = stream.decode(&block)?;
        groups
            .entry((block.partition, block.header.map_id))
            .or_default()
            .push(batch);
    }
    Ok(groups.into_iter().map(|(k, v)| (k, concat(&v))).collect())
}

/// Fetches partitions `0..n` of one map id of `shuffle_id`, grouped as
/// [`fetch_grouped`] groups them.
pub async fn fetch_map(
    client: &Client,
    app: &AppCredentials,
    shuffle_id: u32,
    n: u32,
    map_id: u64,
) -> Result<BTreeMap<(u32, u64), RecordBatch>, ClientError> {
    let request = FetchRequest::partitions(app.clone(), shuffle_id, 0..n)
        .with_maps(MapFilter::MapIds(vec![map_id]));
    fetch_grouped(client, request).await
}

/// Asserts that the rows fetched for `map_id` (grouped by `fetch_grouped`) equal the
/// reference split of that map, partition by partition.
pub fn assert_map_matches(
    got: &BTreeMap<(u32, u64), RecordBatch>,
    map_id: u64,
    reference: &[RecordBatch],
) {
    for (p, part) in reference.iter().enumerate() {
        let fetched = got.get(&(p as u32, map_id));
        assert_eq!(
            fetched.map_or(0, |b| b.num_rows()),
            part.num_rows(),
            "map {map_id} partition {p}"
        );
        if let Some(b) = fetched {
            assert_eq!(b, part, "map {map_id} partition {p}");
        }
    }
}
