//! Helpers for the server's tests. The generic ones come from `sluice-testkit` and are
//! re-exported here: the embedded server (`start`, `TestServer`), clients, app
//! credentials, every-type batches, their pushes, fetches and reference split. Here:
//! small keyed batches and their pushes, the admin endpoint, raw frames and bare QUIC
//! connections for hostile input, the data directory's layout, (`child`) a server in a
//! child process, and (`ledger`) the pushers of the SIGKILL campaigns.
#![allow(dead_code)]

pub mod child;
pub mod ledger;

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use sluice_client::{
    AppCredentials, Client, ClientConfig, ClientError, CommitAck, FetchRequest, MapAttempt,
    MapFilter, Partitioning, PushRequest,
};
use sluice_proto::{
    encode_frame, ErrorCode, FrameHeader, Limits, Message, FRAME_HEADER_LEN, PROTOCOL_VERSION,
};
use sluice_server::admin_client::{self, AdminReply};
// Each test binary uses its own part of these (as of the helpers below).
#[allow(unused_imports)]
pub use sluice_testkit::{every_type::*, server::*, Rng};

pub const PARTITIONS: u32 = 8;

/// The schema of [`keyed_batch`].
pub fn keyed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]))
}

/// `rows` rows whose keys start at `first`.
pub fn keyed_batch(first: i64, rows: usize) -> RecordBatch {
    let keys: Int64Array = (first..first + rows as i64).collect();
    let names: StringArray = (first..first + rows as i64)
        .map(|k| (k % 7 != 0).then(|| format!("row-{k}")))
        .collect();
    RecordBatch::try_new(keyed_schema(), vec![Arc::new(keys), Arc::new(names)]).unwrap()
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
        schema: keyed_schema(),
        replicas: Vec::new(),
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

/// Asserts that the server still serves a new client (after something hostile).
pub async fn assert_serves_a_new_client(server: &TestServer) {
    server
        .client()
        .await
        .register_app(&app("after"))
        .await
        .unwrap();
}

/// A frame of message type `kind` whose body is `fields`, each length-prefixed: for
/// requests the typed constructors refuse to build (an app id with path components).
pub fn raw_frame(kind: u8, fields: &[&[u8]]) -> Vec<u8> {
    let mut frame = vec![0, 0, 0, 0, kind];
    for field in fields {
        frame.extend_from_slice(&(field.len() as u32).to_le_bytes());
        frame.extend_from_slice(field);
    }
    let body_len = (frame.len() - FRAME_HEADER_LEN) as u32;
    frame[..4].copy_from_slice(&body_len.to_le_bytes());
    frame
}

/// A bare QUIC connection that has completed the handshake.
pub async fn raw_connection(server: &TestServer) -> (quinn::Endpoint, quinn::Connection) {
    raw_connection_with(server, &server.client_config()).await
}

/// A bare QUIC connection with `config`'s TLS and transport, after the handshake.
pub async fn raw_connection_with(
    server: &TestServer,
    config: &ClientConfig,
) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config.quic_client_config().unwrap());
    let conn = endpoint
        .connect(server.handle.local_addr(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        token: Bytes::copy_from_slice(server.handle.token()),
        client: "raw".into(),
    };
    let reply = exchange(&conn, &encode_frame(&hello)).await;
    assert!(matches!(reply, Some(Message::HelloOk { .. })), "{reply:?}");
    (endpoint, conn)
}

/// Sends raw bytes on a new stream and reads the first reply frame, if any.
pub async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> Option<Message> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    let mut head = [0u8; FRAME_HEADER_LEN];
    recv.read_exact(&mut head).await.ok()?;
    let header = FrameHeader::decode(head, &Limits::default()).unwrap();
    let mut body = vec![0u8; header.body_len as usize];
    recv.read_exact(&mut body).await.unwrap();
    Some(header.decode_body(Bytes::from(body)).unwrap())
}

pub fn error_code(reply: Option<Message>) -> ErrorCode {
    match reply {
        Some(Message::Error { code, .. }) => code,
        other => panic!("expected an error reply, got {other:?}"),
    }
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
