//! The split for thousands of partitions: a radix partition over accumulated batches.
//!
//! With P in the thousands a batch gives each partition a row or two, so appending to
//! per-partition buffers costs a buffer visit (and soon a reallocation) per value.
//! Here batches are kept as they arrive, with their partition ids, until the memory
//! limit; a flush then sorts all their rows by partition at once (a counting sort, then
//! one `interleave` per column into buffers of exactly the right size) and emits each
//! partition's rows as zero-copy slices of that one sorted batch.

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use arrow_select::interleave::interleave;

use crate::error::SplitError;
use crate::partitioner::Partitioner;

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
    order: Vec<(usize, usize)>,
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

    /// Uncompressed bytes held (the pending batches).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Partitions `batch` and keeps it for the next flush.
    pub(crate) fn push(&mut self, batch: RecordBatch) -> Result<(), SplitError> {
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
        let sorted = self.gather().map_err(SplitError::from)?;
        self.batches.clear();
        self.pids.clear();
        self.bytes = 0;
        for (p, start, end) in runs {
            let mut at = start;
            while at < end {
                let len = block_rows.min(end - at);
                emit(p, sorted.slice(at, len))?;
                at += len;
            }
        }
        Ok(())
    }

    /// Counting sort of the pending rows by partition: fills `order` with
    /// `(batch, row)` pairs grouped by partition and returns each touched partition's
    /// `(partition, start, end)` in `order`, ascending.
    fn sort_rows(&mut self) -> Vec<(u32, usize, usize)> {
        self.touched.clear();
        for &p in &self.pids {
            let c = &mut self.counts[p as usize];
            if *c == 0 {
                self.touched.push(p);
            }
            *c += 1;
        }
        self.touched.sort_unstable();
        let mut runs = Vec::with_capacity(self.touched.len());
        let mut next = 0usize;
        for &p in &self.touched {
            let n = self.counts[p as usize] as usize;
            runs.push((p, next, next + n));
            self.counts[p as usize] = next as u32;
            next += n;
        }
        self.order.clear();
        self.order.resize(self.pids.len(), (0, 0));
        let mut pids = self.pids.iter();
        for (b, batch) in self.batches.iter().enumerate() {
            for (r, &p) in pids.by_ref().take(batch.num_rows()).enumerate() {
                let slot = &mut self.counts[p as usize];
                self.order[*slot as usize] = (b, r);
                *slot += 1;
            }
        }
        for &p in &self.touched {
            self.counts[p as usize] = 0;
        }
        runs
    }

    /// One column at a time, the pending rows in `order`: one exact-size allocation per
    /// buffer for the whole flush.
    fn gather(&self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for c in 0..self.schema.fields().len() {
            let sources: Vec<&dyn Array> =
                self.batches.iter().map(|b| b.column(c).as_ref()).collect();
            columns.push(interleave(&sources, &self.order)?);
        }
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// Bytes of a batch's buffers (lengths) plus its validity bits.
pub(crate) fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            data.buffers().iter().map(|b| b.len()).sum::<usize>() + data.len().div_ceil(8)
        })
        .sum()
}
