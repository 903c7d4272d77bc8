//! The DataFusion peer of `--mode split` (cargo feature `peers`): DataFusion's own
//! `BatchPartitioner` (hash of `l_orderkey`), its pieces accumulated per partition and
//! concatenated into a block at the block size, as the take peer does.
//!
//! DataFusion builds against its own arrow release, so the batches cross over as Arrow
//! IPC, outside the timed part.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arrow59::compute::concat_batches;
use arrow59::ipc::reader::StreamReader;
use arrow59::record_batch::RecordBatch as DfBatch;
use arrow_array::RecordBatch;
use datafusion_physical_expr::expressions::Column;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_physical_plan::metrics::Time;
use datafusion_physical_plan::repartition::BatchPartitioner;
use sluice_format::{encode_batch, encode_schema};

use crate::split::{finish_pending, Outcome};

/// The same batches, in DataFusion's arrow.
pub fn convert(batches: &[RecordBatch]) -> Vec<DfBatch> {
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let mut stream = encode_schema(&first.schema());
    for batch in batches {
        encode_batch(batch, &mut stream).expect("encoding a generated batch");
    }
    StreamReader::try_new(std::io::Cursor::new(stream), None)
        .expect("an IPC stream")
        .collect::<Result<_, _>>()
        .expect("arrow reads back its own IPC")
}

/// Splits `batches` into `n` partitions with DataFusion's `BatchPartitioner`.
pub fn split(batches: &[DfBatch], n: u32, block_size: usize, row_bytes: usize) -> Outcome {
    let Some(first) = batches.first() else {
        return Outcome {
            secs: 0.0,
            blocks: 0,
        };
    };
    let schema = first.schema();
    let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new(schema.field(0).name(), 0));
    let mut partitioner =
        BatchPartitioner::new_hash_partitioner(vec![key], n as usize, Time::new())
            .expect("a hash partitioner");
    let mut pending: Vec<(Vec<DfBatch>, usize)> = vec![(Vec::new(), 0); n as usize];
    let mut blocks = 0u64;
    let start = Instant::now();
    for batch in batches {
        partitioner
            .partition(batch.clone(), |p, part| {
                let (parts, bytes) = &mut pending[p];
                *bytes += part.num_rows() * row_bytes;
                parts.push(part);
                if *bytes >= block_size {
                    black_box(concat_batches(&schema, parts.iter())?);
                    blocks += 1;
                    parts.clear();
                    *bytes = 0;
                }
                Ok(())
            })
            .expect("partition");
    }
    finish_pending(pending, blocks, start, |parts| {
        black_box(concat_batches(&schema, parts.iter()).expect("concat"));
    })
}
