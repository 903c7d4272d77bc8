//! Faults between a client and a real server: the network path cut mid-push and
//! mid-fetch (a UDP relay that starts dropping every datagram, which is also what the
//! server sees of a client killed mid-push), and a disk that fills up during a push.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use sluice_client::{Client, ClientConfig, ClientError, ErrorCode, FetchRequest, MapAttempt};
use tokio::net::UdpSocket;

/// A UDP relay in front of the server for one client; `cut` drops everything from then
/// on, in both directions, as a pulled cable would.
struct Relay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

async fn relay(server: SocketAddr) -> Relay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(server).await.unwrap();
    let addr = front.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let client_addr = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    let (f, b, c, peer) = (
        front.clone(),
        back.clone(),
        cut.clone(),
        client_addr.clone(),
    );
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = f.recv_from(&mut buf).await {
            *peer.lock().unwrap() = Some(from);
            if !c.load(Ordering::Relaxed) {
                let _ = b.send(&buf[..n]).await;
            }
        }
    });
    let (f, c) = (front, cut.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client_addr.lock().unwrap();
            if let (Some(to), false) = (to, c.load(Ordering::Relaxed)) {
                let _ = f.send_to(&buf[..n], to).await;
            }
        }
    });
    Relay { addr, cut }
}

fn short_timeouts(mut config: ClientConfig) -> ClientConfig {
    config.idle_timeout = Duration::from_secs(1);
    config
}

fn map(map_id: u64, attempt: u32) -> MapAttempt {
    MapAttempt {
        map_id,
        map_index: 0,
        attempt,
    }
}

/// Waits until the server has no open push (it noticed the dead client).
async fn until_no_pushes(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.handle.status().pushes > 0 {
        assert!(
            Instant::now() < deadline,
            "the dead client's push stays open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_cut_off_mid_stream_is_never_served_and_its_retry_is_served_once() {
    let server = start_server_with(|c| c.limits.idle_timeout = Duration::from_secs(1)).await;
    let creds = app("app-cut");
    server.client().await.register_app(&creds).await.unwrap();
    let n = 8;
    // Large enough that the first two batches reach the buffers (the writer holds
    // batches until 16K rows) and fill blocks before the cut.
    let rows = vec![batch(9000, 1), batch(9000, 2), batch(9000, 3)];

    // Attempt 0 through the relay: one batch, then the cable is pulled.
    let path = relay(server.handle.local_addr()).await;
    let config = short_timeouts(server.client_config());
    let doomed = Client::connect(path.addr, &config).await.unwrap();
    let request = |attempt| sluice_client::PushRequest {
        app: creds.clone(),
        shuffle_id: 0,
        map: map(10 + u64::from(attempt), attempt),
        num_partitions: n,
        partitioning: sluice_client::Partitioning::Hash {
            columns: KEYS.to_vec(),
        },
        schema: schema(),
        replicas: Vec::new(),
    };
    let disk_before = server.handle.status().disk.used_bytes;
    let mut push = doomed.push(request(0)).await.unwrap();
    push.send(&rows[0]).await.unwrap();
    push.send(&rows[1]).await.unwrap();
    // Wait until some of the attempt's blocks are on disk.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.handle.status().disk.used_bytes == disk_before {
        assert!(
            Instant::now() < deadline,
            "no block of the attempt was written"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    path.cut.store(true, Ordering::Relaxed);
    let err = async {
        for b in &rows[2..] {
            push.send(b).await?;
        }
        push.commit().await
    }
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Connection(_) | ClientError::Stream(_)),
        "{err:?}"
    );
    // The server drops the dead connection and its push, frees its buffers, and gives
    // the disk space of the blocks it had written back (holes punched in their place).
    until_no_pushes(&server).await;
    assert_eq!(server.handle.status().memory.used_bytes, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.handle.status().disk.used_bytes != disk_before {
        assert!(
            Instant::now() < deadline,
            "the attempt's disk space is still held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The retry (a new attempt, as Spark's would be) commits on a good path.
    let client = server.client().await;
    let ack = try_push(&client, request(1), &rows).await.unwrap();
    assert_eq!(ack.partition_rows.iter().sum::<u64>(), 27_000);
    let all = fetch_grouped(&client, FetchRequest::partitions(creds.clone(), 0, 0..n))
        .await
        .unwrap();
    assert!(
        all.keys().all(|k| k.1 == 11),
        "only the committed attempt is served"
    );
    assert_map_matches(&all, 11, &reference_split(&rows, hash_spec(), n));
    let err = fetch_map(&client, &creds, 0, n, 10).await.unwrap_err();
    assert!(
        matches!(err, ClientError::MissingMaps(ref m) if m == &vec![10]),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_cut_off_mid_stream_is_a_typed_error_and_a_refetch_is_exact() {
    let server = start_server().await;
    let creds = app("app-fetch-cut");
    let client = server.client().await;
    client.register_app(&creds).await.unwrap();
    let n = 4;
    let rows: Vec<_> = (0..8).map(|i| batch(20_000, 40 + i)).collect();
    push_map(&client, &creds, 0, map(1, 0), n, &rows).await;

    let path = relay(server.handle.local_addr()).await;
    let mut config = short_timeouts(server.client_config());
    config.transport.stream_receive_window = 256 << 10;
    let reader = Client::connect(path.addr, &config).await.unwrap();
    let mut fetch = reader
        .fetch(FetchRequest::partitions(creds.clone(), 0, 0..n))
        .await
        .unwrap();
    assert!(fetch.next_block().await.unwrap().is_some());
    path.cut.store(true, Ordering::Relaxed);
    let err = loop {
        match fetch.next_block().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the fetch completed through a cut cable"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, ClientError::Connection(_)), "{err:?}");

    let got = fetch_grouped(&client, FetchRequest::partitions(creds, 0, 0..n))
        .await
        .unwrap();
    assert_map_matches(&got, 1, &reference_split(&rows, hash_spec(), n));
}

/// A small tmpfs, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status();
        matches!(status, Ok(s) if s.success()).then_some(Self(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_push_with_disk_full_and_committed_data_stays_readable() {
    let Some(disk) = SmallDisk::mount(24 << 20) else {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let server = start(disk.0.path(), |config| {
        config.storage.codec = sluice_server::config::CodecName::None;
    })
    .await;
    let client = connect(&server).await;
    let creds = app("app-full");
    client.register_app(&creds).await.unwrap();
    let n = 4;
    let mut committed = Vec::new();
    let err = loop {
        let m = committed.len() as u64;
        assert!(m < 100, "24 MiB never filled up");
        let rows = vec![batch(8000, 500 + m)];
        let request = sluice_client::PushRequest {
            app: creds.clone(),
            shuffle_id: 0,
            map: MapAttempt {
                map_id: m,
                map_index: m as u32,
                attempt: 0,
            },
            num_partitions: n,
            partitioning: sluice_client::Partitioning::Hash {
                columns: KEYS.to_vec(),
            },
            schema: schema(),
            replicas: Vec::new(),
        };
        match try_push(&client, request, &rows).await {
            Ok(_) => committed.push((m, rows)),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Some(ErrorCode::DiskFull), "{err}");
    assert!(!committed.is_empty(), "nothing fit before the disk filled");
    // Every committed map reads back exactly; the failed one is not served.
    for (m, rows) in &committed {
        let got = fetch_map(&client, &creds, 0, n, *m).await.unwrap();
        assert_map_matches(&got, *m, &reference_split(rows, hash_spec(), n));
    }
    let failed = committed.len() as u64;
    let err = fetch_map(&client, &creds, 0, n, failed).await.unwrap_err();
    assert!(matches!(err, ClientError::MissingMaps(_)), "{err:?}");
    eprintln!("disk full after {failed} committed maps; all read back exactly");
    // The failed push gave its space back, and deleting the shuffle frees the rest:
    // a new push fits again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let committed_bytes = server.status().disk.used_bytes;
    client.delete_shuffle(&creds, 0).await.unwrap();
    while server.status().disk.used_bytes != 0 {
        assert!(
            Instant::now() < deadline,
            "space still held after the delete"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(committed_bytes > 0);
    let request = sluice_client::PushRequest {
        app: creds.clone(),
        shuffle_id: 1,
        map: MapAttempt {
            map_id: 0,
            map_index: 0,
            attempt: 0,
        },
        num_partitions: n,
        partitioning: sluice_client::Partitioning::Hash {
            columns: KEYS.to_vec(),
        },
        schema: schema(),
        replicas: Vec::new(),
    };
    try_push(&client, request, &[batch(8000, 9)]).await.unwrap();
    client.close().await;
    server.shutdown().await;
    drop(disk);
}
