//! `--mode split`: the server's split path on one thread, against a plain copy of the
//! same bytes (the limit) and the peers: a take-per-partition split, and (feature
//! `peers`) DataFusion's `BatchPartitioner`.
//!
//! Sluice runs exactly the server's writer: per-partition buffers drained at the block
//! size and under the push's memory limit, or sorted runs from 1024 partitions. The
//! peers accumulate their pieces per partition and concatenate them into a block at the
//! block size, holding everything else until the end. Each side reports the blocks it
//! produced.

use std::hint::black_box;
use std::time::Instant;

use arrow_array::{RecordBatch, UInt32Array};
use arrow_select::concat::concat_batches;
use arrow_select::take::take_record_batch;
use sluice_splitter::{PartitionSpec, PartitionWriter, Partitioner, SplitError, WriterLimits};
use sluice_testkit::{lineitem_batch, lineitem_schema};

use crate::data::buffer_bytes;
use crate::report::{median, median_secs, Record};

pub struct SplitArgs {
    pub batches: usize,
    pub rows_per_batch: usize,
    pub partitions: Vec<u32>,
    pub block_size: usize,
    /// Per-push memory limit (the server's `storage.push_buffer_limit`).
    pub memory_limit: usize,
    pub runs: usize,
    /// Skip the peer measurements (for profiling Sluice's own path).
    pub no_peers: bool,
}

fn partitioner(n: u32) -> Partitioner {
    Partitioner::new(
        PartitionSpec::Hash { columns: vec![0] },
        n,
        &lineitem_schema(),
    )
    .expect("l_orderkey is hashable")
}

/// One timed split: its seconds and the blocks it produced.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub secs: f64,
    pub blocks: u64,
}

/// Sluice's split exactly as the server runs it (block size, per-push memory limit,
/// sorted runs at large P); blocks are produced and dropped.
fn sluice_split(batches: &[RecordBatch], n: u32, limits: WriterLimits) -> Outcome {
    let mut writer = PartitionWriter::new(partitioner(n), lineitem_schema(), limits);
    let mut blocks = 0u64;
    let mut emit = |_: u32, block: RecordBatch| -> Result<(), SplitError> {
        black_box(block);
        blocks += 1;
        Ok(())
    };
    let start = Instant::now();
    for batch in batches {
        writer.write(batch.clone(), &mut emit).expect("split");
    }
    writer.finish(&mut emit).expect("split");
    let secs = start.elapsed().as_secs_f64();
    Outcome { secs, blocks }
}

/// The straightforward split: bucket row indices per partition, `take` each bucket,
/// keep the pieces, `concat` them into a block at the block size.
fn take_split(batches: &[RecordBatch], n: u32, block_size: usize, row_bytes: usize) -> Outcome {
    let schema = lineitem_schema();
    let mut partitioner = partitioner(n);
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); n as usize];
    let mut pending: Vec<(Vec<RecordBatch>, usize)> = vec![(Vec::new(), 0); n as usize];
    let (mut pids, mut touched) = (Vec::new(), Vec::new());
    let mut blocks = 0u64;
    let start = Instant::now();
    for batch in batches {
        partitioner.partition(batch, &mut pids).expect("partition");
        touched.clear();
        for (row, &p) in pids.iter().enumerate() {
            let bucket = &mut buckets[p as usize];
            if bucket.is_empty() {
                touched.push(p);
            }
            bucket.push(row as u32);
        }
        for &p in &touched {
            let rows = std::mem::take(&mut buckets[p as usize]);
            let count = rows.len();
            let part = take_record_batch(batch, &UInt32Array::from(rows)).expect("take");
            let (parts, bytes) = &mut pending[p as usize];
            parts.push(part);
            *bytes += count * row_bytes;
            if *bytes >= block_size {
                black_box(concat_batches(&schema, parts.iter()).expect("concat"));
                blocks += 1;
                parts.clear();
                *bytes = 0;
            }
        }
    }
    finish_pending(pending, blocks, start, |parts| {
        black_box(concat_batches(&schema, parts.iter()).expect("concat"));
    })
}

/// A peer's end: what each partition still holds becomes a last block, everything is
/// freed (part of the work, as it is for Sluice's blocks), then the clock stops.
pub fn finish_pending<B>(
    pending: Vec<(Vec<B>, usize)>,
    mut blocks: u64,
    start: Instant,
    concat: impl Fn(&[B]),
) -> Outcome {
    for (parts, _) in &pending {
        if !parts.is_empty() {
            concat(parts);
            blocks += 1;
        }
    }
    drop(pending);
    let secs = start.elapsed().as_secs_f64();
    Outcome { secs, blocks }
}

/// The limit: copying every buffer of every batch once.
fn memcpy(batches: &[RecordBatch]) -> f64 {
    let largest = batches.iter().map(buffer_bytes).max().unwrap_or(0) as usize;
    let mut dst = vec![0u8; largest];
    let start = Instant::now();
    for batch in batches {
        let mut at = 0;
        for column in batch.columns() {
            let data = column.to_data();
            let nulls = data.nulls().map(|n| n.buffer().as_slice());
            for src in data.buffers().iter().map(|b| b.as_slice()).chain(nulls) {
                dst[at..at + src.len()].copy_from_slice(src);
                at += src.len();
            }
        }
        black_box(&dst);
    }
    start.elapsed().as_secs_f64()
}

pub fn run(args: &SplitArgs) -> Vec<Record> {
    eprintln!(
        "split: generating {} batches x {} rows",
        args.batches, args.rows_per_batch
    );
    let batches: Vec<RecordBatch> = (0..args.batches)
        .map(|i| lineitem_batch(args.rows_per_batch, 7_000_000 + i as u64))
        .collect();
    let bytes: u64 = batches.iter().map(buffer_bytes).sum();
    let rows = (args.batches * args.rows_per_batch) as f64;
    let row_bytes = (bytes as usize).div_ceil(rows as usize);
    #[cfg(feature = "peers")]
    let df_batches = crate::datafusion_peer::convert(&batches);
    let gbps = |secs: f64| bytes as f64 / 1e9 / secs;
    let mut records = Vec::new();

    let limit = gbps(median_secs(args.runs, || memcpy(&batches)));
    records.push(Record::new("split", "all", "memcpy", limit, "GB/s"));

    let mut ids = Vec::new();
    let mut p = partitioner(200);
    let hash_secs = median_secs(args.runs, || {
        let start = Instant::now();
        for b in &batches {
            p.partition(b, &mut ids).expect("partition");
            black_box(&ids);
        }
        start.elapsed().as_secs_f64()
    });
    records.push(Record::new(
        "split",
        "hash l_orderkey + pmod 200",
        "hash_rate",
        rows / hash_secs / 1e6,
        "M rows/s",
    ));

    let bar = crate::report::progress(args.partitions.len() as u64, "split");
    for &n in &args.partitions {
        bar.set_message(format!("split P={n}"));
        let limits = WriterLimits {
            block_size: args.block_size,
            memory_limit: args.memory_limit,
        };
        // Sluice and its peers take turns, run by run, so that a slow moment of the
        // machine (or the allocator state one leaves behind) hits all of them alike.
        let (mut ours, mut take) = (Vec::new(), Vec::new());
        #[cfg(feature = "peers")]
        let mut df = Vec::new();
        for _ in 0..args.runs.max(1) {
            ours.push(sluice_split(&batches, n, limits));
            if !args.no_peers {
                take.push(take_split(&batches, n, args.block_size, row_bytes));
                #[cfg(feature = "peers")]
                df.push(crate::datafusion_peer::split(
                    &df_batches,
                    n,
                    args.block_size,
                    row_bytes,
                ));
            }
        }
        let case = format!("P={n}");
        // Blocks show what each side produced: Sluice obeys the push's memory limit,
        // the peers hold everything until 1 MiB blocks.
        let blocks = |name: &'static str, runs: &[Outcome]| {
            let count = runs.first().map_or(0, |o| o.blocks);
            Record::new("split", case.clone(), name, count as f64, "blocks")
        };
        records.push(blocks("blocks", &ours));
        let secs = |runs: &[Outcome]| median(&runs.iter().map(|o| o.secs).collect::<Vec<_>>());
        let ours = secs(&ours);
        let mut record =
            Record::new("split", case.clone(), "throughput", gbps(ours), "GB/s").with_limit(limit);
        if !args.no_peers {
            // A peer's blocks and throughput; its median seconds.
            let mut peer = |name: &'static str, blocks_name: &'static str, runs: &[Outcome]| {
                records.push(blocks(blocks_name, runs));
                let secs = secs(runs);
                let throughput = gbps(secs);
                records.push(Record::new("split", case.clone(), name, throughput, "GB/s"));
                secs
            };
            let take = peer("take_per_partition", "take_per_partition_blocks", &take);
            #[cfg(not(feature = "peers"))]
            let fastest = take;
            // With DataFusion measured too, the peer is the faster of the two.
            #[cfg(feature = "peers")]
            let fastest = take.min(peer(
                "datafusion_batch_partitioner",
                "datafusion_batch_partitioner_blocks",
                &df,
            ));
            record = record.with_peer(gbps(fastest));
        }
        records.push(record);
        records.push(Record::new(
            "split",
            case,
            "rows",
            rows / ours / 1e6,
            "M rows/s",
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    records
}

pub fn print(records: &[Record]) {
    println!();
    println!("sluice-bench split (one thread, lineitem-like data, hash of l_orderkey)");
    for r in records
        .iter()
        .filter(|r| r.metric == "memcpy" || r.metric == "hash_rate")
    {
        println!(
            "{:<28} {:>10.2} {}",
            format!("{} ({})", r.metric, r.case),
            r.value,
            r.unit
        );
    }
    println!(
        "{:<10} {:>12} {:>10} {:>10} {:>10} {:>8} {:>10} {:>9} {:>11}",
        "P",
        "sluice GB/s",
        "M rows/s",
        "take GB/s",
        "DF GB/s",
        "x peer",
        "of memcpy",
        "blocks",
        "peer blocks"
    );
    let value = |metric: &str, case: &str, decimals: usize| {
        records
            .iter()
            .find(|x| x.metric == metric && x.case == case)
            .map_or("-".to_string(), |x| format!("{:.*}", decimals, x.value))
    };
    for r in records.iter().filter(|r| r.metric == "throughput") {
        println!(
            "{:<10} {:>12.3} {:>10} {:>10} {:>10} {:>8.2} {:>9.0}% {:>9} {:>11}",
            r.case,
            r.value,
            value("rows", &r.case, 1),
            value("take_per_partition", &r.case, 3),
            value("datafusion_batch_partitioner", &r.case, 3),
            r.ratio_to_peer.unwrap_or(0.0),
            100.0 * r.ratio_to_limit.unwrap_or(0.0),
            value("blocks", &r.case, 0),
            value("take_per_partition_blocks", &r.case, 0),
        );
    }
}
