//! Spark's range partitioning: a row goes to the number of bounds that sort strictly
//! before its key, so a key equal to a bound lands in that bound's partition. Spark SQL
//! (`RangePartitioning`, `repartitionByRange`, `orderBy`) puts descending keys in the
//! key order; an RDD `RangePartitioner` with `ascending = false` (`sortByKey(false)`)
//! keeps the bounds ascending and reverses the partition index instead.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, GenericBinaryArray, GenericStringArray, OffsetSizeTrait,
    PrimitiveArray, RecordBatch,
};
use arrow_buffer::Buffer;
use arrow_row::{RowConverter, Rows, SortField};
use arrow_schema::{DataType, Schema, SortOptions};
use std::sync::Arc;

use crate::error::SplitError;

/// One key column of a range partitioning, as in a Spark `SortOrder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeKey {
    pub column: usize,
    pub descending: bool,
    pub nulls_first: bool,
}

impl RangeKey {
    /// Spark's default for an ascending order: nulls first.
    pub fn ascending(column: usize) -> Self {
        Self {
            column,
            descending: false,
            nulls_first: true,
        }
    }
}

/// Keys compared as byte strings (arrow's row format) against the bounds.
#[derive(Debug)]
pub(crate) struct RangePartitioner {
    /// An RDD partitioner with `ascending = false`: index `i` becomes `bounds - i`.
    reversed: bool,
    columns: Vec<usize>,
    converter: RowConverter,
    bounds: Rows,
    /// The current batch's keys; reused across batches.
    rows: Rows,
}

impl RangePartitioner {
    /// `bounds` holds one column per key, strictly increasing in the keys' order, with at
    /// most `num_partitions - 1` rows (Spark's `rangeBounds`).
    pub(crate) fn new(
        keys: &[RangeKey],
        bounds: &RecordBatch,
        num_partitions: u32,
        schema: &Schema,
        reversed: bool,
    ) -> Result<Self, SplitError> {
        if keys.is_empty() {
            return Err(SplitError::NoKeyColumns);
        }
        let bad = |why: String| SplitError::RangeBounds(why);
        if reversed {
            check_rdd_keys(keys, schema)?;
        }
        if bounds.num_columns() != keys.len() {
            return Err(bad(format!(
                "{} bound columns for {} keys",
                bounds.num_columns(),
                keys.len()
            )));
        }
        if bounds.num_rows() >= num_partitions as usize {
            return Err(bad(format!(
                "{} bounds for {num_partitions} partitions",
                bounds.num_rows()
            )));
        }
        let mut fields = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let field = schema
                .fields()
                .get(key.column)
                .ok_or(SplitError::NoSuchColumn {
                    index: key.column,
                    columns: schema.fields().len(),
                })?;
            let bound_type = bounds.column(i).data_type();
            if bound_type != field.data_type() {
                return Err(bad(format!(
                    "bound column {i} has type {bound_type}, key column {} has {}",
                    key.column,
                    field.data_type()
                )));
            }
            let options = SortOptions {
                descending: key.descending,
                nulls_first: key.nulls_first,
            };
            fields.push(SortField::new_with_options(
                compared_type(field.data_type(), reversed),
                options,
            ));
        }
        if !RowConverter::supports_fields(&fields) {
            return Err(bad("a key type cannot be ordered".into()));
        }
        let converter = RowConverter::new(fields)?;
        let columns: Vec<usize> = keys.iter().map(|k| k.column).collect();
        let bound_columns: Vec<ArrayRef> = bounds
            .columns()
            .iter()
            .map(|c| spark_order(c, reversed))
            .collect();
        let bounds = converter.convert_columns(&bound_columns)?;
        if let Some(i) = (1..bounds.num_rows()).find(|&i| bounds.row(i - 1) >= bounds.row(i)) {
            return Err(bad(format!(
                "bound {i} does not sort after bound {}",
                i - 1
            )));
        }
        let rows = converter.empty_rows(0, 0);
        Ok(Self {
            reversed,
            columns,
            converter,
            bounds,
            rows,
        })
    }

    pub(crate) fn partition(
        &mut self,
        batch: &RecordBatch,
        out: &mut Vec<u32>,
    ) -> Result<(), SplitError> {
        let mut keys = Vec::with_capacity(self.columns.len());
        for &index in &self.columns {
            let column = batch.columns().get(index).ok_or(SplitError::NoSuchColumn {
                index,
                columns: batch.num_columns(),
            })?;
            keys.push(spark_order(column, self.reversed));
        }
        self.rows.clear();
        self.converter.append(&mut self.rows, &keys)?;
        let bounds = &self.bounds;
        let reversed = self.reversed;
        out.extend(self.rows.iter().map(|row| {
            // Bounds strictly before the row: a binary search for the first one that is not.
            let (mut lo, mut hi) = (0, bounds.num_rows());
            while lo < hi {
                let mid = (lo + hi) / 2;
                if bounds.row(mid) < row {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            if reversed {
                (bounds.num_rows() - lo) as u32
            } else {
                lo as u32
            }
        }));
        Ok(())
    }
}

/// An RDD partitioner orders one ascending key with its Scala `Ordering`. Floats are
/// refused: Spark compares them with IEEE `>` up to 128 bounds and with
/// `Double.compare` beyond (-0.0 and NaN land differently), which no single order
/// matches. Dictionary keys are refused too (RDD keys are plain values).
fn check_rdd_keys(keys: &[RangeKey], schema: &Schema) -> Result<(), SplitError> {
    let bad = |why: &str| Err(SplitError::RangeBounds(why.into()));
    match keys {
        [key] if !key.descending => match schema.fields().get(key.column).map(|f| f.data_type()) {
            Some(DataType::Float16 | DataType::Float32 | DataType::Float64) => {
                bad("a reversed (RDD) range partitioning takes no float key")
            }
            Some(DataType::Dictionary(_, _)) => {
                bad("a reversed (RDD) range partitioning takes no dictionary key")
            }
            _ => Ok(()),
        },
        _ => bad("a reversed (RDD) range partitioning takes one ascending key"),
    }
}

/// Spark SQL orders floating point values with -0.0 equal to 0.0 and every NaN equal and
/// above all numbers; arrow's row format uses the IEEE total order, so map each value to
/// the representative Spark treats it as (`v + 0.0` turns -0.0 into 0.0).
///
/// An RDD's string keys compare as Java strings, by UTF-16 code units, while the row
/// format compares UTF-8 bytes: the two differ only in where U+E000..U+FFFF (UTF-8 lead
/// bytes 0xEE, 0xEF) fall against the characters above U+FFFF (surrogates in UTF-16,
/// lead bytes 0xF0..0xF4). Moving those two lead bytes above 0xF4 (compared as binary)
/// gives exactly the UTF-16 order.
fn spark_order(array: &ArrayRef, rdd: bool) -> ArrayRef {
    match array.data_type() {
        DataType::Utf8 if rdd => Arc::new(utf16_order(array.as_string::<i32>())),
        DataType::LargeUtf8 if rdd => Arc::new(utf16_order(array.as_string::<i64>())),
        DataType::Float32 => {
            map_values::<Float32Type>(array, |v| if v.is_nan() { f32::NAN } else { v + 0.0 })
        }
        DataType::Float64 => {
            map_values::<Float64Type>(array, |v| if v.is_nan() { f64::NAN } else { v + 0.0 })
        }
        _ => array.clone(),
    }
}

/// What a key column is compared as (strings of an RDD as remapped bytes).
fn compared_type(data_type: &DataType, rdd: bool) -> DataType {
    match data_type {
        DataType::Utf8 if rdd => DataType::Binary,
        DataType::LargeUtf8 if rdd => DataType::LargeBinary,
        other => other.clone(),
    }
}

fn utf16_order<O: OffsetSizeTrait>(strings: &GenericStringArray<O>) -> GenericBinaryArray<O> {
    let remap = |b: &u8| match *b {
        0xEE => 0xF5,
        0xEF => 0xF6,
        b => b,
    };
    let values: Vec<u8> = strings.values().iter().map(remap).collect();
    GenericBinaryArray::new(
        strings.offsets().clone(),
        Buffer::from_vec(values),
        strings.nulls().cloned(),
    )
}

fn map_values<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    f: impl Fn(T::Native) -> T::Native,
) -> ArrayRef {
    let mapped: PrimitiveArray<T> = array.as_primitive::<T>().unary(f);
    Arc::new(mapped)
}
