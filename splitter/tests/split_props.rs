//! The split equals a naive reference built from arrow's `take`, row for row, partition
//! by partition, for random schemas, batches (nulls, empty strings, empty batches) and P.

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::types::Int32Type;
use arrow_array::*;
use arrow_buffer::i256;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use proptest::prelude::*;
use sluice_splitter::{
    PartitionBuffers, PartitionSpec, Partitioner, Refill, SplitIndices, Splitter,
};
use sluice_testkit::Rng;

/// Every way a drained slot can start over, by partition.
const REFILLS: [Refill; 3] = [Refill::Capacity, Refill::Size, Refill::Empty];

/// Whether the next value is null, at `rate` percent (no draw at all at 0%).
fn is_null(r: &mut Rng, rate: u64) -> bool {
    rate > 0 && r.below(100) < rate
}

const TYPES: usize = 22;

fn data_type(kind: usize) -> DataType {
    match kind {
        0 => DataType::Int8,
        1 => DataType::Int16,
        2 => DataType::Int32,
        3 => DataType::Int64,
        4 => DataType::Float32,
        5 => DataType::Float64,
        6 => DataType::Boolean,
        7 => DataType::Date32,
        8 => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        9 => DataType::Decimal128(15, 2),
        10 => DataType::Decimal128(38, 6),
        11 => DataType::Decimal256(50, 4),
        12 => DataType::Utf8,
        13 => DataType::LargeUtf8,
        14 => DataType::Binary,
        15 => DataType::LargeBinary,
        16 => DataType::FixedSizeBinary(3),
        17 => DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
        18 => DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ])),
        19 => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        20 => DataType::Utf8View,
        _ => DataType::Null,
    }
}

/// The longest string of one array, in characters (of up to 3 bytes): the splitter
/// copies a column's values in chunks chosen by its longest value (16, 32, 64 bytes, or
/// by length beyond that), so arrays span all four.
fn max_chars(r: &mut Rng) -> u64 {
    [6, 11, 22, 60][r.below(4) as usize]
}

fn string(r: &mut Rng, max_chars: u64) -> String {
    let n = r.below(max_chars) as usize; // includes empty strings
    (0..n)
        .map(|_| ['a', 'é', 'z', '日', ' '][r.below(5) as usize])
        .collect()
}

fn array(kind: usize, rows: usize, r: &mut Rng, null_rate: u64) -> ArrayRef {
    macro_rules! fill {
        ($b:expr, |$r:ident| $v:expr) => {{
            let mut b = $b;
            for _ in 0..rows {
                if is_null(r, null_rate) {
                    b.append_null();
                } else {
                    let $r = &mut *r;
                    b.append_value($v);
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match kind {
        0 => fill!(Int8Builder::new(), |r| r.next() as i8),
        1 => fill!(Int16Builder::new(), |r| r.next() as i16),
        2 => fill!(Int32Builder::new(), |r| r.next() as i32),
        3 => fill!(Int64Builder::new(), |r| r.next() as i64),
        4 => fill!(Float32Builder::new(), |r| r.next() as i32 as f32 / 3.0),
        5 => fill!(Float64Builder::new(), |r| f64::from_bits(
            r.next() & 0x7fef_ffff_ffff_ffff
        )),
        6 => fill!(BooleanBuilder::new(), |r| r.below(2) == 0),
        7 => fill!(Date32Builder::new(), |r| r.next() as i32 >> 12),
        8 => fill!(
            TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            |r| r.next() as i64 >> 4
        ),
        9 => fill!(
            Decimal128Builder::new()
                .with_precision_and_scale(15, 2)
                .unwrap(),
            |r| (r.next() % 1_000_000_000_000) as i128
        ),
        10 => fill!(
            Decimal128Builder::new()
                .with_precision_and_scale(38, 6)
                .unwrap(),
            |r| r.next() as i128 * r.next() as i64 as i128
        ),
        11 => fill!(
            Decimal256Builder::new()
                .with_precision_and_scale(50, 4)
                .unwrap(),
            |r| i256::from_i128(r.next() as i128 * 1_000_003)
        ),
        12..=15 => {
            let m = max_chars(r);
            match kind {
                12 => fill!(StringBuilder::new(), |r| string(r, m)),
                13 => fill!(LargeStringBuilder::new(), |r| string(r, m)),
                14 => fill!(BinaryBuilder::new(), |r| string(r, m).into_bytes()),
                _ => fill!(LargeBinaryBuilder::new(), |r| string(r, m).into_bytes()),
            }
        }
        16 => {
            let mut b = FixedSizeBinaryBuilder::new(3);
            for _ in 0..rows {
                if is_null(r, null_rate) {
                    b.append_null();
                } else {
                    b.append_value([r.next() as u8, r.next() as u8, r.next() as u8])
                        .unwrap();
                }
            }
            Arc::new(b.finish())
        }
        17 => {
            let mut b = ListBuilder::new(Int32Builder::new());
            for _ in 0..rows {
                if is_null(r, null_rate) {
                    b.append_null();
                } else {
                    for _ in 0..r.below(4) {
                        b.values()
                            .append_option((r.below(5) != 0).then_some(r.next() as i32));
                    }
                    b.append(true);
                }
            }
            Arc::new(b.finish())
        }
        18 => {
            let a = array(3, rows, r, null_rate);
            let b = array(12, rows, r, null_rate);
            let nulls: Vec<bool> = (0..rows).map(|_| !is_null(r, null_rate)).collect();
            let DataType::Struct(fields) = data_type(18) else {
                unreachable!()
            };
            Arc::new(StructArray::new(fields, vec![a, b], Some(nulls.into())))
        }
        19 => {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            for _ in 0..rows {
                if is_null(r, null_rate) {
                    b.append_null();
                } else {
                    b.append_value(["x", "", "yy", "日本"][r.below(4) as usize]);
                }
            }
            Arc::new(b.finish())
        }
        20 => fill!(StringViewBuilder::new(), |r| string(r, 9)
            .repeat(1 + r.below(3) as usize * 4)),
        _ => Arc::new(NullArray::new(rows)),
    }
}

fn batch(
    schema: &SchemaRef,
    kinds: &[usize],
    rows: usize,
    r: &mut Rng,
    null_rate: u64,
    n: u32,
) -> RecordBatch {
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int32Array::from_iter_values(
        (0..rows).map(|_| r.below(n as u64) as i32),
    ))];
    columns.extend(kinds.iter().map(|&k| array(k, rows, r, null_rate)));
    // Slices exercise non-zero array offsets.
    let b = RecordBatch::try_new(schema.clone(), columns).unwrap();
    if rows > 4 && r.below(3) == 0 {
        let cut = r.below(3) as usize;
        b.slice(cut, rows - cut)
    } else {
        b
    }
}

fn reference(batches: &[RecordBatch], n: u32) -> Vec<Vec<RecordBatch>> {
    let mut out = vec![Vec::new(); n as usize];
    for b in batches {
        let pids = b.column(0).as_any().downcast_ref::<Int32Array>().unwrap();
        for (p, parts) in out.iter_mut().enumerate() {
            let idx: UInt32Array = (0..b.num_rows() as u32)
                .filter(|&i| pids.value(i as usize) as usize == p)
                .collect();
            if !idx.is_empty() {
                parts.push(arrow_select::take::take_record_batch(b, &idx).unwrap());
            }
        }
    }
    out
}

fn concat(schema: &SchemaRef, parts: &[RecordBatch]) -> RecordBatch {
    arrow_select::concat::concat_batches(schema, parts).unwrap()
}

/// A schema of a pid column plus columns of `kinds`, and batches of random rows.
fn inputs(
    seed: u64,
    kinds: &[usize],
    n: u32,
    batch_rows: &[usize],
    null_rate: u64,
) -> (SchemaRef, Vec<RecordBatch>) {
    let mut r = Rng::new(seed);
    let mut fields = vec![Field::new("pid", DataType::Int32, false)];
    fields.extend(
        kinds
            .iter()
            .enumerate()
            .map(|(i, &k)| Field::new(format!("c{i}"), data_type(k), true)),
    );
    let schema = Arc::new(Schema::new(fields));
    let batches = batch_rows
        .iter()
        .map(|&rows| batch(&schema, kinds, rows, &mut r, null_rate, n))
        .collect();
    (schema, batches)
}

fn check(
    seed: u64,
    kinds: Vec<usize>,
    n: u32,
    batch_rows: Vec<usize>,
    null_rate: u64,
    drain_every: u64,
    group: usize,
) {
    let (schema, batches) = inputs(seed, &kinds, n, &batch_rows, null_rate);

    let partitioner =
        Partitioner::new(PartitionSpec::PartitionIdColumn { column: 0 }, n, &schema).unwrap();
    let mut splitter = Splitter::new(partitioner);
    let mut buffers = PartitionBuffers::new(schema.clone(), n);
    let mut drained: Vec<Vec<RecordBatch>> = vec![Vec::new(); n as usize];
    // `group` batches at a time go through one `append_batches`.
    for (i, group) in batches.chunks(group).enumerate() {
        let mut splits = vec![SplitIndices::default(); group.len()];
        for (b, split) in group.iter().zip(&mut splits) {
            splitter.split_into(b, split).unwrap();
        }
        let parts: Vec<_> = group.iter().zip(&splits).collect();
        buffers.append_batches(&parts).unwrap();
        if drain_every > 0 && (i as u64).is_multiple_of(drain_every) {
            // Drain some partitions midway: their later rows go to the next block.
            for p in (0..n).filter(|p| (*p as u64 + i as u64).is_multiple_of(3)) {
                drained[p as usize].extend(buffers.drain(p, REFILLS[p as usize % 3]).unwrap());
            }
        }
    }
    for p in buffers.non_empty() {
        drained[p as usize].extend(buffers.drain(p, REFILLS[p as usize % 3]).unwrap());
    }
    assert_eq!(buffers.total_bytes(), 0);
    assert!(buffers.non_empty().is_empty());
    let expected = reference(&batches, n);
    for p in 0..n as usize {
        let got = concat(&schema, &drained[p]);
        let want = concat(&schema, &expected[p]);
        assert_eq!(got, want, "partition {p} of {n}, kinds {kinds:?}");
        for b in &drained[p] {
            assert!(b.num_rows() > 0, "drained an empty block");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn split_equals_take_reference(
        seed in any::<u64>(),
        kinds in proptest::collection::vec(0..TYPES, 1..6),
        n in prop_oneof![Just(1u32), 1u32..20, Just(200u32), Just(2000u32)],
        batch_rows in proptest::collection::vec(prop_oneof![Just(0usize), 1usize..300], 1..5),
        null_rate in prop_oneof![Just(0u64), Just(1u64), Just(10u64), Just(100u64)],
        drain_every in 0u64..3,
        group in 1usize..4,
    ) {
        check(seed, kinds, n, batch_rows, null_rate, drain_every, group);
    }
}

#[test]
fn every_type_at_once() {
    for n in [1, 7, 64] {
        check(
            42,
            (0..TYPES).collect(),
            n,
            vec![500, 0, 37, 1000],
            10,
            1,
            1,
        );
        check(
            42,
            (0..TYPES).collect(),
            n,
            vec![500, 0, 37, 1000],
            10,
            1,
            3,
        );
    }
}

/// The writer (buffers or sorted runs at large P, block and memory limits) emits every row exactly
/// once, in order within each partition.
fn check_writer(seed: u64, kinds: Vec<usize>, n: u32, batch_rows: Vec<usize>, block_size: usize) {
    use sluice_splitter::{PartitionWriter, SplitError, WriterLimits};
    let (schema, batches) = inputs(seed, &kinds, n, &batch_rows, 10);
    let partitioner =
        Partitioner::new(PartitionSpec::PartitionIdColumn { column: 0 }, n, &schema).unwrap();
    let limits = WriterLimits {
        block_size,
        memory_limit: block_size * 4,
    };
    let mut writer = PartitionWriter::new(partitioner, schema.clone(), limits);
    let mut emitted: Vec<Vec<RecordBatch>> = vec![Vec::new(); n as usize];
    let mut emit = |p: u32, block: RecordBatch| -> Result<(), SplitError> {
        assert!(block.num_rows() > 0);
        emitted[p as usize].push(block);
        Ok(())
    };
    for b in &batches {
        writer.write(b.clone(), &mut emit).unwrap();
    }
    writer.finish(&mut emit).unwrap();
    let expected = reference(&batches, n);
    for p in 0..n as usize {
        assert_eq!(
            concat(&schema, &emitted[p]),
            concat(&schema, &expected[p]),
            "partition {p} of {n}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn writer_emits_every_row_once(
        seed in any::<u64>(),
        kinds in proptest::collection::vec(0..TYPES, 1..4),
        n in prop_oneof![Just(3u32), Just(200u32), Just(1500u32)],
        batch_rows in proptest::collection::vec(0usize..30_000, 1..6),
        block_size in prop_oneof![Just(1usize << 10), Just(64usize << 10), Just(1usize << 20)],
    ) {
        check_writer(seed, kinds, n, batch_rows, block_size);
    }
}
