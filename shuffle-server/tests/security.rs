//! Authentication, isolation and hostile input against a real server over QUIC.

mod common;

use bytes::Bytes;
use common::*;
use sluice_client::{
    Client, ClientConfig, ClientError, ErrorCode, FetchRequest, MapAttempt, Partitioning,
    PushRequest, Trust,
};
use sluice_proto::{encode_frame, Message, FRAME_HEADER_LEN};

#[tokio::test]
async fn wrong_cluster_token_is_refused_with_a_clear_error() {
    let server = start_server().await;
    let mut config = server.client_config();
    config.token = b"not-the-token".to_vec();
    let err = Client::connect(server.handle.local_addr(), &config)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    assert!(err.to_string().contains("invalid cluster token"), "{err}");
    // The server keeps serving clients with the right token.
    assert_serves_a_new_client(&server).await;
}

#[tokio::test]
async fn a_certificate_other_than_the_pinned_one_is_refused() {
    let server = start_server().await;
    let other = start_server().await;
    let config = ClientConfig::new(
        Trust::PinnedPem(other.handle.certificate_pem().to_string()),
        server.handle.token().to_vec(),
    );
    let err = Client::connect(server.handle.local_addr(), &config)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn token_and_certificate_are_generated_once_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = sluice_server::ServerConfig::embedded(dir.path().to_path_buf());
    let first = sluice_server::Server::start(config.clone()).await.unwrap();
    let (token, cert) = (first.token().to_vec(), first.certificate_pem().to_string());
    assert_eq!(token.len(), 64);
    let mode = std::fs::metadata(first.token_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    first.shutdown().await;
    let second = sluice_server::Server::start(config).await.unwrap();
    assert_eq!(second.token(), &token[..]);
    assert_eq!(second.certificate_pem(), cert);
}

#[tokio::test]
async fn one_app_cannot_touch_another_apps_shuffles() {
    let server = start_server().await;
    let client = server.client().await;
    let a = app("app-a");
    let b = app("app-b");
    client.register_app(&a).await.unwrap();
    client.register_app(&b).await.unwrap();
    let map = MapAttempt {
        map_id: 1,
        map_index: 0,
        attempt: 0,
    };
    let push = |creds: sluice_client::AppCredentials| PushRequest {
        app: creds,
        shuffle_id: 0,
        map,
        num_partitions: 4,
        partitioning: Partitioning::Hash { columns: vec![0] },
        schema: schema(),
        replicas: Vec::new(),
    };
    let mut p = client.push(push(a.clone())).await.unwrap();
    p.send(&batch(100, 7)).await.unwrap();
    p.commit().await.unwrap();

    // B's secret with A's id: refused for every request.
    let forged = sluice_client::AppCredentials {
        app: a.app.clone(),
        secret: b.secret.clone(),
    };
    let unauthorized = |r: Result<(), ClientError>| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    };
    let mut fetch = client
        .fetch(FetchRequest::partitions(forged.clone(), 0, 0..4))
        .await
        .unwrap();
    unauthorized(fetch.next_block().await.map(|_| ()));
    unauthorized(client.delete_shuffle(&forged, 0).await);
    unauthorized(client.delete_app(&forged).await);
    unauthorized(client.register_app(&forged).await);
    let mut p = client.push(push(forged.clone())).await.unwrap();
    let err = match p.send(&batch(10, 8)).await {
        Err(e) => e,
        Ok(()) => p.commit().await.unwrap_err(),
    };
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");

    // B's own namespace has no shuffle 0.
    let mut fetch = client
        .fetch(FetchRequest::partitions(b.clone(), 0, 0..4))
        .await
        .unwrap();
    assert!(fetch.next_block().await.unwrap().is_none());
    assert!(fetch.schema().is_none());

    // A's data is intact.
    let mut fetch = client
        .fetch(FetchRequest::partitions(a.clone(), 0, 0..4))
        .await
        .unwrap();
    let mut rows = 0;
    while let Some((_, batch)) = fetch.next_batch().await.unwrap() {
        rows += batch.num_rows();
    }
    assert_eq!(rows, 100);

    // A deletes its app: its data is gone, its id is unknown.
    client.delete_app(&a).await.unwrap();
    let mut fetch = client
        .fetch(FetchRequest::partitions(a.clone(), 0, 0..4))
        .await
        .unwrap();
    let err = fetch.next_block().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownApp), "{err}");
    assert!(!app_dir_exists(&server.dir.path().join("data"), "app-a"));
}

#[tokio::test]
async fn malformed_frames_fail_only_their_stream() {
    let server = start_server().await;
    let (_endpoint, conn) = raw_connection(&server).await;

    // Unknown message type.
    let mut unknown = vec![3, 0, 0, 0, 0xee];
    unknown.extend_from_slice(b"abc");
    assert_eq!(
        error_code(exchange(&conn, &unknown).await),
        ErrorCode::BadRequest
    );
    // A 4 GiB length prefix: refused before anything is allocated.
    let huge = [0xff, 0xff, 0xff, 0xff, 10];
    assert_eq!(
        error_code(exchange(&conn, &huge).await),
        ErrorCode::FrameTooLarge
    );
    // A valid type with a truncated body.
    let register = encode_frame(&Message::RegisterApp {
        app: sluice_proto::AppId::new("x").unwrap(),
        secret: Bytes::from_static(b"a-secret-of-16-bytes-or-more"),
    });
    let mut truncated = register.clone();
    truncated[0] = (truncated.len() - FRAME_HEADER_LEN - 2) as u8;
    truncated.truncate(truncated.len() - 2);
    assert_eq!(
        error_code(exchange(&conn, &truncated).await),
        ErrorCode::BadRequest
    );
    // An app id with a path component (AppId::new refuses it, so build the bytes).
    let evil = raw_frame(register[4], &[b"../..", b"s"]);
    assert_eq!(
        error_code(exchange(&conn, &evil).await),
        ErrorCode::BadRequest
    );
    // A push that sends garbage where an Arrow batch belongs.
    let creds = app("app-raw");
    assert_eq!(
        exchange(
            &conn,
            &encode_frame(&Message::RegisterApp {
                app: creds.app.clone(),
                secret: creds.secret.clone()
            })
        )
        .await,
        Some(Message::Ok)
    );
    let start = Message::PushStart(sluice_proto::PushStart {
        app: creds.app.clone(),
        secret: creds.secret.clone(),
        shuffle_id: 0,
        map: MapAttempt {
            map_id: 1,
            map_index: 0,
            attempt: 0,
        },
        num_partitions: 3,
        partitioning: Partitioning::Single,
        schema: Bytes::from(sluice_format::encode_schema(&schema())),
        replicas: vec![],
    });
    let mut push = encode_frame(&start);
    push.extend(encode_frame(&Message::PushBatch {
        ipc: Bytes::from_static(&[0xff; 64]),
    }));
    assert_eq!(
        error_code(exchange(&conn, &push).await),
        ErrorCode::InvalidData
    );

    // The same connection still serves valid requests, and so does the server.
    assert_eq!(exchange(&conn, &register).await, Some(Message::Ok));
    let client = server.client().await;
    let mut fetch = client
        .fetch(FetchRequest::partitions(creds.clone(), 0, 0..3))
        .await
        .unwrap();
    assert!(
        fetch.next_block().await.unwrap().is_none(),
        "nothing of the rejected push is served"
    );
}

/// A QUIC connection to `server` that has not said Hello.
async fn unauthenticated(server: &TestServer) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(server.client_config().quic_client_config().unwrap());
    let conn = endpoint
        .connect(server.handle.local_addr(), "localhost")
        .unwrap()
        .await
        .unwrap();
    (endpoint, conn)
}

/// Anything but a valid `Hello` on the first stream gets a typed `Error` there, then
/// the connection is closed with the same code; other connections are not affected.
#[tokio::test]
async fn a_bad_hello_gets_a_typed_error_and_closes_only_that_connection() {
    let server = start_server().await;
    let hello = encode_frame(&Message::Hello {
        version: sluice_proto::PROTOCOL_VERSION,
        token: Bytes::copy_from_slice(server.handle.token()),
        client: "x".repeat(20_000),
    });
    let register = encode_frame(&Message::RegisterApp {
        app: sluice_proto::AppId::new("early").unwrap(),
        secret: Bytes::from_static(b"a-secret-of-16-bytes-or-more"),
    });
    let mut truncated = encode_frame(&Message::Hello {
        version: sluice_proto::PROTOCOL_VERSION,
        token: Bytes::copy_from_slice(server.handle.token()),
        client: "raw".into(),
    });
    truncated[0] -= 2;
    truncated.truncate(truncated.len() - 2);
    let cases: [(&[u8], ErrorCode); 4] = [
        // "GET " read as a length: far over the 16 KiB a Hello may have.
        (b"GET / HTTP/1.1\r\n\r\n", ErrorCode::FrameTooLarge),
        (&hello, ErrorCode::FrameTooLarge),
        (&register, ErrorCode::BadRequest),
        (&truncated, ErrorCode::BadRequest),
    ];
    for (bytes, code) in cases {
        let (_endpoint, conn) = unauthenticated(&server).await;
        let reply = exchange(&conn, bytes).await;
        assert!(
            matches!(&reply, Some(Message::Error { code: c, .. }) if *c == code),
            "{code:?}: {reply:?}"
        );
        match conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code.into_inner(), u64::from(code.to_u16()))
            }
            other => panic!("{other}"),
        }
    }
    assert_serves_a_new_client(&server).await;
}

/// Until it shows the token a connection may open one stream; past
/// `limits.max_pending_connections` such connections, new ones are refused at once;
/// each is closed at the handshake timeout, and then new clients are served.
#[tokio::test]
async fn connections_without_the_token_are_few_and_small() {
    let server = start_server_with(|c| {
        c.limits.max_pending_connections = 2;
        c.limits.handshake_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    let (_e1, first) = unauthenticated(&server).await;
    let (_e2, _second) = unauthenticated(&server).await;
    // One stream before the token (here with half a frame header on it).
    let (mut send, _recv) = first.open_bi().await.unwrap();
    send.write_all(&[1, 0]).await.unwrap();
    let another = tokio::time::timeout(std::time::Duration::from_millis(300), first.open_bi());
    assert!(another.await.is_err(), "a second stream before the token");
    // A third connection is refused while two are pending.
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(server.client_config().quic_client_config().unwrap());
    let third = endpoint
        .connect(server.handle.local_addr(), "localhost")
        .unwrap()
        .await;
    assert!(
        matches!(third, Err(quinn::ConnectionError::ConnectionClosed(_))),
        "{third:?}"
    );
    // The pending ones are closed at the handshake timeout; then clients get in.
    let reason = tokio::time::timeout(std::time::Duration::from_secs(5), first.closed())
        .await
        .unwrap();
    assert!(
        matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
        "{reason}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_serves_a_new_client(&server).await;
}

/// A new application's secret has at least 16 bytes; a shorter one is refused and
/// registers nothing.
#[tokio::test]
async fn a_new_application_needs_a_secret_of_16_bytes() {
    let server = start_server().await;
    let client = server.client().await;
    for secret in [&b""[..], b"short", b"fifteen-bytes!!"] {
        let creds = sluice_client::AppCredentials::new("weak", secret.to_vec()).unwrap();
        let err = client.register_app(&creds).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::BadRequest), "{err}");
        assert!(err.to_string().contains("at least 16"), "{err}");
    }
    assert!(!app_dir_exists(&server.dir.path().join("data"), "weak"));
    let strong = sluice_client::AppCredentials::new("weak", b"sixteen-bytes!!!".to_vec()).unwrap();
    client.register_app(&strong).await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_the_others_keep_working() {
    let server = start_server_with(|c| c.limits.max_connections = 1).await;
    let first = server.client().await;
    let err = Client::connect(server.handle.local_addr(), &server.client_config())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(
        err.to_string()
            .contains("too many connections (limits.max_connections = 1)"),
        "{err}"
    );
    first.register_app(&app("still-served")).await.unwrap();
    // Once the first connection is gone its slot is free again.
    first.close().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Client::connect(server.handle.local_addr(), &server.client_config()).await {
            Ok(c) => break c.register_app(&app("next")).await.unwrap(),
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(e.code(), Some(ErrorCode::LimitExceeded), "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the freed connection slot was never reused: {e}"),
        }
    }
}

#[tokio::test]
async fn applications_beyond_the_limit_are_refused_and_write_nothing() {
    let server = start_server_with(|c| c.limits.max_apps = 1).await;
    let client = server.client().await;
    client.register_app(&app("first")).await.unwrap();
    let err = client.register_app(&app("second")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LimitExceeded), "{err}");
    assert!(
        err.to_string()
            .contains("too many applications (limits.max_apps = 1)"),
        "{err}"
    );
    let apps = server.dir.path().join("data/apps");
    assert!(!apps.join("second").exists(), "a refused app left files");
    // The registered app keeps working, and re-registering it is not a new app.
    client.register_app(&app("first")).await.unwrap();
    let map = MapAttempt {
        map_id: 1,
        map_index: 0,
        attempt: 0,
    };
    push_map(&client, &app("first"), 0, map, 4, &[batch(100, 1)]).await;
}

#[tokio::test]
async fn streams_beyond_the_limit_wait_and_other_connections_are_served() {
    let server = start_server_with(|c| c.limits.max_streams_per_connection = 2).await;
    let (_endpoint, conn) = raw_connection(&server).await;
    // Two streams that never finish their request hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0]).await.unwrap();
        held.push((send, recv));
    }
    let third = tokio::time::timeout(std::time::Duration::from_millis(500), conn.open_bi()).await;
    assert!(third.is_err(), "a third stream opened past the limit");
    // Another connection is served meanwhile.
    let client = server.client().await;
    client.register_app(&app("beside")).await.unwrap();
    // Releasing a slot lets the waiting connection go on.
    let (mut send, _recv) = held.pop().unwrap();
    send.reset(quinn::VarInt::from_u32(0)).unwrap();
    drop(send);
    let register = encode_frame(&Message::RegisterApp {
        app: sluice_proto::AppId::new("after-release").unwrap(),
        secret: Bytes::from_static(b"a-secret-of-16-bytes-or-more"),
    });
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        exchange(&conn, &register),
    )
    .await
    .expect("a freed stream slot was never granted");
    assert_eq!(reply, Some(Message::Ok));
}

/// A batch of no rows, as pyarrow writes it (an IPC message with an empty body), is
/// accepted and changes nothing; the client sends none at all.
#[tokio::test]
async fn an_empty_batch_is_accepted() {
    use arrow_array::RecordBatch;
    use arrow_schema::{DataType, Field, Schema};
    let server = start_server().await;
    let (_endpoint, conn) = raw_connection(&server).await;
    let creds = app("empty");
    let register = encode_frame(&Message::RegisterApp {
        app: creds.app.clone(),
        secret: creds.secret.clone(),
    });
    assert_eq!(exchange(&conn, &register).await, Some(Message::Ok));
    let keys = std::sync::Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
    let mut ipc = Vec::new();
    sluice_format::encode_batch(&RecordBatch::new_empty(keys.clone()), &mut ipc).unwrap();
    let mut push = encode_frame(&Message::PushStart(sluice_proto::PushStart {
        app: creds.app.clone(),
        secret: creds.secret.clone(),
        shuffle_id: 0,
        map: MapAttempt {
            map_id: 1,
            map_index: 0,
            attempt: 0,
        },
        num_partitions: 2,
        partitioning: Partitioning::Hash { columns: vec![0] },
        schema: Bytes::from(sluice_format::encode_schema(&keys)),
        replicas: vec![],
    }));
    push.extend(encode_frame(&Message::PushBatch {
        ipc: Bytes::from(ipc),
    }));
    push.extend(encode_frame(&Message::PushEnd { sums: vec![] }));
    assert_eq!(
        exchange(&conn, &push).await,
        Some(Message::PushCommitted {
            partition_bytes: vec![0, 0],
            partition_rows: vec![0, 0],
            replica: None,
        })
    );
    // Through the client: an empty batch among others.
    let client = server.client().await;
    let request = PushRequest {
        app: creds.clone(),
        shuffle_id: 1,
        map: MapAttempt {
            map_id: 2,
            map_index: 0,
            attempt: 0,
        },
        num_partitions: 4,
        partitioning: Partitioning::Hash { columns: vec![0] },
        schema: schema(),
        replicas: Vec::new(),
    };
    let rows = [batch(10, 1), RecordBatch::new_empty(schema()), batch(5, 2)];
    let ack = try_push(&client, request, &rows).await.unwrap();
    assert_eq!(ack.partition_rows.iter().sum::<u64>(), 15);
}
