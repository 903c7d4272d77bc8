//! Helpers for the server's own tests: an embedded server, a client, small batches,
//! and the admin endpoint.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_client::{
    AppCredentials, Client, ClientConfig, ClientError, CommitAck, FetchRequest, MapAttempt,
    MapFilter, Partitioning, PushRequest, Trust,
};
use sluice_server::admin_client::{self, AdminReply};
use sluice_server::{Server, ServerConfig, ServerHandle};

pub const PARTITIONS: u32 = 8;

pub async fn start(dir: &std::path::Path, tweak: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut config = ServerConfig {
        worker_threads: 2,
        ..ServerConfig::embedded(dir.join("data"))
    };
    tweak(&mut config);
    Server::start(config).await.unwrap()
}

pub fn client_config(cert_pem: &str, token: &[u8]) -> ClientConfig {
    ClientConfig::new(Trust::PinnedPem(cert_pem.to_string()), token.to_vec())
}

pub async fn connect(server: &ServerHandle) -> Client {
    let config = client_config(server.certificate_pem(), server.token());
    Client::connect(server.local_addr(), &config).await.unwrap()
}

pub fn app(name: &str) -> AppCredentials {
    AppCredentials::new(
        name,
        format!("secret-of-{name}-and-long-enough").into_bytes(),
    )
    .unwrap()
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

/// `rows` rows whose keys start at `first`.
pub fn batch(first: i64, rows: usize) -> RecordBatch {
    let keys: Int64Array = (first..first + rows as i64).collect();
    let names: StringArray = (first..first + rows as i64)
        .map(|k| (k % 7 != 0).then(|| format!("row-{k}")))
        .collect();
    RecordBatch::try_new(schema(), vec![Arc::new(keys), Arc::new(names)]).unwrap()
}

pub fn push_request(app: &AppCredentials, shuffle_id: u32, map_id: u64) -> PushRequest {
    PushRequest {
        app: app.clone(),
        shuffle_id,
        map: MapAttempt {
            map_id,
            map_index: map_id as u32,
            attempt: 0,
        },
        num_partitions: PARTITIONS,
        partitioning: Partitioning::Hash { columns: vec![0] },
        schema: schema(),
    }
}

/// Pushes `batches` as map `map_id` and commits.
pub async fn push(
    client: &Client,
    app: &AppCredentials,
    shuffle_id: u32,
    map_id: u64,
    batches: &[RecordBatch],
) -> Result<CommitAck, ClientError> {
    let mut push = client.push(push_request(app, shuffle_id, map_id)).await?;
    for b in batches {
        push.send(b).await?;
    }
    push.commit().await
}

/// Every key fetched for the named maps, sorted.
pub async fn fetch_keys(
    client: &Client,
    app: &AppCredentials,
    shuffle_id: u32,
    maps: Vec<u64>,
) -> Result<Vec<i64>, ClientError> {
    let request = FetchRequest::partitions(app.clone(), shuffle_id, 0..PARTITIONS)
        .with_maps(MapFilter::MapIds(maps));
    let mut stream = client.fetch(request).await?;
    let mut keys = Vec::new();
    while let Some(block) = stream.next_block().await? {
        let batch = stream.decode(&block)?;
        let col = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        keys.extend(col.values().iter().copied());
    }
    keys.sort_unstable();
    Ok(keys)
}

pub async fn admin_get(addr: SocketAddr, path: &str) -> AdminReply {
    admin_client::request(addr, hyper::Method::GET, path, None)
        .await
        .unwrap()
}

/// The directory of the live generation of `app` under a data directory, if any
/// (`apps/<app>@<generation>`).
pub fn app_dir(data: &std::path::Path, app: &str) -> Option<std::path::PathBuf> {
    let prefix = format!("{app}@");
    std::fs::read_dir(data.join("apps"))
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
}

pub fn app_dir_exists(data: &std::path::Path, app: &str) -> bool {
    app_dir(data, app).is_some()
}
