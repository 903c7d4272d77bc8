//! One registered application: its secret, its shuffles, its liveness.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_proto::session::secrets_match;
use sluice_proto::{AppId, ShuffleDescriptor};
use sluice_spill::{remove_dir, Durability, ShuffleStore, StoreEnv};
use tokio_util::sync::CancellationToken;

use super::{dir_name, lock, Generations, Shuffle, ShuffleShape, SHUFFLE_MAGIC};
use crate::activity::Counter;
use crate::commits::CommitState;
use crate::ctx::ShapeLimits;
use crate::error::RequestError;
use crate::meta;

#[derive(Debug)]
pub(crate) struct App {
    pub(super) id: AppId,
    pub(super) secret: Bytes,
    pub(super) dir: PathBuf,
    pub(super) env: StoreEnv,
    pub(super) last_seen: Mutex<Instant>,
    pub(super) shuffles: Mutex<Shuffles>,
    pub(super) generations: Arc<Generations>,
    /// Cancelled when the app is deleted: ends every request in flight on it.
    pub(super) closing: CancellationToken,
    /// Pushes and fetches in progress: an app with any is not idle.
    pub requests: Counter,
}

#[derive(Debug, Default)]
pub(super) struct Shuffles {
    pub by_id: HashMap<u32, Arc<Shuffle>>,
    /// Memory the shuffles' shapes keep.
    pub shape_bytes: usize,
    /// Set when the app is deleted: no shuffle is created or found afterwards.
    pub closed: bool,
}

impl App {
    pub(super) fn check(&self, secret: &[u8]) -> Result<(), RequestError> {
        if secrets_match(&self.secret, secret) {
            Ok(())
        } else {
            Err(RequestError::Unauthorized("wrong application secret"))
        }
    }

    pub(super) fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    pub fn id(&self) -> &AppId {
        &self.id
    }

    /// Time since the app's last request.
    pub fn idle_for(&self) -> Duration {
        lock(&self.last_seen).elapsed()
    }

    /// Bytes of the app's files, as its disk quota counts them.
    pub fn disk_bytes(&self) -> u64 {
        self.env.quota.used()
    }

    pub fn shuffle_count(&self) -> usize {
        lock(&self.shuffles).by_id.len()
    }

    /// The app's shuffles, sorted by id.
    pub fn shuffles(&self) -> Vec<(u32, Arc<Shuffle>)> {
        let mut all: Vec<_> = lock(&self.shuffles)
            .by_id
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// The shuffle, if it exists; an error once the app was deleted.
    pub fn shuffle(&self, shuffle_id: u32) -> Result<Option<Arc<Shuffle>>, RequestError> {
        let shuffles = lock(&self.shuffles);
        if shuffles.closed {
            return Err(self.deleted());
        }
        Ok(shuffles.by_id.get(&shuffle_id).cloned())
    }

    fn deleted(&self) -> RequestError {
        RequestError::Deleted(format!("application {} was deleted", self.id))
    }

    /// The shuffle a push writes to: created by the first push, which fixes its shape;
    /// later pushes must agree with it. The push counts as open on it until
    /// [`push_ended`](Self::push_ended).
    pub fn shuffle_for_push(
        &self,
        shuffle_id: u32,
        shape: ShuffleShape,
        limits: &ShapeLimits,
    ) -> Result<Arc<Shuffle>, RequestError> {
        let mut shuffles = lock(&self.shuffles);
        if shuffles.closed {
            return Err(self.deleted());
        }
        if let Some(existing) = shuffles.by_id.get(&shuffle_id) {
            let have = &existing.shape;
            if have.num_partitions != shape.num_partitions
                || have.partitioning != shape.partitioning
                || have.schema.fields() != shape.schema.fields()
            {
                return Err(RequestError::ShuffleMismatch(format!(
                    "shuffle {shuffle_id} has {} partitions, {:?}, schema {:?}; push declares {} partitions, {:?}, schema {:?}",
                    have.num_partitions, have.partitioning, have.schema.fields(),
                    shape.num_partitions, shape.partitioning, shape.schema.fields()
                )));
            }
            existing.pushes.fetch_add(1, Ordering::AcqRel);
            return Ok(existing.clone());
        }
        if shuffles.by_id.len() >= limits.max_shuffles_per_app {
            return Err(RequestError::Limit(format!(
                "application {} has {} shuffles (limits.max_shuffles_per_app)",
                self.id,
                shuffles.by_id.len()
            )));
        }
        if shuffles.shape_bytes + shape.bytes > limits.app_metadata_size {
            return Err(RequestError::Limit(format!(
                "application {}'s shuffle shapes would take {} bytes (limits.app_metadata_size = {})",
                self.id,
                shuffles.shape_bytes + shape.bytes,
                limits.app_metadata_size
            )));
        }
        let name = dir_name(&format!("shuffle-{shuffle_id}"), self.generations.next());
        let dir = self.dir.join(name);
        let store = ShuffleStore::create(dir.clone(), self.env.clone())?;
        let descriptor = ShuffleDescriptor {
            num_partitions: shape.num_partitions,
            partitioning: shape.partitioning.clone(),
            schema: shape.schema_ipc.clone(),
        };
        let fsync = self.env.durability == Durability::Fsync;
        if let Err(e) = meta::write(
            &dir.join("shuffle.meta"),
            SHUFFLE_MAGIC,
            &descriptor.encode(),
            fsync,
        ) {
            let _ = store.delete();
            return Err(e.into());
        }
        let closing = self.closing.child_token();
        let bytes = shape.bytes;
        let shuffle = Arc::new(Shuffle::new(shape, store, CommitState::default(), closing));
        shuffle.pushes.fetch_add(1, Ordering::AcqRel);
        shuffles.shape_bytes += bytes;
        shuffles.by_id.insert(shuffle_id, shuffle.clone());
        Ok(shuffle)
    }

    /// A push on `shuffle` ended. Returns true if that left the shuffle with no commit
    /// and no push open: it is then forgotten and closed, and the caller deletes its
    /// files ([`Shuffle::delete_files`]), so a refused or abandoned push leaves nothing.
    pub fn push_ended(&self, shuffle_id: u32, shuffle: &Arc<Shuffle>) -> bool {
        let mut shuffles = lock(&self.shuffles);
        let open = shuffle.pushes.fetch_sub(1, Ordering::AcqRel) - 1;
        let current = shuffles
            .by_id
            .get(&shuffle_id)
            .is_some_and(|s| Arc::ptr_eq(s, shuffle));
        if open > 0 || !current || shuffle.committed_maps() > 0 {
            return false;
        }
        shuffles.by_id.remove(&shuffle_id);
        shuffles.shape_bytes -= shuffle.shape.bytes;
        drop(shuffles);
        shuffle.close();
        true
    }

    /// Forgets the shuffle and [closes](Shuffle::close) it; the caller deletes its
    /// files ([`Shuffle::delete_files`]).
    pub fn remove_shuffle(&self, shuffle_id: u32) -> Result<Option<Arc<Shuffle>>, RequestError> {
        let mut shuffles = lock(&self.shuffles);
        if shuffles.closed {
            return Err(self.deleted());
        }
        let shuffle = shuffles.by_id.remove(&shuffle_id);
        if let Some(s) = &shuffle {
            shuffles.shape_bytes -= s.shape.bytes;
        }
        drop(shuffles);
        if let Some(s) = &shuffle {
            s.close();
        }
        Ok(shuffle)
    }

    /// Ends everything in flight on the app: no shuffle is found or created through it
    /// afterwards, every push and fetch on it is told (their shuffles'
    /// [`closed`](Shuffle::closed) completes) and every store refuses further writes,
    /// commits and reads. Its files stay until [`delete_files`](Self::delete_files).
    pub fn close(&self) {
        let shuffles: Vec<_> = {
            let mut shuffles = lock(&self.shuffles);
            shuffles.closed = true;
            shuffles.shape_bytes = 0;
            shuffles.by_id.drain().map(|(_, s)| s).collect()
        };
        self.closing.cancel();
        for shuffle in shuffles {
            shuffle.close();
        }
    }

    /// Deletes the application's directory (after [`close`](Self::close)). Blocking.
    pub fn delete_files(&self) -> Result<(), RequestError> {
        Ok(remove_dir(&self.dir)?)
    }
}
