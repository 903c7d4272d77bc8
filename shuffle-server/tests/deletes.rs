//! A delete ends what is in flight on what it deletes: every delete path (a client's
//! `DeleteShuffle` and `DeleteApp`, the admin endpoint) racing an open push and an open
//! fetch. The old requests get `Deleted`, nothing they still send is written or
//! committed, and the data of a successor (the app registered again with a new secret,
//! the shuffle pushed again) is exactly its own.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use sluice_client::{
    AppCredentials, Client, ClientConfig, ClientError, ErrorCode, FetchRequest, MapFilter,
    PushStream, TransportTuning,
};
use sluice_server::admin_client;

/// How a test deletes.
#[derive(Debug, Clone, Copy)]
enum Delete {
    Shuffle,
    App,
    Admin,
}

async fn delete(
    how: Delete,
    server: &sluice_server::ServerHandle,
    client: &Client,
    creds: &AppCredentials,
) {
    match how {
        Delete::Shuffle => client.delete_shuffle(creds, 5).await.unwrap(),
        Delete::App => client.delete_app(creds).await.unwrap(),
        Delete::Admin => {
            let token = std::fs::read_to_string(server.admin_token_path()).unwrap();
            let path = format!("/apps/{}", creds.app);
            let reply = admin_client::request(
                server.admin_addr().unwrap(),
                hyper::Method::DELETE,
                &path,
                Some(token.trim()),
            )
            .await
            .unwrap();
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }
}

fn assert_deleted(result: Result<impl std::fmt::Debug, ClientError>) {
    match result {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::Deleted), "{e}"),
        Ok(v) => panic!("expected Deleted, got {v:?}"),
    }
}

/// Directories of `app` (any generation, and anything being deleted) under the data dir.
fn app_dirs(data: &Path, app: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("apps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(&format!("{app}@")) || n.contains("deleted"))
        .collect();
    names.sort();
    names
}

/// Opens a push of map 1 to shuffle 5 and sends a batch that stays buffered (far below
/// the block size), so nothing of it is on disk yet.
async fn open_push(client: &Client, creds: &AppCredentials) -> PushStream {
    let mut push = client.push(push_request(creds, 5, 1)).await.unwrap();
    push.send(&keyed_batch(1_000_000, 300)).await.unwrap();
    push
}

async fn the_old_push_never_reaches_the_successor(how: Delete) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let client = connect(&server).await;
    let old = app("tenant");
    client.register_app(&old).await.unwrap();
    let old_push = open_push(&client, &old).await;
    // Let the server take the batch in before the delete.
    tokio::time::sleep(Duration::from_millis(200)).await;

    delete(how, &server, &client, &old).await;
    // The successor: the same app id with a new secret (or the same app, for a shuffle
    // delete) pushes and commits the same shuffle id and map id.
    let new = match how {
        Delete::Shuffle => old.clone(),
        Delete::App | Delete::Admin => {
            let new = AppCredentials::new("tenant", b"a-new-owner-secret".to_vec()).unwrap();
            client.register_app(&new).await.unwrap();
            new
        }
    };
    push(&client, &new, 5, 1, &[keyed_batch(0, 40)])
        .await
        .unwrap();

    // The old push's end: refused, never committed.
    assert_deleted(old_push.commit().await);
    assert_eq!(
        fetch_keys(&client, &new, 5, vec![1]).await.unwrap(),
        (0..40).collect::<Vec<i64>>(),
        "{how:?}: the successor reads exactly its own rows"
    );
    let status = server.status();
    assert_eq!(status.pushes, 0);
    let shuffle = &status.apps[0].shuffles[0];
    assert_eq!((shuffle.id, shuffle.committed_maps), (5, 1));
    // One directory for the app; its predecessor's (if another) is gone.
    let dirs = app_dirs(&dir.path().join("data"), "tenant");
    assert_eq!(dirs.len(), 1, "{dirs:?}");

    // The data survives a restart as it is.
    server.shutdown().await;
    let server = start(dir.path(), |_| {}).await;
    let client = connect(&server).await;
    assert_eq!(
        fetch_keys(&client, &new, 5, vec![1]).await.unwrap(),
        (0..40).collect::<Vec<i64>>()
    );
    if !matches!(how, Delete::Shuffle) {
        let err = client.register_app(&old).await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    }
}

#[tokio::test]
async fn delete_shuffle_ends_an_open_push() {
    the_old_push_never_reaches_the_successor(Delete::Shuffle).await;
}

#[tokio::test]
async fn delete_app_ends_an_open_push() {
    the_old_push_never_reaches_the_successor(Delete::App).await;
}

#[tokio::test]
async fn admin_delete_ends_an_open_push() {
    the_old_push_never_reaches_the_successor(Delete::Admin).await;
}

/// A reader with small windows, so a large fetch stays open on the server.
async fn slow_reader(server: &sluice_server::ServerHandle) -> Client {
    let mut config: ClientConfig = client_config(server.certificate_pem(), server.token());
    config.transport = TransportTuning {
        stream_receive_window: 32 << 10,
        receive_window: 64 << 10,
        ..TransportTuning::CLIENT
    };
    Client::connect(server.local_addr(), &config).await.unwrap()
}

async fn an_open_fetch_ends(how: Delete) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.storage.block_size = bytesize::ByteSize::kib(16);
    })
    .await;
    let client = connect(&server).await;
    let creds = app("tenant");
    client.register_app(&creds).await.unwrap();
    let batches: Vec<_> = (0..8).map(|i| keyed_batch(i * 20_000, 20_000)).collect();
    push(&client, &creds, 5, 1, &batches).await.unwrap();

    let reader = slow_reader(&server).await;
    let request = FetchRequest::partitions(creds.clone(), 5, 0..PARTITIONS)
        .with_maps(MapFilter::MapIds(vec![1]));
    let mut fetch = reader.fetch(request).await.unwrap();
    assert!(fetch.next_block().await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(100)).await;

    delete(how, &server, &client, &creds).await;
    let mut rows = 0u64;
    let end = loop {
        match fetch.next_block().await {
            Ok(Some(block)) => rows += u64::from(block.header.rows),
            other => break other,
        }
    };
    assert_deleted(end);
    assert!(
        rows < 160_000,
        "{how:?}: the fetch ended early, after {rows} rows"
    );
    assert_eq!(server.status().pushes, 0);
}

#[tokio::test]
async fn delete_shuffle_ends_an_open_fetch() {
    an_open_fetch_ends(Delete::Shuffle).await;
}

#[tokio::test]
async fn delete_app_ends_an_open_fetch() {
    an_open_fetch_ends(Delete::App).await;
}

#[tokio::test]
async fn admin_delete_ends_an_open_fetch() {
    an_open_fetch_ends(Delete::Admin).await;
}

/// Expiry never takes an app with a request in progress (that is a sign of life); once
/// the push is done and the app is idle, it goes with its files.
#[tokio::test]
async fn expiry_waits_for_requests_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.storage.app_expiry = Duration::from_millis(300);
    })
    .await;
    let client = connect(&server).await;
    let creds = app("tenant");
    client.register_app(&creds).await.unwrap();
    let mut open = open_push(&client, &creds).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    open.send(&keyed_batch(0, 10)).await.unwrap();
    open.commit().await.unwrap();
    assert_eq!(
        fetch_keys(&client, &creds, 5, vec![1]).await.unwrap().len(),
        310
    );
    let data = dir.path().join("data");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !app_dirs(&data, "tenant").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle app never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = client.register_app(&creds).await;
    assert!(err.is_ok(), "a new registration after expiry: {err:?}");
}

/// Rounds of deletes racing pushes (with blocks on disk and in flight) and fetches:
/// each old request either finished before the delete or gets a typed error, and each
/// successor reads exactly its own rows; the disk quota ends at what the files hold.
#[tokio::test]
async fn deletes_racing_pushes_and_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.storage.block_size = bytesize::ByteSize::kib(8);
    })
    .await;
    let admin = connect(&server).await;
    let ways = [Delete::Shuffle, Delete::App, Delete::Admin];
    // (finished before the delete, ended by it)
    let mut outcomes = (0, 0);
    for round in 0..9u64 {
        let how = ways[round as usize % 3];
        let secret = format!("secret-of-round-{round}").into_bytes();
        let old = AppCredentials::new("tenant", secret).unwrap();
        admin.register_app(&old).await.unwrap();
        push(&admin, &old, 5, 99, &[keyed_batch(0, 2000)])
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for map_id in 1..=3u64 {
            let client = connect(&server).await;
            let creds = old.clone();
            tasks.push(tokio::spawn(async move {
                let batches: Vec<_> = (0..60).map(|i| keyed_batch(i * 1000, 1000)).collect();
                push(&client, &creds, 5, map_id, &batches).await.map(|_| ())
            }));
        }
        let reader = slow_reader(&server).await;
        let creds = old.clone();
        tasks.push(tokio::spawn(async move {
            fetch_keys(&reader, &creds, 5, vec![99]).await.map(|_| ())
        }));
        tokio::time::sleep(Duration::from_millis(15 * round)).await;
        delete(how, &server, &admin, &old).await;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => outcomes.0 += 1,
                Err(e) if e.code() == Some(ErrorCode::Deleted) => outcomes.1 += 1,
                Err(e) => assert!(
                    matches!(
                        e.code(),
                        Some(ErrorCode::Deleted | ErrorCode::UnknownApp | ErrorCode::Unauthorized)
                    ),
                    "round {round} ({how:?}): {e}"
                ),
            }
        }
        // The successor: an app registered again, or the same app's shuffle again.
        let new = match how {
            Delete::Shuffle => old.clone(),
            _ => {
                let new = AppCredentials::new("tenant", b"next-owner-secret".to_vec()).unwrap();
                admin.register_app(&new).await.unwrap();
                new
            }
        };
        push(&admin, &new, 5, 1, &[keyed_batch(7_000_000, 50)])
            .await
            .unwrap();
        let keys = fetch_keys(&admin, &new, 5, vec![1, 2, 3, 99]).await;
        assert!(
            matches!(&keys, Err(ClientError::MissingMaps(m)) if m == &vec![2, 3, 99]),
            "round {round} ({how:?}): {keys:?}"
        );
        assert_eq!(
            fetch_keys(&admin, &new, 5, vec![1]).await.unwrap(),
            (7_000_000..7_000_050).collect::<Vec<i64>>()
        );
        // Clean slate for the next round.
        admin.delete_app(&new).await.unwrap();
        let status = server.status();
        assert!(status.apps.is_empty(), "round {round}: {status:?}");
        assert_eq!(status.disk.used_bytes, 0, "round {round} ({how:?})");
    }
    let dirs = app_dirs(&dir.path().join("data"), "tenant");
    assert!(dirs.is_empty(), "{dirs:?}");
    eprintln!(
        "requests finished before the delete: {}, ended by it: {}",
        outcomes.0, outcomes.1
    );
    // The round without a delay ends its requests mid-way.
    assert!(outcomes.1 > 0, "no request was in flight at a delete");
}

/// On start, what an interrupted delete left (a directory renamed aside) is removed,
/// and directories from before generations were kept (`apps/<app>/shuffle-<id>`) are
/// served as they were.
#[tokio::test]
async fn restart_removes_interrupted_deletes_and_reads_old_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let client = connect(&server).await;
    let (kept, gone) = (app("kept"), app("gone"));
    for creds in [&kept, &gone] {
        client.register_app(creds).await.unwrap();
        push(&client, creds, 5, 1, &[keyed_batch(0, 30)])
            .await
            .unwrap();
    }
    server.shutdown().await;
    let data = dir.path().join("data");
    // `kept` in the old layout; `gone` as a crash in the middle of its delete left it.
    let kept_dir = common::app_dir(&data, "kept").unwrap();
    let shuffle = std::fs::read_dir(&kept_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("shuffle-5@")
        })
        .unwrap();
    std::fs::rename(&shuffle, kept_dir.join("shuffle-5")).unwrap();
    std::fs::rename(&kept_dir, data.join("apps/kept")).unwrap();
    let gone_dir = common::app_dir(&data, "gone").unwrap();
    std::fs::rename(&gone_dir, data.join("apps/.deleted-gone@1")).unwrap();

    let server = start(dir.path(), |_| {}).await;
    let client = connect(&server).await;
    assert_eq!(
        fetch_keys(&client, &kept, 5, vec![1]).await.unwrap(),
        (0..30).collect::<Vec<i64>>()
    );
    let names: Vec<_> = std::fs::read_dir(data.join("apps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["kept"]);
    let err = client
        .register_app(&AppCredentials::new("gone", b"another-secret-0".to_vec()).unwrap())
        .await;
    assert!(err.is_ok(), "{err:?}");
    // New shuffles of the old-layout app get a generation of their own.
    push(&client, &kept, 6, 1, &[keyed_batch(100, 5)])
        .await
        .unwrap();
    assert_eq!(
        fetch_keys(&client, &kept, 6, vec![1]).await.unwrap(),
        (100..105).collect::<Vec<i64>>()
    );
}
