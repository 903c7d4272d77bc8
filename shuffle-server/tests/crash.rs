//! Tests of a server in a child process (this test binary itself, re-run with
//! `child_server` selected):
//! - crash: the server is killed with SIGKILL at random points of a push-heavy run,
//!   then restarted on the same data directory. Every acknowledged commit must read back
//!   exactly; a push that never sent its end is never served; a push whose end was sent
//!   but whose ack was lost is either absent or complete.
//! - memory: ten times the memory budget is pushed at once; the server's peak resident
//!   memory must stay under the budget plus 128 MiB, and every row must read back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::child::{self, peak_rss, spawn_child, spawn_child_with};
use common::ledger::*;
use common::*;
use sluice_client::{Client, FetchRequest, MapAttempt, MapFilter, PushRequest};

/// Kill points in the default run; `SLUICE_CRASH_ROUNDS` asks for more.
const DEFAULT_ROUNDS: usize = 20;

/// The child server process that the tests below spawn (this binary, re-run).
#[test]
#[ignore = "the child process of the tests in this file"]
fn child_server() {
    child::run_child_server();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_sigkill() {
    let rounds = std::env::var("SLUICE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let dir = tempfile::tempdir().unwrap();
    let app = app("app-crash");
    let ledger = Ledger::default();
    let mut rng = Rng::new(0x5eed);
    let mut expected = Expected::default();
    let (mut acked_total, mut lost_acks, mut late_commits) = (0, 0, 0);
    for round in 0..rounds as u64 {
        // Odd rounds write with O_DIRECT: both layouts, and switching between them on
        // one data directory, recover alike.
        let direct_io = round % 2 == 1;
        let mut child = spawn_child(dir.path(), direct_io);
        let client = Arc::new(Client::connect(child.addr, &child.config).await.unwrap());
        client.register_app(&app).await.unwrap();
        // Three pushers with disjoint map ids per round.
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let first = round * 1_000_000 + i * 1000 + 1;
                tokio::spawn(pusher(
                    client.clone(),
                    app.clone(),
                    first,
                    Vec::new(),
                    ledger.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10 + rng.below(250))).await;
        child.process.kill().unwrap();
        child.process.wait().unwrap();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        drop(client);

        let mut child2 = spawn_child(dir.path(), direct_io);
        let reader = Client::connect(child2.addr, &child2.config).await.unwrap();
        let snapshot = snapshot(&ledger);
        // Every acknowledged map, in one fetch.
        let acked: Vec<u64> = snapshot
            .iter()
            .filter(|s| matches!(s.1, State::Acked { .. }))
            .map(|s| s.0)
            .collect();
        let what = format!("round {round}");
        assert_all_exact(&reader, &app, &acked, &mut expected, &what).await;
        for (m, state) in snapshot {
            match (state, read_map(&reader, &app, m).await) {
                (State::Pushing, Some(_)) => {
                    panic!("round {round}: map {m} served without its end")
                }
                (State::EndSent, Some(got)) => {
                    expected.assert_exact(m, &got);
                    ledger
                        .lock()
                        .unwrap()
                        .insert(m, State::Acked { replica: None });
                    late_commits += 1;
                }
                (State::EndSent, None) => lost_acks += 1,
                _ => {}
            }
        }
        // Maps that were never completed are dropped from the ledger (retries would use
        // new ids, as Spark's do).
        ledger
            .lock()
            .unwrap()
            .retain(|_, s| matches!(s, State::Acked { .. }));
        acked_total = ledger.lock().unwrap().len();
        reader.close().await;
        child2.process.kill().unwrap();
        child2.process.wait().unwrap();
    }
    eprintln!(
        "crash test: {rounds} kill points, {acked_total} acknowledged maps all intact, \
         {late_commits} commits whose ack was cut off were complete, {lost_acks} ended pushes were not committed"
    );
    assert!(acked_total > 0, "no push was ever acknowledged");
}

/// The batches of map `m` in the memory test (8192 rows each).
fn big_map(m: u64, batches: usize) -> Vec<arrow_array::RecordBatch> {
    (0..batches as u64)
        .map(|i| batch(8192, m * 1000 + i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_ten_times_the_memory_budget_stays_within_it() {
    const BUDGET: u64 = 32 << 20;
    const MAPS: u64 = 8;
    const N: u32 = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child_with(dir.path(), Some(BUDGET), false);
    let client = Arc::new(Client::connect(child.addr, &child.config).await.unwrap());
    let app = app("app-memory");
    client.register_app(&app).await.unwrap();
    let per_batch = batch(8192, 1).get_array_memory_size() as u64;
    let batches = (10 * BUDGET / MAPS).div_ceil(per_batch) as usize;
    let request = |m: u64| PushRequest {
        app: app.clone(),
        shuffle_id: 0,
        map: MapAttempt {
            map_id: m,
            map_index: m as u32,
            attempt: 0,
        },
        num_partitions: N,
        partitioning: sluice_client::Partitioning::Hash {
            columns: KEYS.to_vec(),
        },
        schema: schema(),
        replicas: Vec::new(),
    };
    let pushes: Vec<_> = (0..MAPS)
        .map(|m| {
            let client = client.clone();
            let request = request(m);
            tokio::spawn(async move {
                let mut push = client.push(request).await.unwrap();
                for i in 0..batches as u64 {
                    push.send(&batch(8192, m * 1000 + i)).await.unwrap();
                }
                push.commit().await.unwrap()
            })
        })
        .collect();
    for p in pushes {
        p.await.unwrap();
    }
    let peak = peak_rss(child.process.id());
    let pushed = per_batch * batches as u64 * MAPS;
    eprintln!(
        "memory test: pushed {} MiB through a {} MiB budget; server peak RSS {} MiB",
        pushed >> 20,
        BUDGET >> 20,
        peak >> 20
    );
    assert!(pushed >= 10 * BUDGET);
    assert!(peak < BUDGET + (128 << 20), "peak RSS {} MiB", peak >> 20);

    for m in 0..MAPS {
        let got = fetch_grouped(
            &client,
            FetchRequest::partitions(app.clone(), 0, 0..N).with_maps(MapFilter::MapIds(vec![m])),
        )
        .await
        .unwrap();
        let reference = reference_split(&big_map(m, batches), hash_spec(), N);
        assert_map_matches(&got, m, &reference);
    }
    child.process.kill().unwrap();
    child.process.wait().unwrap();
}
