//! The split path as the server runs it: batches in, blocks (one record batch of one
//! partition) out.
//!
//! Rows accumulate in [`PartitionBuffers`]; a partition becomes a block when it reaches
//! the block size, and above the memory limit the largest partitions are drained early.
//! With many partitions a batch touches each partition only with a row or two, so
//! per-partition work would dominate: there, incoming batches are first coalesced into
//! larger ones and split together.

use arrow_array::RecordBatch;
use arrow_select::concat::concat_batches;

use crate::buffers::PartitionBuffers;
use crate::error::SplitError;
use crate::partitioner::Partitioner;
use crate::split::Splitter;

/// Partition counts from which batches are coalesced before splitting.
pub const COALESCE_FROM_PARTITIONS: u32 = 1024;
/// Rows to coalesce before splitting, at or above [`COALESCE_FROM_PARTITIONS`].
pub const COALESCE_ROWS: usize = 65_536;

/// Sizes that decide when blocks are cut.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Uncompressed bytes at which a partition's rows become a block.
    pub block_size: usize,
    /// Most uncompressed bytes held in buffers (including coalescing).
    pub memory_limit: usize,
}

/// Splits batches into per-partition blocks.
#[derive(Debug)]
pub struct PartitionWriter {
    splitter: Splitter,
    buffers: PartitionBuffers,
    limits: WriterLimits,
    coalesce_rows: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    pending_bytes: usize,
    ready: Vec<(u32, bool)>,
}

impl PartitionWriter {
    pub fn new(
        partitioner: Partitioner,
        schema: arrow_schema::SchemaRef,
        limits: WriterLimits,
    ) -> Self {
        let n = partitioner.num_partitions();
        let coalesce_rows = if n >= COALESCE_FROM_PARTITIONS {
            COALESCE_ROWS
        } else {
            0
        };
        Self {
            splitter: Splitter::new(partitioner),
            buffers: PartitionBuffers::new(schema, n),
            limits,
            coalesce_rows,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
            ready: Vec::new(),
        }
    }

    /// Adds a batch; `emit(partition, block)` receives every block that became ready.
    pub fn write<E: From<SplitError>>(
        &mut self,
        batch: RecordBatch,
        mut emit: impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.coalesce_rows == 0 {
            return self.split(&batch, &mut emit);
        }
        self.pending_rows += batch.num_rows();
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.push(batch);
        if self.pending_rows >= self.coalesce_rows {
            self.split_pending(&mut emit)?;
        }
        Ok(())
    }

    /// Bytes this writer holds: buffer capacities plus batches waiting to be coalesced.
    pub fn allocated_bytes(&self) -> usize {
        self.buffers.allocated_bytes() + self.pending_bytes
    }

    /// Writes out buffered rows, largest partitions first, until at most `target`
    /// bytes stay allocated (memory pressure from outside this writer).
    pub fn shrink_to<E: From<SplitError>>(
        &mut self,
        target: usize,
        mut emit: impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.allocated_bytes() <= target {
            return Ok(());
        }
        self.split_pending(&mut emit)?;
        for p in self.buffers.largest_first() {
            if self.buffers.allocated_bytes() <= target {
                break;
            }
            if let Some(block) = self.buffers.drain(p, false)? {
                emit(p, block)?;
            }
        }
        Ok(())
    }

    /// Drains everything: every remaining row reaches `emit`.
    pub fn finish<E: From<SplitError>>(
        &mut self,
        mut emit: impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        self.split_pending(&mut emit)?;
        for p in self.buffers.non_empty() {
            if let Some(block) = self.buffers.drain(p, false)? {
                emit(p, block)?;
            }
        }
        Ok(())
    }

    fn split_pending<E: From<SplitError>>(
        &mut self,
        emit: &mut impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch =
            concat_batches(self.buffers.schema(), &self.pending).map_err(SplitError::from)?;
        self.pending.clear();
        self.pending_rows = 0;
        self.pending_bytes = 0;
        self.split(&batch, emit)
    }

    fn split<E: From<SplitError>>(
        &mut self,
        batch: &RecordBatch,
        emit: &mut impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        let split = self.splitter.split(batch)?;
        self.buffers.append(batch, split)?;
        let touched = split.runs().map(|(p, _)| p);
        let WriterLimits {
            block_size,
            memory_limit,
        } = self.limits;
        self.buffers
            .ready_to_drain(touched, block_size, memory_limit, &mut self.ready);
        for i in 0..self.ready.len() {
            let (p, keep) = self.ready[i];
            if let Some(block) = self.buffers.drain(p, keep)? {
                emit(p, block)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::PartitionSpec;

    #[test]
    fn shrink_to_writes_out_the_largest_buffers_and_releases_them() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let n = 50;
        let partitioner =
            Partitioner::new(PartitionSpec::Hash { columns: vec![0] }, n, &schema).unwrap();
        let limits = WriterLimits {
            block_size: 1 << 30,
            memory_limit: 1 << 30,
        };
        let mut writer = PartitionWriter::new(partitioner, schema.clone(), limits);
        let keys: Vec<i64> = (0..20_000).collect();
        let strings: Vec<Option<String>> = keys
            .iter()
            .map(|k| (k % 7 != 0).then(|| format!("value-{k}")))
            .collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(keys)),
                Arc::new(StringArray::from(strings)),
            ],
        )
        .unwrap();
        let mut blocks: Vec<(u32, RecordBatch)> = Vec::new();
        let mut emit = |p: u32, b: RecordBatch| -> Result<(), SplitError> {
            blocks.push((p, b));
            Ok(())
        };
        writer.write(batch, &mut emit).unwrap();
        let full = writer.allocated_bytes();
        assert!(full > 20_000 * 8, "{full} bytes allocated");

        writer.shrink_to(full / 2, &mut emit).unwrap();
        let half = writer.allocated_bytes();
        assert!(half <= full / 2, "{half} > {}", full / 2);
        writer.shrink_to(0, &mut emit).unwrap();
        // What stays is an empty offsets entry per string buffer.
        assert!(
            writer.allocated_bytes() <= n as usize * 32,
            "{}",
            writer.allocated_bytes()
        );
        writer.finish(&mut emit).unwrap();

        let rows: usize = blocks.iter().map(|(_, b)| b.num_rows()).sum();
        assert_eq!(rows, 20_000);
        let nulls: usize = blocks.iter().map(|(_, b)| b.column(1).null_count()).sum();
        assert_eq!(nulls, (0..20_000).filter(|k| k % 7 == 0).count());
    }
}
