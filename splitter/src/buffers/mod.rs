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

mod drain;
mod gather;
mod source;
mod store;
mod strings;
mod validity;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_data::ArrayData;
use arrow_schema::{Schema, SchemaRef};

use crate::error::SplitError;
use crate::prefetch;
use crate::split::SplitIndices;

use drain::drain_store;
use gather::gather_values;
use source::{own_bytes, variable_bytes, warm, WARM_ROWS};
use store::Store;
use validity::ColumnValidity;

pub(crate) use drain::build_bytes;
pub(crate) use source::{byte_source, column_bytes, native, ByteSource};
pub(crate) use store::fixed_width;
pub(crate) use strings::{copy_value, longest_of, max_offset, with_chunk, Chunk};

const NO_SLOT: u32 = u32::MAX;

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
