//! Per-kernel benchmarks of the split path, so regressions show up per kernel:
//! `cargo bench -p sluice-splitter`.

use std::hint::black_box;
use std::sync::Arc;

use arrow_array::builder::{Decimal128Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_splitter::{
    PartitionBuffers, PartitionSpec, PartitionWriter, Partitioner, Refill, SplitError, Splitter,
    WriterLimits,
};
use sluice_testkit::Rng;

const ROWS: usize = 8192;

/// A key column plus one column of the kind under test.
fn batch(kind: &str) -> RecordBatch {
    batch_from(kind, 7)
}

fn batch_from(kind: &str, seed: u64) -> RecordBatch {
    let mut r = Rng::new(seed);
    let mut key = Int64Builder::new();
    for _ in 0..ROWS {
        key.append_value(r.next() as i64);
    }
    let (field, column): (Field, ArrayRef) = match kind {
        "int64" => {
            let mut b = Int64Builder::new();
            (0..ROWS).for_each(|_| b.append_value(r.next() as i64));
            (
                Field::new("v", DataType::Int64, false),
                Arc::new(b.finish()),
            )
        }
        "int64_nulls" => {
            let mut b = Int64Builder::new();
            (0..ROWS).for_each(|_| b.append_option((!r.next().is_multiple_of(100)).then_some(1)));
            (Field::new("v", DataType::Int64, true), Arc::new(b.finish()))
        }
        "decimal128" => {
            let mut b = Decimal128Builder::new()
                .with_precision_and_scale(38, 0)
                .unwrap();
            (0..ROWS).for_each(|_| b.append_value(r.next() as i128));
            (
                Field::new("v", DataType::Decimal128(38, 0), false),
                Arc::new(b.finish()),
            )
        }
        _ => {
            let mut b = StringBuilder::new();
            (0..ROWS).for_each(|_| b.append_value("x".repeat(10 + (r.next() % 34) as usize)));
            (Field::new("v", DataType::Utf8, false), Arc::new(b.finish()))
        }
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        field,
    ]));
    RecordBatch::try_new(schema, vec![Arc::new(key.finish()), column]).unwrap()
}

fn hash(c: &mut Criterion) {
    let b = batch("int64");
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Elements(ROWS as u64));
    for n in [200u32, 20_000] {
        let mut p =
            Partitioner::new(PartitionSpec::Hash { columns: vec![0] }, n, &b.schema()).unwrap();
        let mut out = Vec::new();
        group.bench_function(BenchmarkId::new("long_pmod", n), |bench| {
            bench.iter(|| {
                p.partition(black_box(&b), &mut out).unwrap();
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for kind in ["int64", "int64_nulls", "decimal128", "utf8"] {
        let b = batch(kind);
        let bytes: usize = b
            .column(1)
            .to_data()
            .buffers()
            .iter()
            .map(|x| x.len())
            .sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        for n in [200u32, 20_000] {
            let p =
                Partitioner::new(PartitionSpec::Hash { columns: vec![0] }, n, &b.schema()).unwrap();
            let mut splitter = Splitter::new(p);
            let split = splitter.split(&b).unwrap().clone();
            // Only the value column is measured: the key column's gather is the same
            // for every kind.
            let values = b.project(&[1]).unwrap();
            group.bench_function(BenchmarkId::new(kind, n), |bench| {
                let mut buffers = PartitionBuffers::new(values.schema(), n);
                bench.iter(|| {
                    buffers.append(black_box(&values), &split).unwrap();
                    if buffers.total_bytes() > 64 << 20 {
                        for p in buffers.non_empty() {
                            black_box(buffers.drain(p, Refill::Capacity).unwrap());
                        }
                    }
                })
            });
        }
    }
    group.finish();
}

/// The large-P writer (sorted runs): each iteration adds one of 8 different batches, and
/// every eighth one flushes (sort, gather, slice into blocks), as under the push limit.
fn sorted_runs(c: &mut Criterion) {
    let mut group = c.benchmark_group("sorted_runs");
    for kind in ["int64", "int64_nulls", "decimal128", "utf8"] {
        let batches: Vec<RecordBatch> = (0..8).map(|i| batch_from(kind, 7 + i)).collect();
        let b = &batches[0];
        let bytes: usize = b
            .columns()
            .iter()
            .flat_map(|c| {
                c.to_data()
                    .buffers()
                    .iter()
                    .map(|x| x.len())
                    .collect::<Vec<_>>()
            })
            .sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        let n = 20_000u32;
        let p = Partitioner::new(PartitionSpec::Hash { columns: vec![0] }, n, &b.schema()).unwrap();
        let limits = WriterLimits {
            block_size: 1 << 20,
            memory_limit: 8 * bytes,
        };
        let mut writer = PartitionWriter::new(p, b.schema(), limits);
        let mut next = batches.iter().cycle();
        group.bench_function(BenchmarkId::new(kind, n), |bench| {
            bench.iter(|| {
                let batch = next.next().expect("cycles").clone();
                writer
                    .write(batch, |_, block| -> Result<(), SplitError> {
                        black_box(block);
                        Ok(())
                    })
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, hash, append, sorted_runs);
criterion_main!(benches);
