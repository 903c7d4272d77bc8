//! The parts of the push and the fetch alone, on the same input in the same run: what
//! the shuffle could cost if it paid only for them. Push: the split as the server runs
//! it, lz4 compression of the data, and a raw quinn transfer of the input's bytes.
//! Fetch: lz4 decompression, crc32c of the stored bytes, and a raw quinn transfer of
//! them. All in CPU seconds per GB of input, so they compare with the e2e figures.

use std::hint::black_box;

use arrow_array::RecordBatch;
use sluice_format::encode_batch;
use sluice_splitter::{PartitionSpec, PartitionWriter, Partitioner, SplitError, WriterLimits};
use sluice_stages::thread_cpu_secs;
use sluice_testkit::lineitem_schema;

use crate::net::path::NetPath;
use crate::net::raw::{quinn_transfer, Direction};
use crate::net::Setting;
use crate::report::usage;

/// CPU seconds per GB of input of each part.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub split: f64,
    pub compress: f64,
    pub push_transport: f64,
    pub decompress: f64,
    pub checksum: f64,
    pub fetch_transport: f64,
}

impl Parts {
    pub fn push(&self) -> f64 {
        self.split + self.compress + self.push_transport
    }

    pub fn fetch(&self) -> f64 {
        self.decompress + self.checksum + self.fetch_transport
    }
}

/// Measures every part on `maps` (each map's batches, split as one push is).
pub async fn measure(
    path: &NetPath,
    maps: &[&[RecordBatch]],
    partitions: u32,
    input_gb: f64,
) -> Result<Parts, crate::BenchError> {
    let split = split_secs(maps, partitions) / input_gb;
    let (compress, decompress, checksum, stored) = codec_secs(maps);
    let push_transport =
        quinn_secs(path, (input_gb * 1e9) as u64, Direction::Push).await? / input_gb;
    let fetch_transport = quinn_secs(path, stored, Direction::Fetch).await? / input_gb;
    Ok(Parts {
        split,
        compress: compress / input_gb,
        push_transport,
        decompress: decompress / input_gb,
        checksum: checksum / input_gb,
        fetch_transport,
    })
}

/// The server's split of every map, one writer per map, blocks dropped.
fn split_secs(maps: &[&[RecordBatch]], partitions: u32) -> f64 {
    let schema = lineitem_schema();
    let limits = WriterLimits {
        block_size: 1 << 20,
        memory_limit: 32 << 20,
    };
    let start = thread_cpu_secs();
    for batches in maps {
        let spec = PartitionSpec::Hash { columns: vec![0] };
        let partitioner = Partitioner::new(spec, partitions, &schema).expect("valid spec");
        let mut writer = PartitionWriter::new(partitioner, schema.clone(), limits);
        let mut emit = |_: u32, block: RecordBatch| -> Result<(), SplitError> {
            black_box(block);
            Ok(())
        };
        for batch in *batches {
            writer.write(batch.clone(), &mut emit).expect("split");
        }
        writer.finish(&mut emit).expect("split");
    }
    thread_cpu_secs() - start
}

/// lz4 compression and decompression of every batch's Arrow IPC encoding, and crc32c
/// of the compressed bytes, with reused buffers; returns their CPU seconds and the
/// compressed bytes.
fn codec_secs(maps: &[&[RecordBatch]]) -> (f64, f64, f64, u64) {
    let raw: Vec<Vec<u8>> = maps
        .iter()
        .flat_map(|m| m.iter())
        .map(|b| {
            let mut ipc = Vec::new();
            encode_batch(b, &mut ipc).expect("encode");
            ipc
        })
        .collect();
    let max = raw.iter().map(Vec::len).max().unwrap_or(0);
    // Every compressed block goes to its own slot of one buffer written before the clock
    // starts, as the e2e compresses into reused buffers: faulting in fresh pages for the
    // outputs is not lz4's cost.
    let slot = lz4_flex::block::get_maximum_output_size(max);
    let mut stored = vec![0u8; slot * raw.len()];
    // Fresh zeroed memory is not yet mapped: write it so its pages fault in now.
    black_box(&mut stored).fill(1);
    let mut lens = Vec::with_capacity(raw.len());
    let start = thread_cpu_secs();
    for (r, out) in raw.iter().zip(stored.chunks_exact_mut(slot)) {
        lens.push(lz4_flex::block::compress_into(r, out).expect("lz4"));
    }
    let compress = thread_cpu_secs() - start;
    let blocks = || stored.chunks_exact(slot).zip(&lens).map(|(s, &n)| &s[..n]);
    let mut back = vec![0u8; max];
    let start = thread_cpu_secs();
    for (s, r) in blocks().zip(&raw) {
        lz4_flex::block::decompress_into(s, &mut back[..r.len()]).expect("lz4");
        black_box(&back);
    }
    let decompress = thread_cpu_secs() - start;
    let start = thread_cpu_secs();
    for s in blocks() {
        black_box(crc32c::crc32c(s));
    }
    let checksum = thread_cpu_secs() - start;
    let bytes = lens.iter().map(|&n| n as u64).sum();
    (compress, decompress, checksum, bytes)
}

/// Process CPU seconds of moving `bytes` through raw quinn with Sluice's tuning.
async fn quinn_secs(
    path: &NetPath,
    bytes: u64,
    direction: Direction,
) -> Result<f64, crate::BenchError> {
    let before = usage().cpu_secs;
    quinn_transfer(path, &Setting::default_tuning(), bytes, direction)
        .await
        .map_err(|e| format!("raw quinn transfer: {e}"))?;
    Ok(usage().cpu_secs - before)
}
