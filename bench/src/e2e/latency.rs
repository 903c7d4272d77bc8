//! `--mode latency`: what one small reduce task waits for, as a Spark task does it. The
//! maps are pushed to two servers; then, one partition after another, a task opens a
//! fetch on each server at once (as the Spark reader does), reads and decodes every
//! block through the blocking client (the JNI bridge's), and the time to its first
//! block and to its end are recorded. Rounds alternate between an idle machine and one
//! whose every core runs a spinning thread, as Spark's executors and driver keep a
//! small machine busy: there every hand-off between threads waits for a core. Each
//! round also times small map tasks: one push of 100 rows to one partition of one server,
//! committed (as a reduce task that feeds a final aggregation does).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_client::{
    BlockingClient, Client, FetchRequest, MapAttempt, MapFilter, Partitioning, PushRequest,
};
use sluice_testkit::lineitem_schema;

use super::{generate, Cluster, MapInput};
use crate::report::{median, Record};
use crate::Args;

/// Times of each task of one round, in microseconds.
#[derive(Default)]
struct Round {
    first_block: Vec<f64>,
    task: Vec<f64>,
    /// Small pushes: open, send, commit.
    push: Vec<f64>,
}

/// Small map tasks per round.
const SMALL_PUSHES: u64 = 200;

pub(crate) async fn run(args: &Args) -> Result<(bool, Vec<Record>), crate::BenchError> {
    let (maps, _, _) = generate(args);
    let cluster = Cluster::start(args, 2).await?;
    push(&cluster, &maps, args.partitions).await?;
    let addrs = cluster.addrs();
    let (config, app) = (cluster.client_config().clone(), cluster.app().clone());
    let partitions = args.partitions;
    // Map i went to server i % 2: each server's fetch names the maps it holds.
    let ids: Vec<Vec<u64>> = (0..2)
        .map(|s| {
            maps.iter()
                .skip(s)
                .step_by(2)
                .map(|m| m.map.map_id)
                .collect()
        })
        .collect();
    let runs = args.runs.max(1);
    let small = maps[0].batches[0].slice(0, 100.min(maps[0].batches[0].num_rows()));
    let rounds = tokio::task::spawn_blocking(move || {
        let clients = addrs
            .iter()
            .map(|&a| {
                let c = BlockingClient::connect(a, &config)?;
                c.register_app(&app)?;
                Ok(c)
            })
            .collect::<Result<Vec<_>, sluice_client::ClientError>>()?;
        let requests = |p: u32| -> Vec<FetchRequest> {
            ids.iter()
                .map(|ids| {
                    FetchRequest::partitions(app.clone(), 0, p..p + 1)
                        .with_maps(MapFilter::MapIds(ids.clone()))
                })
                .collect()
        };
        let mut rounds: [Vec<Round>; 2] = Default::default();
        let mut next_map = 1_000_000;
        for _ in 0..runs {
            for (busy, out) in rounds.iter_mut().enumerate() {
                let load = (busy == 1).then(Load::start);
                let mut round = tasks(&clients, partitions, &requests)?;
                for _ in 0..SMALL_PUSHES {
                    next_map += 1;
                    let start = Instant::now();
                    let mut push = clients[0].push(PushRequest {
                        app: app.clone(),
                        shuffle_id: 1,
                        map: MapAttempt {
                            map_id: next_map,
                            map_index: next_map as u32,
                            attempt: 0,
                        },
                        num_partitions: 1,
                        partitioning: Partitioning::Hash { columns: vec![0] },
                        schema: lineitem_schema(),
                        replicas: Vec::new(),
                    })?;
                    push.send(&small)?;
                    push.commit()?;
                    round.push.push(start.elapsed().as_secs_f64() * 1e6);
                }
                out.push(round);
                drop(load);
            }
        }
        Ok::<_, crate::BenchError>(rounds)
    })
    .await??;
    cluster.stop(args).await?;
    Ok((true, report(args, &rounds)))
}

/// Pushes map i to server i % 2 and commits it.
async fn push(
    cluster: &Cluster,
    maps: &[MapInput],
    partitions: u32,
) -> Result<(), crate::BenchError> {
    let addrs = cluster.addrs();
    for (i, input) in maps.iter().enumerate() {
        let client = Client::connect(addrs[i % addrs.len()], cluster.client_config()).await?;
        let mut push = client
            .push(PushRequest {
                app: cluster.app().clone(),
                shuffle_id: 0,
                map: input.map,
                num_partitions: partitions,
                partitioning: Partitioning::Hash { columns: vec![0] },
                schema: lineitem_schema(),
                replicas: Vec::new(),
            })
            .await?;
        for batch in &input.batches {
            push.send(batch).await?;
        }
        push.commit().await?;
        client.close().await;
    }
    Ok(())
}

/// One task per partition, one after another.
fn tasks(
    clients: &[BlockingClient],
    partitions: u32,
    requests: &dyn Fn(u32) -> Vec<FetchRequest>,
) -> Result<Round, crate::BenchError> {
    let mut round = Round::default();
    for p in 0..partitions {
        let start = Instant::now();
        let mut first = None;
        let mut streams = clients
            .iter()
            .zip(requests(p))
            .map(|(c, r)| c.fetch(r))
            .collect::<Result<Vec<_>, _>>()?;
        for stream in &mut streams {
            while let Some(_batch) = stream.next_batch()? {
                first.get_or_insert_with(|| start.elapsed());
            }
        }
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        round.first_block.push(first.map_or(0.0, micros));
        round.task.push(micros(start.elapsed()));
    }
    Ok(round)
}

/// A spinning thread on every core, until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..10_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                        }
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The `q` quantile of `values` (nearest rank).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0)
}

fn report(args: &Args, rounds: &[Vec<Round>; 2]) -> Vec<Record> {
    let case = |load: &str| {
        format!(
            "{} maps on 2 servers, {} one-partition tasks, {load}",
            args.maps, args.partitions
        )
    };
    println!();
    println!(
        "sluice-bench latency: {} maps on 2 servers, {} tasks per round, one partition each \
         from both servers; medians over {} rounds",
        args.maps,
        args.partitions,
        rounds[0].len()
    );
    println!(
        "{:<12} {:>16} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "",
        "first block p50",
        "task p50",
        "task p90",
        "task p99",
        "round s",
        "push p50",
        "push p90"
    );
    let mut records = Vec::new();
    for (name, runs) in ["idle", "cores busy"].iter().zip(rounds) {
        let med = |f: &dyn Fn(&Round) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
        let first = med(&|r| quantile(&r.first_block, 0.5));
        let p50 = med(&|r| quantile(&r.task, 0.5));
        let p90 = med(&|r| quantile(&r.task, 0.9));
        let p99 = med(&|r| quantile(&r.task, 0.99));
        let secs = med(&|r| r.task.iter().sum::<f64>() / 1e6);
        let push50 = med(&|r| quantile(&r.push, 0.5));
        let push90 = med(&|r| quantile(&r.push, 0.9));
        println!(
            "{name:<12} {:>13.0} us {:>7.0} us {:>7.0} us {:>7.0} us {secs:>10.2} {:>9.0} us \
             {:>9.0} us",
            first, p50, p90, p99, push50, push90
        );
        for (metric, value) in [
            ("first_block_p50", first),
            ("task_p50", p50),
            ("task_p90", p90),
            ("task_p99", p99),
            ("small_push_p50", push50),
            ("small_push_p90", push90),
        ] {
            records.push(Record::new("latency", case(name), metric, value, "us"));
        }
    }
    records
}
