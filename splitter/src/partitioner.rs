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
                pmod_all(&self.hashes, Pmod::new(n), out);
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

/// Whether the CPU has AVX2, for the hash loops compiled a second time with it: eight
/// Murmur3 lanes with native 32-bit multiplies instead of the x86-64 baseline's four,
/// emulated (the hash of a long at 385 M rows/s before, `sluice-bench --mode split`).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// `pmod` of every hash, appended to `out`.
fn pmod_all(hashes: &[i32], pmod: Pmod, out: &mut Vec<u32>) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2, checked just above.
        #[allow(unsafe_code)]
        return unsafe { pmod_all_avx2(hashes, pmod, out) };
    }
    pmod_all_baseline(hashes, pmod, out);
}

#[inline(always)]
fn pmod_all_baseline(hashes: &[i32], pmod: Pmod, out: &mut Vec<u32>) {
    out.extend(hashes.iter().map(|&h| pmod.apply(h)));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pmod_all_avx2(hashes: &[i32], pmod: Pmod, out: &mut Vec<u32>) {
    pmod_all_baseline(hashes, pmod, out);
}

/// Folds fixed-width values into the hashes, with AVX2 when the CPU has it.
#[inline]
fn update_native<T: Copy>(
    values: &[T],
    nulls: Option<&arrow_buffer::NullBuffer>,
    hashes: &mut [i32],
    f: impl Fn(T, i32) -> i32,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2, checked just above.
        #[allow(unsafe_code)]
        return unsafe { update_native_avx2(values, nulls, hashes, f) };
    }
    update_native_baseline(values, nulls, hashes, f);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_native_avx2<T: Copy>(
    values: &[T],
    nulls: Option<&arrow_buffer::NullBuffer>,
    hashes: &mut [i32],
    f: impl Fn(T, i32) -> i32,
) {
    update_native_baseline(values, nulls, hashes, f);
}

/// Written as straight zips (no indexing, no branches) so the compiler vectorizes the
/// Murmur3 rounds; a null keeps the old hash through a select rather than a branch.
#[inline(always)]
fn update_native_baseline<T: Copy>(
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

    /// The AVX2 build of the hash and pmod loops (taken on CPUs that have it) agrees
    /// with the baseline build, row for row, with and without nulls.
    #[test]
    fn hash_loops_agree_with_and_without_avx2() {
        use super::*;
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let longs: Vec<i64> = (0..1000).map(|_| next() as i64).collect();
        let valid: Vec<bool> = (0..1000).map(|_| next() % 5 != 0).collect();
        let nulls = arrow_buffer::NullBuffer::from(valid);
        for nulls in [None, Some(&nulls)] {
            let mut dispatched = vec![SPARK_SEED; 1000];
            let mut baseline = dispatched.clone();
            update_native(&longs, nulls, &mut dispatched, hash_long);
            update_native_baseline(&longs, nulls, &mut baseline, hash_long);
            assert_eq!(dispatched, baseline);
            for n in [1, 7, 200, 65_536] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                pmod_all(&dispatched, Pmod::new(n), &mut a);
                pmod_all_baseline(&baseline, Pmod::new(n), &mut b);
                assert_eq!(a, b);
                let java = baseline.iter().map(|&h| h.rem_euclid(n as i32) as u32);
                assert_eq!(b, java.collect::<Vec<_>>());
            }
        }
    }
}
