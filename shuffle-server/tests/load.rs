//! Load (and, with `SLUICE_LOAD_SECS=1800`, soak): 64 concurrent map pushes and 32
//! concurrent fetchers, each on its own connection, against a server in a child process
//! with a 256 MiB memory budget. No request may fail, every fetch must return exactly the
//! rows its map committed (every 8th is compared row for row), and the server's resident
//! memory must stay flat and within the budget. Reports throughput and p50/p99 commit
//! and fetch latencies.
//!
//! As in a cluster, shuffles come and go: pushers write to a new shuffle every
//! `SHUFFLE_SECS`, and a janitor deletes shuffles three generations old (after taking
//! them out of the fetchers' choice), so the data held, and with it the block index,
//! reaches a steady state.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use common::child::{self, current_rss, spawn_child_with};
use common::*;
use sluice_client::{Client, FetchRequest, MapAttempt, MapFilter, Partitioning, PushRequest};

const PUSHERS: u64 = 64;
const FETCHERS: u64 = 32;
const PARTITIONS: u32 = 32;
const BUDGET: u64 = 256 << 20;
const DEFAULT_SECS: u64 = 20;
const SHUFFLE_SECS: u64 = 4;

#[test]
#[ignore = "the child process of the tests in this file"]
fn child_server() {
    child::run_child_server();
}

fn rows_of(map_id: u64) -> Vec<RecordBatch> {
    let rows = 500 + (map_id as usize * 37) % 1500;
    vec![batch(rows, map_id), batch(rows / 2, map_id ^ 0xabc)]
}

/// Committed maps (shuffle, map id, rows), shared by pushers and fetchers.
struct Ledger {
    started: Instant,
    committed: Mutex<Vec<(u32, u64, u64)>>,
    /// Shuffles taken out of the fetchers' choice, then deleted.
    retired: Mutex<std::collections::HashSet<u32>>,
    commits_by_pusher: Mutex<HashMap<u64, u64>>,
    commit_ms: Mutex<Vec<f64>>,
    fetch_ms: Mutex<Vec<f64>>,
    pushed_bytes: AtomicU64,
    fetched_rows: AtomicU64,
}

impl Ledger {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            committed: Mutex::default(),
            retired: Mutex::default(),
            commits_by_pusher: Mutex::default(),
            commit_ms: Mutex::default(),
            fetch_ms: Mutex::default(),
            pushed_bytes: AtomicU64::default(),
            fetched_rows: AtomicU64::default(),
        }
    }

    /// The shuffle pushes go to now.
    fn current_shuffle(&self) -> u32 {
        (self.started.elapsed().as_secs() / SHUFFLE_SECS) as u32
    }
}

/// Deletes each shuffle three generations after it was current: first out of the
/// fetchers' choice, then (after in-flight fetches had time to finish) on the server.
async fn janitor(client: Arc<Client>, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let app = app("load");
    let mut next = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        while next + 3 <= ledger.current_shuffle() {
            ledger.retired.lock().unwrap().insert(next);
            ledger.committed.lock().unwrap().retain(|c| c.0 != next);
            tokio::time::sleep(Duration::from_secs(2)).await;
            client
                .delete_shuffle(&app, next)
                .await
                .unwrap_or_else(|e| panic!("deleting shuffle {next}: {e}"));
            next += 1;
        }
    }
}

async fn pusher(client: Arc<Client>, p: u64, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let app = app("load");
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let map_id = p * 1_000_000 + k;
        let rows = rows_of(map_id);
        let shuffle = ledger.current_shuffle();
        let mut push = client
            .push(PushRequest {
                app: app.clone(),
                shuffle_id: shuffle,
                map: MapAttempt {
                    map_id,
                    map_index: map_id as u32,
                    attempt: 0,
                },
                num_partitions: PARTITIONS,
                partitioning: Partitioning::Hash {
                    columns: KEYS.to_vec(),
                },
                schema: schema(),
                replicas: Vec::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("push of map {map_id}: {e}"));
        for b in &rows {
            push.send(b)
                .await
                .unwrap_or_else(|e| panic!("map {map_id}: {e}"));
        }
        let started = Instant::now();
        let ack = push
            .commit()
            .await
            .unwrap_or_else(|e| panic!("commit of map {map_id}: {e}"));
        let ms = started.elapsed().as_secs_f64() * 1e3;
        ledger.commit_ms.lock().unwrap().push(ms);
        let n: u64 = ack.partition_rows.iter().sum();
        assert_eq!(n, rows.iter().map(|b| b.num_rows() as u64).sum::<u64>());
        let bytes: usize = rows.iter().map(RecordBatch::get_array_memory_size).sum();
        ledger
            .pushed_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        ledger.committed.lock().unwrap().push((shuffle, map_id, n));
        *ledger
            .commits_by_pusher
            .lock()
            .unwrap()
            .entry(p)
            .or_default() += 1;
        k += 1;
    }
}

async fn fetcher(client: Arc<Client>, f: u64, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let app = app("load");
    let mut rng = Rng::new(f);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let pick = {
            let committed = ledger.committed.lock().unwrap();
            (!committed.is_empty()).then(|| committed[rng.below(committed.len() as u64) as usize])
        };
        let Some((shuffle, map_id, rows)) = pick else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let started = Instant::now();
        let request = FetchRequest::partitions(app.clone(), shuffle, 0..PARTITIONS)
            .with_maps(MapFilter::MapIds(vec![map_id]));
        let got = match fetch_grouped(&client, request).await {
            Ok(got) => got,
            // Deleted while this fetch ran: the janitor's race, not the server's fault.
            Err(_) if ledger.retired.lock().unwrap().contains(&shuffle) => continue,
            Err(e) => panic!("fetch of map {map_id} in shuffle {shuffle}: {e}"),
        };
        ledger
            .fetch_ms
            .lock()
            .unwrap()
            .push(started.elapsed().as_secs_f64() * 1e3);
        let n: u64 = got.values().map(|b| b.num_rows() as u64).sum();
        assert_eq!(n, rows, "map {map_id}");
        if i.is_multiple_of(8) {
            // The reference split is CPU work: off the runtime that drives the
            // connections (a starved driver misses keep-alives).
            tokio::task::spawn_blocking(move || {
                let reference = reference_split(&rows_of(map_id), hash_spec(), PARTITIONS);
                assert_map_matches(&got, map_id, &reference);
            })
            .await
            .unwrap();
        }
        ledger.fetched_rows.fetch_add(n, Ordering::Relaxed);
        i += 1;
    }
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_pushers_and_thirty_two_fetchers_run_clean_in_flat_memory() {
    let secs = std::env::var("SLUICE_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_child_with(dir.path(), Some(BUDGET), false);
    // A loaded 2-core machine: the child's 5 s idle timeout is for crash tests.
    let mut config = server.config.clone();
    config.idle_timeout = Duration::from_secs(60);
    let connect = || Client::connect(server.addr, &config);
    connect()
        .await
        .unwrap()
        .register_app(&app("load"))
        .await
        .unwrap();

    let ledger = Arc::new(Ledger::new());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..PUSHERS {
        let client = Arc::new(connect().await.unwrap());
        tasks.push(tokio::spawn(pusher(
            client,
            p,
            ledger.clone(),
            stop.clone(),
        )));
    }
    for f in 0..FETCHERS {
        let client = Arc::new(connect().await.unwrap());
        tasks.push(tokio::spawn(fetcher(
            client,
            f,
            ledger.clone(),
            stop.clone(),
        )));
    }
    let client = Arc::new(connect().await.unwrap());
    tasks.push(tokio::spawn(janitor(client, ledger.clone(), stop.clone())));

    // Sample the server's RSS; the first quarter of the run is warm-up.
    let pid = server.process.id();
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if started.elapsed() > Duration::from_secs(secs) / 4 {
            rss.push(current_rss(pid));
        }
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "a client stopped early (see its panic)"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    server.process.kill().unwrap();
    server.process.wait().unwrap();

    let by_pusher = ledger.commits_by_pusher.lock().unwrap().clone();
    let commits: u64 = by_pusher.values().sum();
    assert_eq!(by_pusher.len() as u64, PUSHERS, "a pusher never committed");
    assert!(
        ledger.fetch_ms.lock().unwrap().len() as u64 >= FETCHERS,
        "too few fetches completed"
    );
    let mut commit_ms = ledger.commit_ms.lock().unwrap().clone();
    let mut fetch_ms = ledger.fetch_ms.lock().unwrap().clone();
    let half = rss.len() / 2;
    let first_max = rss[..half].iter().copied().max().unwrap_or(0);
    let second_max = rss[half..].iter().copied().max().unwrap_or(0);
    eprintln!(
        "load: {secs} s, {PUSHERS} pushers, {FETCHERS} fetchers: {commits} commits ({:.0}/s, \
         {:.1} MB/s pushed), {} fetches ({:.1} M rows/s); commit p50 {:.1} ms p99 {:.1} ms; \
         fetch p50 {:.1} ms p99 {:.1} ms; server RSS after warm-up {}..{} MiB (budget {} MiB)",
        commits as f64 / elapsed,
        ledger.pushed_bytes.load(Ordering::Relaxed) as f64 / 1e6 / elapsed,
        fetch_ms.len(),
        ledger.fetched_rows.load(Ordering::Relaxed) as f64 / 1e6 / elapsed,
        percentile(&mut commit_ms, 0.5),
        percentile(&mut commit_ms, 0.99),
        percentile(&mut fetch_ms, 0.5),
        percentile(&mut fetch_ms, 0.99),
        rss.iter().min().unwrap_or(&0) >> 20,
        rss.iter().max().unwrap_or(&0) >> 20,
        BUDGET >> 20,
    );
    // Flat: the second half of the run grows no more than 64 MiB past the first.
    assert!(
        second_max <= first_max + (64 << 20),
        "RSS grew from {} to {} MiB",
        first_max >> 20,
        second_max >> 20
    );
    assert!(
        second_max < BUDGET + (256 << 20),
        "RSS {} MiB over the budget",
        second_max >> 20
    );
}
