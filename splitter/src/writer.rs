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
        self.pending.push(batch);
        if self.pending_rows >= self.coalesce_rows {
            self.split_pending(&mut emit)?;
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
