//! Batches with one column of every type the split handles (with nulls), the shuffle
//! key the tests hash them on, and (feature `split`) a reference split built from
//! arrow's `take`.

use std::sync::Arc;

use arrow_array::builder::*;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::Rng;

/// The schema of [`batch`]: a non-null `key` (long) and nullable columns of every
/// other type.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::Int64, false),
        Field::new("i8", DataType::Int8, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("flag", DataType::Boolean, true),
        Field::new("date", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("price", DataType::Decimal128(15, 2), true),
        Field::new("big", DataType::Decimal128(38, 10), true),
        Field::new("name", DataType::Utf8, true),
        Field::new("blob", DataType::Binary, true),
        Field::new("comment", DataType::LargeUtf8, true),
    ]))
}

/// The values of the `name` column: empty, one byte, ASCII words, multi-byte UTF-8.
pub const WORDS: &[&str] = &[
    "",
    "a",
    "furiously",
    "ironic",
    "日本語",
    "é",
    "packages sleep",
    "🦀 crab",
];

/// A batch of `rows` rows of every type, about 10% nulls in nullable columns.
pub fn batch(rows: usize, seed: u64) -> RecordBatch {
    let mut r = Rng::new(seed);
    let mut key = Int64Builder::new();
    let mut i8b = Int8Builder::new();
    let mut i16b = Int16Builder::new();
    let mut i32b = Int32Builder::new();
    let mut f32b = Float32Builder::new();
    let mut f64b = Float64Builder::new();
    let mut flag = BooleanBuilder::new();
    let mut date = Date32Builder::new();
    let mut ts = TimestampMicrosecondBuilder::new();
    let mut price = Decimal128Builder::new();
    let mut big = Decimal128Builder::new();
    let mut name = StringBuilder::new();
    let mut blob = BinaryBuilder::new();
    let mut comment = LargeStringBuilder::new();
    for _ in 0..rows {
        key.append_value(r.next() as i64 >> r.below(60));
        let null = |r: &mut Rng| r.below(10) == 0;
        macro_rules! maybe {
            ($b:expr, $v:expr) => {
                if null(&mut r) {
                    $b.append_null()
                } else {
                    let v = $v;
                    $b.append_value(v)
                }
            };
        }
        maybe!(i8b, r.next() as i8);
        maybe!(i16b, r.next() as i16);
        maybe!(i32b, r.next() as i32);
        maybe!(f32b, f32::from_bits(r.next() as u32 & 0x7f7f_ffff));
        maybe!(f64b, (r.next() as i64) as f64 / 7.0);
        maybe!(flag, r.below(2) == 0);
        maybe!(date, (r.below(20_000) as i32) - 5_000);
        maybe!(ts, r.next() as i64 >> 8);
        maybe!(price, (r.below(10_000_000_000) as i128) - 5_000_000_000);
        maybe!(big, (r.next() as i64 as i128) * (r.next() as i32 as i128));
        maybe!(name, WORDS[r.below(WORDS.len() as u64) as usize]);
        maybe!(blob, {
            let n = r.below(12) as usize;
            (0..n).map(|_| r.next() as u8).collect::<Vec<u8>>()
        });
        maybe!(comment, {
            let n = r.below(40) as usize;
            (0..n)
                .map(|i| (b'a' + ((i as u64 + r.below(26)) % 26) as u8) as char)
                .collect::<String>()
        });
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(i8b.finish()),
        Arc::new(i16b.finish()),
        Arc::new(i32b.finish()),
        Arc::new(f32b.finish()),
        Arc::new(f64b.finish()),
        Arc::new(flag.finish()),
        Arc::new(date.finish()),
        Arc::new(ts.finish()),
        Arc::new(price.finish().with_precision_and_scale(15, 2).unwrap()),
        Arc::new(big.finish().with_precision_and_scale(38, 10).unwrap()),
        Arc::new(name.finish()),
        Arc::new(blob.finish()),
        Arc::new(comment.finish()),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// The columns the tests hash on: `key` (a long) and `name` (a string).
pub const KEYS: [u32; 2] = [0, 11];

#[cfg(feature = "split")]
pub use split::{concat, hash_spec, reference_split};

#[cfg(feature = "split")]
mod split {
    use arrow_array::{RecordBatch, UInt32Array};
    use sluice_splitter::{PartitionSpec, Partitioner};

    use super::{schema, KEYS};

    /// Reference split: the rows of each partition, in input order, via `take`.
    pub fn reference_split(
        batches: &[RecordBatch],
        spec: PartitionSpec,
        n: u32,
    ) -> Vec<RecordBatch> {
        let schema = schema();
        let mut partitioner = Partitioner::new(spec, n, &schema).unwrap();
        let mut per_partition: Vec<Vec<RecordBatch>> = vec![Vec::new(); n as usize];
        for b in batches {
            let mut ids = Vec::new();
            partitioner.partition(b, &mut ids).unwrap();
            for (p, out) in per_partition.iter_mut().enumerate() {
                let idx: UInt32Array = ids
                    .iter()
                    .enumerate()
                    .filter(|(_, &id)| id as usize == p)
                    .map(|(i, _)| i as u32)
                    .collect();
                out.push(arrow_select::take::take_record_batch(b, &idx).unwrap());
            }
        }
        per_partition
            .into_iter()
            .map(|parts| arrow_select::concat::concat_batches(&schema, &parts).unwrap())
            .collect()
    }

    /// The batches as one (of [`schema`]).
    pub fn concat(batches: &[RecordBatch]) -> RecordBatch {
        arrow_select::concat::concat_batches(&schema(), batches).unwrap()
    }

    /// Hash partitioning on [`KEYS`].
    pub fn hash_spec() -> PartitionSpec {
        PartitionSpec::Hash {
            columns: KEYS.iter().map(|&k| k as usize).collect(),
        }
    }
}
