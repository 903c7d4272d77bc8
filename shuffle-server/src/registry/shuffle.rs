//! One shuffle on this server: its fixed shape, its store, and its commit state.

use std::sync::Mutex;

use sluice_proto::{MapAttempt, MapFilter, Partitioning};
use sluice_spill::{CommitRecord, ShuffleStore, WriterSum};
use tokio_util::sync::CancellationToken;

use super::lock;
use crate::commits::{CommitRefused, CommitState, Epoch, MapId, Selection};
use crate::error::RequestError;

/// The fixed description of a shuffle, set by its first push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShuffleShape {
    pub num_partitions: u32,
    pub partitioning: Partitioning,
    pub schema: arrow_schema::SchemaRef,
    pub schema_ipc: bytes::Bytes,
    /// Memory the shape keeps (counted against `limits.app_metadata_size`).
    pub bytes: usize,
}

#[derive(Debug)]
pub(crate) struct Shuffle {
    pub shape: ShuffleShape,
    pub store: ShuffleStore,
    commits: Mutex<CommitState>,
    /// Cancelled when the shuffle or its app is deleted.
    closing: CancellationToken,
    /// Pushes open on it; changed under the app's shuffles lock.
    pub(super) pushes: std::sync::atomic::AtomicUsize,
}

fn refused(map_id: u64, why: CommitRefused) -> RequestError {
    match why {
        CommitRefused::AlreadyCommitted => RequestError::AlreadyCommitted { map_id },
        CommitRefused::Committing => {
            RequestError::Busy(format!("another push of map {map_id} is committing"))
        }
        CommitRefused::Abandoned => RequestError::Stream("the push was abandoned".into()),
    }
}

impl Shuffle {
    pub(super) fn new(
        shape: ShuffleShape,
        store: ShuffleStore,
        commits: CommitState,
        closing: CancellationToken,
    ) -> Self {
        Self {
            shape,
            store,
            commits: Mutex::new(commits),
            closing,
            pushes: Default::default(),
        }
    }

    /// Ends everything in flight on the shuffle: pushes and fetches are told (their
    /// [`closed`](Self::closed) completes) and the store refuses further writes,
    /// commits and reads.
    pub fn close(&self) {
        self.closing.cancel();
        self.store.close();
    }

    /// Completes when the shuffle or its app is deleted.
    pub async fn closed(&self) {
        self.closing.cancelled().await
    }

    /// Deletes the shuffle's directory (after [`close`](Self::close)). Blocking.
    pub fn delete_files(&self) -> Result<(), RequestError> {
        Ok(self.store.delete()?)
    }

    /// Map ids committed to this shuffle.
    pub fn committed_maps(&self) -> usize {
        lock(&self.commits).committed_maps()
    }

    /// Starts a push of `map`: returns the epoch its blocks are tagged with.
    pub fn begin_push(&self, map: &MapAttempt) -> Result<u32, RequestError> {
        let epoch = lock(&self.commits)
            .begin(MapId(map.map_id))
            .map_err(|why| refused(map.map_id, why))?;
        Ok(epoch.0)
    }

    /// Records the push's commit (durably, per the durability mode) and makes its blocks
    /// visible. The first commit of a map id wins. Blocking: call off the async runtime.
    /// The commits lock is not held during the disk writes, so fetches and new pushes
    /// of the shuffle never wait for an fsync.
    pub fn commit(
        &self,
        record: &CommitRecord,
        touched: &[u32],
        sums: &[WriterSum],
    ) -> Result<(), RequestError> {
        let (map_id, epoch) = (MapId(record.map_id), Epoch(record.epoch));
        {
            let mut commits = lock(&self.commits);
            if self.closing.is_cancelled() {
                return Err(RequestError::Deleted("the shuffle was deleted".into()));
            }
            commits
                .seal(map_id, epoch)
                .map_err(|why| refused(record.map_id, why))?;
        }
        let written = self.store.commit(record, touched, sums);
        let mut commits = lock(&self.commits);
        match written {
            Ok(()) => {
                commits.commit(map_id, record.map_index, epoch);
                Ok(())
            }
            Err(e) => {
                commits.unseal(map_id, epoch);
                Err(e.into())
            }
        }
    }

    /// Gives up the push with `epoch`, which ended without a commit: returns whether it
    /// may be reclaimed. False if its commit has started (it may be durable already);
    /// once this returns true the epoch can never commit.
    pub fn abandon(&self, epoch: u32) -> bool {
        lock(&self.commits).abandon(Epoch(epoch))
    }

    /// The committed map attempts a fetch with `filter` reads.
    pub fn select(&self, filter: &MapFilter) -> Selection {
        lock(&self.commits).select(filter)
    }
}
