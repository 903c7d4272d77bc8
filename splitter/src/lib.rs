//! Sluice partitioners and batch splitter. No I/O.
//!
//! A [`Partitioner`] assigns each row of a record batch a partition id in `[0, P)`;
//! a [`Splitter`] reorders the batch so that each partition's rows are contiguous (a
//! stable counting sort), exposing every partition as a zero-copy slice.
#![forbid(unsafe_code)]

mod error;
mod murmur3;
mod partitioner;
mod split;

pub use error::SplitError;
pub use murmur3::{hash_bytes, hash_int, hash_long, pmod, SPARK_SEED};
pub use partitioner::{PartitionSpec, Partitioner};
pub use split::{PartitionedBatch, Splitter};
