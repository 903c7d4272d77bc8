//! `--mode e2e` (default): an end-to-end shuffle through an embedded Sluice server over
//! QUIC on loopback. Mappers push generated lineitem-like batches, reducers fetch every
//! partition, and the run verifies that every row arrived exactly once (per-partition row
//! counts and an order-independent checksum of the content, computed on both sides).

use std::time::Instant;

use arrow_array::RecordBatch;
use sluice_client::MapAttempt;
use sluice_splitter::{PartitionSpec, Partitioner};
use sluice_testkit::{lineitem_batch, lineitem_schema};

mod cluster;
pub(crate) mod latency;
mod parts;
mod replication;
mod stages;

use cluster::Cluster;

use crate::data::{buffer_bytes, row_hashes, Digest};
use crate::report::{median, Record};
use crate::Args;

struct MapInput {
    map: MapAttempt,
    batches: Vec<RecordBatch>,
}

/// Generates every map's batches (on all cores) and the expected per-partition digests.
fn generate(args: &Args) -> (Vec<MapInput>, Vec<Digest>, u64) {
    let schema = lineitem_schema();
    let per_thread: Vec<(Vec<MapInput>, Vec<Digest>)> = std::thread::scope(|s| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let schema = schema.clone();
                s.spawn(move || {
                    let spec = PartitionSpec::Hash { columns: vec![0] };
                    let mut partitioner =
                        Partitioner::new(spec, args.partitions, &schema).expect("valid spec");
                    let mut digests = vec![Digest::default(); args.partitions as usize];
                    let (mut ids, mut hashes, mut maps) = (Vec::new(), Vec::new(), Vec::new());
                    for m in (t..args.maps).step_by(threads as usize) {
                        let mut batches = Vec::new();
                        for b in 0..args.batches_per_map {
                            let seed = m as u64 * 1_000_003 + b as u64;
                            let batch = lineitem_batch(args.rows_per_batch, seed);
                            partitioner
                                .partition(&batch, &mut ids)
                                .expect("partitionable");
                            row_hashes(&batch, &mut hashes);
                            for (&p, &h) in ids.iter().zip(&hashes) {
                                digests[p as usize].add(&[h]);
                            }
                            batches.push(batch);
                        }
                        let map = MapAttempt {
                            map_id: 1000 + m as u64,
                            map_index: m,
                            attempt: 0,
                        };
                        maps.push(MapInput { map, batches });
                    }
                    (maps, digests)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator"))
            .collect()
    });
    let mut maps = Vec::new();
    let mut expected = vec![Digest::default(); args.partitions as usize];
    for (m, d) in per_thread {
        maps.extend(m);
        for (e, x) in expected.iter_mut().zip(&d) {
            e.merge(x);
        }
    }
    maps.sort_by_key(|m| m.map.map_index);
    let bytes = maps.iter().flat_map(|m| &m.batches).map(buffer_bytes).sum();
    (maps, expected, bytes)
}

/// One measured shuffle: fresh servers, every map pushed, every partition fetched and
/// verified against the generator's digests.
struct Shuffle {
    push_secs: f64,
    fetch_secs: f64,
    push_cpu_secs: f64,
    fetch_cpu_secs: f64,
    /// The reducers' row check: not the shuffle's, so not in `fetch_cpu_secs`, but it
    /// runs on the same cores during the fetch.
    check_cpu_secs: f64,
    push_faults: u64,
    fetch_faults: u64,
    /// Process CPU by stage at the push's start, its end and the fetch's end.
    stages: [stages::Sample; 3],
    stored_bytes: u64,
    /// UDP payload bytes the pushing clients sent, and the fetching clients received.
    push_udp_bytes: u64,
    fetch_udp_bytes: u64,
    /// The smallest UDP payload size MTU discovery settled at, over the pushes.
    path_mtu: u16,
    peak_rss_bytes: u64,
    /// Maps whose ack names a second copy.
    replicated_maps: usize,
    ok: bool,
}

/// Runs the shuffle `--runs` times on the same input; reports medians, and whether
/// every run verified.
pub async fn run(args: &Args) -> Result<(bool, Vec<Record>), crate::BenchError> {
    let t0 = Instant::now();
    let (maps, expected, input_bytes) = generate(args);
    let rows: u64 = expected.iter().map(|d| d.rows).sum();
    eprintln!(
        "generated {} maps x {} batches x {} rows ({:.1} MB) in {:.1} s",
        args.maps,
        args.batches_per_map,
        args.rows_per_batch,
        input_bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    if args.path.is_link() {
        eprintln!("path: {}", args.path.describe());
    }
    if args.replication == 2 {
        return replication::compare(args, &maps, &expected, rows, input_bytes).await;
    }
    let mut shuffles = Vec::new();
    for _ in 0..args.runs.max(1) {
        let cluster = Cluster::start(args, 1).await?;
        shuffles.push(cluster.shuffle(args, false, &maps, &expected, rows).await?);
    }
    let (ok, mut records) = report(args, &shuffles, input_bytes, rows);
    let inputs: Vec<&[RecordBatch]> = maps.iter().map(|m| m.batches.as_slice()).collect();
    let gb = input_bytes as f64 / 1e9;
    let parts = parts::measure(&args.path, &inputs, args.partitions, gb).await?;
    records.extend(report_breakdown(&shuffles, gb, &parts));
    Ok((ok, records))
}

/// Prints the medians of the runs and returns them as records.
fn report(args: &Args, runs: &[Shuffle], input_bytes: u64, rows: u64) -> (bool, Vec<Record>) {
    let ok = runs.iter().all(|r| r.ok);
    let gb = input_bytes as f64 / 1e9;
    let med = |f: &dyn Fn(&Shuffle) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let push = med(&|r| gb / r.push_secs);
    let fetch = med(&|r| gb / r.fetch_secs);
    // Server and clients share this process: the CPU of both sides of the shuffle.
    let push_cpu = med(&|r| r.push_cpu_secs / gb);
    let fetch_cpu = med(&|r| r.fetch_cpu_secs / gb);
    let cpu_per_gb = med(&|r| (r.push_cpu_secs + r.fetch_cpu_secs) / gb);
    let stored_bytes = runs[0].stored_bytes;
    let ratio = input_bytes as f64 / stored_bytes.max(1) as f64;
    let peak_rss_mib =
        runs.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0) as f64 / (1 << 20) as f64;
    let n = args.partitions;
    let reducers = args.reducers.clamp(1, n);
    let line = |name: &str, value: String| println!("{name:<22} {value:>14}");
    println!();
    println!(
        "sluice-bench e2e: {} maps -> {n} partitions -> {reducers} reducers, codec {:?}, median of {}",
        args.maps,
        args.codec,
        runs.len()
    );
    line("input bytes", format!("{:.1} MB", input_bytes as f64 / 1e6));
    line("rows", rows.to_string());
    line(
        "stored bytes",
        format!("{:.1} MB", stored_bytes as f64 / 1e6),
    );
    line("compression ratio", format!("{ratio:.2}"));
    line("push", format!("{push:.3} GB/s"));
    line("fetch", format!("{fetch:.3} GB/s"));
    // What crossed the network: IPC batches on the push, compressed blocks on the fetch.
    let push_wire = med(&|r| r.push_udp_bytes as f64 / 1e9 / r.push_secs);
    let fetch_wire = med(&|r| r.fetch_udp_bytes as f64 / 1e9 / r.fetch_secs);
    let path_mtu = runs.iter().map(|r| r.path_mtu).min().unwrap_or(0);
    line("push on the wire", format!("{push_wire:.3} GB/s"));
    line("fetch on the wire", format!("{fetch_wire:.3} GB/s"));
    line("path MTU (pushes, UDP)", path_mtu.to_string());
    line("CPU per GB", format!("{cpu_per_gb:.2} s"));
    line("  push", format!("{push_cpu:.2} s"));
    line("  fetch", format!("{fetch_cpu:.2} s"));
    let check_cpu = med(&|r| r.check_cpu_secs / gb);
    line("  check (not counted)", format!("{check_cpu:.2} s"));
    line("peak RSS", format!("{peak_rss_mib:.0} MiB"));
    let push_faults = med(&|r| r.push_faults as f64 / gb);
    let fetch_faults = med(&|r| r.fetch_faults as f64 / gb);
    line(
        "page faults per GB",
        format!("{push_faults:.0} / {fetch_faults:.0}"),
    );
    line("verified", if ok { "OK".into() } else { "MISMATCH".into() });
    let case = format!(
        "{} maps, P={n}, {reducers} reducers, {:?}",
        args.maps, args.codec
    );
    let record = |metric, value, unit| Record::new("e2e", case.clone(), metric, value, unit);
    let records = vec![
        record("push", push, "GB/s"),
        record("fetch", fetch, "GB/s"),
        record("push_wire", push_wire, "GB/s"),
        record("fetch_wire", fetch_wire, "GB/s"),
        record("path_mtu", path_mtu as f64, "bytes"),
        record("compression_ratio", ratio, "x"),
        record("cpu_per_gb", cpu_per_gb, "s/GB"),
        record("push_cpu_per_gb", push_cpu, "s/GB"),
        record("fetch_cpu_per_gb", fetch_cpu, "s/GB"),
        record("check_cpu_per_gb", check_cpu, "s/GB"),
        // Includes the generated input, which the benchmark holds in memory.
        record("peak_rss", peak_rss_mib, "MiB"),
        record("push_page_faults_per_gb", push_faults, "1/GB"),
        record("fetch_page_faults_per_gb", fetch_faults, "1/GB"),
        record("input", input_bytes as f64 / 1e6, "MB"),
    ];
    (ok, records)
}

/// Prints where the CPU of the push and of the fetch went (the median run of each by
/// total CPU), the parts alone, and each side's ratio to the sum of its parts.
fn report_breakdown(runs: &[Shuffle], gb: f64, parts: &parts::Parts) -> Vec<Record> {
    let median_run = |key: &dyn Fn(&Shuffle) -> f64| {
        let mut sorted: Vec<&Shuffle> = runs.iter().collect();
        sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
        sorted[sorted.len() / 2]
    };
    let push_run = median_run(&|r| r.push_cpu_secs);
    let fetch_run = median_run(&|r| r.fetch_cpu_secs);
    let push = stages::push(&push_run.stages[0], &push_run.stages[1], gb);
    let fetch = stages::fetch(&fetch_run.stages[1], &fetch_run.stages[2], gb);
    let push_total = push.last().map_or(0.0, |r| r.1);
    let fetch_total = fetch.last().map_or(0.0, |r| r.1);
    println!();
    println!("CPU s per GB of input, by stage (median run)");
    for (side, rows) in [("push", &push), ("fetch", &fetch)] {
        println!("  {side}");
        for (name, secs) in rows {
            println!("    {name:<36} {secs:>6.2}");
        }
    }
    println!("parts alone, same input (CPU s per GB)");
    println!(
        "  push: split {:.2} + lz4 {:.2} + raw quinn {:.2} = {:.2}; e2e / parts = {:.2}",
        parts.split,
        parts.compress,
        parts.push_transport,
        parts.push(),
        push_total / parts.push()
    );
    println!(
        "  fetch: lz4 {:.2} + crc32c {:.2} + raw quinn {:.2} = {:.2}; e2e / parts = {:.2}",
        parts.decompress,
        parts.checksum,
        parts.fetch_transport,
        parts.fetch(),
        fetch_total / parts.fetch()
    );
    let mut records = Vec::new();
    let stage = |side: &'static str, name: &str, secs: f64| {
        Record::new(
            "e2e_stages",
            format!("{side}: {name}"),
            "cpu_per_gb",
            secs,
            "s/GB",
        )
    };
    for (name, secs) in &push {
        records.push(stage("push", name, *secs));
    }
    for (name, secs) in &fetch {
        records.push(stage("fetch", name, *secs));
    }
    let part = |case: &str, value: f64| Record::new("e2e_parts", case, "cpu_per_gb", value, "s/GB");
    records.extend([
        part("split", parts.split),
        part("lz4 compress", parts.compress),
        part("raw quinn, push", parts.push_transport),
        part("lz4 decompress", parts.decompress),
        part("crc32c", parts.checksum),
        part("raw quinn, fetch", parts.fetch_transport),
        Record::new(
            "e2e_parts",
            "push",
            "e2e_over_parts",
            push_total / parts.push(),
            "x",
        ),
        Record::new(
            "e2e_parts",
            "fetch",
            "e2e_over_parts",
            fetch_total / parts.fetch(),
            "x",
        ),
    ]);
    records
}
