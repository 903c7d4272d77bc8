//! Every way a hostile client was found to make the server hold memory that no budget
//! counted, all at once, against a server in a child process with a small budget,
//! while a well-behaved client pushes and fetches on the same server. Each attack gets
//! its typed answer, the good client never sees an error, and the server's peak RSS
//! stays under its idle RSS plus the memory budget plus the documented allowance of
//! each connection (README, "Sizing").

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int32Array, NullArray, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use common::child::{self, current_rss, peak_rss, spawn_child_configured, ChildServer};
use common::*;
use sluice_client::{
    Client, ClientConfig, ErrorCode, FetchRequest, MapAttempt, MapFilter, Partitioning,
    PushRequest, TransportTuning,
};
use sluice_proto::{encode_frame, FrameHeader, Limits, Message, PushStart, PROTOCOL_VERSION};

#[test]
#[ignore = "run by the tests below, in a child process"]
fn child_server() {
    child::run_child_server();
}

const MIB: u64 = 1 << 20;
/// The server under attack: a 64 MiB budget, and per connection 8 MiB of receive
/// window, 8 MiB of send window, one 16 MiB frame and 24 MiB of request state.
const CONFIG: &str = r#"
[storage]
memory_budget = "64MiB"
push_buffer_limit = "8MiB"
block_size = "256KiB"
[limits]
max_frame_size = "16MiB"
connection_memory = "24MiB"
stall_timeout = "3s"
handshake_timeout = "3s"
idle_timeout = "30s"
max_pending_connections = 8
max_schema_size = "1MiB"
[transport]
receive_window = "8MiB"
stream_receive_window = "2MiB"
send_window = "8MiB"
"#;
/// README, "Sizing": what one authenticated connection can make the server hold
/// beyond the budget (receive window + send window + a frame + connection_memory).
const PER_CONNECTION: u64 = (8 + 8 + 16 + 24) * MIB;
/// Authenticated connections during the attack: six attackers and the good client.
const CONNECTIONS: u64 = 7;

/// A QUIC connection to `addr` with `config`'s TLS, before any Hello.
async fn quic(addr: SocketAddr, config: &ClientConfig) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config.quic_client_config().unwrap());
    let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    (endpoint, conn)
}

/// A raw connection that presented the token.
async fn authenticated(child: &ChildServer) -> (quinn::Endpoint, quinn::Connection) {
    let (endpoint, conn) = quic(child.addr, &child.config).await;
    let hello = Message::Hello {
        version: PROTOCOL_VERSION,
        token: Bytes::from(child.config.token.clone()),
        client: "attacker".into(),
    };
    let reply = exchange(&conn, &encode_frame(&hello)).await;
    assert!(matches!(reply, Some(Message::HelloOk { .. })), "{reply:?}");
    (endpoint, conn)
}

/// Reads one frame from `recv` within `within`: the reply, or `None` if the stream or
/// the connection ended first.
async fn reply(recv: &mut quinn::RecvStream, within: Duration) -> Option<Message> {
    let read = async {
        let mut head = [0u8; 5];
        recv.read_exact(&mut head).await.ok()?;
        let header = FrameHeader::decode(head, &Limits::default()).ok()?;
        let mut body = vec![0u8; header.body_len as usize];
        recv.read_exact(&mut body).await.ok()?;
        header.decode_body(Bytes::from(body)).ok()
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// The error code a stream or its connection ended with: the reply's, else the reset's
/// or the connection close's.
async fn ended_with(conn: &quinn::Connection, recv: &mut quinn::RecvStream) -> Option<ErrorCode> {
    let mut head = [0u8; 5];
    let read = tokio::time::timeout(Duration::from_secs(20), recv.read_exact(&mut head)).await;
    match read {
        Ok(Ok(())) => {
            let header = FrameHeader::decode(head, &Limits::default()).ok()?;
            let mut body = vec![0u8; header.body_len as usize];
            recv.read_exact(&mut body).await.ok()?;
            match header.decode_body(Bytes::from(body)).ok()? {
                Message::Error { code, .. } => Some(code),
                _ => None,
            }
        }
        Ok(Err(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code)))) => {
            Some(ErrorCode::from_u16(code.into_inner() as u16))
        }
        _ => match conn.close_reason()? {
            quinn::ConnectionError::ApplicationClosed(c) => {
                Some(ErrorCode::from_u16(c.error_code.into_inner() as u16))
            }
            _ => None,
        },
    }
}

/// 3 connections without the token, each sending 60 MiB of a 64 MiB `Hello`: refused
/// from the length (a Hello has at most 16 KiB), with a typed error on its stream.
async fn oversized_hellos(child: &ChildServer) -> Vec<Option<ErrorCode>> {
    let mut ends = Vec::new();
    for _ in 0..3 {
        let (_endpoint, conn) = quic(child.addr, &child.config).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut head = (64 * MIB as u32).to_le_bytes().to_vec();
        head.push(1); // Hello
        let writer = tokio::spawn(async move {
            let _ = send.write_all(&head).await;
            let chunk = vec![0x41u8; MIB as usize];
            for _ in 0..60 {
                if send.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        ends.push(ended_with(&conn, &mut recv).await);
        writer.abort();
    }
    ends
}

/// 12 streams on one connection, each sending most of a 15 MiB frame and then nothing:
/// one frame at a time is reserved (the connection's 16 MiB) and read, and each frame
/// that stalls is reset after the stall timeout (3 s), letting the next one in. Returns
/// how the streams that ended within 15 s ended.
async fn many_half_frames(child: &ChildServer) -> Vec<Option<ErrorCode>> {
    let (_endpoint, conn) = authenticated(child).await;
    let mut streams = Vec::new();
    for _ in 0..12 {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let writer = tokio::spawn(async move {
            let mut head = (15 * MIB as u32).to_le_bytes().to_vec();
            head.push(21); // PushBatch
            let _ = send.write_all(&head).await;
            let chunk = vec![0x42u8; MIB as usize];
            for _ in 0..10 {
                let write = tokio::time::timeout(Duration::from_secs(8), send.write_all(&chunk));
                if !matches!(write.await, Ok(Ok(()))) {
                    break;
                }
            }
            send
        });
        let conn = conn.clone();
        let ended = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(15), ended_with(&conn, &mut recv))
                .await
                .ok()
        });
        streams.push((writer, ended));
    }
    let mut ends = Vec::new();
    for (writer, ended) in streams {
        if let Some(end) = ended.await.unwrap() {
            ends.push(end);
        }
        writer.abort();
    }
    ends
}

fn push_start(
    creds: &sluice_client::AppCredentials,
    shuffle_id: u32,
    n: u32,
    schema: &Schema,
) -> Message {
    Message::PushStart(PushStart {
        app: creds.app.clone(),
        secret: creds.secret.clone(),
        shuffle_id,
        map: MapAttempt {
            map_id: 1,
            map_index: 0,
            attempt: 0,
        },
        num_partitions: n,
        partitioning: Partitioning::RoundRobin,
        schema: Bytes::from(sluice_format::encode_schema(schema)),
        replicas: vec![],
    })
}

/// 64 pushes of 2^17 partitions opened on one connection and left open: their
/// per-partition tables (4.5 MiB each) fit five times in the connection's 24 MiB; every
/// other is refused with `LimitExceeded`. Returns the refusals.
async fn wide_open_pushes(child: &ChildServer, creds: &sluice_client::AppCredentials) -> usize {
    let (_endpoint, conn) = authenticated(child).await;
    let schema = Schema::new(vec![Field::new("v", DataType::Int32, false)]);
    let mut open = Vec::new();
    for shuffle in 0..64 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&encode_frame(&push_start(
            creds,
            1000 + shuffle,
            1 << 17,
            &schema,
        )))
        .await
        .unwrap();
        open.push((send, recv));
    }
    let mut refused = 0;
    for (_, recv) in &mut open {
        if let Some(Message::Error { code, .. }) = reply(recv, Duration::from_secs(1)).await {
            assert_eq!(code, ErrorCode::LimitExceeded);
            refused += 1;
        }
    }
    refused
}

/// One 15 MiB batch of 10,000 columns into 1,000 partitions: split as sorted runs (no
/// per-(partition, column) buffers), committed with every row.
async fn wide_batch(client: &Client, creds: &sluice_client::AppCredentials) -> Duration {
    let columns = 10_000;
    let rows: i32 = 375;
    let fields: Vec<Field> = (0..columns)
        .map(|i| Field::new(format!("c{i}"), DataType::Int32, false))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let column: ArrayRef = Arc::new(Int32Array::from_iter_values(0..rows));
    let arrays = vec![column; columns];
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let started = Instant::now();
    let mut push = client
        .push(PushRequest {
            app: creds.clone(),
            shuffle_id: 2,
            map: MapAttempt {
                map_id: 1,
                map_index: 0,
                attempt: 0,
            },
            num_partitions: 1000,
            partitioning: Partitioning::RoundRobin,
            schema,
            replicas: Vec::new(),
        })
        .await
        .unwrap();
    push.send(&batch).await.unwrap();
    let ack = push.commit().await.unwrap();
    assert_eq!(ack.partition_rows.iter().sum::<u64>(), rows as u64);
    let stored: u64 = ack.partition_bytes.iter().sum();
    eprintln!(
        "the wide batch: {} MB stored for 15 MB pushed",
        stored / 1_000_000
    );
    started.elapsed()
}

/// 40 fetches on one connection whose reader reads nothing for 5 s (16 KiB windows):
/// each holds at most 1 MiB of read-ahead against the connection's allowance (24
/// of them at a time; the others wait for room before reading anything), and each that
/// stalls is reset with `LimitExceeded` after the stall timeout. The reader then reads
/// them all: a fetch that had not started yet is served whole. Returns (reset, served).
async fn stalled_fetches(
    child: &ChildServer,
    creds: &sluice_client::AppCredentials,
) -> (usize, usize) {
    let mut config = child.config.clone();
    config.transport = TransportTuning {
        stream_receive_window: 16 << 10,
        receive_window: 64 << 10,
        ..TransportTuning::CLIENT
    };
    let reader = Client::connect(child.addr, &config).await.unwrap();
    let mut fetches = Vec::new();
    for _ in 0..40 {
        let request =
            FetchRequest::partitions(creds.clone(), 3, 0..4).with_maps(MapFilter::MapIds(vec![1]));
        fetches.push(reader.fetch(request).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (mut reset, mut served) = (0, 0);
    for fetch in &mut fetches {
        let end = loop {
            match fetch.next_block().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        match &end {
            Err(e) if e.code() == Some(ErrorCode::LimitExceeded) => reset += 1,
            // The client checked the block count, bytes and rows against the server's.
            Ok(None) => served += 1,
            other => panic!("a stalled fetch ended with {other:?}"),
        }
    }
    (reset, served)
}

/// A push with a 2 MiB schema is refused (`limits.max_schema_size`); six with schemas
/// of 0.9 MiB, each to a shuffle of its own, are abandoned: their shuffles go with them
/// (the same shuffle ids then take another schema).
async fn big_schemas(child: &ChildServer, creds: &sluice_client::AppCredentials) -> ErrorCode {
    let (_endpoint, conn) = authenticated(child).await;
    let schema_of = |bytes: usize| {
        let name = "n".repeat(1000);
        let fields: Vec<Field> = (0..bytes / 1000)
            .map(|i| Field::new(format!("{i}{name}"), DataType::Int32, false))
            .collect();
        Schema::new(fields)
    };
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&encode_frame(&push_start(
        creds,
        200,
        4,
        &schema_of(2 << 20),
    )))
    .await
    .unwrap();
    let refused = match reply(&mut recv, Duration::from_secs(10)).await {
        Some(Message::Error { code, .. }) => code,
        other => panic!("a 2 MiB schema: {other:?}"),
    };
    let big = schema_of(900 << 10);
    for shuffle in 0..6 {
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&encode_frame(&push_start(creds, 300 + shuffle, 4, &big)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        send.reset(quinn::VarInt::from_u32(1)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let small = Schema::new(vec![Field::new("v", DataType::Int32, false)]);
    for shuffle in 0..6 {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut frames = encode_frame(&push_start(creds, 300 + shuffle, 4, &small));
        frames.extend(encode_frame(&Message::PushEnd { sums: vec![] }));
        send.write_all(&frames).await.unwrap();
        let _ = send.finish();
        let got = reply(&mut recv, Duration::from_secs(10)).await;
        assert!(
            matches!(got, Some(Message::PushCommitted { .. })),
            "shuffle {} kept its abandoned shape: {got:?}",
            300 + shuffle
        );
    }
    refused
}

/// Batches claiming rows their bytes cannot hold: 2^24 rows of a Null column, and as
/// many of no columns, in under 2 KB each. Both `InvalidData`, at once.
async fn claimed_rows(
    child: &ChildServer,
    creds: &sluice_client::AppCredentials,
) -> Vec<ErrorCode> {
    let (_endpoint, conn) = authenticated(child).await;
    let mut codes = Vec::new();
    let nulls = Arc::new(Schema::new(vec![Field::new("n", DataType::Null, true)]));
    let none = Arc::new(Schema::empty());
    for (shuffle, schema, rows) in [(400, nulls, 1usize << 24), (401, none, 1 << 24)] {
        let columns: Vec<ArrayRef> = if schema.fields().is_empty() {
            vec![]
        } else {
            vec![Arc::new(NullArray::new(rows))]
        };
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &options).unwrap();
        let mut ipc = Vec::new();
        sluice_format::encode_batch(&batch, &mut ipc).unwrap();
        assert!(ipc.len() < 2000);
        let mut frames = encode_frame(&push_start(creds, shuffle, 4, &schema));
        frames.extend(encode_frame(&Message::PushBatch {
            ipc: Bytes::from(ipc),
        }));
        codes.push(error_code(exchange(&conn, &frames).await));
    }
    codes
}

/// 3,000 QUIC Initial packets, each of a new connection, never followed up: the server
/// answers each with a stateless Retry and keeps nothing.
fn initial_flood(addr: SocketAddr, config: &ClientConfig) -> usize {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let client_config = config.quic_client_config().unwrap();
    let mut endpoint = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let mut buf = Vec::new();
    let mut sent = 0;
    for _ in 0..3000 {
        let now = std::time::Instant::now();
        let (_, mut conn) = endpoint
            .connect(now, client_config.clone(), addr, "localhost")
            .unwrap();
        buf.clear();
        if let Some(t) = conn.poll_transmit(now, 1, &mut buf) {
            socket.send_to(&buf[..t.size], addr).unwrap();
            sent += 1;
        }
    }
    sent
}

/// Pushes and fetches back one map after another until `stop`; any error fails.
async fn good_client(child: &ChildServer, stop: Arc<AtomicBool>) -> u32 {
    let client = Client::connect(child.addr, &child.config).await.unwrap();
    let creds = app("good-app");
    client.register_app(&creds).await.unwrap();
    let mut cycles = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let map = MapAttempt {
            map_id: u64::from(cycles),
            map_index: cycles,
            attempt: 0,
        };
        let rows = vec![
            batch(3000, u64::from(cycles)),
            batch(1000, 7 + u64::from(cycles)),
        ];
        push_map(&client, &creds, 0, map, 8, &rows).await;
        let got = fetch_map(&client, &creds, 0, 8, map.map_id).await.unwrap();
        assert_map_matches(&got, map.map_id, &reference_split(&rows, hash_spec(), 8));
        cycles += 1;
    }
    cycles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_at_once_stays_within_the_documented_memory() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child_configured(dir.path(), CONFIG);
    let pid = child.process.id();
    // The attackers' app, and data for the stalled fetches (8 MiB in 256 KiB blocks).
    let setup = Client::connect(child.addr, &child.config).await.unwrap();
    let evil = app("evil-app");
    setup.register_app(&evil).await.unwrap();
    let big: Vec<_> = (0..6).map(|i| batch(8192, 100 + i)).collect();
    push_map(
        &setup,
        &evil,
        3,
        MapAttempt {
            map_id: 1,
            map_index: 0,
            attempt: 0,
        },
        4,
        &big,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = current_rss(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let good = {
        let (child, stop) = (&child, stop.clone());
        async move { good_client(child, stop).await }
    };
    let attacks = async {
        let flood = {
            let (addr, config) = (child.addr, child.config.clone());
            tokio::task::spawn_blocking(move || initial_flood(addr, &config))
        };
        let (hellos, frames, pushes, wide, fetches, schema, rows) = tokio::join!(
            oversized_hellos(&child),
            many_half_frames(&child),
            wide_open_pushes(&child, &evil),
            wide_batch(&setup, &evil),
            stalled_fetches(&child, &evil),
            big_schemas(&child, &evil),
            claimed_rows(&child, &evil),
        );
        let flooded = flood.await.unwrap();
        stop.store(true, Ordering::Relaxed);
        (hellos, frames, pushes, wide, fetches, schema, rows, flooded)
    };
    let (cycles, (hellos, frames, pushes, wide, fetches, schema, rows, flooded)) =
        tokio::join!(good, attacks);

    let peak = peak_rss(pid);
    let bound = idle + 64 * MIB + CONNECTIONS * PER_CONNECTION;
    eprintln!(
        "idle RSS {} MiB, peak {} MiB, bound {} MiB; good client: {cycles} cycles; \
         wide batch committed in {wide:?}; {flooded} Initials sent",
        idle >> 20,
        peak >> 20,
        bound >> 20
    );
    assert_eq!(hellos, vec![Some(ErrorCode::FrameTooLarge); 3]);
    assert!(
        frames.len() >= 2 && frames.iter().all(|e| *e == Some(ErrorCode::LimitExceeded)),
        "half-sent frames ended with {frames:?}"
    );
    assert_eq!(pushes, 59, "pushes refused past the connection's allowance");
    assert!(
        fetches.0 + fetches.1 == 40 && fetches.0 >= 20,
        "stalled fetches (reset, served): {fetches:?}"
    );
    assert_eq!(schema, ErrorCode::LimitExceeded);
    assert_eq!(rows, vec![ErrorCode::InvalidData; 2]);
    assert_eq!(flooded, 3000);
    assert!(cycles >= 3, "the good client made only {cycles} cycles");
    assert!(
        peak <= bound,
        "peak RSS {} MiB over {} MiB",
        peak >> 20,
        bound >> 20
    );
    // And a new client is served afterwards.
    let after = Client::connect(child.addr, &child.config).await.unwrap();
    after.register_app(&app("after")).await.unwrap();
}
