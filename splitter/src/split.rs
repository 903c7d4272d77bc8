//! Stable counting-sort split: histogram of partition ids, prefix sums, row indices
//! placed in partition order, then one gather of every column. Each partition is then a
//! zero-copy slice of the gathered batch.

use arrow_array::{RecordBatch, UInt32Array};
use arrow_buffer::ScalarBuffer;
use arrow_select::take::take_record_batch;

use crate::error::SplitError;
use crate::partitioner::Partitioner;

/// A batch reordered so that each partition's rows are contiguous, in input order.
#[derive(Debug, Clone)]
pub struct PartitionedBatch {
    batch: RecordBatch,
    /// `offsets[p]..offsets[p + 1]` are partition `p`'s rows; length P + 1.
    offsets: Vec<u32>,
}

impl PartitionedBatch {
    pub fn num_partitions(&self) -> u32 {
        (self.offsets.len() - 1) as u32
    }

    /// Rows of partition `p` (an empty batch if it has none).
    pub fn partition(&self, p: u32) -> RecordBatch {
        let (start, end) = self.range(p);
        self.batch.slice(start, end - start)
    }

    pub fn rows_in(&self, p: u32) -> usize {
        let (start, end) = self.range(p);
        end - start
    }

    /// `(partition, rows)` for every partition with at least one row, in order.
    pub fn non_empty(&self) -> impl Iterator<Item = (u32, RecordBatch)> + '_ {
        (0..self.num_partitions())
            .filter(|&p| self.rows_in(p) > 0)
            .map(|p| (p, self.partition(p)))
    }

    fn range(&self, p: u32) -> (usize, usize) {
        let p = p as usize;
        (self.offsets[p] as usize, self.offsets[p + 1] as usize)
    }
}

/// Reusable split state: scratch vectors survive across batches.
#[derive(Debug)]
pub struct Splitter {
    partitioner: Partitioner,
    pids: Vec<u32>,
    cursors: Vec<u32>,
}

impl Splitter {
    pub fn new(partitioner: Partitioner) -> Self {
        Self {
            partitioner,
            pids: Vec::new(),
            cursors: Vec::new(),
        }
    }

    pub fn num_partitions(&self) -> u32 {
        self.partitioner.num_partitions()
    }

    /// Partitions and reorders `batch`. Fails as a whole if any row is invalid.
    pub fn split(&mut self, batch: &RecordBatch) -> Result<PartitionedBatch, SplitError> {
        let rows = batch.num_rows();
        if rows > u32::MAX as usize {
            return Err(SplitError::TooManyRows {
                rows,
                max: u32::MAX as usize,
            });
        }
        self.partitioner.partition(batch, &mut self.pids)?;
        let n = self.partitioner.num_partitions() as usize;

        // Histogram, then exclusive prefix sums: offsets[p] = first row slot of p.
        let mut offsets = vec![0u32; n + 1];
        for &p in &self.pids {
            offsets[p as usize + 1] += 1;
        }
        for p in 0..n {
            offsets[p + 1] += offsets[p];
        }
        if n == 1 {
            return Ok(PartitionedBatch {
                batch: batch.clone(),
                offsets,
            });
        }
        self.cursors.clear();
        self.cursors.extend_from_slice(&offsets[..n]);
        let mut indices = vec![0u32; rows];
        for (row, &p) in self.pids.iter().enumerate() {
            let slot = &mut self.cursors[p as usize];
            indices[*slot as usize] = row as u32;
            *slot += 1;
        }
        let indices = UInt32Array::new(ScalarBuffer::from(indices), None);
        Ok(PartitionedBatch {
            batch: take_record_batch(batch, &indices)?,
            offsets,
        })
    }
}
