//! The real `sluice-server` binary under SIGTERM while mappers push: it drains (open
//! pushes commit, new ones get the retryable `Draining`), exits 0, and after a
//! restart on the same data directory every acknowledged map reads back exactly while
//! no unacknowledged one is served.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use sluice_client::{Client, ClientConfig, ClientError};

const PUSHERS: u64 = 4;
const ROWS_PER_BATCH: usize = 2000;
const BATCHES: usize = 4;

struct Running {
    child: Child,
    addr: SocketAddr,
    config: ClientConfig,
}

fn spawn(dir: &Path) -> Running {
    let data = dir.join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-server"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--drain-timeout", "30s", "--storage-block-size", "16KiB"])
        .env("SLUICE_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            break a.parse().unwrap();
        }
    };
    // Keep reading stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let cert = std::fs::read_to_string(data.join("tls/cert.pem")).unwrap();
    let token = std::fs::read(data.join("cluster-token")).unwrap();
    Running {
        child,
        addr,
        config: client_config(&cert, &token),
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// What the pushers saw.
#[derive(Debug, Default)]
struct Outcome {
    acked: Vec<u64>,
    acked_after_signal: usize,
    failed: Vec<(u64, ClientError)>,
}

async fn pusher(
    id: u64,
    client: Arc<Client>,
    signalled: Arc<Mutex<Option<Instant>>>,
    out: Arc<Mutex<Outcome>>,
) {
    let creds = app("drain-app");
    for round in 0.. {
        let map_id = id * 1000 + round;
        let first = (map_id * (BATCHES * ROWS_PER_BATCH) as u64) as i64;
        let result = async {
            let mut push = client.push(push_request(&creds, 0, map_id)).await?;
            for b in 0..BATCHES {
                push.send(&keyed_batch(
                    first + (b * ROWS_PER_BATCH) as i64,
                    ROWS_PER_BATCH,
                ))
                .await?;
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            push.commit().await
        }
        .await;
        let mut out = out.lock().unwrap();
        match result {
            Ok(_) => {
                out.acked.push(map_id);
                if signalled.lock().unwrap().is_some() {
                    out.acked_after_signal += 1;
                }
            }
            Err(e) => {
                out.failed.push((map_id, e));
                return;
            }
        }
    }
}

fn keys_of(map_id: u64) -> std::ops::Range<i64> {
    let first = (map_id * (BATCHES * ROWS_PER_BATCH) as u64) as i64;
    first..first + (BATCHES * ROWS_PER_BATCH) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_loses_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path());
    let client = Arc::new(Client::connect(server.addr, &server.config).await.unwrap());
    client.register_app(&app("drain-app")).await.unwrap();
    let signalled = Arc::new(Mutex::new(None));
    let out = Arc::new(Mutex::new(Outcome::default()));
    let tasks: Vec<_> = (1..=PUSHERS)
        .map(|i| tokio::spawn(pusher(i, client.clone(), signalled.clone(), out.clone())))
        .collect();
    // Let a few rounds commit, then signal with pushes in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.lock().unwrap().acked.len() < 8 {
        assert!(
            Instant::now() < deadline,
            "pushes stalled: {:?}",
            out.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    *signalled.lock().unwrap() = Some(Instant::now());
    sigterm(&server.child);
    for t in tasks {
        t.await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || server.child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(log.contains("draining"), "{log}");

    let out = std::mem::take(&mut *out.lock().unwrap());
    assert!(
        out.acked_after_signal >= 1,
        "no push in flight at SIGTERM committed: {out:?}"
    );
    assert_eq!(out.failed.len(), PUSHERS as usize, "{out:?}");
    for (map_id, e) in &out.failed {
        // Refused while draining (retryable), or the server had already exited.
        let allowed =
            e.is_retryable() || matches!(e, ClientError::Connection(_) | ClientError::Stream(_));
        assert!(allowed, "map {map_id}: unexpected error {e}");
    }

    let server = spawn(dir.path());
    let client = Client::connect(server.addr, &server.config).await.unwrap();
    let creds = app("drain-app");
    let keys = fetch_keys(&client, &creds, 0, out.acked.clone())
        .await
        .unwrap();
    let mut expected: Vec<i64> = out.acked.iter().flat_map(|&m| keys_of(m)).collect();
    expected.sort_unstable();
    assert_eq!(keys.len(), expected.len(), "acknowledged rows lost");
    assert_eq!(keys, expected);
    for (map_id, _) in &out.failed {
        let err = fetch_keys(&client, &creds, 0, vec![*map_id])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::MissingMaps(m) if m == &[*map_id]),
            "unacknowledged map {map_id} is served: {err}"
        );
    }
    let mut child = server.child;
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}
