//! Sluice spill storage: one append-only data file per (shuffle, partition), an
//! in-memory index of the blocks in each file, a per-shuffle commit log, recovery by
//! scanning, disk quotas, and two I/O backends (io_uring and plain syscalls).
//!
//! It owns the on-disk format (records around blocks, commit records) and everything
//! that touches the data files: callers hand it a block to encode into the record
//! buffer it provides, and an epoch. It must not decode blocks' contents or know about
//! applications, connections or the protocol; which commits are served is the
//! server's decision.

use std::io;
use std::path::{Path, PathBuf};

pub mod backend;
pub mod commit_log;
pub mod direct;
pub mod memory;
pub mod quota;
mod record;
mod scan;
mod store;
pub mod sums_log;
pub mod uring;

pub use backend::{BackendKind, IoBackend, SyscallBackend};
pub use commit_log::CommitRecord;
pub use direct::{WriteBuf, DIRECT_ALIGN, O_DIRECT};
pub use memory::MemoryBudget;
pub use quota::DiskQuota;
pub use scan::{scan_file, ScanResult};
pub use store::{
    remove_dir, sync_dir, BlockEntry, Durability, Recovered, ShuffleStore, StoreEnv, WriteGroup,
    TRASH_PREFIX,
};
pub use sums_log::{SumsRecord, WriterSum};

/// Storage errors, with the file they concern.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("disk full: {op} {path}")]
    DiskFull { op: &'static str, path: PathBuf },
    #[error(
        "{scope} disk quota of {limit} bytes exceeded ({used} used, {requested} more requested)"
    )]
    QuotaExceeded {
        scope: &'static str,
        limit: u64,
        used: u64,
        requested: u64,
    },
    #[error("block of {0} bytes is too large to index")]
    BlockTooLarge(usize),
    /// The block could not be encoded into its record.
    #[error("encoding a block: {0}")]
    Encode(#[from] sluice_format::FormatError),
    /// The store was deleted: nothing may be written, committed or read through it.
    #[error("{0} was deleted")]
    Deleted(PathBuf),
}

impl SpillError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull {
            return Self::DiskFull {
                op,
                path: path.to_path_buf(),
            };
        }
        Self::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
