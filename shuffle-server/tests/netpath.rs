//! The transport over a real network device: the server in a network namespace of its
//! own, the client in another, a veth pair between them at MTU 1500 (where QUIC's MTU
//! discovery settles at 1472-byte datagrams), and the loss and outages loopback never
//! has. Needs root (namespaces): without it each test prints why it is skipped, and
//! with `SLUICE_REQUIRE_NETNS` set (the test command sets it as root) it fails instead.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use sluice_client::{
    AppCredentials, Client, ClientConfig, ClientError, FetchRequest, MapAttempt, MapFilter,
    Partitioning, PushRequest,
};
use sluice_server::{Server, ServerConfig, ServerHandle};
use sluice_testkit::netns::{Link, LinkSpec, SERVER_ADDR};

const N: u32 = 16;

/// The link, or `None` (with the reason printed) where namespaces cannot be made.
fn link_or_skip(spec: LinkSpec) -> Option<Link> {
    if let Some(why) = Link::unavailable(&spec) {
        assert!(
            std::env::var_os("SLUICE_REQUIRE_NETNS").is_none(),
            "SLUICE_REQUIRE_NETNS is set, but {why}"
        );
        // Straight to stderr: the test harness hides what `eprintln!` prints in a test
        // that passes, and a skip must be seen.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
        return None;
    }
    Some(Link::create(spec).expect("making the namespaces and the veth pair"))
}

/// A runtime whose threads live in the client namespace (threads inherit the namespace
/// of the thread that starts them, and sockets that of the thread that makes them).
fn client_runtime(link: &Link) -> tokio::runtime::Runtime {
    link.enter_client().unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A server listening on the server end of the link, its data in `dir`.
async fn start_in_server_ns(
    link: &Link,
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut ServerConfig) + Send,
) -> ServerHandle {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        link.in_server(|| {
            runtime.block_on(async {
                let mut config = ServerConfig {
                    worker_threads: 2,
                    listen: SocketAddr::new(SERVER_ADDR, 0),
                    ..ServerConfig::embedded(dir.join("data"))
                };
                config.storage.block_size = bytesize::ByteSize::kib(64);
                tweak(&mut config);
                Server::start(config).await
            })
        })
    })
    .unwrap()
    .unwrap()
}

fn map(map_id: u64, attempt: u32) -> MapAttempt {
    MapAttempt {
        map_id,
        map_index: map_id as u32,
        attempt,
    }
}

fn rows_of(map_id: u64) -> Vec<arrow_array::RecordBatch> {
    (0..12).map(|b| batch(4000, map_id * 100 + b)).collect()
}

fn request(app: &AppCredentials, m: MapAttempt) -> PushRequest {
    PushRequest {
        app: app.clone(),
        shuffle_id: 0,
        map: m,
        num_partitions: N,
        partitioning: Partitioning::Hash {
            columns: KEYS.to_vec(),
        },
        schema: schema(),
        replicas: Vec::new(),
    }
}

async fn connect(server: &ServerHandle, tweak: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut config = client_config(server.certificate_pem(), server.token());
    tweak(&mut config);
    Client::connect(server.local_addr(), &config).await.unwrap()
}

/// Every map's rows, fetched over the link, equal the reference split.
async fn assert_serves_exactly(client: &Client, app: &AppCredentials, maps: &[u64]) {
    let got = fetch_grouped(
        client,
        FetchRequest::partitions(app.clone(), 0, 0..N).with_maps(MapFilter::MapIds(maps.to_vec())),
    )
    .await
    .unwrap();
    for &m in maps {
        assert_map_matches(&got, m, &reference_split(&rows_of(m), hash_spec(), N));
    }
    let keys: Vec<u64> = got.keys().map(|&(_, m)| m).collect();
    assert!(keys.iter().all(|m| maps.contains(m)), "{keys:?}");
}

#[test]
fn a_shuffle_over_a_lossy_link_is_exact() {
    let spec = LinkSpec::parse("veth,mtu=1500,loss=1%").unwrap();
    let Some(link) = link_or_skip(spec) else {
        return;
    };
    client_runtime(&link).block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_in_server_ns(&link, dir.path(), |_| {}).await;
        assert_eq!(server.local_addr().ip(), SERVER_ADDR);
        let client = connect(&server, |_| {}).await;
        let app = app("netpath");
        client.register_app(&app).await.unwrap();
        let maps = [1u64, 2, 3, 4];
        let pushes = maps.map(|m| {
            let (client, app) = (&client, &app);
            async move { try_push(client, request(app, map(m, 0)), &rows_of(m)).await }
        });
        for ack in futures_join_all(pushes).await {
            ack.unwrap();
        }
        assert_serves_exactly(&client, &app, &maps).await;
        server.shutdown().await;
    });
    // The loss was real. (veth passes a segmentation-offload batch of up to 10 datagrams
    // as one packet, so each drop loses up to 10 datagrams at once.)
    let dropped = link.dropped_packets().unwrap();
    assert!(dropped > 0, "no packet dropped");
    eprintln!("1% loss: {dropped} packets dropped, every row exact");
}

#[test]
fn a_link_down_past_the_idle_timeout_commits_nothing_and_the_retry_is_served_once() {
    let Some(link) = link_or_skip(LinkSpec::default()) else {
        return;
    };
    let idle = Duration::from_secs(2);
    client_runtime(&link).block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let server = start_in_server_ns(&link, dir.path(), |c| c.limits.idle_timeout = idle).await;
        let client = connect(&server, |c| c.idle_timeout = idle).await;
        let app = app("netpath-outage");
        client.register_app(&app).await.unwrap();

        // Half a map pushed, then the link goes down for twice the idle timeout.
        let rows = rows_of(7);
        let mut push = client.push(request(&app, map(7, 0))).await.unwrap();
        for b in &rows[..3] {
            push.send(b).await.unwrap();
        }
        link.set_up(false).unwrap();
        let down = Instant::now();
        let mut result = Ok(());
        for b in rows[3..].iter().cycle().take(64) {
            result = push.send(b).await;
            if result.is_err() {
                break;
            }
        }
        let err = match result {
            Ok(()) => push.commit().await.unwrap_err(),
            Err(e) => e,
        };
        assert!(
            matches!(err, ClientError::Connection(ref m) if m.contains("timed out")),
            "{err}"
        );
        // The idle clock starts at the last packet received, just before the outage.
        assert!(
            down.elapsed() < idle * 3,
            "failed only after {:?}",
            down.elapsed()
        );
        tokio::time::sleep((idle * 2).saturating_sub(down.elapsed())).await;
        link.set_up(true).unwrap();

        // Nothing of the cut push is committed; its retry (a new attempt) is read once.
        let client = connect(&server, |_| {}).await;
        let err = fetch_grouped(
            &client,
            FetchRequest::partitions(app.clone(), 0, 0..N).with_maps(MapFilter::MapIds(vec![7])),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ClientError::MissingMaps(ref m) if m == &[7]),
            "{err}"
        );
        try_push(&client, request(&app, map(7, 1)), &rows)
            .await
            .unwrap();
        assert_serves_exactly(&client, &app, &[7]).await;
        // Read as Spark reads it (each map index from its committed attempt): once.
        let all = fetch_grouped(&client, FetchRequest::partitions(app.clone(), 0, 0..N))
            .await
            .unwrap();
        assert_map_matches(&all, 7, &reference_split(&rows, hash_spec(), N));
        assert!(all.keys().all(|&(_, m)| m == 7), "{:?}", all.keys());
        server.shutdown().await;
    });
}

/// Runs the futures concurrently on this task (no spawn: they borrow the client).
async fn futures_join_all<F: std::future::Future>(futures: [F; 4]) -> [F::Output; 4] {
    let [a, b, c, d] = futures;
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    [a, b, c, d]
}
