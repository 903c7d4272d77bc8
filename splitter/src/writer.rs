//! The split path as the server runs it: batches in, blocks (one record batch of one
//! partition) out.
//!
//! Up to [`SORTED_FROM_PARTITIONS`] partitions, rows accumulate in
//! [`PartitionBuffers`], appended several batches at a time (two of Spark's 8K rows): a
//! partition becomes a block when it reaches the block size, and above the memory
//! limit the largest partitions are drained early. With more
//! partitions a batch gives each partition only a row or two, so per-partition work
//! would dominate: there, batches are kept whole and split together when the memory
//! limit is reached ([`SortedRuns`], a radix partition over accumulated batches).

use arrow_array::RecordBatch;

use crate::buffers::{check_schema, PartitionBuffers, Refill};
use crate::error::SplitError;
use crate::partitioner::Partitioner;
use crate::sorted::{batch_bytes, SortedRuns};
use crate::split::{SplitIndices, Splitter};

/// Partition counts from which batches are accumulated and sorted together.
pub const SORTED_FROM_PARTITIONS: u32 = 1024;
/// Partitions times columns from which batches are sorted together whatever the
/// partition count: per-partition buffers cost every (partition, column) a buffer of
/// its own ([`SLOT_COLUMN_BYTES`]), which a wide schema (10,000 columns at P = 1,000:
/// about 1 GB) would make larger than any push's memory limit.
pub const SORTED_FROM_SLOT_COLUMNS: usize = 1 << 16;
/// What one (partition, column) of the per-partition buffers costs before it holds a
/// row: the buffers' headers and its validity slot, rounded up.
const SLOT_COLUMN_BYTES: usize = 128;
/// Below [`SORTED_FROM_PARTITIONS`], batches are split as they come but appended to
/// the buffers together once they hold this many rows (two of Spark's 8K-row
/// batches): each partition's buffers are then visited and prefetched once for both.
/// +5% at P = 200, measured in one process alternating with immediate appends (32K
/// rows gained no more, 64K lost 12%); no change at P = 16.
const APPEND_ROWS: usize = 16_384;
/// Most bytes sorted in one flush, whatever the memory limit: the sorted batch's string
/// columns must stay within 32-bit offsets (2 GiB).
const MAX_SORTED_BYTES: usize = 1 << 30;

/// Sizes that decide when blocks are cut.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Uncompressed bytes at which a partition's rows become a block.
    pub block_size: usize,
    /// Most uncompressed bytes held in buffers (including accumulated batches).
    pub memory_limit: usize,
}

/// Splits batches into per-partition blocks.
#[derive(Debug)]
pub struct PartitionWriter {
    strategy: Strategy,
    limits: WriterLimits,
}

// One per push, never moved in a hot path: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Strategy {
    Buffered(Buffered),
    Sorted(SortedRuns),
}

/// Per-partition buffers, and the split batches waiting to be appended to them.
#[derive(Debug)]
struct Buffered {
    splitter: Splitter,
    buffers: PartitionBuffers,
    /// Split batches not yet appended, with their rows and bytes.
    held: Vec<(RecordBatch, SplitIndices)>,
    held_rows: usize,
    held_bytes: usize,
    /// Splits of appended batches, for reuse.
    spare: Vec<SplitIndices>,
    ready: Vec<(u32, Refill)>,
}

impl PartitionWriter {
    pub fn new(
        partitioner: Partitioner,
        schema: arrow_schema::SchemaRef,
        limits: WriterLimits,
    ) -> Self {
        let n = partitioner.num_partitions();
        let strategy = if sorts(n, schema.fields().len()) {
            Strategy::Sorted(SortedRuns::new(partitioner, schema))
        } else {
            Strategy::Buffered(Buffered {
                splitter: Splitter::new(partitioner),
                buffers: PartitionBuffers::new(schema, n),
                held: Vec::new(),
                held_rows: 0,
                held_bytes: 0,
                spare: Vec::new(),
                ready: Vec::new(),
            })
        };
        Self { strategy, limits }
    }

    /// Adds a batch; `emit(partition, block)` receives every block that became ready.
    /// Below [`SORTED_FROM_PARTITIONS`] a batch may wait for the next before its rows
    /// reach the buffers, so its blocks can come out of a later call (at the latest
    /// [`Self::finish`]). After an error the writer's state is unspecified: drop it (the
    /// server fails the push).
    pub fn write<E: From<SplitError>>(
        &mut self,
        batch: RecordBatch,
        mut emit: impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match &mut self.strategy {
            Strategy::Buffered(buffered) => {
                buffered.hold(batch)?;
                // Waiting batches count against the memory limit like buffered rows.
                let buffered_bytes = buffered.buffers.total_bytes() + buffered.held_bytes;
                if buffered.held_rows >= APPEND_ROWS || buffered_bytes > self.limits.memory_limit {
                    buffered.append_held(self.limits, &mut emit)?;
                }
                Ok(())
            }
            Strategy::Sorted(sorted) => {
                let limit = self.limits.memory_limit.min(MAX_SORTED_BYTES);
                // Flushing first when the batch would cross the cap keeps every flush
                // under it (or to a single batch, whose own offsets fit).
                if sorted.bytes() + batch_bytes(&batch) > MAX_SORTED_BYTES {
                    sorted.flush(self.limits.block_size, &mut emit)?;
                }
                sorted.push(batch)?;
                if sorted.bytes() >= limit {
                    sorted.flush(self.limits.block_size, &mut emit)?;
                }
                Ok(())
            }
        }
    }

    /// Bytes this writer holds whatever it buffers, for as long as it lives: its
    /// per-partition tables (slot and counter per partition) and, with per-partition
    /// buffers, what every (partition, column) costs once touched. Known when the
    /// writer is made, so a push can be refused before it holds any of it.
    pub fn fixed_bytes(&self) -> usize {
        match &self.strategy {
            Strategy::Buffered(b) => Self::fixed_bytes_for(
                b.splitter.num_partitions(),
                b.buffers.schema().fields().len(),
            ),
            Strategy::Sorted(sorted) => sorted.fixed_bytes(),
        }
    }

    /// [`fixed_bytes`](Self::fixed_bytes) of a writer of `num_partitions` partitions
    /// and `columns` columns, before making one.
    pub fn fixed_bytes_for(num_partitions: u32, columns: usize) -> usize {
        let n = num_partitions as usize;
        if sorts(num_partitions, columns) {
            n * 4
        } else {
            n * (8 + columns * SLOT_COLUMN_BYTES)
        }
    }

    /// Whether rows are accumulated and sorted together (rather than buffered per
    /// partition).
    pub fn is_sorted(&self) -> bool {
        matches!(self.strategy, Strategy::Sorted(_))
    }

    /// Bytes this writer holds: buffer capacities and the batches waiting to be appended
    /// (with their row indices), or the accumulated batches.
    pub fn allocated_bytes(&self) -> usize {
        match &self.strategy {
            Strategy::Buffered(b) => b.buffers.allocated_bytes() + b.held_bytes,
            Strategy::Sorted(sorted) => sorted.bytes(),
        }
    }

    /// Writes out buffered rows, largest partitions first, until at most `target`
    /// bytes stay allocated (memory pressure from outside this writer). Sorted runs
    /// write out everything.
    pub fn shrink_to<E: From<SplitError>>(
        &mut self,
        target: usize,
        mut emit: impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.allocated_bytes() <= target {
            return Ok(());
        }
        match &mut self.strategy {
            Strategy::Buffered(buffered) => {
                buffered.append_held(self.limits, &mut emit)?;
                let buffers = &mut buffered.buffers;
                for p in buffers.largest_first() {
                    if buffers.allocated_bytes() <= target {
                        break;
                    }
                    if let Some(block) = buffers.drain(p, Refill::Empty)? {
                        emit_cut(p, block, self.limits.block_size, &mut emit)?;
                    }
                }
                Ok(())
            }
            Strategy::Sorted(sorted) => sorted.flush(self.limits.block_size, &mut emit),
        }
    }

    /// Drains everything: every remaining row reaches `emit`.
    pub fn finish<E: From<SplitError>>(
        &mut self,
        mut emit: impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        match &mut self.strategy {
            Strategy::Buffered(buffered) => {
                buffered.append_held(self.limits, &mut emit)?;
                let buffers = &mut buffered.buffers;
                for p in buffers.non_empty() {
                    if let Some(block) = buffers.drain(p, Refill::Empty)? {
                        emit_cut(p, block, self.limits.block_size, &mut emit)?;
                    }
                }
                Ok(())
            }
            Strategy::Sorted(sorted) => sorted.flush(self.limits.block_size, &mut emit),
        }
    }
}

impl Buffered {
    /// Splits `batch` and keeps it until enough rows are held.
    fn hold(&mut self, batch: RecordBatch) -> Result<(), SplitError> {
        // Refused now, not when the held batches are appended.
        check_schema(&batch, self.buffers.schema())?;
        let mut split = self.spare.pop().unwrap_or_default();
        self.splitter.split_into(&batch, &mut split)?;
        self.held_rows += batch.num_rows();
        // The batch, and its row indices.
        self.held_bytes += batch_bytes(&batch) + split.num_rows() * 4;
        self.held.push((batch, split));
        Ok(())
    }

    /// Appends the held batches to the buffers, then drains each partition that
    /// reached the block size and, above the memory limit, the largest others.
    fn append_held<E: From<SplitError>>(
        &mut self,
        limits: WriterLimits,
        mut emit: impl FnMut(u32, RecordBatch) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.held.is_empty() {
            return Ok(());
        }
        let parts: Vec<(&RecordBatch, &SplitIndices)> =
            self.held.iter().map(|(b, s)| (b, s)).collect();
        let appended = self.buffers.append_batches(&parts);
        self.spare
            .extend(self.held.drain(..).map(|(_, split)| split));
        (self.held_rows, self.held_bytes) = (0, 0);
        appended?;
        let WriterLimits {
            block_size,
            memory_limit,
        } = limits;
        self.buffers
            .ready_to_drain(block_size, memory_limit, &mut self.ready);
        for &(p, refill) in &self.ready {
            if let Some(block) = self.buffers.drain(p, refill)? {
                emit_cut(p, block, block_size, &mut emit)?;
            }
        }
        Ok(())
    }
}

/// Whether a writer of this shape sorts batches together rather than buffering rows per
/// partition.
fn sorts(num_partitions: u32, columns: usize) -> bool {
    num_partitions >= SORTED_FROM_PARTITIONS
        || num_partitions as usize * columns >= SORTED_FROM_SLOT_COLUMNS
}

/// Emits a drained partition as blocks of at least `block_size` and under twice it
/// (estimated from the average row): one append can bring a partition many times the
/// block size (wide rows, few partitions), and a block is what a reader and the fetch
/// read-ahead hold whole. A row wider than the block size is a block of its own.
fn emit_cut<E>(
    p: u32,
    block: RecordBatch,
    block_size: usize,
    emit: &mut impl FnMut(u32, RecordBatch) -> Result<(), E>,
) -> Result<(), E> {
    let rows = block.num_rows();
    let pieces = (batch_bytes(&block) / block_size.max(1)).clamp(1, rows.max(1));
    if pieces == 1 {
        return emit(p, block);
    }
    let per_piece = rows.div_ceil(pieces);
    let mut at = 0;
    while at < rows {
        let len = per_piece.min(rows - at);
        emit(p, block.slice(at, len))?;
        at += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;
    use crate::PartitionSpec;

    /// A writer hashing column 0 into `n` partitions.
    fn hash_writer(
        schema: &arrow_schema::SchemaRef,
        n: u32,
        block_size: usize,
        memory_limit: usize,
    ) -> PartitionWriter {
        let partitioner =
            Partitioner::new(PartitionSpec::Hash { columns: vec![0] }, n, schema).unwrap();
        let limits = WriterLimits {
            block_size,
            memory_limit,
        };
        PartitionWriter::new(partitioner, schema.clone(), limits)
    }

    /// Below `APPEND_ROWS` a batch waits for the next: it is counted meanwhile, and
    /// `shrink_to` and `finish` write it out like buffered rows.
    #[test]
    fn small_batches_wait_for_the_next_and_are_counted_while_they_wait() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        // Any appended row would make a block at once.
        let mut writer = hash_writer(&schema, 8, 1, 1 << 30);
        let batch = |from: i64, rows: i64| {
            let keys = Int64Array::from_iter_values(from..from + rows);
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys)]).unwrap()
        };
        let mut blocks: Vec<(u32, RecordBatch)> = Vec::new();
        let mut emit = |p: u32, b: RecordBatch| -> Result<(), SplitError> {
            blocks.push((p, b));
            Ok(())
        };
        let first = batch(0, 100);
        let held = batch_bytes(&first) + 100 * 4; // and its row indices
        assert!(held >= 100 * 12);
        let mut emitted_early = false;
        writer
            .write(first, |_, _| {
                emitted_early = true;
                Ok::<_, SplitError>(())
            })
            .unwrap();
        assert!(!emitted_early);
        assert_eq!(writer.allocated_bytes(), held);
        writer.shrink_to(0, &mut emit).unwrap();
        assert_eq!(writer.allocated_bytes(), 0);
        writer.write(batch(100, 100), &mut emit).unwrap();
        writer
            .write(batch(200, APPEND_ROWS as i64), &mut emit)
            .unwrap();
        writer.finish(&mut emit).unwrap();
        let mut keys: Vec<i64> = Vec::new();
        for p in 0..8 {
            let of_p: Vec<i64> = blocks
                .iter()
                .filter(|(q, _)| *q == p)
                .flat_map(|(_, b)| {
                    let keys = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    keys.values().to_vec()
                })
                .collect();
            assert!(of_p.is_sorted(), "partition {p} out of order");
            keys.extend(of_p);
        }
        keys.sort_unstable();
        assert_eq!(keys, (0..200 + APPEND_ROWS as i64).collect::<Vec<_>>());
    }

    #[test]
    fn at_large_p_batches_wait_whole_and_leave_in_blocks_of_the_block_size() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let n = SORTED_FROM_PARTITIONS;
        // 9 bytes a row (value and validity bit, rounded up): blocks of at most 3 rows,
        // and no flush before shrink_to.
        let mut writer = hash_writer(&schema, n, 32, 1 << 30);
        let keys: Vec<i64> = (0..50_000).collect();
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(keys))]).unwrap();
        let mut blocks: Vec<(u32, RecordBatch)> = Vec::new();
        let mut collect = |p: u32, b: RecordBatch| -> Result<(), SplitError> {
            blocks.push((p, b));
            Ok(())
        };
        writer.write(batch.slice(0, 30_000), &mut collect).unwrap();
        writer
            .write(batch.slice(30_000, 20_000), &mut collect)
            .unwrap();
        // Values plus a validity bit per row, plus the partition ids kept for the sort.
        let ids = 50_000 * 4;
        assert!(
            (50_000 * 8 + 50_000 / 8 + ids..=50_000 * 8 + 50_000 / 8 + 2 * ids)
                .contains(&writer.allocated_bytes()),
            "{}",
            writer.allocated_bytes()
        );
        writer.shrink_to(0, &mut collect).unwrap();
        assert_eq!(writer.allocated_bytes(), 0);
        writer
            .finish(|_, _| -> Result<(), SplitError> { panic!("all was written out") })
            .unwrap();

        assert!(blocks.iter().all(|(_, b)| (1..=3).contains(&b.num_rows())));
        // Every partition's keys come out once, in input order.
        let mut last = vec![-1i64; n as usize];
        let mut rows = 0;
        for (p, block) in &blocks {
            let keys = block
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            for &k in keys.values() {
                let before = &mut last[*p as usize];
                assert!(k > *before, "partition {p}: {k} after {before}");
                *before = k;
                rows += 1;
            }
        }
        assert_eq!(rows, 50_000);
    }

    #[test]
    fn a_batch_of_another_schema_is_refused_by_both_strategies() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let other = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Binary, false),
        ]));
        let batch = RecordBatch::try_new(
            other,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(arrow_array::BinaryArray::from(vec![&b"\xff"[..], b"a"])),
            ],
        )
        .unwrap();
        for n in [10, SORTED_FROM_PARTITIONS] {
            let mut writer = hash_writer(&schema, n, 1 << 20, 1 << 20);
            let err = writer
                .write(batch.clone(), |_, _| -> Result<(), SplitError> { Ok(()) })
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                "batch does not match the schema: column 1 has type Binary, the push's schema has Utf8",
                "P = {n}"
            );
        }
    }

    #[test]
    fn shrink_to_writes_out_the_largest_buffers_and_releases_them() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let n = 50;
        let mut writer = hash_writer(&schema, n, 1 << 30, 1 << 30);
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

    /// One append can bring a partition many times the block size (wide rows, one
    /// partition): it comes out as blocks under twice the block size, rows in order.
    #[test]
    fn wide_rows_are_cut_into_blocks_near_the_block_size() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let block_size = 64 << 10;
        let mut writer = hash_writer(&schema, 1, block_size, 1 << 30);
        let rows = 20_000usize;
        let keys = Int64Array::from_iter_values(0..rows as i64);
        let text: StringArray = (0..rows).map(|i| Some(format!("{i:0>200}"))).collect();
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(text)]).unwrap();
        let total = batch_bytes(&batch);
        assert!(total > 60 * block_size);
        let mut blocks = Vec::new();
        let mut emit = |p: u32, b: RecordBatch| -> Result<(), SplitError> {
            blocks.push((p, b));
            Ok(())
        };
        writer.write(batch, &mut emit).unwrap();
        writer.finish(&mut emit).unwrap();
        assert!(blocks.len() >= 60, "{} blocks", blocks.len());
        let mut next = 0i64;
        for (p, b) in &blocks {
            assert_eq!(*p, 0);
            let bytes = batch_bytes(b);
            assert!(bytes < 2 * block_size, "a block of {bytes} bytes");
            let keys = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
            for k in keys.values().iter() {
                assert_eq!(*k, next);
                next += 1;
            }
        }
        assert_eq!(next, rows as i64);
    }

    /// A wide schema makes the writer sort batches together even with few partitions,
    /// so its fixed cost stays small; a narrow one keeps per-partition buffers and
    /// counts what every (partition, column) costs.
    #[test]
    fn wide_schemas_are_sorted_and_fixed_bytes_follow_the_shape() {
        let fields = |n: usize| {
            let f: Vec<_> = (0..n)
                .map(|i| Field::new(format!("c{i}"), DataType::Int64, true))
                .collect();
            Arc::new(Schema::new(f))
        };
        let narrow = hash_writer(&fields(16), 200, 1 << 20, 1 << 25);
        assert!(!narrow.is_sorted());
        assert_eq!(narrow.fixed_bytes(), 200 * (8 + 16 * SLOT_COLUMN_BYTES));
        let wide = hash_writer(&fields(10_000), 1000, 1 << 20, 1 << 25);
        assert!(wide.is_sorted());
        assert_eq!(wide.fixed_bytes(), 1000 * 4);
        let many = hash_writer(&fields(2), 4096, 1 << 20, 1 << 25);
        assert!(many.is_sorted());
    }
}
