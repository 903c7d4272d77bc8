//! Sluice partitioners and batch splitter. No I/O.
//!
//! A [`Partitioner`] assigns each row of a record batch a partition id in `[0, P)`; a
//! [`Splitter`] groups the rows by partition (a stable counting sort); and
//! [`PartitionBuffers`] gathers them, column by column, into per-partition buffers that
//! are drained into blocks. From [`SORTED_FROM_PARTITIONS`] partitions the
//! [`PartitionWriter`] instead keeps whole batches and sorts them together (sorted runs).
//!
//! It owns how rows are assigned to partitions (bit-exact with Spark) and cut into
//! blocks of rows. It must not do I/O, encode or compress blocks, or know about pushes
//! and memory budgets beyond the limits it is given and the bytes it reports.
// Audited uses of `unsafe`, each measured to pay: `build_bytes` (gathered string arrays
// without UTF-8 re-validation, called where a buffer drain and a sorted run build them; batches of another schema
// are refused first), the prefetch hints in `prefetch` (which touch no memory), and the
// AVX2 builds of the hash loops, called only once the CPU is known to have AVX2.
#![deny(unsafe_code)]

mod buffers;
mod error;
mod murmur3;
mod partitioner;
mod prefetch;
mod range;
mod sorted;
mod split;
mod writer;

pub use buffers::{PartitionBuffers, Refill};
pub use error::SplitError;
pub use murmur3::{hash_bytes, hash_int, hash_long, pmod, Pmod, SPARK_SEED};
pub use partitioner::{PartitionSpec, Partitioner};
pub use range::RangeKey;
pub use split::{SplitIndices, Splitter};
pub use writer::{PartitionWriter, WriterLimits, SORTED_FROM_PARTITIONS, SORTED_FROM_SLOT_COLUMNS};
