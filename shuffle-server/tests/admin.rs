//! The admin endpoint: status, application deletion with the admin token, health
//! during a drain.

mod common;

use common::*;
use sluice_client::{ClientError, ErrorCode};
use sluice_server::admin_client;
use sluice_server::status::Status;

async fn status(addr: std::net::SocketAddr) -> Status {
    let reply = admin_get(addr, "/status").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

async fn delete(addr: std::net::SocketAddr, app: &str, token: Option<&str>) -> (u16, String) {
    let path = format!("/apps/{app}");
    let r = admin_client::request(addr, hyper::Method::DELETE, &path, token)
        .await
        .unwrap();
    (r.status, r.body)
}

#[tokio::test]
async fn status_lists_apps_and_an_admin_deletes_one_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let admin = server.admin_addr().unwrap();
    let client = connect(&server).await;
    let (a, b) = (app("app-a"), app("app-b"));
    for creds in [&a, &b] {
        client.register_app(creds).await.unwrap();
    }
    push(&client, &a, 3, 1, &[keyed_batch(0, 500)])
        .await
        .unwrap();
    push(&client, &a, 3, 2, &[keyed_batch(500, 500)])
        .await
        .unwrap();
    let ack = push(&client, &b, 0, 7, &[keyed_batch(0, 100)])
        .await
        .unwrap();

    let s = status(admin).await;
    assert_eq!(s.backend, server.backend().name());
    assert_eq!(s.listen, server.local_addr().to_string());
    assert!(!s.draining);
    assert_eq!((s.connections, s.pushes), (1, 0));
    let ids: Vec<_> = s.apps.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["app-a", "app-b"]);
    let shuffle = &s.apps[0].shuffles[0];
    assert_eq!(
        (shuffle.id, shuffle.partitions, shuffle.committed_maps),
        (3, PARTITIONS, 2)
    );
    assert!(shuffle.stored_bytes > 0);
    // Files hold each block plus its record framing.
    assert!(s.apps[1].shuffles[0].stored_bytes > ack.partition_bytes.iter().sum::<u64>());
    assert!(s.disk.used_bytes >= shuffle.stored_bytes);
    assert_eq!(s.memory.limit_bytes, Some(1 << 30));
    assert!(s
        .render()
        .contains("shuffle 3: 8 partitions, 2 maps committed"));

    // Deleting needs the admin token; a refused request deletes nothing.
    let token = std::fs::read_to_string(server.admin_token_path()).unwrap();
    assert_eq!(delete(admin, "app-a", None).await.0, 401);
    assert_eq!(delete(admin, "app-a", Some("guess")).await.0, 403);
    assert_eq!(delete(admin, ".hidden", Some(&token)).await.0, 400);
    assert_eq!(delete(admin, "nobody", Some(&token)).await.0, 404);
    assert_eq!(status(admin).await.apps.len(), 2);
    assert_eq!(
        delete(admin, "app-a", Some(&token)).await,
        (200, "deleted app-a\n".into())
    );
    let s = status(admin).await;
    assert_eq!(
        s.apps.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["app-b"]
    );
    assert!(!app_dir_exists(&dir.path().join("data"), "app-a"));
    let err = push(&client, &a, 3, 9, &[keyed_batch(0, 1)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownApp), "{err}");
    // The other app is untouched.
    let keys = fetch_keys(&client, &b, 0, vec![7]).await.unwrap();
    assert_eq!(keys, (0..100).collect::<Vec<i64>>());
    assert_eq!(admin_get(admin, "/nothing").await.status, 404);
}

#[tokio::test]
async fn a_drain_refuses_new_pushes_with_a_retryable_error_and_keeps_serving_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let admin = server.admin_addr().unwrap();
    let client = connect(&server).await;
    let creds = app("drained");
    client.register_app(&creds).await.unwrap();
    push(&client, &creds, 0, 1, &[keyed_batch(0, 300)])
        .await
        .unwrap();
    assert_eq!(admin_get(admin, "/healthz").await.body, "ok\n");

    // A push that is open when the drain starts may still commit.
    let mut open = client.push(push_request(&creds, 0, 2)).await.unwrap();
    open.send(&keyed_batch(300, 300)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let drain = server.drain(std::time::Duration::from_secs(30));
    let commit = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        open.commit().await
    };
    let (report, committed) = tokio::join!(drain, commit);
    committed.unwrap();
    assert_eq!(report.abandoned_pushes, 0);

    let health = admin_get(admin, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (503, "draining\n"));
    assert!(status(admin).await.draining);
    let err = push(&client, &creds, 0, 3, &[keyed_batch(600, 10)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Server { code: ErrorCode::Draining, message }
            if message.contains("draining")),
        "{err}"
    );
    assert!(err.is_retryable());
    let keys = fetch_keys(&client, &creds, 0, vec![1, 2]).await.unwrap();
    assert_eq!(keys, (0..600).collect::<Vec<i64>>());
    server.shutdown().await;
}
