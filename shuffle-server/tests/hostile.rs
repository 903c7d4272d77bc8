//! Hostile clients against a running server over real QUIC, while a well-behaved client
//! pushes and fetches on the same server: every hostile request gets a typed error or a
//! bounded wait, nothing it sent is written, and the good client never sees an error.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use common::*;
use sluice_client::{Client, ClientError, ErrorCode, FetchRequest, MapAttempt, Partitioning};
use sluice_proto::{encode_frame, Message, FRAME_HEADER_LEN};

/// Pushes and fetches back one map after another until `stop`; returns the cycles
/// completed and the bytes pushed. Any error fails the test.
async fn good_client(server: Arc<TestServer>, stop: Arc<AtomicBool>) -> (u32, u64, Duration) {
    let client = server.client().await;
    let app = app("good-app");
    client.register_app(&app).await.unwrap();
    let (mut cycles, mut bytes) = (0u32, 0u64);
    let start = Instant::now();
    let n = 8;
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
        push_map(&client, &app, 0, map, n, &rows).await;
        let got = fetch_map(&client, &app, 0, n, map.map_id).await.unwrap();
        assert_map_matches(&got, map.map_id, &reference_split(&rows, hash_spec(), n));
        bytes += rows
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum::<u64>();
        cycles += 1;
    }
    (cycles, bytes, start.elapsed())
}

/// A push of map 1 to `shuffle_id` (each scenario uses its own shuffle: the first
/// push to a shuffle fixes its shape, even when that push is then refused).
fn push_start(
    creds: &sluice_client::AppCredentials,
    shuffle_id: u32,
    partitioning: Partitioning,
) -> Message {
    Message::PushStart(sluice_proto::PushStart {
        app: creds.app.clone(),
        secret: creds.secret.clone(),
        shuffle_id,
        map: MapAttempt {
            map_id: 1,
            map_index: 0,
            attempt: 0,
        },
        num_partitions: 4,
        partitioning,
        schema: Bytes::from(sluice_format::encode_schema(&schema())),
        replicas: vec![],
    })
}

fn batch_frame(batch: &RecordBatch) -> Vec<u8> {
    let mut ipc = Vec::new();
    sluice_format::encode_batch(batch, &mut ipc).unwrap();
    encode_frame(&Message::PushBatch {
        ipc: Bytes::from(ipc),
    })
}

fn pid_batch(ids: Vec<i32>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("pid", DataType::Int32, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(ids))]).unwrap()
}

/// Hostile requests on one raw connection; each must get its typed error.
async fn malformed_requests(server: &TestServer) {
    let (_endpoint, conn) = raw_connection(server).await;
    let creds = app("evil-app");
    let register = encode_frame(&Message::RegisterApp {
        app: creds.app.clone(),
        secret: creds.secret.clone(),
    });
    assert_eq!(exchange(&conn, &register).await, Some(Message::Ok));

    // Garbage after the handshake, a truncated frame, a 4 GiB length prefix.
    let code = |reply| error_code(reply);
    assert_eq!(
        code(exchange(&conn, &[0x07; 300]).await),
        ErrorCode::FrameTooLarge
    );
    assert_eq!(
        code(exchange(&conn, &[9, 0, 0, 0, 0xee, 1]).await),
        ErrorCode::BadRequest
    );
    let mut truncated = register.clone();
    truncated.truncate(FRAME_HEADER_LEN + 3);
    assert_eq!(
        code(exchange(&conn, &truncated).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        code(exchange(&conn, &[0xff, 0xff, 0xff, 0xff, 10]).await),
        ErrorCode::FrameTooLarge
    );

    // Invalid Arrow IPC, and a batch of another schema than the push declared.
    let mut push = encode_frame(&push_start(&creds, 1, Partitioning::Single));
    push.extend(encode_frame(&Message::PushBatch {
        ipc: Bytes::from_static(&[0x5a; 100]),
    }));
    assert_eq!(code(exchange(&conn, &push).await), ErrorCode::InvalidData);
    let mut push = encode_frame(&push_start(&creds, 2, Partitioning::Single));
    push.extend(batch_frame(&pid_batch(vec![1, 2, 3])));
    assert_eq!(code(exchange(&conn, &push).await), ErrorCode::InvalidData);

    // Partition ids out of range, and negative, from a partition-id column.
    for (shuffle, ids) in [(3, vec![0, 4]), (4, vec![1, -1])] {
        let mut start = push_start(
            &creds,
            shuffle,
            Partitioning::PartitionIdColumn { column: 0 },
        );
        if let Message::PushStart(sluice_proto::PushStart { schema, .. }) = &mut start {
            *schema = Bytes::from(sluice_format::encode_schema(&pid_batch(vec![]).schema()));
        }
        let mut push = encode_frame(&start);
        push.extend(batch_frame(&pid_batch(ids.clone())));
        let reply = exchange(&conn, &push).await;
        assert!(
            matches!(&reply, Some(Message::Error { code: ErrorCode::InvalidData, message })
                if message.contains(&format!("partition id {}", ids[1]))),
            "{ids:?}: {reply:?}"
        );
    }

    // A wrong app secret, an unknown app, and an id with path components.
    let mut stolen = creds.clone();
    stolen.secret = Bytes::from_static(b"guessed");
    let start_single =
        |creds, shuffle_id| encode_frame(&push_start(creds, shuffle_id, Partitioning::Single));
    assert_eq!(
        code(exchange(&conn, &start_single(&stolen, 5)).await),
        ErrorCode::Unauthorized
    );
    let stranger = app("never-registered");
    assert_eq!(
        code(exchange(&conn, &start_single(&stranger, 6)).await),
        ErrorCode::UnknownApp
    );
    let evil = raw_frame(register[4], &[b"../../etc", b"s"]);
    assert_eq!(code(exchange(&conn, &evil).await), ErrorCode::BadRequest);
}

/// Opens far more streams than the server allows and leaves them open: the excess
/// waits for stream credit (the server never sees them), then the connection goes away.
async fn thousands_of_streams(server: &TestServer) -> usize {
    let (_endpoint, conn) = raw_connection(server).await;
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..3000 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.open_bi()).await {
            Ok(Ok((mut send, recv))) => {
                // One byte of a frame header: the server reads and waits for more.
                send.write_all(&[1]).await.unwrap();
                held.push((send, recv));
            }
            _ => break,
        }
    }
    let opened = held.len();
    conn.close(0u32.into(), b"bye");
    opened
}

/// Pushes a map of several MiB, then fetches it on a connection whose receive window
/// is 64 KiB and never reads: the server must give up after its stall timeout.
async fn slowloris_reader(server: &TestServer) -> ClientError {
    let client = server.client().await;
    let creds = app("slow-app");
    client.register_app(&creds).await.unwrap();
    let rows: Vec<RecordBatch> = (0..6).map(|i| batch(20_000, 100 + i)).collect();
    let map = MapAttempt {
        map_id: 1,
        map_index: 0,
        attempt: 0,
    };
    push_map(&client, &creds, 0, map, 1, &rows).await;

    let mut config = server.client_config();
    config.transport.stream_receive_window = 64 << 10;
    config.transport.receive_window = 128 << 10;
    let slow = Client::connect(server.handle.local_addr(), &config)
        .await
        .unwrap();
    let mut fetch = slow
        .fetch(FetchRequest::partitions(creds, 0, 0..1))
        .await
        .unwrap();
    // Sit on the stream well past the stall timeout, reading nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    loop {
        match fetch.next_block().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a stalled fetch was served to the end"),
            Err(e) => return e,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_typed_errors_and_do_not_disturb_a_good_one() {
    let server = Arc::new(
        start_server_with(|c| {
            c.limits.stall_timeout = Duration::from_secs(1);
            c.limits.max_streams_per_connection = 64;
        })
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let good = tokio::spawn(good_client(server.clone(), stop.clone()));

    malformed_requests(&server).await;
    let opened = thousands_of_streams(&server).await;
    // At most the limit (less the handshake's stream while its credit is on its way).
    assert!(
        (63..=64).contains(&opened),
        "{opened} streams opened; beyond the limit they must wait for credit"
    );
    let err = slowloris_reader(&server).await;
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err:?}");

    stop.store(true, Ordering::Relaxed);
    let (cycles, bytes, elapsed) = good.await.unwrap();
    eprintln!(
        "good client during the attacks: {cycles} push+fetch cycles, {:.1} MB/s pushed",
        bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );
    assert!(cycles >= 3, "the good client made only {cycles} cycles");

    // Nothing rejected was written: the evil app holds no shuffle data, and apps that
    // were refused have no directory at all.
    let data = server.dir.path().join("data");
    for refused in ["never-registered", "etc"] {
        assert!(!app_dir_exists(&data, refused), "{refused}");
    }
    assert!(app_dir_exists(&data, "good-app"));
    let evil_files: Vec<_> = walk(&app_dir(&data, "evil-app").unwrap())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .filter(|p| std::fs::metadata(p).map_or(0, |m| m.len()) > 0)
        .collect();
    assert!(
        evil_files.is_empty(),
        "rejected pushes left data: {evil_files:?}"
    );
    // Nothing the attackers sent is still held: no open push, no buffered bytes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = server.handle.status();
        if status.pushes == 0 && status.memory.used_bytes == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still held: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server still answers a new client.
    assert_serves_a_new_client(&server).await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// (A wrong cluster token is `security.rs`'s `wrong_cluster_token_is_refused_…`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_of_an_unknown_shuffle_reports_the_named_maps_missing() {
    let server = start_server().await;
    let client = server.client().await;
    let creds = app("asker");
    client.register_app(&creds).await.unwrap();
    let err = fetch_map(&client, &creds, 77, 4, 5).await.unwrap_err();
    assert!(
        matches!(err, ClientError::MissingMaps(ref maps) if maps == &vec![5]),
        "{err:?}"
    );
    // And nothing was created for it.
    let asker = app_dir(&server.dir.path().join("data"), "asker").unwrap();
    let entries: Vec<_> = std::fs::read_dir(&asker)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["app.meta"]);
}
