//! Partitioners: assign each row of a batch a partition id in `[0, P)`.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, ArrowPrimitiveType, RecordBatch};
use arrow_schema::{DataType, Schema};

use crate::error::SplitError;
use crate::murmur3::{hash_bytes, hash_int, hash_long, Pmod, SPARK_SEED};
use crate::range::{RangeKey, RangePartitioner};

/// How rows are assigned to partitions.
#[derive(Debug, Clone, PartialEq)]
pub enum PartitionSpec {
    /// Every row to partition 0.
    Single,
    /// Rows dealt in turn, continuing across batches, starting at `start`.
    RoundRobin { start: u32 },
    /// An Int32 column holds each row's partition id.
    PartitionIdColumn { column: usize },
    /// Spark `HashPartitioning`: `pmod(murmur3(keys, seed 42), P)`.
    Hash { columns: Vec<usize> },
    /// Spark's `RangePartitioner`: a row goes to the number of `bounds` rows (one column
    /// per key, strictly increasing, at most P - 1) that sort before its key, as Spark
    /// SQL's `RangePartitioning` does. `reversed` is an RDD partitioner with
    /// `ascending = false` (`sortByKey(false)`): one ascending, non-float key, and that
    /// number `i` becomes `bounds - i`.
    Range {
        keys: Vec<RangeKey>,
        bounds: RecordBatch,
        reversed: bool,
    },
}

/// A partitioner bound to a schema and a partition count.
#[derive(Debug)]
pub struct Partitioner {
    spec: PartitionSpec,
    num_partitions: u32,
    next_round_robin: u32,
    hashes: Vec<i32>,
    range: Option<RangePartitioner>,
}

impl Partitioner {
    /// Checks the spec against the schema (columns exist, types fit) once per stream.
    pub fn new(
        spec: PartitionSpec,
        num_partitions: u32,
        schema: &Schema,
    ) -> Result<Self, SplitError> {
        if num_partitions == 0 {
            return Err(SplitError::NoPartitions);
        }
        let field_type = |index: usize| {
            schema
                .fields()
                .get(index)
                .map(|f| f.data_type().clone())
                .ok_or(SplitError::NoSuchColumn {
                    index,
                    columns: schema.fields().len(),
                })
        };
        let mut next_round_robin = 0;
        let mut range = None;
        match &spec {
            PartitionSpec::Single => {}
            PartitionSpec::RoundRobin { start } => next_round_robin = start % num_partitions,
            PartitionSpec::PartitionIdColumn { column } => {
                let data_type = field_type(*column)?;
                if data_type != DataType::Int32 {
                    return Err(SplitError::PartitionIdType {
                        index: *column,
                        data_type,
                    });
                }
            }
            PartitionSpec::Hash { columns } => {
                if columns.is_empty() {
                    return Err(SplitError::NoKeyColumns);
                }
                for &index in columns {
                    let data_type = field_type(index)?;
                    if !is_hashable(&data_type) {
                        return Err(SplitError::UnsupportedKeyType { index, data_type });
                    }
                }
            }
            PartitionSpec::Range {
                keys,
                bounds,
                reversed,
            } => {
                range = Some(RangePartitioner::new(
                    keys,
                    bounds,
                    num_partitions,
                    schema,
                    *reversed,
                )?);
            }
        }
        Ok(Self {
            spec,
            num_partitions,
            next_round_robin,
            hashes: Vec::new(),
            range,
        })
    }

    pub fn num_partitions(&self) -> u32 {
        self.num_partitions
    }

    /// Writes the partition id of every row of `batch` into `out` (cleared first).
    pub fn partition(&mut self, batch: &RecordBatch, out: &mut Vec<u32>) -> Result<(), SplitError> {
        out.clear();
        let rows = batch.num_rows();
        let n = self.num_partitions;
        match &self.spec {
            PartitionSpec::Single => out.resize(rows, 0),
            PartitionSpec::RoundRobin { .. } => {
                let start = self.next_round_robin;
                out.extend((0..rows as u64).map(|i| ((start as u64 + i) % n as u64) as u32));
                self.next_round_robin = ((start as u64 + rows as u64) % n as u64) as u32;
            }
            PartitionSpec::PartitionIdColumn { column } => {
                partition_ids(column_at(batch, *column)?, n, out)?;
            }
            PartitionSpec::Hash { columns } => {
                self.hashes.clear();
                self.hashes.resize(rows, SPARK_SEED);
                for &index in columns {
                    hash_column(column_at(batch, index)?, index, &mut self.hashes)?;
                }
                let pmod = Pmod::new(n);
                out.extend(self.hashes.iter().map(|&h| pmod.apply(h)));
            }
            PartitionSpec::Range { .. } => {
                let range = self.range.as_mut().expect("built with the spec");
                range.partition(batch, out)?;
            }
        }
        Ok(())
    }
}

fn column_at(batch: &RecordBatch, index: usize) -> Result<&ArrayRef, SplitError> {
    batch.columns().get(index).ok_or(SplitError::NoSuchColumn {
        index,
        columns: batch.num_columns(),
    })
}

fn partition_ids(array: &ArrayRef, n: u32, out: &mut Vec<u32>) -> Result<(), SplitError> {
    let ids = array
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| SplitError::PartitionIdType {
            index: 0,
            data_type: array.data_type().clone(),
        })?;
    if let Some(row) = (0..ids.len()).find(|&i| ids.is_null(i)) {
        return Err(SplitError::NullPartitionId { row });
    }
    let values = ids.values();
    // Validate in one branch-free pass; find the offending row only on failure.
    if values.iter().any(|&v| (v as u32) >= n) {
        let row = values.iter().position(|&v| (v as u32) >= n).unwrap_or(0);
        return Err(SplitError::PartitionIdOutOfRange {
            row,
            id: values[row] as i64,
            partitions: n,
        });
    }
    out.extend(values.iter().map(|&v| v as u32));
    Ok(())
}

fn is_hashable(data_type: &DataType) -> bool {
    use DataType::*;
    match data_type {
        Boolean
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | Float32
        | Float64
        | Date32
        | Date64
        | Timestamp(_, _)
        | Decimal128(_, _)
        | Utf8
        | LargeUtf8
        | Utf8View
        | Binary
        | LargeBinary
        | BinaryView
        | FixedSizeBinary(_)
        | Null => true,
        Dictionary(_, value) => is_hashable(value) && !matches!(**value, Dictionary(_, _)),
        _ => false,
    }
}

/// Folds one key column into the running per-row hashes (Spark semantics: a null leaves
/// the row's hash unchanged).
fn hash_column(array: &ArrayRef, index: usize, hashes: &mut [i32]) -> Result<(), SplitError> {
    use DataType::*;
    match array.data_type() {
        Null => {}
        Boolean => {
            let a = array.as_boolean();
            update(a, hashes, |i, h| hash_int(a.value(i) as i32, h));
        }
        Int8 => hash_ints::<Int8Type>(array, hashes, |v| v as i32),
        Int16 => hash_ints::<Int16Type>(array, hashes, |v| v as i32),
        Int32 => hash_ints::<Int32Type>(array, hashes, |v| v),
        UInt8 => hash_ints::<UInt8Type>(array, hashes, |v| v as i32),
        UInt16 => hash_ints::<UInt16Type>(array, hashes, |v| v as i32),
        Date32 => hash_ints::<Date32Type>(array, hashes, |v| v),
        Float32 => hash_ints::<Float32Type>(array, hashes, |v| {
            // Java floatToIntBits: -0.0 hashes as 0.0 and every NaN as the canonical NaN.
            if v == 0.0 {
                0
            } else if v.is_nan() {
                0x7fc0_0000
            } else {
                v.to_bits() as i32
            }
        }),
        UInt32 => hash_longs::<UInt32Type>(array, hashes, |v| v as i64),
        Int64 => hash_longs::<Int64Type>(array, hashes, |v| v),
        Date64 => hash_longs::<Date64Type>(array, hashes, |v| v),
        Timestamp(unit, _) => {
            use arrow_schema::TimeUnit::*;
            match unit {
                Second => hash_longs::<TimestampSecondType>(array, hashes, |v| v),
                Millisecond => hash_longs::<TimestampMillisecondType>(array, hashes, |v| v),
                Microsecond => hash_longs::<TimestampMicrosecondType>(array, hashes, |v| v),
                Nanosecond => hash_longs::<TimestampNanosecondType>(array, hashes, |v| v),
            }
        }
        Float64 => hash_longs::<Float64Type>(array, hashes, |v| {
            if v == 0.0 {
                0
            } else if v.is_nan() {
                0x7ff8_0000_0000_0000
            } else {
                v.to_bits() as i64
            }
        }),
        Decimal128(precision, _) if *precision <= 18 => {
            hash_longs::<Decimal128Type>(array, hashes, |v| v as i64)
        }
        Decimal128(_, _) => {
            let a = array.as_primitive::<Decimal128Type>();
            update(a, hashes, |i, h| {
                let (buf, len) = java_big_integer_bytes(a.value(i));
                hash_bytes(&buf[16 - len..], h)
            });
        }
        Utf8 => hash_var(array.as_string::<i32>(), hashes, |a, i| {
            a.value(i).as_bytes()
        }),
        LargeUtf8 => hash_var(array.as_string::<i64>(), hashes, |a, i| {
            a.value(i).as_bytes()
        }),
        Utf8View => hash_var(array.as_string_view(), hashes, |a, i| a.value(i).as_bytes()),
        Binary => hash_var(array.as_binary::<i32>(), hashes, |a, i| a.value(i)),
        LargeBinary => hash_var(array.as_binary::<i64>(), hashes, |a, i| a.value(i)),
        BinaryView => hash_var(array.as_binary_view(), hashes, |a, i| a.value(i)),
        FixedSizeBinary(_) => hash_var(array.as_fixed_size_binary(), hashes, |a, i| a.value(i)),
        Dictionary(_, _) => {
            // Hash each row's value: the seed differs per row, so per-value hashes cannot
            // be shared. Materialize the values once, in row order.
            let dict = array.as_any_dictionary();
            let keys = dict.normalized_keys();
            let take_idx = arrow_array::UInt32Array::from_iter(
                (0..array.len()).map(|i| (!array.is_null(i)).then(|| keys[i] as u32)),
            );
            let values = arrow_select::take::take(dict.values().as_ref(), &take_idx, None)?;
            hash_column(&values, index, hashes)?;
        }
        other => {
            return Err(SplitError::UnsupportedKeyType {
                index,
                data_type: other.clone(),
            })
        }
    }
    Ok(())
}

/// Applies `f(row, hash)` to every non-null row.
#[inline]
fn update(array: &dyn Array, hashes: &mut [i32], f: impl Fn(usize, i32) -> i32) {
    match array.nulls().filter(|n| n.null_count() > 0) {
        None => hashes
            .iter_mut()
            .enumerate()
            .for_each(|(i, h)| *h = f(i, *h)),
        Some(nulls) => {
            for i in nulls.valid_indices() {
                hashes[i] = f(i, hashes[i]);
            }
        }
    }
}

/// Folds fixed-width values into the hashes. Written as straight zips (no indexing, no
/// branches) so the compiler vectorizes the Murmur3 rounds; a null keeps the old hash
/// through a select rather than a branch.
#[inline]
fn update_native<T: Copy>(
    values: &[T],
    nulls: Option<&arrow_buffer::NullBuffer>,
    hashes: &mut [i32],
    f: impl Fn(T, i32) -> i32,
) {
    match nulls.filter(|n| n.null_count() > 0) {
        None => hashes
            .iter_mut()
            .zip(values)
            .for_each(|(h, &v)| *h = f(v, *h)),
        Some(nulls) => {
            hashes
                .iter_mut()
                .zip(values)
                .zip(nulls.iter())
                .for_each(|((h, &v), valid)| {
                    let hashed = f(v, *h);
                    *h = if valid { hashed } else { *h };
                })
        }
    }
}

fn hash_ints<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    hashes: &mut [i32],
    to_int: impl Fn(T::Native) -> i32,
) {
    let a = array.as_primitive::<T>();
    update_native(a.values(), a.nulls(), hashes, |v, h| hash_int(to_int(v), h));
}

fn hash_longs<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    hashes: &mut [i32],
    to_long: impl Fn(T::Native) -> i64,
) {
    let a = array.as_primitive::<T>();
    update_native(a.values(), a.nulls(), hashes, |v, h| {
        hash_long(to_long(v), h)
    });
}

fn hash_var<A: Array>(array: &A, hashes: &mut [i32], value: impl Fn(&A, usize) -> &[u8]) {
    update(array, hashes, |i, h| hash_bytes(value(array, i), h));
}

/// Java `BigInteger.toByteArray()` of `v`: big-endian two's complement of minimal length
/// (at least one byte). Returns the 16-byte form and how many trailing bytes are used.
fn java_big_integer_bytes(v: i128) -> ([u8; 16], usize) {
    let magnitude_bits = 128
        - if v < 0 {
            (!v).leading_zeros()
        } else {
            v.leading_zeros()
        };
    let len = (magnitude_bits as usize / 8 + 1).min(16);
    (v.to_be_bytes(), len)
}

#[cfg(test)]
mod tests {
    use super::java_big_integer_bytes;

    fn bytes(v: i128) -> Vec<u8> {
        let (b, len) = java_big_integer_bytes(v);
        b[16 - len..].to_vec()
    }

    #[test]
    fn big_integer_bytes_match_java() {
        assert_eq!(bytes(0), vec![0x00]);
        assert_eq!(bytes(127), vec![0x7f]);
        assert_eq!(bytes(128), vec![0x00, 0x80]);
        assert_eq!(bytes(-1), vec![0xff]);
        assert_eq!(bytes(-128), vec![0x80]);
        assert_eq!(bytes(-129), vec![0xff, 0x7f]);
        assert_eq!(bytes(i128::MIN).len(), 16);
    }
}
