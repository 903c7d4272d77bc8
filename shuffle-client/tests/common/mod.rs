//! Shared helpers: an embedded server on loopback, generated batches of every column
//! type (with nulls), and a reference split built from arrow's `take`.
#![allow(dead_code)]

pub mod child;

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::collections::BTreeMap;

use bytes::Bytes;
use sluice_client::{
    AppCredentials, Client, ClientConfig, ClientError, FetchRequest, MapAttempt, Partitioning,
    PushRequest, Trust,
};
use sluice_proto::{
    encode_frame, ErrorCode, FrameHeader, Limits, Message, FRAME_HEADER_LEN, PROTOCOL_VERSION,
};
use sluice_server::{Server, ServerConfig, ServerHandle};
use sluice_splitter::{PartitionSpec, Partitioner};

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
    let mut config = ServerConfig {
        worker_threads: 2,
        ..ServerConfig::embedded(dir.path().join("data"))
    };
    // Small blocks so that multi-block partitions are exercised.
    config.storage.block_size = bytesize::ByteSize::kib(64);
    tweak(&mut config);
    let handle = Server::start(config).await.unwrap();
    TestServer { handle, dir }
}

impl TestServer {
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(
            Trust::PinnedPem(self.handle.certificate_pem().to_string()),
            self.handle.token().to_vec(),
        )
    }

    /// Shuts the server down and starts a new one on the same data directory.
    pub async fn restart(self, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        self.handle.shutdown().await;
        start_server_at(self.dir, tweak).await
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.handle.local_addr(), &self.client_config())
            .await
            .unwrap()
    }
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
        Field::new("i8", DataType::Int8, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("date", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("price", DataType::Decimal128(15, 2), true),
        Field::new("big", DataType::Decimal128(38, 10), true),
        Field::new("name", DataType::Utf8, true),
        Field::new("blob", DataType::Binary, true),
        Field::new("comment", DataType::LargeUtf8, true),
    ]))
}

/// Deterministic pseudo-random numbers (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "",
    "a",
    "furiously",
    "ironic",
    "日本語",
    "é",
    "packages sleep",
    "🦀 crab",
];

/// A batch of `rows` rows of every type, about 10% nulls in nullable columns.
pub fn batch(rows: usize, seed: u64) -> RecordBatch {
    let mut r = Rng::new(seed);
    let mut key = Int64Builder::new();
    let mut i8b = Int8Builder::new();
    let mut i16b = Int16Builder::new();
    let mut i32b = Int32Builder::new();
    let mut f32b = Float32Builder::new();
    let mut f64b = Float64Builder::new();
    let mut flag = BooleanBuilder::new();
    let mut date = Date32Builder::new();
    let mut ts = TimestampMicrosecondBuilder::new();
    let mut price = Decimal128Builder::new();
    let mut big = Decimal128Builder::new();
    let mut name = StringBuilder::new();
    let mut blob = BinaryBuilder::new();
    let mut comment = LargeStringBuilder::new();
    for _ in 0..rows {
        key.append_value(r.next() as i64 >> r.below(60));
        let null = |r: &mut Rng| r.below(10) == 0;
        macro_rules! maybe {
            ($b:expr, $v:expr) => {
                if null(&mut r) {
                    $b.append_null()
                } else {
                    let v = $v;
                    $b.append_value(v)
                }
            };
        }
        maybe!(i8b, r.next() as i8);
        maybe!(i16b, r.next() as i16);
        maybe!(i32b, r.next() as i32);
        maybe!(f32b, f32::from_bits(r.next() as u32 & 0x7f7f_ffff));
        maybe!(f64b, (r.next() as i64) as f64 / 7.0);
        maybe!(flag, r.below(2) == 0);
        maybe!(date, (r.below(20_000) as i32) - 5_000);
        maybe!(ts, r.next() as i64 >> 8);
        maybe!(price, (r.below(10_000_000_000) as i128) - 5_000_000_000);
        maybe!(big, (r.next() as i64 as i128) * (r.next() as i32 as i128));
        maybe!(name, WORDS[r.below(WORDS.len() as u64) as usize]);
        maybe!(blob, {
            let n = r.below(12) as usize;
            (0..n).map(|_| r.next() as u8).collect::<Vec<u8>>()
        });
        maybe!(comment, {
            let n = r.below(40) as usize;
            (0..n)
                .map(|i| (b'a' + ((i as u64 + r.below(26)) % 26) as u8) as char)
                .collect::<String>()
        });
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(i8b.finish()),
        Arc::new(i16b.finish()),
        Arc::new(i32b.finish()),
        Arc::new(f32b.finish()),
        Arc::new(f64b.finish()),
        Arc::new(flag.finish()),
        Arc::new(date.finish()),
        Arc::new(ts.finish()),
        Arc::new(price.finish().with_precision_and_scale(15, 2).unwrap()),
        Arc::new(big.finish().with_precision_and_scale(38, 10).unwrap()),
        Arc::new(name.finish()),
        Arc::new(blob.finish()),
        Arc::new(comment.finish()),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// Reference split: the rows of each partition, in input order, via `take`.
pub fn reference_split(batches: &[RecordBatch], spec: PartitionSpec, n: u32) -> Vec<RecordBatch> {
    let schema = schema();
    let mut partitioner = Partitioner::new(spec, n, &schema).unwrap();
    let mut per_partition: Vec<Vec<RecordBatch>> = vec![Vec::new(); n as usize];
    for b in batches {
        let mut ids = Vec::new();
        partitioner.partition(b, &mut ids).unwrap();
        for (p, out) in per_partition.iter_mut().enumerate() {
            let idx: UInt32Array = ids
                .iter()
                .enumerate()
                .filter(|(_, &id)| id as usize == p)
                .map(|(i, _)| i as u32)
                .collect();
            out.push(arrow_select::take::take_record_batch(b, &idx).unwrap());
        }
    }
    per_partition
        .into_iter()
        .map(|parts| arrow_select::concat::concat_batches(&schema, &parts).unwrap())
        .collect()
}

pub fn concat(batches: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(&schema(), batches).unwrap()
}

pub const KEYS: [u32; 2] = [0, 11]; // hash on (key: long, name: string)

pub fn hash_spec() -> PartitionSpec {
    PartitionSpec::Hash {
        columns: KEYS.iter().map(|&k| k as usize).collect(),
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
) -> sluice_client::CommitAck {
    let request = PushRequest {
        app: app.clone(),
        shuffle_id,
        map,
        num_partitions: n,
        partitioning: Partitioning::Hash {
            columns: KEYS.to_vec(),
        },
        schema: schema(),
    };
    try_push(client, request, batches).await.unwrap()
}

/// Pushes `batches` and commits; the error the server gives, if any.
pub async fn try_push(
    client: &Client,
    request: PushRequest,
    batches: &[RecordBatch],
) -> Result<sluice_client::CommitAck, ClientError> {
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

/// Asserts that the server still serves a new client (after something hostile).
pub async fn assert_serves_a_new_client(server: &TestServer) {
    server
        .client()
        .await
        .register_app(&app("after"))
        .await
        .unwrap();
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
        .with_maps(sluice_client::MapFilter::MapIds(vec![map_id]));
    fetch_grouped(client, request).await
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
