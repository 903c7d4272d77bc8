//! The storage engine through a real server: restart recovery, quotas, expiry, on both
//! I/O backends and both durability modes.

mod common;

use std::time::Duration;

use common::*;
use sluice_client::{
    ClientError, ErrorCode, FetchRequest, MapAttempt, MapFilter, Partitioning, PushRequest,
};
use sluice_server::config::{BackendName, DurabilityName};
use sluice_server::ServerConfig;

fn map(map_id: u64) -> MapAttempt {
    MapAttempt {
        map_id,
        map_index: map_id as u32,
        attempt: 0,
    }
}

fn rows_of(map_id: u64) -> Vec<arrow_array::RecordBatch> {
    vec![batch(900, map_id * 10), batch(300, map_id * 10 + 1)]
}

fn push_request(
    app: &sluice_client::AppCredentials,
    shuffle_id: u32,
    m: MapAttempt,
    n: u32,
) -> PushRequest {
    PushRequest {
        app: app.clone(),
        shuffle_id,
        map: m,
        num_partitions: n,
        partitioning: Partitioning::Hash {
            columns: KEYS.to_vec(),
        },
        schema: schema(),
        replicas: Vec::new(),
    }
}

/// Checks that `maps` read back exactly, and that asking for `absent` reports them missing.
async fn assert_serves(
    server: &TestServer,
    app: &sluice_client::AppCredentials,
    n: u32,
    maps: &[u64],
    absent: &[u64],
) {
    let client = server.client().await;
    let got = fetch_grouped(
        &client,
        FetchRequest::partitions(app.clone(), 0, 0..n).with_maps(MapFilter::MapIds(maps.to_vec())),
    )
    .await
    .unwrap();
    for &m in maps {
        let reference = reference_split(&rows_of(m), hash_spec(), n);
        assert_map_matches(&got, m, &reference);
    }
    if !absent.is_empty() {
        let err = fetch_grouped(
            &client,
            FetchRequest::partitions(app.clone(), 0, 0..n)
                .with_maps(MapFilter::MapIds(absent.to_vec())),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ClientError::MissingMaps(ref m) if m == absent),
            "{err}"
        );
    }
}

fn storage(
    backend: BackendName,
    durability: DurabilityName,
    direct_io: bool,
) -> impl Fn(&mut ServerConfig) + Copy {
    move |c: &mut ServerConfig| {
        c.storage.backend = backend;
        c.storage.durability = durability;
        c.storage.direct_io = direct_io;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_maps_survive_restarts_and_abandoned_pushes_never_appear() {
    let n = 23;
    for (backend, durability, direct_io) in [
        (BackendName::Auto, DurabilityName::PageCache, false),
        (BackendName::Syscall, DurabilityName::Fsync, false),
        (BackendName::Auto, DurabilityName::PageCache, true),
    ] {
        let tweak = storage(backend, durability, direct_io);
        let server = start_server_with(tweak).await;
        let app = app("app-restart");
        {
            let client = server.client().await;
            client.register_app(&app).await.unwrap();
            push_map(&client, &app, 0, map(1), n, &rows_of(1)).await;
            // Map 2 sends all its rows but never commits.
            let mut abandoned = client.push(push_request(&app, 0, map(2), n)).await.unwrap();
            for b in rows_of(2) {
                abandoned.send(&b).await.unwrap();
            }
            drop(abandoned);
            push_map(&client, &app, 0, map(3), n, &rows_of(3)).await;
            client.close().await;
        }
        let server = server.restart(tweak).await;
        assert_serves(&server, &app, n, &[1, 3], &[2]).await;

        // The recovered shuffle takes new pushes (including the abandoned map) and
        // keeps them across another restart.
        {
            let client = server.client().await;
            push_map(&client, &app, 0, map(2), n, &rows_of(2)).await;
            push_map(&client, &app, 0, map(4), n, &rows_of(4)).await;
            let err = client
                .push(push_request(&app, 0, map(1), n))
                .await
                .unwrap()
                .commit()
                .await
                .unwrap_err();
            assert_eq!(err.code(), Some(ErrorCode::AlreadyCommitted), "{err}");
            client.close().await;
        }
        let server = server.restart(tweak).await;
        assert_serves(&server, &app, n, &[1, 2, 3, 4], &[]).await;
        // A wrong secret is still refused after recovery.
        let client = server.client().await;
        let err = client
            .register_app(
                &sluice_client::AppCredentials::new("app-restart", b"guess".to_vec()).unwrap(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
        server.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_quota_is_a_typed_error_and_committed_data_stays_readable() {
    let server = start_server_with(|c| {
        c.storage.app_disk_quota = Some(bytesize::ByteSize::kib(400));
    })
    .await;
    let client = server.client().await;
    let app = app("app-quota");
    client.register_app(&app).await.unwrap();
    let n = 8;
    let mut committed = Vec::new();
    let mut refused = None;
    for m in 1..100u64 {
        let mut push = client.push(push_request(&app, 0, map(m), n)).await.unwrap();
        let mut result = Ok(());
        for b in rows_of(m) {
            result = push.send(&b).await;
            if result.is_err() {
                break;
            }
        }
        let result = match result {
            Ok(()) => push.commit().await.map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => committed.push(m),
            Err(e) => {
                refused = Some((m, e));
                break;
            }
        }
    }
    let (m, err) = refused.expect("the quota was never reached");
    assert_eq!(err.code(), Some(ErrorCode::QuotaExceeded), "{err}");
    assert!(!committed.is_empty());
    assert_serves(&server, &app, n, &committed, &[m]).await;

    // Deleting the shuffle frees the quota: a new shuffle takes pushes again.
    client.delete_shuffle(&app, 0).await.unwrap();
    push_map(&client, &app, 1, map(1), n, &rows_of(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_stops_heartbeating_is_removed_with_its_data() {
    let server = start_server_with(|c| {
        c.storage.app_expiry = Duration::from_millis(600);
    })
    .await;
    let client = server.client().await;
    let (quiet, alive) = (app("app-quiet"), app("app-alive"));
    for a in [&quiet, &alive] {
        client.register_app(a).await.unwrap();
        push_map(&client, a, 0, map(1), 4, &rows_of(1)).await;
    }
    let quiet_dir = app_dir(&server.dir.path().join("data"), "app-quiet").unwrap();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        client.heartbeat(&alive).await.unwrap();
    }
    assert!(!quiet_dir.exists(), "expired application's files remain");
    let err = fetch_grouped(&client, FetchRequest::partitions(quiet.clone(), 0, 0..4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownApp), "{err}");
    assert_serves(&server, &alive, 4, &[1], &[]).await;
}
