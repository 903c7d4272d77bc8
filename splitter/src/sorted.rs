//! The split for thousands of partitions: a radix partition over accumulated batches.
//!
//! With P in the thousands a batch gives each partition a row or two, so appending to
//! per-partition buffers costs a buffer visit (and soon a reallocation) per value.
//! Here batches are kept as they arrive, with their partition ids, until the memory
//! limit; a flush then sorts all their rows by partition at once (a counting sort, then
//! one gather per column into buffers allocated once, at their final size) and emits
//! each partition's rows as slices of that one sorted batch. Dictionary columns are
//! gathered by arrow's `interleave`, and each slice keeps the flush's whole dictionary
//! (as the per-partition buffers keep each batch's).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{make_array, Array, ArrayRef, RecordBatch};
use arrow_buffer::{i256, ArrowNativeType, BooleanBufferBuilder, Buffer, NullBuffer};
use arrow_data::ArrayData;
use arrow_schema::{DataType, SchemaRef};
use arrow_select::interleave::interleave;

use crate::buffers::{
    build_bytes, byte_source, check_schema, column_bytes, copy_value, fixed_width, longest_of,
    max_offset, native, with_chunk, ByteSource,
};
use crate::error::SplitError;
use crate::partitioner::Partitioner;
use crate::split::counting_sort;

/// Batches waiting to be sorted by partition, and the scratch space of the sort.
#[derive(Debug)]
pub(crate) struct SortedRuns {
    partitioner: Partitioner,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    /// Partition ids of every pending row, batch after batch.
    pids: Vec<u32>,
    /// Uncompressed bytes of the pending batches (buffer lengths, not capacities).
    bytes: usize,
    /// Per-partition row counters: zero between flushes.
    counts: Vec<u32>,
    touched: Vec<u32>,
    scratch: Vec<u32>,
    /// `(batch, row)` of every pending row, grouped by partition.
    order: Vec<(u32, u32)>,
}

impl SortedRuns {
    pub(crate) fn new(partitioner: Partitioner, schema: SchemaRef) -> Self {
        let n = partitioner.num_partitions() as usize;
        Self {
            partitioner,
            schema,
            batches: Vec::new(),
            pids: Vec::new(),
            bytes: 0,
            counts: vec![0; n],
            touched: Vec::new(),
            scratch: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Bytes held whatever is pending: the per-partition counters.
    pub(crate) fn fixed_bytes(&self) -> usize {
        self.counts.capacity() * 4
    }

    /// Bytes held: the pending batches, and their partition ids.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes + (self.pids.capacity() + self.scratch.capacity()) * 4
    }

    /// Partitions `batch` and keeps it for the next flush.
    pub(crate) fn push(&mut self, batch: RecordBatch) -> Result<(), SplitError> {
        check_schema(&batch, &self.schema)?;
        if batch.num_rows() > u32::MAX as usize {
            return Err(SplitError::TooManyRows {
                rows: batch.num_rows(),
                max: u32::MAX as usize,
            });
        }
        self.partitioner.partition(&batch, &mut self.scratch)?;
        self.pids.extend_from_slice(&self.scratch);
        self.bytes += batch_bytes(&batch);
        self.batches.push(batch);
        Ok(())
    }

    /// Sorts every pending row by partition and emits each partition's rows, in input
    /// order, as blocks of at most `block_size` (estimated) bytes.
    pub(crate) fn flush<E: From<SplitError>>(
        &mut self,
        block_size: usize,
        emit: &mut impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.batches.is_empty() {
            return Ok(());
        }
        let rows = self.pids.len();
        let row_bytes = self.bytes.div_ceil(rows.max(1)).max(1);
        let block_rows = (block_size / row_bytes).max(1);
        let runs = self.sort_rows();
        let sorted = self.gather()?;
        // Everything but the sorted batch is released before the blocks go out.
        self.batches.clear();
        self.bytes = 0;
        self.pids = Vec::new();
        self.scratch = Vec::new();
        self.order = Vec::new();
        for (p, start, end) in runs {
            let (mut at, end) = (start as usize, end as usize);
            while at < end {
                let len = block_rows.min(end - at);
                emit(p, compact_views(sorted.slice(at, len))?)?;
                at += len;
            }
        }
        Ok(())
    }

    /// Counting sort of the pending rows by partition: fills `order` with
    /// `(batch, row)` pairs grouped by partition and returns each touched partition's
    /// `(partition, start, end)` in `order`, ascending.
    fn sort_rows(&mut self) -> Vec<(u32, u32, u32)> {
        let items = self
            .batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| (0..batch.num_rows() as u32).map(move |r| (b as u32, r)));
        let mut runs = Vec::new();
        counting_sort(
            &self.pids,
            items,
            &mut self.counts,
            &mut self.touched,
            &mut self.order,
            &mut runs,
        );
        runs
    }

    /// One column at a time, the pending rows in `order`: one exact-size allocation per
    /// buffer for the whole flush.
    fn gather(&self) -> Result<RecordBatch, SplitError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        // The `(usize, usize)` form arrow's interleave takes, built once if needed.
        let mut wide_order: Option<Vec<(usize, usize)>> = None;
        for (c, field) in self.schema.fields().iter().enumerate() {
            let sources: Vec<ArrayData> =
                self.batches.iter().map(|b| b.column(c).to_data()).collect();
            let column = match gather_column(field.data_type(), &sources, &self.order)? {
                Some(data) => make_array(data),
                None => {
                    // Nested, view, dictionary and boolean columns: arrow's interleave.
                    let arrays: Vec<&dyn Array> =
                        self.batches.iter().map(|b| b.column(c).as_ref()).collect();
                    let order = wide_order.get_or_insert_with(|| {
                        self.order
                            .iter()
                            .map(|&(b, r)| (b as usize, r as usize))
                            .collect()
                    });
                    interleave(&arrays, order)?
                }
            };
            columns.push(column);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Gathers a fixed-width, string or binary column from `sources` in `order`; `None`
/// for the other types.
fn gather_column(
    data_type: &DataType,
    sources: &[ArrayData],
    order: &[(u32, u32)],
) -> Result<Option<ArrayData>, SplitError> {
    let values = match data_type {
        DataType::Utf8 | DataType::Binary => gather_bytes::<i32>(sources, order)?,
        DataType::LargeUtf8 | DataType::LargeBinary => gather_bytes::<i64>(sources, order)?,
        _ => match fixed_width(data_type) {
            Some(1) => vec![gather_fixed::<u8>(sources, order)],
            Some(2) => vec![gather_fixed::<u16>(sources, order)],
            Some(4) => vec![gather_fixed::<u32>(sources, order)],
            Some(8) => vec![gather_fixed::<u64>(sources, order)],
            Some(16) => vec![gather_fixed::<i128>(sources, order)],
            Some(32) => vec![gather_fixed::<i256>(sources, order)],
            _ => return Ok(None),
        },
    };
    let builder = ArrayData::builder(data_type.clone())
        .len(order.len())
        .buffers(values)
        .nulls(gather_nulls(sources, order));
    let data = if fixed_width(data_type).is_some() {
        builder.build()?
    } else {
        // SAFETY: `gather_bytes` copied whole values out of arrays of this type and
        // wrote each value's end as the next offset, after a leading 0.
        #[allow(unsafe_code)]
        unsafe {
            build_bytes(builder)?
        }
    };
    Ok(Some(data))
}

fn gather_fixed<T: ArrowNativeType>(sources: &[ArrayData], order: &[(u32, u32)]) -> Buffer {
    let values: Vec<&[T]> = sources.iter().map(native::<T>).collect();
    let out: Vec<T> = order
        .iter()
        .map(|&(b, r)| values[b as usize][r as usize])
        .collect();
    Buffer::from_vec(out)
}

/// Offsets and values of a string or binary column, each allocated once.
fn gather_bytes<O: ArrowNativeType>(
    sources: &[ArrayData],
    order: &[(u32, u32)],
) -> Result<Vec<Buffer>, SplitError> {
    let columns: Vec<ByteSource<'_, O>> = sources.iter().map(byte_source).collect();
    let max = max_offset::<O>();
    let mut offsets: Vec<O> = Vec::with_capacity(order.len() + 1);
    offsets.push(O::usize_as(0));
    let mut total = 0usize;
    for &(b, r) in order {
        let o = columns[b as usize].0;
        total += o[r as usize + 1].as_usize() - o[r as usize].as_usize();
        if total > max {
            return Err(SplitError::BufferOverflow);
        }
        offsets.push(O::usize_as(total));
    }
    let mut values: Vec<u8> = Vec::with_capacity(total + 64);
    with_chunk!(
        longest_of(&columns),
        copy_values::<O>(&mut values, &columns, order)
    );
    Ok(vec![Buffer::from_vec(offsets), Buffer::from_vec(values)])
}

/// The values of `order`, in order, each copied by [`copy_value::<N>`].
fn copy_values<O: ArrowNativeType, const N: usize>(
    values: &mut Vec<u8>,
    columns: &[ByteSource<'_, O>],
    order: &[(u32, u32)],
) {
    for &(b, r) in order {
        let (o, v) = columns[b as usize];
        let start = o[r as usize].as_usize();
        copy_value::<N>(values, v, start, o[r as usize + 1].as_usize() - start);
    }
}

/// The validity of the gathered rows, 64 bits at a time; `None` without nulls.
fn gather_nulls(sources: &[ArrayData], order: &[(u32, u32)]) -> Option<NullBuffer> {
    let nulls: Vec<Option<&NullBuffer>> = sources
        .iter()
        .map(|d| d.nulls().filter(|n| n.null_count() > 0))
        .collect();
    if nulls.iter().all(Option::is_none) {
        return None;
    }
    let mut bits = BooleanBufferBuilder::new(order.len());
    for chunk in order.chunks(64) {
        let mut word = 0u64;
        for (i, &(b, r)) in chunk.iter().enumerate() {
            let valid = nulls[b as usize].is_none_or(|n| n.is_valid(r as usize));
            word |= (valid as u64) << i;
        }
        bits.append_packed_range(0..chunk.len(), &word.to_le_bytes());
    }
    Some(NullBuffer::new(bits.finish()))
}

/// Uncompressed bytes of a batch's columns (see [`column_bytes`]).
pub(crate) fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| column_bytes(&c.to_data()))
        .sum()
}

/// A view column keeps every data buffer of its sources, so a slice of it would carry
/// the whole flush's strings into its block: compact those to the slice's own.
fn compact_views(block: RecordBatch) -> Result<RecordBatch, SplitError> {
    let is_view = |c: &ArrayRef| matches!(c.data_type(), DataType::Utf8View | DataType::BinaryView);
    if !block.columns().iter().any(is_view) {
        return Ok(block);
    }
    let columns: Vec<ArrayRef> = block
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View => Arc::new(c.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(c.as_binary_view().gc()) as ArrayRef,
            _ => c.clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(block.schema(), columns)?)
}
