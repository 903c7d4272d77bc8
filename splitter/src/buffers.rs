//! Per-partition column buffers: the rows of many batches accumulate here, partition by
//! partition, until a partition is drained into a block.
//!
//! Storage is column-major: for each column a typed `Vec<Vec<T>>` indexed by partition
//! *slot*, so the type dispatch happens once per column and batch, and each
//! (partition, column) gather is a tight typed loop over row indices. Slots are allocated
//! on a partition's first row, so memory follows the partitions actually used rather
//! than P. A drain hands the buffers to Arrow as they are (no copy); a partition that
//! filled a block gets new buffers of the same capacity, so the next block grows no
//! buffer, while a drain under memory pressure leaves the slot empty ([`Refill`]).

use arrow_array::{make_array, Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_buffer::{
    i256, ArrowNativeType, BooleanBuffer, BooleanBufferBuilder, Buffer, NullBuffer,
};
use arrow_data::ArrayData;
use arrow_schema::{DataType, Schema, SchemaRef};

use crate::error::SplitError;
use crate::prefetch;
use crate::split::SplitIndices;

const NO_SLOT: u32 = u32::MAX;

/// One column's buffers, one per partition slot.
#[derive(Debug)]
enum Store {
    Null,
    W1(Vec<Vec<u8>>),
    W2(Vec<Vec<u16>>),
    W4(Vec<Vec<u32>>),
    W8(Vec<Vec<u64>>),
    W16(Vec<Vec<i128>>),
    W32(Vec<Vec<i256>>),
    FixedBytes {
        width: usize,
        data: Vec<Vec<u8>>,
    },
    Bool(Vec<BooleanBufferBuilder>),
    Bytes32 {
        offsets: Vec<Vec<i32>>,
        data: Vec<Vec<u8>>,
    },
    Bytes64 {
        offsets: Vec<Vec<i64>>,
        data: Vec<Vec<u8>>,
    },
    /// Nested, view and dictionary types: `take` per partition, concatenated on drain.
    Other(Vec<Vec<ArrayRef>>),
}

impl Store {
    fn for_type(data_type: &DataType) -> Self {
        use DataType::*;
        match (data_type, fixed_width(data_type)) {
            (Null, _) => Self::Null,
            (Boolean, _) => Self::Bool(Vec::new()),
            (_, Some(1)) => Self::W1(Vec::new()),
            (_, Some(2)) => Self::W2(Vec::new()),
            (_, Some(4)) => Self::W4(Vec::new()),
            (_, Some(8)) => Self::W8(Vec::new()),
            (_, Some(16)) => Self::W16(Vec::new()),
            (_, Some(32)) => Self::W32(Vec::new()),
            (FixedSizeBinary(n), _) if *n > 0 => Self::FixedBytes {
                width: *n as usize,
                data: Vec::new(),
            },
            (Utf8 | Binary, _) => Self::Bytes32 {
                offsets: Vec::new(),
                data: Vec::new(),
            },
            (LargeUtf8 | LargeBinary, _) => Self::Bytes64 {
                offsets: Vec::new(),
                data: Vec::new(),
            },
            _ => Self::Other(Vec::new()),
        }
    }

    fn add_slot(&mut self) {
        match self {
            Self::Null => {}
            Self::W1(v) => v.push(Vec::new()),
            Self::W2(v) => v.push(Vec::new()),
            Self::W4(v) => v.push(Vec::new()),
            Self::W8(v) => v.push(Vec::new()),
            Self::W16(v) => v.push(Vec::new()),
            Self::W32(v) => v.push(Vec::new()),
            Self::FixedBytes { data, .. } => data.push(Vec::new()),
            Self::Bool(v) => v.push(BooleanBufferBuilder::new(0)),
            Self::Bytes32 { offsets, data } => {
                offsets.push(vec![0]);
                data.push(Vec::new());
            }
            Self::Bytes64 { offsets, data } => {
                offsets.push(vec![0]);
                data.push(Vec::new());
            }
            Self::Other(v) => v.push(Vec::new()),
        }
    }
}

impl Store {
    /// Reserves room for `rows` more rows in `slot`, of `value_bytes` variable-length
    /// bytes (strings and binaries): one allocation instead of a chain of doublings.
    fn reserve_slot(&mut self, slot: usize, rows: usize, value_bytes: usize) {
        match self {
            Self::Null | Self::Bool(_) | Self::Other(_) => {}
            Self::W1(v) => v[slot].reserve(rows),
            Self::W2(v) => v[slot].reserve(rows),
            Self::W4(v) => v[slot].reserve(rows),
            Self::W8(v) => v[slot].reserve(rows),
            Self::W16(v) => v[slot].reserve(rows),
            Self::W32(v) => v[slot].reserve(rows),
            Self::FixedBytes { width, data } => data[slot].reserve(rows * *width),
            Self::Bytes32 { offsets, data } => {
                offsets[slot].reserve(rows);
                data[slot].reserve(value_bytes);
            }
            Self::Bytes64 { offsets, data } => {
                offsets[slot].reserve(rows);
                data[slot].reserve(value_bytes);
            }
        }
    }

    /// Empties `slot`, releasing its buffers.
    fn reset_slot(&mut self, slot: usize) {
        match self {
            Self::Null => {}
            Self::W1(v) => v[slot] = Vec::new(),
            Self::W2(v) => v[slot] = Vec::new(),
            Self::W4(v) => v[slot] = Vec::new(),
            Self::W8(v) => v[slot] = Vec::new(),
            Self::W16(v) => v[slot] = Vec::new(),
            Self::W32(v) => v[slot] = Vec::new(),
            Self::FixedBytes { data, .. } => data[slot] = Vec::new(),
            Self::Bool(v) => v[slot] = BooleanBufferBuilder::new(0),
            Self::Bytes32 { offsets, data } => {
                offsets[slot] = vec![0];
                data[slot] = Vec::new();
            }
            Self::Bytes64 { offsets, data } => {
                offsets[slot] = vec![0];
                data[slot] = Vec::new();
            }
            Self::Other(v) => v[slot] = Vec::new(),
        }
    }

    /// Whether this column's gather goes run by run with a typed kernel (and so can
    /// prefetch the next column along the way).
    fn by_runs(&self) -> bool {
        !matches!(
            self,
            Self::Null | Self::Bool(_) | Self::FixedBytes { .. } | Self::Other(_)
        )
    }

    /// Bytes allocated for `slot` (capacities, not lengths).
    fn slot_capacity(&self, slot: usize) -> usize {
        fn cap<T>(v: &[Vec<T>], slot: usize) -> usize {
            v[slot].capacity() * std::mem::size_of::<T>()
        }
        match self {
            Self::Null => 0,
            Self::W1(v) => cap(v, slot),
            Self::W2(v) => cap(v, slot),
            Self::W4(v) => cap(v, slot),
            Self::W8(v) => cap(v, slot),
            Self::W16(v) => cap(v, slot),
            Self::W32(v) => cap(v, slot),
            Self::FixedBytes { data, .. } => cap(data, slot),
            Self::Bool(v) => v[slot].capacity() / 8,
            Self::Bytes32 { offsets, data } => cap(offsets, slot) + cap(data, slot),
            Self::Bytes64 { offsets, data } => cap(offsets, slot) + cap(data, slot),
            Self::Other(v) => v[slot].iter().map(|a| a.get_array_memory_size()).sum(),
        }
    }
}

/// The byte width of the types gathered as plain values (of a native type whose
/// alignment the buffers are guaranteed to have); `None` for every other type.
pub(crate) fn fixed_width(data_type: &DataType) -> Option<usize> {
    use DataType::*;
    match data_type {
        Int8 | UInt8 => Some(1),
        Int16 | UInt16 | Float16 => Some(2),
        Int32 | UInt32 | Float32 | Date32 | Time32(_) | Decimal32(_, _) => Some(4),
        Int64
        | UInt64
        | Float64
        | Date64
        | Time64(_)
        | Timestamp(_, _)
        | Duration(_)
        | Decimal64(_, _) => Some(8),
        Decimal128(_, _) => Some(16),
        Decimal256(_, _) => Some(32),
        _ => None,
    }
}

/// What a drained partition's buffers start over with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refill {
    /// New buffers of the same capacity at once: a partition that fills blocks.
    Capacity,
    /// Nothing until rows arrive, then room for as many rows as it held: a partition
    /// drained early under the push's memory limit, which refills to about that size.
    Size,
    /// Nothing: memory pressure from outside, or the end of the push.
    Empty,
}

/// Refuses a batch whose columns are not the schema's (the gathers and the unchecked
/// string builds rely on every batch having the buffers' types).
pub(crate) fn check_schema(batch: &RecordBatch, schema: &Schema) -> Result<(), SplitError> {
    let fields = schema.fields();
    if batch.num_columns() != fields.len() {
        return Err(SplitError::SchemaMismatch(format!(
            "{} columns, the push's schema has {}",
            batch.num_columns(),
            fields.len()
        )));
    }
    for (index, (column, field)) in batch.columns().iter().zip(fields).enumerate() {
        if column.data_type() != field.data_type() {
            return Err(SplitError::SchemaMismatch(format!(
                "column {index} has type {}, the push's schema has {}",
                column.data_type(),
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// One source batch's rows for one partition slot. The runs of an append are ordered
/// by partition, then source, so a slot's rows arrive in input order.
#[derive(Debug, Clone, Copy)]
struct Run<'a> {
    slot: usize,
    source: usize,
    rows: &'a [u32],
    /// On a slot's first run, the rows of all its runs (what the slot's buffers grow
    /// by, prefetched ahead); 0 on its later runs. Runs are never empty, so this is
    /// non-zero exactly on a slot's first run.
    slot_rows: usize,
}

/// The run `ahead` runs after run `i`, if it is a slot's first: its buffers' tails
/// are prefetched while run `i` is gathered.
fn upcoming<'a>(runs: &[Run<'a>], i: usize, ahead: usize) -> Option<Run<'a>> {
    runs.get(i + ahead).filter(|run| run.slot_rows > 0).copied()
}

/// Accumulates split rows per partition.
#[derive(Debug)]
pub struct PartitionBuffers {
    schema: SchemaRef,
    stores: Vec<Store>,
    /// Validity per column and slot.
    nulls: Vec<ColumnValidity>,
    /// Scratch of the validity gathers: each source's validity, a byte per row.
    valid_bytes: Vec<Vec<u8>>,
    slot_of: Vec<u32>,
    partition_of_slot: Vec<u32>,
    rows: Vec<usize>,
    /// Rows a slot held when it was last drained: a slot that starts over reserves that
    /// much at once, since partitions refill to about the same size.
    rows_at_drain: Vec<usize>,
    /// Uncompressed bytes buffered per slot (values, offsets, validity).
    bytes: Vec<usize>,
    total_bytes: usize,
    /// Allocated bytes per slot (buffer capacities), and their sum.
    allocated: Vec<usize>,
    total_allocated: usize,
}

impl PartitionBuffers {
    pub fn new(schema: SchemaRef, num_partitions: u32) -> Self {
        let stores: Vec<Store> = schema
            .fields()
            .iter()
            .map(|f| Store::for_type(f.data_type()))
            .collect();
        Self {
            nulls: schema
                .fields()
                .iter()
                .map(|_| ColumnValidity::default())
                .collect(),
            valid_bytes: Vec::new(),
            schema,
            stores,
            slot_of: vec![NO_SLOT; num_partitions as usize],
            partition_of_slot: Vec::new(),
            rows: Vec::new(),
            rows_at_drain: Vec::new(),
            bytes: Vec::new(),
            total_bytes: 0,
            allocated: Vec::new(),
            total_allocated: 0,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows buffered for `partition`.
    pub fn rows(&self, partition: u32) -> usize {
        self.slot(partition).map_or(0, |s| self.rows[s])
    }

    /// Uncompressed bytes buffered for `partition`.
    pub fn bytes(&self, partition: u32) -> usize {
        self.slot(partition).map_or(0, |s| self.bytes[s])
    }

    /// Uncompressed bytes buffered across all partitions.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Bytes allocated for buffered rows (capacities of the per-partition buffers):
    /// what the buffers really cost, as opposed to what they hold.
    pub fn allocated_bytes(&self) -> usize {
        self.total_allocated
    }

    /// Re-measures the allocation of `slot` after its buffers changed.
    fn remeasure(&mut self, slot: usize) {
        let now: usize = self
            .stores
            .iter()
            .zip(&self.nulls)
            .map(|(store, nulls)| store.slot_capacity(slot) + nulls.capacity(slot))
            .sum();
        self.total_allocated = self.total_allocated + now - self.allocated[slot];
        self.allocated[slot] = now;
    }

    /// Partitions holding rows or allocated buffers, largest allocation first.
    pub fn largest_first(&self) -> Vec<u32> {
        let mut slots: Vec<(usize, u32)> = self
            .partition_of_slot
            .iter()
            .zip(&self.allocated)
            .filter(|(_, &a)| a > 0)
            .map(|(&p, &a)| (a, p))
            .collect();
        slots.sort_unstable_by(|a, b| b.cmp(a));
        slots.into_iter().map(|(_, p)| p).collect()
    }

    /// Partitions holding at least one row, ascending.
    pub fn non_empty(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .partition_of_slot
            .iter()
            .zip(&self.rows)
            .filter(|(_, &rows)| rows > 0)
            .map(|(&p, _)| p)
            .collect();
        out.sort_unstable();
        out
    }

    fn slot(&self, partition: u32) -> Option<usize> {
        match self.slot_of.get(partition as usize) {
            Some(&s) if s != NO_SLOT => Some(s as usize),
            _ => None,
        }
    }

    fn slot_or_add(&mut self, partition: u32) -> usize {
        if let Some(s) = self.slot(partition) {
            return s;
        }
        let s = self.partition_of_slot.len();
        self.slot_of[partition as usize] = s as u32;
        self.partition_of_slot.push(partition);
        self.rows.push(0);
        self.rows_at_drain.push(0);
        self.bytes.push(0);
        self.allocated.push(0);
        for store in &mut self.stores {
            store.add_slot();
        }
        for nulls in &mut self.nulls {
            nulls.slots.push(None);
        }
        s
    }

    /// Appends the rows of `batch`, grouped by `split`, to their partitions' buffers.
    pub fn append(&mut self, batch: &RecordBatch, split: &SplitIndices) -> Result<(), SplitError> {
        self.append_batches(&[(batch, split)])
    }

    /// Appends the rows of several batches, each grouped by its split, in order. Each
    /// partition's buffers are visited once for all of them: their tails are brought
    /// into cache once, and a partition's rows of consecutive batches share lines.
    pub fn append_batches(
        &mut self,
        batches: &[(&RecordBatch, &SplitIndices)],
    ) -> Result<(), SplitError> {
        for (batch, _) in batches {
            check_schema(batch, &self.schema)?;
        }
        let runs = self.runs(batches)?;
        let ahead = prefetch::AHEAD * batches.len();
        let rows: usize = batches.iter().map(|(b, _)| b.num_rows()).sum();
        let mut bytes = 0;
        let column = |c: usize| -> Vec<ArrayData> {
            batches.iter().map(|(b, _)| b.column(c).to_data()).collect()
        };
        let mut datas = if self.stores.is_empty() {
            Vec::new()
        } else {
            column(0)
        };
        // Whether column `c` was prefetched during the gather of the one before.
        let mut prefetched = false;
        for c in 0..self.stores.len() {
            let columns: Vec<&ArrayRef> = batches.iter().map(|(b, _)| b.column(c)).collect();
            let mut values = 0;
            for data in &datas {
                bytes += column_bytes(data);
                values += variable_bytes(data);
                if !prefetched && data.len() <= WARM_ROWS {
                    warm(data);
                }
            }
            let next_datas = (c + 1 < self.stores.len()).then(|| column(c + 1));
            // Only the gathers that go run by run step the prefetch along.
            let mut next = match &next_datas {
                Some(next)
                    if self.stores[c].by_runs() && next.iter().all(|d| d.len() <= WARM_ROWS) =>
                {
                    let parts = next.iter().flat_map(own_bytes).collect();
                    prefetch::NextColumn::new(parts, runs.len())
                }
                _ => prefetch::NextColumn::none(),
            };
            prefetched = next.is_active();
            self.reserve_refills(c, &runs, values / rows.max(1));
            self.nulls[c].gather(&datas, &runs, &self.rows, &mut self.valid_bytes);
            let store = &mut self.stores[c];
            gather_values(store, &columns, &datas, &runs, ahead, &mut next)?;
            next.finish();
            datas = next_datas.unwrap_or_default();
        }
        // Average uncompressed bytes of a row, for block sizing.
        let row_bytes = bytes.div_ceil(rows.max(1));
        for run in &runs {
            self.rows[run.slot] += run.rows.len();
            let added = run.rows.len() * row_bytes;
            self.bytes[run.slot] += added;
            self.total_bytes += added;
        }
        for run in runs.iter().filter(|run| run.slot_rows > 0) {
            self.remeasure(run.slot);
        }
        Ok(())
    }

    /// Reserves, in column `c`, the room each slot that starts over after a drain under
    /// the memory limit held last time (values of `value_bytes` each, for strings).
    fn reserve_refills(&mut self, c: usize, runs: &[Run<'_>], value_bytes: usize) {
        for run in runs.iter().filter(|run| run.slot_rows > 0) {
            let expected = self.rows_at_drain[run.slot];
            if self.rows[run.slot] == 0 && expected > 0 {
                // A quarter more: partitions vary, and one doubling copies it all.
                let expected = expected + expected / 4;
                self.stores[c].reserve_slot(run.slot, expected, expected * value_bytes);
            }
        }
    }

    /// The runs of all `batches`, by partition then batch, with slots allocated.
    fn runs<'a>(
        &mut self,
        batches: &[(&RecordBatch, &'a SplitIndices)],
    ) -> Result<Vec<Run<'a>>, SplitError> {
        let mut runs: Vec<(u32, Run<'a>)> = Vec::new();
        for (source, (_, split)) in batches.iter().enumerate() {
            for (p, rows) in split.runs() {
                if p as usize >= self.slot_of.len() {
                    return Err(SplitError::PartitionIdOutOfRange {
                        row: rows.first().copied().unwrap_or(0) as usize,
                        id: p as i64,
                        partitions: self.slot_of.len() as u32,
                    });
                }
                let slot = self.slot_or_add(p);
                let slot_rows = rows.len();
                runs.push((
                    p,
                    Run {
                        slot,
                        source,
                        rows,
                        slot_rows,
                    },
                ));
            }
        }
        if batches.len() > 1 {
            runs.sort_unstable_by_key(|(p, run)| (*p, run.source));
            // A slot's first run carries the rows of all its runs.
            let mut first = 0;
            for i in 1..runs.len() {
                if runs[i].0 == runs[first].0 {
                    runs[first].1.slot_rows += runs[i].1.rows.len();
                    runs[i].1.slot_rows = 0;
                } else {
                    first = i;
                }
            }
        }
        Ok(runs.into_iter().map(|(_, run)| run).collect())
    }

    /// Which partitions to drain after an append: each that reached `block_size`
    /// (refilled at the same capacity, since it fills blocks), ascending, then, while
    /// more than `memory_limit` bytes would stay buffered, the largest others until
    /// half of it is left (their memory released until they refill). One pass over the
    /// slots: fewer than [`crate::SORTED_FROM_PARTITIONS`], against an append's 16K rows.
    pub fn ready_to_drain(
        &self,
        block_size: usize,
        memory_limit: usize,
        out: &mut Vec<(u32, Refill)>,
    ) {
        out.clear();
        let mut remaining = self.total_bytes;
        for (&p, &bytes) in self.partition_of_slot.iter().zip(&self.bytes) {
            if bytes >= block_size {
                out.push((p, Refill::Capacity));
                remaining -= bytes;
            }
        }
        out.sort_unstable_by_key(|&(p, _)| p);
        if remaining <= memory_limit {
            return;
        }
        let mut candidates: Vec<(usize, u32)> = self
            .partition_of_slot
            .iter()
            .zip(&self.bytes)
            .filter(|(_, &b)| b > 0 && b < block_size)
            .map(|(&p, &b)| (b, p))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        for (bytes, p) in candidates {
            if remaining <= memory_limit / 2 {
                break;
            }
            out.push((p, Refill::Size));
            remaining -= bytes;
        }
    }

    /// Takes the rows buffered for `partition` out as one record batch (`None` if empty);
    /// `refill` says what the slot starts over with.
    pub fn drain(
        &mut self,
        partition: u32,
        refill: Refill,
    ) -> Result<Option<RecordBatch>, SplitError> {
        let Some(slot) = self.slot(partition) else {
            return Ok(None);
        };
        let rows = std::mem::take(&mut self.rows[slot]);
        self.total_bytes -= std::mem::take(&mut self.bytes[slot]);
        let keep_capacity = refill == Refill::Capacity;
        self.rows_at_drain[slot] = if refill == Refill::Size { rows } else { 0 };
        if rows == 0 {
            if !keep_capacity && self.allocated[slot] > 0 {
                // Capacity kept from an earlier block: give it back.
                for store in &mut self.stores {
                    store.reset_slot(slot);
                }
                self.remeasure(slot);
            }
            return Ok(None);
        }
        let mut columns = Vec::with_capacity(self.stores.len());
        for (c, field) in self.schema.fields().iter().enumerate() {
            let nulls = self.nulls[c].finish(slot);
            let store = &mut self.stores[c];
            let array = drain_store(store, slot, field.data_type(), rows, nulls, keep_capacity)?;
            columns.push(array);
        }
        self.remeasure(slot);
        Ok(Some(RecordBatch::try_new(self.schema.clone(), columns)?))
    }
}

/// Batches of up to this many rows are brought into cache column by column ahead of
/// the gathers; a column of a much larger batch would not fit in L2 anyway (the writer
/// appends batches together up to this many rows in all).
const WARM_ROWS: usize = 16_384;

/// Reads one byte of every cache line of a column's values (and offsets), in order.
/// The gathers read rows in partition order, which the hardware prefetcher cannot
/// follow; one sequential pass first brings a cold column into cache at streaming speed
/// (and costs little when it is already there). Columns after the first are usually
/// prefetched during the gather before them instead ([`prefetch::NextColumn`]).
fn warm(data: &ArrayData) {
    const LINE: usize = 64;
    for bytes in own_bytes(data) {
        let touched = bytes.iter().step_by(LINE).fold(0u8, |acc, &b| acc ^ b);
        std::hint::black_box(touched);
    }
}

/// A fixed-width or string column's own bytes: values (and offsets), not the rest of
/// the buffers it may be a slice of. Empty for other types.
fn own_bytes(data: &ArrayData) -> [&[u8]; 2] {
    let (offset, len) = (data.offset(), data.len());
    if let Some(w) = fixed_width(data.data_type()) {
        [
            &data.buffers()[0].as_slice()[offset * w..(offset + len) * w],
            &[],
        ]
    } else if let Some((offsets, values)) = byte_ranges(data) {
        [
            &data.buffers()[0].as_slice()[offsets],
            &data.buffers()[1].as_slice()[values],
        ]
    } else {
        [&[], &[]]
    }
}

type ByteRange = std::ops::Range<usize>;

/// For a string or binary column: the byte ranges of its offsets and of its values.
fn byte_ranges(data: &ArrayData) -> Option<(ByteRange, ByteRange)> {
    fn ranges<O: ArrowNativeType>(data: &ArrayData) -> (ByteRange, ByteRange) {
        let (offsets, _) = byte_source::<O>(data);
        let size = std::mem::size_of::<O>();
        (
            data.offset() * size..(data.offset() + offsets.len()) * size,
            offsets[0].as_usize()..offsets[offsets.len() - 1].as_usize(),
        )
    }
    match data.data_type() {
        DataType::Utf8 | DataType::Binary => Some(ranges::<i32>(data)),
        DataType::LargeUtf8 | DataType::LargeBinary => Some(ranges::<i64>(data)),
        _ => None,
    }
}

/// The variable-length bytes of a string or binary column (0 for other types).
fn variable_bytes(data: &ArrayData) -> usize {
    byte_ranges(data).map_or(0, |(_, values)| values.len())
}

/// Uncompressed bytes of a column: its own values, offsets and validity bits (for a
/// slice, not the whole buffers it points into; other types count their buffers).
pub(crate) fn column_bytes(data: &ArrayData) -> usize {
    let validity = data.len().div_ceil(8);
    if let Some(w) = fixed_width(data.data_type()) {
        return data.len() * w + validity;
    }
    match byte_ranges(data) {
        Some((offsets, values)) => offsets.len() + values.len() + validity,
        None => data.buffers().iter().map(|b| b.len()).sum::<usize>() + validity,
    }
}

/// A column's validity bitmaps, per slot. A slot's bitmap exists only once a null has
/// arrived: until then every row appended to the slot is valid.
#[derive(Debug, Default)]
struct ColumnValidity {
    slots: Vec<Option<BooleanBufferBuilder>>,
    /// Slots that have a bitmap: with none, and no nulls in a batch, the column's
    /// validity needs no work at all.
    with_bits: usize,
}

impl ColumnValidity {
    fn capacity(&self, slot: usize) -> usize {
        self.slots[slot].as_ref().map_or(0, |b| b.capacity() / 8)
    }

    /// Appends the validity of `runs`' rows. `buffered` holds each slot's rows before
    /// this append (the valid prefix of a bitmap created now); `valid_bytes` is scratch.
    fn gather(
        &mut self,
        datas: &[ArrayData],
        runs: &[Run<'_>],
        buffered: &[usize],
        valid_bytes: &mut Vec<Vec<u8>>,
    ) {
        if self.with_bits == 0 && datas.iter().all(|d| d.null_count() == 0) {
            return;
        }
        // A byte per row makes a row's bit one load in the loop below (+2% at P = 200).
        valid_bytes.resize_with(datas.len(), Vec::new);
        let valid: Vec<Option<&[u8]>> = datas
            .iter()
            .zip(valid_bytes.iter_mut())
            .map(|(d, bytes)| {
                let nulls = d.nulls().filter(|n| n.null_count() > 0)?;
                Some(unpack_bits(nulls.inner(), bytes))
            })
            .collect();
        // Rows of the slot's runs in this append, up to the current one.
        let mut appended = 0;
        for run in runs {
            if run.slot_rows > 0 {
                appended = 0;
            }
            let earlier = appended;
            appended += run.rows.len();
            let slot = &mut self.slots[run.slot];
            let Some(valid) = valid[run.source] else {
                if let Some(bits) = slot {
                    bits.append_n(run.rows.len(), true);
                }
                continue;
            };
            // 64 validity bits are assembled in a register, then appended packed.
            for (k, chunk) in run.rows.chunks(64).enumerate() {
                let word = chunk.iter().enumerate().fold(0u64, |word, (i, &r)| {
                    word | u64::from(valid[r as usize]) << i
                });
                if slot.is_none() && word == u64::MAX >> (64 - chunk.len()) {
                    continue; // still no null in this slot
                }
                let bits = slot.get_or_insert_with(|| {
                    // Every row before this chunk was valid.
                    let prefix = buffered[run.slot] + earlier + k * 64;
                    self.with_bits += 1;
                    let mut bits = BooleanBufferBuilder::new(prefix + chunk.len());
                    bits.append_n(prefix, true);
                    bits
                });
                bits.append_packed_range(0..chunk.len(), &word.to_le_bytes());
            }
        }
    }

    /// Takes `slot`'s bitmap out (`None`: every row valid).
    fn finish(&mut self, slot: usize) -> Option<NullBuffer> {
        let mut bits = self.slots[slot].take()?;
        self.with_bits -= 1;
        Some(NullBuffer::new(bits.finish()))
    }
}

/// `bits` written into `out` as a byte (0 or 1) per bit; returns the bytes of `bits`'
/// own rows (from its offset).
fn unpack_bits<'a>(bits: &BooleanBuffer, out: &'a mut Vec<u8>) -> &'a [u8] {
    /// Each byte's 8 bits, spread to 8 bytes of 0 or 1.
    static SPREAD: [u64; 256] = {
        let mut table = [0u64; 256];
        let mut byte = 0;
        while byte < 256 {
            let mut bit = 0;
            while bit < 8 {
                table[byte] |= (((byte >> bit) & 1) as u64) << (8 * bit);
                bit += 1;
            }
            byte += 1;
        }
        table
    };
    let (offset, len) = (bits.offset(), bits.len());
    let bytes = &bits.values()[offset / 8..(offset + len).div_ceil(8)];
    out.clear();
    out.extend(bytes.iter().flat_map(|&b| SPREAD[b as usize].to_le_bytes()));
    &out[offset % 8..offset % 8 + len]
}

/// The values of a fixed-width column, starting at its offset.
pub(crate) fn native<T: ArrowNativeType>(data: &ArrayData) -> &[T] {
    &data.buffers()[0].typed_data::<T>()[data.offset()..data.offset() + data.len()]
}

fn gather_native<T: ArrowNativeType>(
    dst: &mut [Vec<T>],
    datas: &[ArrayData],
    runs: &[Run<'_>],
    ahead: usize,
    next_column: &mut prefetch::NextColumn<'_>,
) {
    let sources: Vec<&[T]> = datas.iter().map(native).collect();
    for (i, run) in runs.iter().enumerate() {
        if let Some(next) = upcoming(runs, i, ahead) {
            prefetch::tail(&dst[next.slot], next.slot_rows * std::mem::size_of::<T>());
        }
        next_column.step();
        let (d, src) = (&mut dst[run.slot], sources[run.source]);
        // Room for all of the slot's runs at once.
        d.reserve(run.slot_rows);
        d.extend(run.rows.iter().map(|&r| src[r as usize]));
    }
}

fn gather_values(
    store: &mut Store,
    columns: &[&ArrayRef],
    datas: &[ArrayData],
    runs: &[Run<'_>],
    ahead: usize,
    next: &mut prefetch::NextColumn<'_>,
) -> Result<(), SplitError> {
    match store {
        Store::Null => {}
        Store::W1(dst) => gather_native::<u8>(dst, datas, runs, ahead, next),
        Store::W2(dst) => gather_native::<u16>(dst, datas, runs, ahead, next),
        Store::W4(dst) => gather_native::<u32>(dst, datas, runs, ahead, next),
        Store::W8(dst) => gather_native::<u64>(dst, datas, runs, ahead, next),
        Store::W16(dst) => gather_native::<i128>(dst, datas, runs, ahead, next),
        Store::W32(dst) => gather_native::<i256>(dst, datas, runs, ahead, next),
        Store::FixedBytes { width, data: dst } => {
            let w = *width;
            let sources: Vec<&[u8]> = datas
                .iter()
                .map(|d| &d.buffers()[0].as_slice()[d.offset() * w..(d.offset() + d.len()) * w])
                .collect();
            for run in runs {
                let (d, src) = (&mut dst[run.slot], sources[run.source]);
                for &r in run.rows {
                    let at = r as usize * w;
                    d.extend_from_slice(&src[at..at + w]);
                }
            }
        }
        Store::Bool(dst) => {
            let sources: Vec<arrow_array::BooleanArray> = datas
                .iter()
                .map(|d| arrow_array::BooleanArray::from(d.clone()))
                .collect();
            for run in runs {
                let (d, bits) = (&mut dst[run.slot], sources[run.source].values());
                for &r in run.rows {
                    d.append(bits.value(r as usize));
                }
            }
        }
        Store::Bytes32 { offsets, data: dst } => {
            gather_bytes(offsets, dst, datas, runs, ahead, next)?
        }
        Store::Bytes64 { offsets, data: dst } => {
            gather_bytes(offsets, dst, datas, runs, ahead, next)?
        }
        Store::Other(dst) => {
            for run in runs {
                let indices = UInt32Array::from(run.rows.to_vec());
                let column = columns[run.source].as_ref();
                dst[run.slot].push(arrow_select::take::take(column, &indices, None)?);
            }
        }
    }
    Ok(())
}

/// A string or binary column's offsets (from its own offset) and values buffer.
pub(crate) type ByteSource<'a, O> = (&'a [O], &'a [u8]);

pub(crate) fn byte_source<O: ArrowNativeType>(data: &ArrayData) -> ByteSource<'_, O> {
    let (offset, len) = (data.offset(), data.len());
    let offsets = &data.buffers()[0].typed_data::<O>()[offset..=offset + len];
    (offsets, data.buffers()[1].as_slice())
}

/// The largest offset a string or binary array with offsets of type `O` can hold.
pub(crate) fn max_offset<O: ArrowNativeType>() -> usize {
    if std::mem::size_of::<O>() == 4 {
        i32::MAX as usize
    } else {
        i64::MAX as usize
    }
}

fn gather_bytes<O: ArrowNativeType>(
    offsets: &mut [Vec<O>],
    dst: &mut [Vec<u8>],
    datas: &[ArrayData],
    runs: &[Run<'_>],
    ahead: usize,
    next: &mut prefetch::NextColumn<'_>,
) -> Result<(), SplitError> {
    let sources: Vec<ByteSource<'_, O>> = datas.iter().map(byte_source).collect();
    with_chunk!(
        longest_of(&sources),
        gather_runs::<O>(offsets, dst, &sources, runs, ahead, next)
    )
}

/// `gather_bytes` with every value copied by [`copy_value::<N>`]. Kept out of line:
/// inlined, its eight instances made `gather_values` one huge function and the split
/// 3% slower at P = 200.
#[inline(never)]
fn gather_runs<O: ArrowNativeType, const N: usize>(
    offsets: &mut [Vec<O>],
    dst: &mut [Vec<u8>],
    sources: &[ByteSource<'_, O>],
    runs: &[Run<'_>],
    ahead: usize,
    next_column: &mut prefetch::NextColumn<'_>,
) -> Result<(), SplitError> {
    let max_offset = max_offset::<O>();
    let values = |o: &[O]| o[o.len() - 1].as_usize() - o[0].as_usize();
    let all_values: usize = sources.iter().map(|(o, _)| values(o)).sum();
    let all_rows: usize = sources.iter().map(|(o, _)| o.len() - 1).sum();
    let average = all_values / all_rows.max(1) + 1;
    for (i, run) in runs.iter().enumerate() {
        next_column.step();
        if let Some(next) = upcoming(runs, i, ahead) {
            let rows = next.slot_rows;
            prefetch::tail(&offsets[next.slot], rows * std::mem::size_of::<O>());
            prefetch::tail(&dst[next.slot], rows * average);
        }
        let (src_offsets, src) = sources[run.source];
        let value_len =
            |r: u32| src_offsets[r as usize + 1].as_usize() - src_offsets[r as usize].as_usize();
        let (o, d) = (&mut offsets[run.slot], &mut dst[run.slot]);
        // Everything fitting is the common case; otherwise count this run exactly.
        if d.len() + all_values > max_offset
            && d.len() + run.rows.iter().map(|&r| value_len(r)).sum::<usize>() > max_offset
        {
            return Err(SplitError::BufferOverflow);
        }
        // Room for all of the slot's runs at once (`slot_rows` is 0 on later runs).
        let rows = run.slot_rows.max(run.rows.len());
        d.reserve(rows * average);
        o.reserve(rows);
        for &r in run.rows {
            let start = src_offsets[r as usize].as_usize();
            copy_value::<N>(d, src, start, value_len(r));
            // Cannot overflow `O`: checked against max_offset for the whole run above.
            o.push(O::usize_as(d.len()));
        }
    }
    Ok(())
}

/// The longest value a string or binary column's offsets delimit.
pub(crate) fn longest<O: ArrowNativeType>(offsets: &[O]) -> usize {
    let (Some(first), Some(last)) = (offsets.first(), offsets.last()) else {
        return 0;
    };
    if last.as_usize() - first.as_usize() > u32::MAX as usize {
        return usize::MAX; // more than fits any chunk
    }
    // In 32 bits (every length fits, and their differences wrap correctly), which
    // vectorizes on baseline x86-64; 64-bit lanes did not, and cost 3% of the split.
    let ends = offsets.iter().map(|o| o.as_usize() as u32);
    let starts = ends.clone();
    ends.skip(1)
        .zip(starts)
        .map(|(end, start)| end.wrapping_sub(start))
        .max()
        .unwrap_or(0) as usize
}

/// The longest value of all `sources`.
pub(crate) fn longest_of<O: ArrowNativeType>(sources: &[ByteSource<'_, O>]) -> usize {
    sources.iter().map(|(o, _)| longest(o)).max().unwrap_or(0)
}

/// Calls `f::<O, N>(args)` with `N` the chunk size [`Chunk::fitting`] `longest` (0 for
/// [`Chunk::Mixed`]), so each copy loop is built once per chunk size.
macro_rules! with_chunk {
    ($longest:expr, $f:ident::<$o:ty>($($arg:expr),* $(,)?)) => {
        match $crate::buffers::Chunk::fitting($longest) {
            $crate::buffers::Chunk::B16 => $f::<$o, 16>($($arg),*),
            $crate::buffers::Chunk::B32 => $f::<$o, 32>($($arg),*),
            $crate::buffers::Chunk::B64 => $f::<$o, 64>($($arg),*),
            $crate::buffers::Chunk::Mixed => $f::<$o, 0>($($arg),*),
        }
    };
}
pub(crate) use with_chunk;

/// How the values of a string column are copied, chosen once per column from its
/// longest value: by one fixed-size chunk each (no branch on the length, which is
/// mispredicted on free text and stalled every copy behind it), or by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    B16,
    B32,
    B64,
    /// Some value is longer than 64 bytes: 32 or 64-byte chunks, else an exact copy.
    Mixed,
}

impl Chunk {
    pub(crate) fn fitting(longest: usize) -> Self {
        match longest {
            0..=16 => Self::B16,
            17..=32 => Self::B32,
            33..=64 => Self::B64,
            _ => Self::Mixed,
        }
    }
}

/// Appends `src[start..start + len]` to `d`. With `N` > 0, a value of at most `N` bytes
/// is copied as one `N`-byte chunk (inlined vector moves instead of a `memcpy` call)
/// and the excess cut; with `N` = 0, short values take 32 or 64-byte chunks.
#[inline(always)]
pub(crate) fn copy_value<const N: usize>(d: &mut Vec<u8>, src: &[u8], start: usize, len: usize) {
    fn chunk<const N: usize>(d: &mut Vec<u8>, src: &[u8], start: usize, len: usize) -> bool {
        match src.get(start..start + N) {
            Some(chunk) if len <= N => {
                let chunk: &[u8; N] = chunk.try_into().expect("N bytes");
                d.extend_from_slice(chunk);
                d.truncate(d.len() - (N - len));
                true
            }
            _ => false,
        }
    }
    let copied = match N {
        0 => chunk::<32>(d, src, start, len) || chunk::<64>(d, src, start, len),
        _ => chunk::<N>(d, src, start, len),
    };
    if !copied {
        d.extend_from_slice(&src[start..start + len]);
    }
}

/// Copies a slot's rows out into an array and empties the slot (keeping or releasing
/// its capacity).
fn drain_store(
    store: &mut Store,
    slot: usize,
    data_type: &DataType,
    rows: usize,
    nulls: Option<NullBuffer>,
    keep_capacity: bool,
) -> Result<ArrayRef, SplitError> {
    // The buffered Vec becomes the block's Arrow buffer without a copy; the slot
    // starts over with the same capacity (a partition that fills blocks) or none.
    fn take_out<T: ArrowNativeType>(v: &mut Vec<T>, keep: bool) -> Buffer {
        let next = if keep {
            Vec::with_capacity(v.capacity())
        } else {
            Vec::new()
        };
        Buffer::from_vec(std::mem::replace(v, next))
    }
    fn take_offsets<O: ArrowNativeType>(v: &mut Vec<O>, keep: bool) -> Buffer {
        let out = take_out(v, keep);
        v.push(O::usize_as(0));
        out
    }
    let buffers = match store {
        Store::Null => vec![],
        Store::W1(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W2(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W4(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W8(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W16(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::W32(v) => vec![take_out(&mut v[slot], keep_capacity)],
        Store::FixedBytes { data, .. } => vec![take_out(&mut data[slot], keep_capacity)],
        Store::Bool(v) => vec![v[slot].finish().into_inner()],
        Store::Bytes32 { offsets, data } => vec![
            take_offsets(&mut offsets[slot], keep_capacity),
            take_out(&mut data[slot], keep_capacity),
        ],
        Store::Bytes64 { offsets, data } => vec![
            take_offsets(&mut offsets[slot], keep_capacity),
            take_out(&mut data[slot], keep_capacity),
        ],
        Store::Other(v) => {
            let parts = std::mem::take(&mut v[slot]);
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            return Ok(arrow_select::concat::concat(&refs)?);
        }
    };
    let builder = ArrayData::builder(data_type.clone())
        .len(rows)
        .buffers(buffers)
        .nulls(nulls);
    let data = if matches!(store, Store::Bytes32 { .. } | Store::Bytes64 { .. }) {
        // SAFETY: `gather_bytes` copied whole values out of arrays of this type and
        // pushed each value's end as the next offset, after a leading 0.
        #[allow(unsafe_code)]
        unsafe {
            build_bytes(builder)?
        }
    } else {
        builder.build()?
    };
    Ok(make_array(data))
}

/// Builds a string or binary array without re-validating every value: a full
/// validation (UTF-8 and every offset) cost 8% of the split at P = 200
/// (`sluice-bench --mode split`). The cheap structural checks still run.
///
/// # Safety
/// The values buffer must consist of whole values copied out of arrays of this same
/// type (which Arrow guarantees are valid UTF-8 for strings), and the offsets must
/// start at 0, never decrease, and mark exactly those values.
#[allow(unsafe_code)]
pub(crate) unsafe fn build_bytes(
    builder: arrow_data::ArrayDataBuilder,
) -> Result<ArrayData, SplitError> {
    // SAFETY: the caller guarantees every value is valid for the type and the offsets
    // delimit exactly those values; buffer lengths and offset bounds are checked below.
    let data = unsafe { builder.build_unchecked() };
    data.validate()?;
    debug_assert!(data.validate_full().is_ok());
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_the_longest_value() {
        assert_eq!(longest::<i32>(&[0, 3, 3, 20, 21]), 17);
        assert_eq!(longest::<i64>(&[5]), 0);
        assert_eq!(longest::<i64>(&[],), 0);
        assert_eq!(longest::<i64>(&[(1 << 32) + 5, (1 << 32) + 9]), 4);
        assert_eq!(longest::<i64>(&[0, 1 << 33]), usize::MAX);
        assert_eq!(Chunk::fitting(usize::MAX), Chunk::Mixed);
        let fitting: Vec<Chunk> = [0, 16, 17, 32, 33, 64, 65].map(Chunk::fitting).into();
        use Chunk::*;
        assert_eq!(fitting, [B16, B16, B32, B32, B64, B64, Mixed]);
    }

    /// A bitmap created in a slot's second run of an append, past its first 64 rows,
    /// starts with every row buffered before it valid.
    #[test]
    fn a_late_first_null_keeps_every_earlier_row_valid() {
        use std::sync::Arc;

        use arrow_array::Int64Array;
        use arrow_schema::Field;

        use crate::{PartitionSpec, Partitioner, SplitIndices, Splitter};
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = |values: Vec<Option<i64>>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let mut splitter =
            Splitter::new(Partitioner::new(PartitionSpec::Single, 1, &schema).unwrap());
        let mut split = |b: &RecordBatch| {
            let mut s = SplitIndices::default();
            splitter.split_into(b, &mut s).unwrap();
            s
        };
        let mut buffers = PartitionBuffers::new(schema.clone(), 1);
        let (b0, b1) = (batch(vec![Some(1); 5]), batch(vec![Some(2); 10]));
        let b2 = batch((0..80).map(|i| (i != 70).then_some(3)).collect());
        let (s0, s1, s2) = (split(&b0), split(&b1), split(&b2));
        buffers.append_batches(&[(&b0, &s0)]).unwrap();
        buffers.append_batches(&[(&b1, &s1), (&b2, &s2)]).unwrap();
        let block = buffers.drain(0, Refill::Empty).unwrap().unwrap();
        let nulls: Vec<usize> = (0..95).filter(|&i| block.column(0).is_null(i)).collect();
        assert_eq!(nulls, [5 + 10 + 70]);
    }

    #[test]
    fn unpack_bits_gives_a_byte_per_bit_from_the_offset() {
        let bools: Vec<bool> = (0..40).map(|i| i % 3 == 0 || i % 7 == 0).collect();
        let mut out = Vec::new();
        for (offset, len) in [(0, 40), (3, 10), (8, 17), (13, 0)] {
            let bits = BooleanBuffer::from(bools.clone()).slice(offset, len);
            let want: Vec<u8> = bools[offset..offset + len]
                .iter()
                .map(|&b| b as u8)
                .collect();
            assert_eq!(unpack_bits(&bits, &mut out), want, "{offset} {len}");
        }
    }

    /// Every chunk size copies exactly the value, also when fewer than a chunk's bytes
    /// follow it in the source, and after bytes already in the destination.
    #[test]
    fn copy_value_copies_exactly_the_value_whatever_the_chunk() {
        let src: Vec<u8> = (0..200u8).collect();
        fn copy<const N: usize>(src: &[u8], start: usize, len: usize) -> Vec<u8> {
            let mut d = vec![7u8; 3];
            copy_value::<N>(&mut d, src, start, len);
            d
        }
        for (start, len) in [(0, 0), (0, 16), (190, 10), (199, 1), (200, 0), (10, 64)] {
            let mut want = vec![7u8; 3];
            want.extend_from_slice(&src[start..start + len]);
            if len <= 16 {
                assert_eq!(copy::<16>(&src, start, len), want, "16 {start} {len}");
            }
            if len <= 32 {
                assert_eq!(copy::<32>(&src, start, len), want, "32 {start} {len}");
            }
            assert_eq!(copy::<64>(&src, start, len), want, "64 {start} {len}");
            assert_eq!(copy::<0>(&src, start, len), want, "mixed {start} {len}");
        }
        assert_eq!(copy::<0>(&src, 5, 150)[3..], src[5..155]);
    }
}
